"""The fault-injection campaign at CI size (experiments/faults.py), and the checks it relies on failing when they should."""

from __future__ import annotations

import functools
import json
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from experiment_scripts import load_experiment

from agent_rl.env_api import TextEnv
from agent_rl.fuzz import GENERATORS, fuzz_env
from agent_rl.registry import make, registered_ids

faults = load_experiment("faults")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_every_built_in_env_family_is_fuzzed_by_the_campaign():
    built_in = {entry.name for entry in entry_points(group="agent_rl.envs")}  # our pyproject's families
    assert built_in == {env_id.split("/")[0] for env_id in faults.ENV_FAMILIES}
    assert {env_id.split("/")[0] for env_id in registered_ids()} >= built_in


def _cheap_family_envs(textworld_suite) -> dict[str, functools.partial]:
    """One env per built-in family, sized for CI (the campaign fuzzes the full demo suites)."""
    from agent_rl.envs.textworld.suites import SUITES

    SUITES[textworld_suite.suite.name] = textworld_suite.suite
    envs = {
        "keydoor": functools.partial(make, "keydoor/corridor-v0", expert=True),
        "search": functools.partial(make, "search/demo-v0", expert=True),
        "webshop": functools.partial(make, "webshop/generated-v0", expert=True, num_products=60, num_goals=20),
        "swegym": functools.partial(make, "swegym/builtin-v0", expert=True, timeout_s=5.0),
        "textworld": functools.partial(make, "textworld/demo-v0", expert=True, suite=textworld_suite.suite.name,
                                       cache_dir=str(textworld_suite.cache_dir)),
        "appworld": functools.partial(make, "appworld/generated-v0", expert=True, timeout_s=5.0),
    }
    official = SHARED_DATA / "alfworld" / "json_2.1.1"
    if official.is_dir():
        envs["alfworld"] = functools.partial(make, "alfworld/json-v0", expert=True, path=str(official),
                                             split="valid_seen")
    return envs


@pytest.mark.slow
@pytest.mark.parametrize("family", ["keydoor", "search", "webshop", "swegym", "textworld", "appworld", "alfworld"])
def test_hostile_actions_never_break_a_built_in_env(family: str, textworld_suite):
    envs = _cheap_family_envs(textworld_suite)
    if family not in envs:
        pytest.skip("the official ALFWorld sample is not in ../shared/data")
    try:
        report = fuzz_env(envs[family], actions=3 * len(GENERATORS), seed=1, step_limit_s=15.0, name=family)
    except (FileNotFoundError, RuntimeError) as err:  # AppWorld without its interpreter (see its setup)
        pytest.skip(f"{family} cannot start here: {err}")
    assert report.problems == [] and report.expert_won_after
    assert set(report.by_kind) == set(GENERATORS) and report.actions == 3 * len(GENERATORS)


class _FragileEnv(TextEnv):
    """Breaks in the ways the fuzz must catch: raises on NUL, returns a bad tuple on empty input."""

    @property
    def num_tasks(self) -> int:
        return 1

    def reset(self, *, seed=None, options=None):
        return "a room", self._info()

    def step(self, action: str):
        if "\x00" in action:
            raise UnicodeError("NUL")
        if not action.strip():
            return "nothing"
        return "ok", 1.0, True, False, {**self._info(), "won": action == "win"}

    def _info(self) -> dict:
        return {"admissible_actions": ["win"], "anchor": "room", "won": False, "task_type": "t", "task_id": "0",
                "task": "win", "expert_action": "win"}


def test_the_fuzz_reports_what_breaks_an_env():
    report = fuzz_env(_FragileEnv, actions=40, seed=0)
    assert not report.ok and report.expert_won_after
    assert any("UnicodeError: NUL" in p for p in report.problems)
    assert any("returned str, not a tuple" in p for p in report.problems)


def test_every_bad_cli_call_is_one_line_naming_what_was_wrong(tmp_path: Path):
    trials = list(faults.cli_fuzz_trials(done=set()))
    assert len(trials) >= 300
    broke = [t["detail"] for t in trials if not t["held"]]
    assert broke == []


def test_the_cli_fuzz_catches_an_accepted_or_crashing_call():
    code, _ = faults.run_cli(["train", "rollout.group_size=4", "--env", "keydoor/corridor-v0"])
    assert code == 0  # valid: it reached training, which the campaign stubs (so a bad call accepted is seen)
    code, err = faults.run_cli(["envs", "nosuch/env-v0"])
    assert code == 2 and err.count("error:") == 1 and "nosuch/env-v0" in err


@pytest.fixture(scope="module")
def kill_campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("kill")
    return out, list(faults.kill_trials(out, kills=3, seed=0, done=set()))  # rollout, update, checkpoint


@pytest.mark.slow
def test_a_run_killed_in_rollout_update_or_checkpoint_resumes_identically(kill_campaign):
    _, trials = kill_campaign
    assert [t["trial"].split("-")[-1] for t in trials] == ["rollout", "update", "checkpoint"]
    assert all(t["held"] for t in trials), [t["detail"] for t in trials]


@pytest.mark.slow
def test_the_run_comparison_sees_a_duplicated_trajectory_and_changed_weights(kill_campaign, tmp_path: Path):
    out, _ = kill_campaign
    reference, copy = out / "reference", tmp_path / "copy"
    shutil.copytree(reference, copy)
    assert faults.compare_runs(reference, copy) == []
    trajectories = min((copy / "trajectories").glob("*.jsonl"))
    trajectories.write_text(trajectories.read_text() + trajectories.read_text().splitlines()[0] + "\n")
    metrics = copy / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    metrics.write_text("\n".join(rows + rows[-1:]) + "\n")
    problems = faults.compare_runs(reference, copy)
    assert any(trajectories.name in p for p in problems) and any("metrics" in p for p in problems)


@pytest.mark.slow
def test_ray_workers_killed_and_stopped_lose_and_duplicate_no_episode():
    pytest.importorskip("ray")
    trials = list(faults.ray_trials(2, seed=0, done=set()))
    assert [t["trial"] for t in trials] == ["ray-00-train", "ray-01-eval"]
    assert all(t["held"] for t in trials), [t["detail"] for t in trials]


def test_the_table_counts_env_fuzz_actions_and_other_trials(tmp_path: Path):
    trials = [faults.trial("kill", "k0", True, ""), faults.trial("kill", "k1", False, "", 3.0),
              {**faults.trial("env-fuzz", "e0", False, "", 2.0), "actions": 100, "broken_actions": 2},
              {**faults.trial("env-fuzz", "e1", True, ""), "actions": 50, "broken_actions": 0}]
    rows = faults.summarise(trials)
    assert rows == [{"campaign": "kill", "trials": 2, "held": 1, "broke": 1, "seconds": 3},
                    {"campaign": "env-fuzz", "trials": 150, "held": 148, "broke": 2, "seconds": 2}]
    faults.write_table(tmp_path, rows)
    assert "| env-fuzz | 150 | 148 | 2 | 2 |" in (tmp_path / "table.md").read_text()
    assert json.loads(json.dumps(rows)) == rows


def test_agent_rl_envs_fuzz_reports_on_a_registered_env(capsys):
    from agent_rl.cli import main

    assert main(["envs", "keydoor/corridor-v0", "--fuzz", "30", "--env-arg", "segments=1"]) == 0
    out = capsys.readouterr().out
    assert "fuzz: 30 actions" in out and out.strip().endswith("held")
