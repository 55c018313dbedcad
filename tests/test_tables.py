"""Success-rate tables and learning-curve plots, checked against numbers computed by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from agent_rl.data import Step, Trajectory
from agent_rl.env_api import describe_tasks
from agent_rl.eval.harness import success_definition
from agent_rl.eval.plots import plot_learning_curve
from agent_rl.eval.tables import (
    EpisodeRecord,
    EvalProtocol,
    TableRow,
    compare_markdown,
    summarize,
    to_csv,
    to_markdown,
    write_tables,
)
from agent_rl.io import append_jsonl

# seed, task_type, success, outcome, num_steps, num_invalid, truncated
EPISODES = [
    (0, "clean", True, 1.0, 4, 0, False),
    (0, "clean", False, 0.0, 10, 2, False),
    (0, "heat", True, 1.0, 6, 1, False),
    (0, "heat", False, 0.0, 7, 0, False),
    (1, "clean", True, 1.0, 3, 0, False),
    (1, "clean", True, 1.0, 5, 1, False),
    (1, "heat", False, 0.0, 10, 4, True),  # cut by the step limit
    (1, "heat", True, 1.0, 11, 0, False),
]

PROTOCOL = EvalProtocol(
    env_id="alfworld/valid_seen-v0",
    split="valid_seen",
    policy="Qwen/Qwen2.5-1.5B-Instruct",
    seeds=[0, 1],
    episodes_per_seed=4,
    catalog_size=4,
    max_steps=10,
    success_definition="the env reports won=True before the step limit",
    task_set="ALFWorld json_2.1.1 valid_seen",
)


def make_records(episodes: list[tuple]) -> list[EpisodeRecord]:
    return [
        EpisodeRecord(seed, f"{task_type}-{i}", task_type, success, outcome, steps, invalid, truncated)
        for i, (seed, task_type, success, outcome, steps, invalid, truncated) in enumerate(episodes)
    ]


@pytest.fixture
def rows() -> list[TableRow]:
    return summarize(make_records(EPISODES))


# Per seed: clean 1/2 and 2/2; heat 1/2 and 1/2; overall 2/4 and 3/4. Std over seeds with ddof=0.
@pytest.mark.parametrize(
    "index, expected",
    [
        (0, TableRow("clean", 0.75, 0.25, 2, 4, 22 / 4, 3 / 22, 0.0, 0.75)),
        (1, TableRow("heat", 0.5, 0.0, 2, 4, 34 / 4, 5 / 34, 1 / 4, 0.5)),
        (2, TableRow("overall", 0.625, 0.125, 2, 8, 56 / 8, 8 / 56, 1 / 8, 5 / 8)),
    ],
)
def test_summarize_hand_computed(rows: list[TableRow], index: int, expected: TableRow) -> None:
    assert len(rows) == 3
    assert dataclasses.asdict(rows[index]) == pytest.approx(dataclasses.asdict(expected))


def test_single_seed_shows_zero_std() -> None:
    rows = summarize(r for r in make_records(EPISODES) if r.seed == 0)
    assert [(r.task_type, r.success_mean, r.success_std) for r in rows] == [
        ("clean", 0.5, 0.0),
        ("heat", 0.5, 0.0),
        ("overall", 0.5, 0.0),
    ]
    assert "| overall | 50.0 ± 0.0 |" in to_markdown(rows, PROTOCOL)


def test_markdown_header_and_table(rows: list[TableRow]) -> None:
    assert to_markdown(rows, PROTOCOL).splitlines() == [
        "## Evaluation: alfworld/valid_seen-v0 (valid_seen)",
        "",
        "- Env: alfworld/valid_seen-v0",
        "- Split: valid_seen",
        "- Policy: Qwen/Qwen2.5-1.5B-Instruct",
        "- Seeds: 0, 1 (2 seeds)",
        "- Episodes per seed: 4",
        "- Catalog size (tasks in the split): 4",
        "- Max steps: 10",
        "- Success: the env reports won=True before the step limit",
        "- Task set: ALFWorld json_2.1.1 valid_seen",
        "- Response protocol: tags",
        "- ± is the standard deviation over seeds (ddof=0); N counts episodes over all seeds",
        "",
        "| Task type | Success % | N | Avg turns | Invalid % | Truncated % | Mean score |",
        "|---|---|---|---|---|---|---|",
        "| clean | 75.0 ± 25.0 | 4 | 5.5 | 13.6 | 0.0 | 0.750 |",
        "| heat | 50.0 ± 0.0 | 4 | 8.5 | 14.7 | 25.0 | 0.500 |",
        "| overall | 62.5 ± 12.5 | 8 | 7.0 | 14.3 | 12.5 | 0.625 |",
    ]


def test_csv_columns_and_raw_fractions(rows: list[TableRow]) -> None:
    lines = to_csv(rows, PROTOCOL).splitlines()
    assert lines[0].split(",") == [
        "task_type", "success_mean", "success_std", "num_seeds", "n", "avg_turns", "invalid_rate",
        "truncated_rate", "mean_score", "env_id", "split", "policy", "seeds", "episodes_per_seed",
        "catalog_size", "max_steps", "success_definition", "task_set", "response_protocol",
    ]  # fmt: skip
    assert lines[3].split(",")[:9] == ["overall", "0.625", "0.125", "2", "8", "7.0", "0.14285714285714285",
                                       "0.125", "0.625"]  # fmt: skip
    assert lines[3].endswith(",0;1,4,4,10,the env reports won=True before the step limit,ALFWorld json_2.1.1 valid_seen,tags")
    assert len(lines) == 4


def test_write_tables(tmp_path: Path, rows: list[TableRow]) -> None:
    md, csv_path = write_tables(tmp_path / "eval", rows, PROTOCOL)
    assert md.read_text() == to_markdown(rows, PROTOCOL)
    assert csv_path.read_text() == to_csv(rows, PROTOCOL)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["table.csv", "table.md"]  # no temp files


def test_compare_markdown(rows: list[TableRow]) -> None:
    after = summarize(
        dataclasses.replace(r, success=True) for r in make_records(EPISODES) if r.task_type == "clean"
    )
    assert compare_markdown(rows, after, labels=("base", "trained")).splitlines() == [
        "| Task type | base success % | trained success % | Δ points |",
        "|---|---|---|---|",
        "| clean | 75.0 ± 25.0 | 100.0 ± 0.0 | +25.0 |",
        "| heat | 50.0 ± 0.0 | – | – |",
        "| overall | 62.5 ± 12.5 | 100.0 ± 0.0 | +37.5 |",
    ]


def test_record_from_trajectory_and_round_trip() -> None:
    steps = [
        Step(obs="o", anchor=f"a{i}", prompt="p", response="r", action=None if i == 1 else "go", reward=0.0,
             valid=i != 1)
        for i in range(3)
    ]  # fmt: skip
    traj = Trajectory(task_id="t7", group_id="g", traj_id="x", steps=steps, outcome=0.0, success=False,
                      truncated=True, metadata={"task_type": "heat", "seed": 123})  # fmt: skip
    record = EpisodeRecord.from_trajectory(traj, seed=2)
    assert record == EpisodeRecord(seed=2, task_id="t7", task_type="heat", success=False, outcome=0.0,
                                   num_steps=3, num_invalid=1, truncated=True)  # fmt: skip
    assert EpisodeRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_record_needs_task_type() -> None:
    traj = Trajectory(task_id="t7", group_id="g", traj_id="x")
    with pytest.raises(ValueError, match="task_type"):
        EpisodeRecord.from_trajectory(traj, seed=0)


@pytest.mark.parametrize(
    "records, message",
    [
        ([], "no episode records"),
        (make_records([(0, "overall", True, 1.0, 1, 0, False)]), "reserved"),
    ],
)
def test_summarize_rejects(records: list[EpisodeRecord], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        summarize(records)


def test_plot_learning_curve(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    append_jsonl(
        metrics,
        [
            {"iteration": i, "train/success_rate": i / 10, "train/loss": 1.0 / (i + 1),
             **({"val/success_rate": i / 12} if i % 2 == 0 else {})}
            for i in range(6)
        ],
    )  # fmt: skip
    out = plot_learning_curve(metrics, tmp_path / "plots" / "curve.png")
    assert out == tmp_path / "plots" / "curve.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 1000


@pytest.mark.parametrize(
    "lines",
    [[], [{"iteration": 0, "time/rollout": 1.2}], [{"train/success_rate": 0.5}]],
    ids=["empty", "no-known-metric", "no-iteration"],
)
def test_plot_learning_curve_without_metrics(tmp_path: Path, lines: list[dict]) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.touch()
    append_jsonl(metrics, lines)
    with pytest.raises(ValueError, match="no usable metrics"):
        plot_learning_curve(metrics, tmp_path / "curve.png")
    assert not (tmp_path / "curve.png").exists()


def test_the_success_definition_says_what_won_means_in_the_env_and_how_episodes_were_decoded(
        textworld_env_factory) -> None:
    assert success_definition(None) == "the env reports won=True before the turn limit (share of episodes)"
    assert success_definition(0.0, "the purchase scores 1.0") == (
        "the env reports won=True (the purchase scores 1.0) before the turn limit (share of episodes), greedy decoding")
    assert success_definition(0.7).endswith(", sampling at temperature 0.7")
    assert describe_tasks(textworld_env_factory).won_means == "the game's quest is complete"
