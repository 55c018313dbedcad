"""One shared starting model for several RL runs (method comparisons): built, SFT-ed and evaluated once.

    sft_path, success = prepare_start(config, out / "start")   # reused when it is already there
"""

from __future__ import annotations

import csv
from pathlib import Path

from agent_rl.config import TrainConfig
from agent_rl.train.metrics import MetricsLog
from agent_rl.train.pipeline import TrainingRun, seed_everything


def overall_success(eval_dir: Path) -> float | None:
    """The overall held-out success of a finished evaluation, or None when it has not finished."""
    table = eval_dir / "table.csv"
    if not table.exists():
        return None
    with table.open() as handle:
        return next(float(row["success_mean"]) for row in csv.DictReader(handle) if row["task_type"] == "overall")


def prepare_start(config: TrainConfig, out: Path) -> tuple[Path, float]:
    """Build and SFT the shared starting model once (reused when present); its held-out success."""
    start = TrainingRun(config)
    sft_path = out / "sft_model"
    if not (sft_path / "config.json").exists():
        seed_everything(config.seed)
        model, tokenizer = start.load(start.base_model_path())
        metrics = MetricsLog(out)
        start.sft(model, tokenizer, metrics)
        metrics.close()
    success = overall_success(out / "eval" / "after_sft")
    if success is None:
        model, tokenizer = start.load(sft_path)
        start.evaluate(model, tokenizer, "after_sft", "after SFT (shared start)")
        success = overall_success(out / "eval" / "after_sft")
    assert success is not None
    return sft_path, success
