"""ALFWorld env on the real engine: official samples, generated games of all six types, bad actions,
parallel envs, anchors, the cache, registration and the configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("alfworld", reason="the ALFWorld tests need the alfworld package: pip install 'agent-rl[alfworld]'")
pytest.importorskip("fast_downward", reason="the ALFWorld tests need textworld[pddl] (pip install 'agent-rl[alfworld]')")

from agent_rl.envs.alfworld.engine import TASK_TYPES
from agent_rl.envs.alfworld.env import AlfWorldEnv, AlfWorldGeneratedEnv, AlfWorldJsonEnv
from agent_rl.envs.alfworld.explorer import (
    ENTITY,
    NAVIGATION_PREFIXES,
    ExplorationState,
    ExploringExpert,
    exploring_action,
)
from agent_rl.envs.alfworld.games import folder_tasks, official_tasks
from agent_rl.envs.alfworld.generate import GameJob, build_game, game_dir
from agent_rl.envs.alfworld.priors import search_key
from agent_rl.envs.alfworld.suites import SEEN_FLOOR_PLANS, SUITES, Suite, suite_tasks
from experiment_scripts import load_experiment

from agent_rl.config import load_config
from agent_rl.eval.harness import evaluate
from agent_rl.eval.tables import EvalProtocol
from agent_rl.io import append_jsonl
from agent_rl.policy.baselines import ExpertPolicy
from agent_rl.registry import make, registered_ids
from agent_rl.rollout.memory import HistoryMemory

SHARED_DATA = Path(os.environ.get("AGENT_RL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
OFFICIAL = SHARED_DATA / "alfworld" / "json_2.1.1"
needs_samples = pytest.mark.skipif(not OFFICIAL.is_dir(), reason=f"official ALFWorld samples not found at {OFFICIAL}")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# One game of each task type (game i has type TASK_TYPES[i % 6]) in small rooms, so the file stays fast.
TINY = Suite(name="tiny", sizes={"train": 6, "test": 1, "test_unseen": 1}, params=SUITES["demo"].params)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("alfworld_cache")
    suite_tasks(TINY, "train", root)
    return root


@pytest.fixture
def make_tiny(cache_dir: Path):
    def factory(**kwargs) -> AlfWorldGeneratedEnv:
        return AlfWorldGeneratedEnv(suite=TINY, split="train", cache_dir=cache_dir, **kwargs)

    return factory


def play_expert(env: AlfWorldEnv, task_index: int) -> tuple[list[str], dict, float]:
    """Follow info['expert_action'] to the end; returns (observations, last info, return)."""
    obs, info = env.reset(seed=0, options={"task_index": task_index})
    seen, total, done = [obs], 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        seen.append(obs)
        total += reward
        done = terminated or truncated
    return seen, info, total


def test_the_expert_wins_generated_games_of_every_type_with_a_table_per_type(make_tiny, tmp_path: Path) -> None:
    protocol = EvalProtocol(env_id="alfworld/tiny", split="train", policy="expert", seeds=(0,), episodes_per_seed=6,
                            catalog_size=6, max_steps=50, success_definition="won")
    result = evaluate(lambda: make_tiny(expert=True), ExpertPolicy(), protocol, HistoryMemory(), tmp_path)
    rows = {row.task_type: row for row in result.rows}
    assert set(TASK_TYPES) <= set(rows) and all(rows[t].success_mean == 1.0 for t in TASK_TYPES)
    for index, trajectory in enumerate(sorted(result.trajectories, key=lambda t: t.task_id)):
        assert trajectory.task_id == f"tiny/train/{index:04d}" and trajectory.metadata["task_type"] == TASK_TYPES[index]
        assert trajectory.success and trajectory.outcome == 1.0 and trajectory.terminated
    env = make_tiny()
    for task in env.tasks:
        game = json.loads(task.game_file.read_text())
        traj = json.loads((task.game_file.parent / "traj_data.json").read_text())
        assert game["solvable"] is True and 3 <= len(game["walkthrough"]) <= 12 and traj["task_type"] == task.task_type
    obs, info = env.reset(seed=0, options={"task_index": 0})
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-") and obs.endswith(f"Your task is to: {info['task']}")
    env.close()



def test_the_exploring_expert_wins_every_type_and_acts_only_on_what_it_has_seen(make_tiny) -> None:
    env = make_tiny(expert=True, expert_mode="explore")
    planner = make_tiny(expert=True)
    for index, task_type in enumerate(TASK_TYPES):
        obs, info = env.reset(seed=0, options={"task_index": index})
        observed, actions, done = set(ENTITY.findall(obs)), [], False
        while not done:
            action = info["expert_action"]
            if not action.startswith(NAVIGATION_PREFIXES):  # a manipulation names only seen things
                assert set(ENTITY.findall(action)) <= observed, (task_type, action, actions)
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            observed |= set(ENTITY.findall(obs))
            done = terminated or truncated
        assert info["won"], (task_type, actions)
        planner_observations, _, _ = play_expert(planner, index)
        # searching costs steps: never fewer than the omniscient plan's
        assert len(actions) >= len(planner_observations) - 1, (task_type, actions)


def test_exploring_action_searches_likely_receptacles_first_opens_closed_ones_then_follows_the_plan() -> None:
    plan = ["go to toilet 1", "take soapbottle 1 from toilet 1", "go to shelf 1", "move soapbottle 1 to shelf 1"]
    admissible = ["go to cabinet 1", "go to cabinet 2", "go to drawer 1", "go to toilet 1", "look"]
    state = ExplorationState()
    state.observe("you see a cabinet 2, a cabinet 1, a drawer 1, and a toilet 1.")
    assert exploring_action(plan, state, admissible) == "go to toilet 1"  # can hold a soap bottle, no door
    state.executed("go to toilet 1")
    assert exploring_action(plan, state, admissible) == "go to cabinet 1"  # then the closed ones, by name
    state.executed("go to cabinet 1")
    assert exploring_action(plan, state, admissible + ["open cabinet 1"]) == "open cabinet 1"
    assert exploring_action(plan, state, admissible) == "go to cabinet 2"  # open, or not openable: move on
    state.observe("You open the cabinet 1. In it, you see a soapbottle 1.")
    assert exploring_action(plan, state, admissible) == "go to toilet 1"  # seen: the plan leads the way
    assert exploring_action([], state, admissible) is None


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [  # ALFRED's table: holders of the class (open surfaces, then closed ones), via a bowl/plate/..., the rest
        ("tomato", ["countertop 1", "diningtable 1", "sidetable 1", "fridge 1", "microwave 1", "desk 1", "cabinet 1",
                    "drawer 1"]),
        ("desklamp", ["desk 1", "diningtable 1", "sidetable 1", "countertop 1", "cabinet 1", "drawer 1", "fridge 1",
                      "microwave 1"]),
        ("pen", ["countertop 1", "desk 1", "diningtable 1", "sidetable 1", "drawer 1", "cabinet 1", "fridge 1",
                 "microwave 1"]),
    ],
)
def test_search_priors_come_from_alfreds_receptacle_table(wanted: str, expected: list[str]) -> None:
    assert sorted(sorted(expected), key=lambda receptacle: search_key(wanted, receptacle)) == expected


def test_the_exploring_expert_replans_only_when_it_is_about_to_follow_a_stale_plan() -> None:
    plans = iter([["go to fridge 1", "open fridge 1", "take tomato 1 from fridge 1"]])
    expert = ExploringExpert(lambda: next(plans))
    expert.reset("you see a countertop 1, a cabinet 1 and a fridge 1.",
                 ["go to fridge 1", "open fridge 1", "take tomato 1 from fridge 1"])
    admissible = ["go to cabinet 1", "go to countertop 1", "go to fridge 1"]
    assert expert.action(admissible) == "go to countertop 1"
    expert.executed("go to countertop 1", True, "On the countertop 1, you see a apple 1.")
    assert expert.action(admissible) == "go to fridge 1" and expert.replans == 0  # nothing new: no planner
    expert.executed("go to fridge 1", True, "The fridge 1 is closed.")
    assert expert.action(admissible + ["open fridge 1"]) == "open fridge 1" and expert.replans == 0
    expert.executed("open fridge 1", True, "You open the fridge 1. In it, you see a tomato 1.")
    assert expert.action(admissible) == "go to fridge 1" and expert.replans == 1  # the plan, made afresh


@needs_samples
def test_the_exploring_expert_wins_every_official_sample_game_within_50_turns() -> None:
    env = AlfWorldJsonEnv(path=OFFICIAL, split="valid_seen", expert=True, expert_mode="explore")
    planner = AlfWorldJsonEnv(path=OFFICIAL, split="valid_seen", expert=True)
    turns = []
    for index in range(env.num_tasks):
        seen, info, _ = play_expert(env, index)
        assert info["won"] and len(seen) - 1 <= 50, (env.tasks[index].task_id, len(seen) - 1)
        assert env.explorer is not None and env.explorer.replans <= 3  # the planner runs now and then, not every step
        turns.append(len(seen) - 1)
        assert turns[-1] >= len(play_expert(planner, index)[0]) - 1  # searching never beats the omniscient plan
    assert sum(turns) / len(turns) <= 15, turns
    env.close()
    planner.close()


def test_expert_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="expert_mode must be one of"):
        AlfWorldEnv([object()], expert_mode="oracle")  # type: ignore[list-item]

def test_generated_games_are_read_by_alfworlds_own_loader(cache_dir: Path) -> None:
    from alfworld.agents.environment.alfred_tw_env import AlfredTWEnv

    config = {"env": {"goal_desc_human_anns_prob": 0, "task_types": [1, 2, 3, 4, 5, 6]},
              "dataset": {"data_path": str(cache_dir), "num_train_games": -1}}
    found = AlfredTWEnv(config, train_eval="train").game_files
    ours = folder_tasks(cache_dir)
    assert sorted(found) == sorted(str(task.game_file) for task in ours) and len(ours) == 6
    traj = json.loads((ours[0].game_file.parent / "traj_data.json").read_text())
    assert set(traj["pddl_params"]) == {"object_target", "parent_target", "toggle_target", "mrecep_target",
                                        "object_sliced"}


KITCHEN_TYPES = ("pick_cool_then_place_in_recep", "pick_heat_then_place_in_recep")  # the big, slow games


@needs_samples
@pytest.mark.parametrize(
    "task_types",
    [pytest.param([t for t in TASK_TYPES if t not in KITCHEN_TYPES], id="small-rooms"),
     pytest.param(list(KITCHEN_TYPES), id="kitchens", marks=pytest.mark.slow)],
)
def test_official_samples_load_and_are_won_by_the_planner(task_types: list[str]) -> None:
    assert sorted(task.task_type for task in official_tasks(OFFICIAL, "valid_seen")) == sorted(TASK_TYPES)
    env = AlfWorldJsonEnv(path=OFFICIAL, split="valid_seen", task_types=task_types, expert=True)
    assert sorted(task.task_type for task in env.tasks) == sorted(task_types)
    assert all(task.task_id.startswith("valid_seen/") for task in env.tasks)
    for index in range(env.num_tasks):
        seen, info, total = play_expert(env, index)
        assert info["won"] and total == 1.0 and 3 <= len(seen) - 1 <= 8, seen
    env.close()
    only = AlfWorldJsonEnv(path=OFFICIAL / "valid_seen", split="valid_seen", task_types=["look_at_obj_in_light"])
    assert [task.task_type for task in only.tasks] == ["look_at_obj_in_light"]


@needs_samples
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": None}, "needs path="),
        ({"path": "/nonexistent/json_2.1.1"}, "is not a folder"),
        ({"path": str(OFFICIAL), "split": "test"}, "split must be one of"),
        ({"path": str(OFFICIAL), "split": "train"}, "no 'train' folder"),
        ({"path": str(OFFICIAL), "split": "valid_seen", "task_types": ["cook"]}, "task_types must be"),
    ],
)
def test_official_loader_errors_say_what_to_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        official_tasks(kwargs.pop("path"), **{"split": "valid_seen", **kwargs})


@pytest.mark.parametrize(
    ("action", "reason"),
    [("", "empty"), ("   ", "empty"), ("go to\ncountertop 1", "newline"), ("take caf\u00e9", "printable ASCII"),
     ("look " * 100, "characters long")],
)
def test_malformed_actions_are_invalid_steps_with_a_helpful_observation(make_tiny, action: str, reason: str) -> None:
    env = make_tiny(anchor="state")
    _, before = env.reset(seed=0, options={"task_index": 0})
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs.startswith("Invalid action:") and reason in obs and "admissible" in obs
    assert info["action_rejected"] and reward == 0.0 and not terminated and not truncated
    assert info["anchor"] == before["anchor"] and info["admissible_actions"] == before["admissible_actions"]
    env.close()


def test_commands_the_engine_cannot_apply_get_its_own_answer(make_tiny) -> None:
    env = make_tiny(max_steps=3)
    _, info = env.reset(seed=0, options={"task_index": 0})
    obs, _, _, _, after = env.step("fly to the moon")
    assert obs == "Nothing happens." and not after["action_rejected"]
    target = next(a for a in info["admissible_actions"] if a.startswith("go to "))
    obs, _, _, truncated, _ = env.step("  " + target.upper() + " ")  # lowercased and trimmed, as the papers
    assert obs.startswith("You arrive at ") and not truncated
    _, _, terminated, truncated, _ = env.step("look")
    assert truncated and not terminated  # the step limit
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("look")
    assert "help" not in info["admissible_actions"] and "look" in info["admissible_actions"]
    env.close()


def test_anchors(make_tiny) -> None:
    env = make_tiny(anchor="state")
    _, start = env.reset(seed=0, options={"task_index": 0})
    _, _, _, _, looked = env.step("look")  # only marks the place as checked: the same state
    assert looked["anchor"] == start["anchor"]
    go = next(a for a in start["admissible_actions"] if a.startswith("go to "))
    _, _, _, _, moved = env.step(go)
    assert moved["anchor"] != start["anchor"]
    plain = make_tiny()
    obs, info = plain.reset(seed=0, options={"task_index": 0})
    assert info["anchor"] == " ".join(obs.split())
    with pytest.raises(ValueError, match="anchor must be"):
        make_tiny(anchor="history")
    env.close()
    plain.close()


def test_parallel_envs_never_share_state(make_tiny) -> None:
    """Nine envs (games 0-5, then 0-2 again) stepped in lock-step each play their own game's plan."""
    envs = [make_tiny(expert=True) for _ in range(9)]
    plans = [json.loads(task.game_file.read_text())["walkthrough"] for task in envs[0].tasks]
    live = {k: envs[k].reset(seed=k, options={"task_index": k % 6})[1] for k in range(9)}
    played = {k: [] for k in range(9)}
    seen = {k: [] for k in range(9)}
    finals = {}
    while live:
        for k, info in list(live.items()):
            played[k].append(info["expert_action"])
            obs, _, terminated, truncated, info = envs[k].step(info["expert_action"])
            seen[k].append(obs)
            live[k] = info
            if terminated or truncated:
                finals[k] = live.pop(k)
    for k in range(9):
        assert played[k] == plans[k % 6] and finals[k]["won"], k
        assert finals[k]["task_id"] == f"tiny/train/{k % 6:04d}" and finals[k]["task_type"] == TASK_TYPES[k % 6]
    assert [seen[k] for k in range(6, 9)] == [seen[k] for k in range(3)]
    for env in envs:
        env.close()


def test_the_cache_is_deterministic_and_reused(cache_dir: Path, tmp_path: Path) -> None:
    job = TINY.jobs("train")[2]
    folder = game_dir(job, cache_dir)
    stamp = (folder / "game.tw-pddl").stat().st_mtime_ns
    assert build_game(job, cache_dir) == folder and (folder / "game.tw-pddl").stat().st_mtime_ns == stamp
    again = build_game(job, tmp_path)
    for name in ("game.tw-pddl", "traj_data.json"):
        assert (again / name).read_text() == (folder / name).read_text()
    other = build_game(GameJob(job.task_type, SEEN_FLOOR_PLANS, dict(job.params), job.seed + 1), tmp_path)
    assert (other / "game.tw-pddl").read_text() != (folder / "game.tw-pddl").read_text()


def test_suites_and_registration(cache_dir: Path) -> None:
    ids = registered_ids()
    assert {"alfworld/generated-v0", "alfworld/demo-v0", "alfworld/json-v0"} <= set(ids)
    train, test, unseen = (SUITES["generated"].jobs(s) for s in ("train", "test", "test_unseen"))
    assert not {j.seed for j in train} & {j.seed for j in test} and len(test) == 120
    assert all(10 not in j.floor_plans for j in train) and {j.floor_plans for j in unseen} == {(10, 219, 308, 424)}
    with pytest.raises(ValueError, match="needs path="):
        make("alfworld/json-v0")
    with pytest.raises(ValueError, match="split must be one of"):
        AlfWorldGeneratedEnv(suite=TINY, split="valid_seen", cache_dir=cache_dir)
    with pytest.raises(ValueError, match="unknown ALFWorld generator params"):
        Suite(name="bad", sizes=TINY.sizes, params={"rooms": 3})


@pytest.mark.parametrize("name", ["alfworld_demo.yaml", "alfworld_paper.yaml"])
def test_configs_load(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert config.env.id.startswith("alfworld/") and config.algo.name == "gigpo"
    if name == "alfworld_paper.yaml":
        assert config.model.path == "Qwen/Qwen2.5-1.5B-Instruct" and config.env.max_turns == 50
        assert (config.rollout.group_size, config.rollout.tasks_per_iteration, config.env.history_window) == (8, 16, 2)
        assert config.optim.lr == 1e-6 and config.ppo.kl_coef == 0.01 and config.algo.params["gamma"] == 0.95


def test_the_experts_table_compares_cost_only_on_games_both_played(tmp_path: Path) -> None:
    bench = load_experiment("bench_alfworld_experts")

    def record(task: str, mode: str, won: bool, turns: int, step_s: float) -> dict:
        return {"split": "valid_seen", "task_id": task, "task_type": "pick_and_place_simple", "mode": mode,
                "won": won, "turns": turns, "reset_s": 1.0, "step_s": step_s, "replans": 0 if mode == "explore" else None}

    out = tmp_path / "episodes.jsonl"
    append_jsonl(out, [record("a", "planner", True, 4, 0.4), record("a", "explore", True, 8, 1.6),
                       record("b", "explore", True, 60, 6.0)])  # b: explorer only, and over the turn limit
    row = next(line for line in bench.summarize(out, turns=50).splitlines() if "| all |" in line)
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[2:5] == ["1/1", "1/2", "1"]  # wins count the limit; one game played by both
    assert cells[5:10] == ["4.0", "8.0 (8)", "100", "200", "2.00"]  # turns and ms/step on game a alone
