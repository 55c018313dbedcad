"""Training metrics: one JSONL line per iteration (the record) mirrored to TensorBoard and, optionally, W&B;
and the one readable console line per iteration."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

from agent_rl.config import LogConfig
from agent_rl.io import append_jsonl, atomic_write, read_jsonl, write_jsonl

WANDB_ID_FILE = "wandb_run_id"  # a resumed run goes on logging into the same W&B run


class MetricsLog:
    """Writes `metrics.jsonl` and TensorBoard event files under `out_dir`, and W&B when `log.wandb` is on.

    Metric names follow the peers' convention: `train/*`, `val/*`, `time/*`, `sft/*`.
    """

    def __init__(self, out_dir: Path, resume_from_iteration: int | None = None, log: LogConfig | None = None,
                 config: dict[str, Any] | None = None) -> None:
        """`config`: the resolved run config, recorded with the W&B run."""
        self.path = out_dir / "metrics.jsonl"
        if resume_from_iteration is not None and self.path.exists():
            # Lines written after the checkpoint we resume from will be produced again: drop them.
            write_jsonl(self.path, [r for r in read_jsonl(self.path) if r.get("iteration", 0) <= resume_from_iteration])
        self.wandb = start_wandb(log, out_dir, config) if log is not None and log.wandb else None
        from torch.utils.tensorboard import SummaryWriter  # imported late: it pulls in tensorboard

        self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def drop_rows_with(self, prefix: str) -> None:
        """Forget the rows holding a metric named `prefix*`: a stage that starts over (SFT killed before its
        model was saved) logs them again, and each must be in the record once."""
        if self.path.exists():
            write_jsonl(self.path, [r for r in read_jsonl(self.path) if not any(k.startswith(prefix) for k in r)])

    def log(self, iteration: int, metrics: dict[str, Any]) -> None:
        append_jsonl(self.path, [{"iteration": iteration, **metrics}])
        scalars = {name: value for name, value in metrics.items() if isinstance(value, (int, float))}
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, iteration)
        self.writer.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=iteration)

    def close(self) -> None:
        self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def start_wandb(log: LogConfig, out_dir: Path, config: dict[str, Any] | None) -> Any:
    """A W&B run for `out_dir` (the same one again when the run resumes); a clear error without wandb."""
    try:
        import wandb
    except ImportError as err:
        raise ValueError("log.wandb=true needs the wandb package: pip install wandb (or set log.wandb=false)") from err
    id_file = out_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:16]
    with atomic_write(id_file) as handle:
        handle.write(run_id + "\n")
    return wandb.init(project=log.wandb_project, name=log.wandb_name or out_dir.resolve().name, id=run_id,
                      resume="allow", dir=str(out_dir), config=config or {})


def progress_line(iteration: int, total: int, row: dict[str, Any], eta_seconds: float) -> str:
    """`iter 3/32 | success 62.5% | reward 0.580 | kl 0.00312 | 12.1 s | ETA 5m 10s` (val success when measured)."""
    parts = [f"iter {iteration}/{total}", f"success {_number(row.get('train/success_rate'), 100, '.1f')}%",
             f"reward {_number(row.get('train/mean_outcome'), 1, '.3f')}",
             f"kl {_number(row.get('train/approx_kl'), 1, '.3g')}"]  # .3g: a tiny estimate reads 1.2e-07
    if "train/kl_ref" in row:
        parts.append(f"kl_ref {_number(row['train/kl_ref'], 1, '.3g')}")
    if "val/success_rate" in row:
        parts.append(f"val success {_number(row['val/success_rate'], 100, '.1f')}%")
    parts += [f"{_number(row.get('time/iteration'), 1, '.1f')} s", f"ETA {format_duration(eta_seconds)}"]
    return " | ".join(parts)


def format_duration(seconds: float) -> str:
    """`42 s`, `5m 10s`, `2h 03m`."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _number(value: Any, scale: float, spec: str) -> str:
    return format(scale * value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"
