"""`agent-rl eval --policy RUN` plays the run's protocol (env, env args, split, turns, history) unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_rl.cli import main
from agent_rl.io import read_trajectories


def eval_metadata(out: Path) -> dict:
    return json.loads((out / "metadata.json").read_text())


def test_eval_of_a_run_takes_its_protocol_and_says_so(tiny_run: Path, tiny_suite_name: str, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--policy", str(tiny_run), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    said = next(line for line in stdout.splitlines() if line.startswith("eval protocol"))
    assert "env textworld/demo-v0 (from the run)" in said and "max turns 3 (from the run)" in said
    assert "history 2 (from the run)" in said and f"'suite': '{tiny_suite_name}'" in said
    protocol = eval_metadata(out)["protocol"]
    assert protocol["max_steps"] == 3 and protocol["split"] == "test" and protocol["catalog_size"] == 2
    # the same protocol the run's own final evaluation used, so the numbers are comparable
    assert protocol["task_set"] == eval_metadata(tiny_run / "eval" / "after_rl")["protocol"]["task_set"]
    assert all(len(t.steps) <= 3 for t in read_trajectories(out / "episodes.jsonl"))


def test_flags_given_win_over_the_run(tiny_run: Path, tiny_suite_name: str, tmp_path: Path, capsys):
    out = tmp_path / "eval"
    checkpoint = tiny_run / "checkpoints" / "iter-000002"
    assert main(["eval", "--policy", str(checkpoint), "--max-turns", "1", "--history", "0", "-n", "1",
                 "--out", str(out)]) == 0
    said = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("eval protocol"))
    assert "max turns 1 (given)" in said and "history 0 (given)" in said
    episodes = read_trajectories(out / "episodes.jsonl")
    assert len(episodes) == 1 and len(episodes[0].steps) == 1


def test_eval_without_env_or_run_is_one_line(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--policy", "expert"]) == 2
    err = capsys.readouterr().err
    assert "--env is required unless --policy is a training run" in err and err.count("\n") == 1
