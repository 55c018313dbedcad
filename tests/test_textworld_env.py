"""TextWorld env on the real engine: contract, anchors, solvability, action safety, suites and cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("textworld")

from agent_rl.envs.textworld import generate
from agent_rl.envs.textworld.env import TextWorldEnv, TextWorldGamesEnv
from agent_rl.envs.textworld.games import suite_tasks
from agent_rl.envs.textworld.generate import GameJob, build_game, game_dir
from agent_rl.envs.textworld.guard import rejection
from agent_rl.envs.textworld.suites import SUITES

import agent_rl
from agent_rl.registry import registered_ids, spec

# The official sample games sit in ../shared/data next to the repository on the dev machines
# (AGENT_RL_SHARED_DATA overrides); a user's clone has none and the test skips.
SHARED_DATA = Path(os.environ.get("AGENT_RL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TW_SIMPLE = SHARED_DATA / "textworld" / "tw-simple"
ENV_IDS = [
    f"textworld/{name}-v0" for name in ("demo", "cooking", "treasure_hunter", "coin_collector", "games")
]


def make_env(generated, split: str = "test", **kwargs) -> TextWorldEnv:
    return TextWorldEnv(suite=generated.suite, split=split, cache_dir=generated.cache_dir, **kwargs)


def play(env: TextWorldEnv, task_index: int, policy, seed: int = 0) -> tuple[float, bool, list[dict]]:
    """Run one episode; `policy(info, rng)` picks the action. Returns (return, won, infos)."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed, options={"task_index": task_index})
    infos, total, done = [info], 0.0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(info, rng))
        assert env.observation_space.contains(obs)
        infos.append(info)
        total += reward
        done = terminated or truncated
    return total, info["won"], infos


def scripted(actions: list[str]):
    """A policy that plays `actions` in order."""
    remaining = iter(actions)
    return lambda info, rng: next(remaining)


def expert(info: dict, rng: np.random.Generator) -> str:
    return info["expert_action"]


def uniform_random(info: dict, rng: np.random.Generator) -> str:
    return str(rng.choice(info["admissible_actions"]))


def test_gymnasium_env_checker(textworld_suite):
    from gymnasium.utils.env_checker import check_env

    check_env(make_env(textworld_suite), skip_render_check=True)


def test_ids_are_registered_through_the_entry_point():
    assert set(ENV_IDS) <= set(registered_ids())
    assert all(spec(env_id).description for env_id in ENV_IDS)


def test_make_builds_the_env(textworld_suite):
    env = agent_rl.make("textworld/demo-v0", suite=textworld_suite.suite, cache_dir=textworld_suite.cache_dir)
    _, info = env.reset(seed=0, options={"task_index": 1})
    assert isinstance(env, TextWorldEnv) and env.num_tasks == 2
    assert info["task_id"] == "tiny/train/0001" and info["task_type"] == "quest2"
    assert set(agent_rl.env_api.REQUIRED_INFO_KEYS) <= set(info)


def test_observations_are_clean(textworld_suite):
    env = make_env(textworld_suite)
    obs, info = env.reset(seed=0, options={"task_index": 0})
    assert "$$" not in obs and "-= " in obs  # banner gone, room header kept
    assert not obs.rstrip().endswith(">") and "0/1" not in obs  # prompt and status bar gone
    assert obs.startswith(info["task"][:40])
    assert env.observation_space.contains(obs)


def test_same_task_and_seed_give_the_same_start(textworld_suite):
    env = make_env(textworld_suite)
    first = env.reset(seed=7, options={"task_index": 1})
    env.step("look")
    again = env.reset(seed=7, options={"task_index": 1})
    other = env.reset(seed=7, options={"task_index": 0})
    assert first == again
    assert other[0] != first[0] and other[1]["anchor"] != first[1]["anchor"]
    assert other[1]["task_id"] != first[1]["task_id"]


def _start_with(env: TextWorldEnv, prefix: str) -> tuple[int, str, dict]:
    """The first task whose start state admits an action beginning with `prefix`."""
    for index in range(env.num_tasks):
        _, info = env.reset(seed=0, options={"task_index": index})
        for action in info["admissible_actions"]:
            if action.startswith(prefix):
                return index, action, info
    raise AssertionError(f"no task of the suite admits {prefix!r} at its start; pick other seeds")


@pytest.mark.parametrize("split", ["train", "test"])
def test_anchor_ignores_looking_and_history(textworld_suite, split):
    env = make_env(textworld_suite, split=split)
    for index in range(env.num_tasks):
        _, info = env.reset(seed=0, options={"task_index": index})
        start = info["anchor"]
        for action in info["admissible_actions"]:
            if action.split()[0] in {"look", "examine", "inventory"}:
                *_, after = env.step(action)
                assert after["anchor"] == start, action
        *_, after = env.step("dance wildly")  # feedback from the engine, no change of state
        assert after["anchor"] == start


@pytest.mark.parametrize("split", ["train", "test"])
def test_admissible_actions_pass_the_action_guard(textworld_suite, split):
    env = make_env(textworld_suite, split=split)
    for index in range(env.num_tasks):
        _, info = env.reset(seed=0, options={"task_index": index})
        assert [action for action in info["admissible_actions"] if rejection(action)] == []


def test_open_then_close_returns_to_the_same_anchor(textworld_suite):
    env = make_env(textworld_suite)
    index, action, info = _start_with(env, "close ")
    *_, closed = env.step(action)
    assert closed["anchor"] != info["anchor"]
    *_, reopened = env.step("open " + action.removeprefix("close "))
    assert reopened["anchor"] == info["anchor"]
    # the same state reached with a different history gives the same anchor
    env.reset(seed=1, options={"task_index": index})
    env.step("look")
    *_, closed_again = env.step(action)
    assert closed_again["anchor"] == closed["anchor"]


def test_take_changes_the_anchor(textworld_suite):
    env = make_env(textworld_suite)
    _, action, info = _start_with(env, "take ")
    *_, after = env.step(action)
    assert after["anchor"] != info["anchor"]


@pytest.mark.parametrize("guide", ["expert_action", "walkthrough"])
def test_guided_play_wins_every_test_game(textworld_suite, guide):
    env = make_env(textworld_suite, expert=guide == "expert_action")
    for index in range(env.num_tasks):
        _, info = env.reset(seed=0, options={"task_index": index})
        policy = expert if guide == "expert_action" else scripted(info["walkthrough"])
        total, won, infos = play(env, index, policy)
        assert won and total == pytest.approx(1.0), infos[-1]["task_id"]


def test_random_policy_wins_far_less_than_the_expert(textworld_suite):
    env = make_env(textworld_suite, max_steps=4, expert=True)
    seeds = range(10)
    expert_wins = sum(play(env, index, expert, seed)[1] for index in range(env.num_tasks) for seed in seeds)
    random_wins = sum(
        play(env, index, uniform_random, seed)[1] for index in range(env.num_tasks) for seed in seeds
    )
    assert expert_wins == env.num_tasks * len(seeds)
    assert random_wins <= expert_wins // 2, f"a random policy won {random_wins} of {expert_wins} episodes"


@pytest.mark.parametrize(
    "action, rejected",
    [
        ("", True),
        ("   ", True),
        ("look\ninventory", True),
        ("look\r", True),
        ("x" * 100_000, True),
        ("take key\x00", True),
        ("caf\u00e9", True),
        ("look. inventory", True),
        ("go south then go north", True),
        ("restart", True),
        ("save", True),
        ("SCRIPT on", True),
        ("tw-trace-actions", True),
        ("\\q", True),  # dumb-frotz's own command: it printed "unknown command" forever (a hung step)
        ("look \\x", True),
        ("asdf qwerty", False),
        ("look.", False),
        ("open the door of the universe with a spoon", False),
    ],
)
def test_bad_actions_never_raise(textworld_suite, action, rejected):
    env = make_env(textworld_suite)
    _, info = env.reset(seed=0, options={"task_index": 0})
    obs, reward, terminated, _, after = env.step(action)
    assert env.observation_space.contains(obs) and obs
    assert after["action_rejected"] is rejected
    assert obs.startswith("Invalid action") is rejected
    assert (reward, terminated, after["anchor"]) == (0.0, False, info["anchor"])
    *_, look = env.step("look")  # the game goes on as before
    assert look["anchor"] == info["anchor"]


def test_step_outside_an_episode_raises(textworld_suite):
    env = make_env(textworld_suite, max_steps=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look")
    env.reset(seed=0, options={"task_index": 0})
    env.step("look")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look")


def test_truncation_is_not_termination(textworld_suite):
    env = make_env(textworld_suite, max_steps=3)
    env.reset(seed=0, options={"task_index": 1})
    flags = [env.step(action)[2:4] for action in ("look", "", "inventory")]
    assert flags == [(False, False), (False, False), (False, True)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"suite": "nope"}, "unknown TextWorld suite"),
        ({"split": "valid"}, "split must be one of"),
        ({"max_steps": 0}, "max_steps must be a positive int"),
    ],
)
def test_bad_kwargs_say_how_to_fix_them(textworld_suite, kwargs, message):
    kwargs = {"suite": textworld_suite.suite, "cache_dir": textworld_suite.cache_dir, **kwargs}
    with pytest.raises(ValueError, match=message):
        TextWorldEnv(**kwargs)


@pytest.mark.parametrize("task_index", [-1, 2, "0", 1.0])
def test_bad_task_index(textworld_suite, task_index):
    with pytest.raises(ValueError, match="task_index must be an int"):
        make_env(textworld_suite).reset(options={"task_index": task_index})


def test_games_path_errors(tmp_path):
    with pytest.raises(ValueError, match="needs path="):
        agent_rl.make("textworld/games-v0")
    with pytest.raises(ValueError, match="is not a folder"):
        TextWorldGamesEnv(path=tmp_path / "missing")
    with pytest.raises(ValueError, match="no TextWorld games"):
        TextWorldGamesEnv(path=tmp_path)
    (tmp_path / "lonely.z8").write_bytes(b"")
    with pytest.raises(ValueError, match="no .json beside them"):
        TextWorldGamesEnv(path=tmp_path)


@pytest.mark.skipif(
    not TW_SIMPLE.is_dir(), reason=f"official sample games not at {TW_SIMPLE} (set AGENT_RL_SHARED_DATA to the shared data folder)"
)
def test_official_sample_games_reach_full_score():
    env = agent_rl.make("textworld/games-v0", path=str(TW_SIMPLE))
    assert env.num_tasks == 3
    for index in range(env.num_tasks):
        _, info = env.reset(seed=0, options={"task_index": index})
        total, won, _ = play(env, index, scripted(info["walkthrough"]))
        assert won and total == pytest.approx(1.0)


@pytest.mark.parametrize("suite", ["cooking", "treasure_hunter", "coin_collector"])
def test_challenge_generators_make_winnable_games(textworld_suite, suite, tmp_path):
    """The first train game of each built-in challenge suite builds, and its walkthrough wins it."""
    job = GameJob(SUITES[suite].generator, SUITES[suite].variant(0).params, SUITES[suite].train_seeds[0])
    game = build_game(job, textworld_suite.cache_dir)
    env = TextWorldGamesEnv(path=_folder_with(game, tmp_path), max_steps=50)
    _, info = env.reset(seed=0, options={"task_index": 0})
    total, won, _ = play(env, 0, scripted(info["walkthrough"]))
    assert won and total == pytest.approx(1.0)


def _folder_with(game: Path, folder: Path) -> Path:
    for suffix in (".z8", ".json"):
        (folder / f"game{suffix}").write_bytes(game.with_suffix(suffix).read_bytes())
    return folder


def test_generation_is_deterministic(textworld_suite, tmp_path):
    suite = textworld_suite.suite
    job = GameJob(suite.generator, suite.variant(1).params, suite.test_seeds[1])
    cached = json.loads((game_dir(job, textworld_suite.cache_dir) / generate.GAME_JSON).read_text())
    fresh = json.loads(build_game(job, tmp_path).with_suffix(".json").read_text())
    assert fresh["objective"] == cached["objective"]
    assert fresh["metadata"]["walkthrough"] == cached["metadata"]["walkthrough"]


def test_cache_is_reused(textworld_suite, monkeypatch):
    def no_generation(job, path):
        raise AssertionError(f"regenerated {job}")

    monkeypatch.setattr(generate, "_compile", no_generation)
    for split in ("train", "test"):
        assert len(suite_tasks(textworld_suite.suite, split, textworld_suite.cache_dir)) == 2


def test_failed_generation_leaves_nothing_behind(tmp_path):
    job = GameJob("custom", {"nb_rooms": 1, "no_such_option": 3}, 0)
    with pytest.raises(RuntimeError, match="no_such_option"):
        build_game(job, tmp_path)
    assert not any(game_dir(job, tmp_path).parent.iterdir())


def test_package_import_does_not_load_textworld():
    code = (
        "import sys, agent_rl.envs.textworld as t; t.register_envs(); assert 'textworld' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_textworld_names_the_install():
    code = (
        "import sys; sys.modules['textworld'] = None\n"
        "import agent_rl\n"
        "try:\n    agent_rl.make('textworld/demo-v0')\nexcept ImportError as err:\n    print(err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "pip install 'agent-rl[textworld]'" in out
