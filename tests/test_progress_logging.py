"""The per-iteration console line and the optional W&B mirror of the metrics."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from agent_rl.config import LogConfig
from agent_rl.io import read_jsonl
from agent_rl.train.metrics import MetricsLog, format_duration, progress_line

ROW = {"train/success_rate": 0.625, "train/mean_outcome": 0.58, "train/approx_kl": 0.00312, "time/iteration": 12.06}


@pytest.mark.parametrize("row, eta, line", [
    (ROW, 310.0, "iter 3/32 | success 62.5% | reward 0.580 | kl 0.00312 | 12.1 s | ETA 5m 10s"),
    ({**ROW, "train/kl_ref": 0.02, "val/success_rate": 0.5}, 7300.0,
     "iter 3/32 | success 62.5% | reward 0.580 | kl 0.00312 | kl_ref 0.02 | val success 50.0% | 12.1 s | ETA 2h 01m"),
    ({**ROW, "train/success_rate": math.nan}, 4.4, "iter 3/32 | success n/a% | reward 0.580 | kl 0.00312 | 12.1 s | ETA 4 s"),
])
def test_progress_line(row: dict, eta: float, line: str):
    assert progress_line(3, 32, row, eta) == line


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59.4, "59 s"), (60, "1m 00s"), (3599, "59m 59s"),
                                           (3600, "1h 00m"), (math.inf, "?")])
def test_format_duration(seconds: float, text: str):
    assert format_duration(seconds) == text


def test_metrics_without_wandb_touch_no_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing it would fail
    log = MetricsLog(tmp_path, log=LogConfig(wandb=False))
    log.log(1, {"train/success_rate": 0.5})
    log.close()
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"iteration": 1, "train/success_rate": 0.5}]
    assert not (tmp_path / "wandb").exists()


def test_wandb_asked_for_but_not_installed_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ValueError, match=r"log.wandb=true needs the wandb package: pip install wandb"):
        MetricsLog(tmp_path, log=LogConfig(wandb=True))


@pytest.mark.slow
def test_wandb_offline_run_records_the_metrics_and_resumes_the_same_run(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch):
    pytest.importorskip("wandb", reason="wandb is optional (pip install wandb)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    ids = []
    for iteration in (1, 2):  # the second MetricsLog is a resumed run
        log = MetricsLog(tmp_path, resume_from_iteration=iteration - 1, log=LogConfig(wandb=True),
                         config={"iterations": 2})
        ids.append(log.wandb.id)
        log.log(iteration, {"train/success_rate": 0.25 * iteration, "note": "text is not a scalar"})
        log.close()
    assert ids[0] == ids[1] == (tmp_path / "wandb_run_id").read_text().strip()
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{ids[0]}/run-{ids[0]}.wandb"))
    assert runs and all(run.stat().st_size > 0 for run in runs)
