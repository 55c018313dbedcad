"""Training metrics: one JSONL line per iteration (the record) mirrored to TensorBoard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_rl.io import append_jsonl, read_jsonl, write_jsonl


class MetricsLog:
    """Writes `metrics.jsonl` and TensorBoard event files under `out_dir`.

    Metric names follow the peers' convention: `train/*`, `val/*`, `time/*`, `sft/*`.
    """

    def __init__(self, out_dir: Path, resume_from_iteration: int | None = None) -> None:
        self.path = out_dir / "metrics.jsonl"
        if resume_from_iteration is not None and self.path.exists():
            # Lines written after the checkpoint we resume from will be produced again: drop them.
            write_jsonl(self.path, [r for r in read_jsonl(self.path) if r.get("iteration", 0) <= resume_from_iteration])
        from torch.utils.tensorboard import SummaryWriter  # imported late: it pulls in tensorboard

        self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def log(self, iteration: int, metrics: dict[str, Any]) -> None:
        append_jsonl(self.path, [{"iteration": iteration, **metrics}])
        for name, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(name, value, iteration)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
