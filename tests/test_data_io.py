"""The data model and its files: lossless JSONL round trips, torn and corrupt lines, atomic writes, StepRows codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent_rl.data import Step, StepRows, Trajectory
from agent_rl.io import (
    append_jsonl,
    atomic_write,
    read_jsonl,
    read_trajectories,
    write_json,
    write_trajectories,
)


def make_step(anchor: str = "s0", reward: float = 0.0, valid: bool = True, **overrides) -> Step:
    fields = {"obs": "You are in a kitchen.", "anchor": anchor, "prompt": "Task: eat",
              "response": "<action>eat</action>", "action": "eat" if valid else None, "reward": reward,
              "valid": valid}
    return Step(**{**fields, **overrides})


def make_traj(traj_id: str, group_id: str = "g0", anchors: tuple[str, ...] = ("s0",), **overrides) -> Trajectory:
    steps = [make_step(anchor=a) for a in anchors]
    return Trajectory(task_id="task", group_id=group_id, traj_id=traj_id, steps=steps, **overrides)


@pytest.fixture
def rich_trajectories() -> list[Trajectory]:
    """Values JSON can mangle: exact floats, unicode, nested info, None entropy and advantage, empty episodes."""
    first = Trajectory(
        task_id="tiny/test/0001",
        group_id="it3/g1",
        traj_id="it3/g1/r0",
        steps=[
            make_step(
                anchor="9f2c",
                reward=0.1 + 0.2,  # 0.30000000000000004: repr must survive
                prompt="Tâche: mange la pomme 🍎 — «vite»\nline two\ttab",
                response="<think>ünïcödé \u2028 \x00 null byte</think><action>eat apple</action>",
                prompt_ids=[1, 2, 3],
                response_ids=[7, 8, 4],
                logprobs=[-1e-300, -2.5e-8, -123.456789012345678],
                entropy=None,
                advantage=-0.1 - 0.2,  # the trainer's advantage, bit-exact like every float
                info={"error": "", "nested": {"list": [1, 2.5, None, True], "deep": {"x": [{"y": "z"}]}}},
            ),
            make_step(anchor="a1b2", reward=-0.0, valid=False, action=None, entropy=[0.5, 1e-7],
                      logprobs=[-0.25, -3.0], info={"error": "expected exactly one <action>...</action> block"}),
        ],
        outcome=1 / 3,
        success=True,
        terminated=True,
        truncated=False,
        metadata={"env_id": "textworld/demo-v0", "seed": 2**31 - 2, "task_type": "quest2", "tags": ["a", "é"]},
    )
    empty = Trajectory(task_id="t", group_id="g", traj_id="r", truncated=True, metadata={"env_error": "Boom: x"})
    return [first, empty]


def test_trajectory_jsonl_round_trip_is_lossless(tmp_path: Path, rich_trajectories: list[Trajectory]):
    path = tmp_path / "episodes.jsonl"
    write_trajectories(path, rich_trajectories)
    back = read_trajectories(path)
    assert back == rich_trajectories
    assert back[0].steps[0].reward == 0.30000000000000004  # bit-exact, not rounded
    assert back[0].steps[0].logprobs[0] == -1e-300
    assert back[0].steps[0].entropy is None and back[0].steps[1].entropy == [0.5, 1e-7]
    assert back[0].steps[0].advantage == -0.30000000000000004 and back[0].steps[1].advantage is None
    assert isinstance(back[0].steps[0], Step)
    # one record per line: embedded newlines in text are escaped
    assert len(path.read_text().splitlines()) == 2


def test_appending_keeps_earlier_records(tmp_path: Path, rich_trajectories: list[Trajectory]):
    path = tmp_path / "episodes.jsonl"
    write_trajectories(path, rich_trajectories[:1])
    write_trajectories(path, rich_trajectories[1:])
    assert read_trajectories(path) == rich_trajectories


def test_torn_last_line_is_dropped(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    append_jsonl(path, [{"a": 1}, {"b": 2}])
    with path.open("a") as handle:
        handle.write('{"c": [1, 2')  # a kill while writing the third line
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}]


def test_corrupt_middle_line_raises_with_its_line_number(tmp_path: Path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"oops\n{"d": 4}\n')
    with pytest.raises(ValueError, match=r"log\.jsonl:3: not a JSON line"):
        read_jsonl(path)


def test_append_after_a_torn_line_keeps_the_file_readable(tmp_path: Path, rich_trajectories: list[Trajectory]):
    path = tmp_path / "episodes.jsonl"
    write_trajectories(path, rich_trajectories[:1])
    with path.open("a") as handle:
        handle.write('{"task_id": "torn')  # killed mid-line
    write_trajectories(path, rich_trajectories[1:])  # the resumed run appends its next episode
    assert read_trajectories(path) == rich_trajectories


def test_atomic_write_keeps_the_old_file_when_the_body_raises(tmp_path: Path):
    path = tmp_path / "metadata.json"
    write_json(path, {"version": 1})
    with pytest.raises(RuntimeError, match="killed"), atomic_write(path) as handle:
        handle.write('{"version": 2, "half')
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json"]  # no temporary left behind


def test_atomic_write_replaces_the_file_on_success(tmp_path: Path):
    path = tmp_path / "sub" / "table.md"
    with atomic_write(path) as handle:
        handle.write("new")
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.md"]


def test_atomic_write_gives_the_permissions_of_an_ordinary_file(tmp_path: Path):
    ordinary = tmp_path / "episodes.jsonl"
    append_jsonl(ordinary, [{"a": 1}])
    write_json(tmp_path / "metadata.json", {"a": 1})
    assert (tmp_path / "metadata.json").stat().st_mode & 0o777 == ordinary.stat().st_mode & 0o777


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.update(score=1.0), "unknown fields"),
        (lambda r: r["steps"][0].update(tokens=[1]), "tokens"),
    ],
    ids=["trajectory-field", "step-field"],
)
def test_unknown_fields_in_a_record_raise(tmp_path: Path, mutate, message: str):
    record = make_traj("r0").to_dict()
    mutate(record)
    path = tmp_path / "episodes.jsonl"
    append_jsonl(path, [record])
    with pytest.raises((ValueError, TypeError), match=message):
        read_trajectories(path)


def test_num_invalid_counts_invalid_steps():
    traj = Trajectory("t", "g", "r", steps=[make_step(), make_step(valid=False), make_step(valid=False)])
    assert traj.num_invalid == 2


def test_step_rows_codes_follow_first_appearance():
    batch = [
        Trajectory("t0", "gA", "r0", steps=[make_step("x", 0.0), make_step("y", 1.0)], outcome=1.0),
        Trajectory("t0", "gA", "r1", steps=[make_step("x", 0.0, valid=False)], truncated=True),
        Trajectory("t1", "gB", "r2", steps=[make_step("z", 0.5), make_step("x", 0.0), make_step("y", 0.0)],
                   outcome=0.5),
    ]
    rows = StepRows.from_trajectories(batch)
    assert rows.num_rows == 6
    np.testing.assert_array_equal(rows.group, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(rows.traj, [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(rows.step, [0, 1, 0, 0, 1, 2])
    # equal anchors share a code across trajectories and groups: x=0, y=1, z=2
    np.testing.assert_array_equal(rows.anchor, [0, 1, 0, 2, 0, 1])
    np.testing.assert_array_equal(rows.reward, [0.0, 1.0, 0.0, 0.5, 0.0, 0.0])
    np.testing.assert_array_equal(rows.valid, [True, True, False, True, True, True])
    np.testing.assert_array_equal(rows.outcome, [1.0, 1.0, 0.0, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(rows.truncated, [False, False, True, False, False, False])
    assert rows.group.dtype == np.int64 and rows.reward.dtype == np.float64 and rows.valid.dtype == bool


def test_step_rows_skip_empty_trajectories():
    rows = StepRows.from_trajectories([Trajectory("t", "g", "empty"), make_traj("r1", anchors=("a", "b"))])
    assert rows.num_rows == 2
    np.testing.assert_array_equal(rows.traj, [0, 0])  # the empty trajectory contributes no row and no code
    np.testing.assert_array_equal(rows.step, [0, 1])
