"""Success-rate tables from per-episode records, in Markdown (for people) and CSV (for scripts).

Definitions used by every table:

- success rate of a task type = mean over seeds of (successful episodes / episodes of that type run
  with that seed); the overall row does the same over all episodes of each seed.
- ± is the standard deviation of those per-seed rates, population form (ddof=0): it describes the
  seeds that were run and is 0.0 with a single seed rather than undefined.
- N counts episodes over all seeds; average turns, invalid-action rate (invalid steps / all steps),
  truncated rate and mean score pool every episode of the row.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent_rl.data import Trajectory
from agent_rl.io import atomic_write

OVERALL = "overall"
STD_NOTE = "± is the standard deviation over seeds (ddof=0); N counts episodes over all seeds"


@dataclass(frozen=True)
class EpisodeRecord:
    """What a table needs from one evaluation episode."""

    seed: int  # the evaluation seed (one run of the whole split), not the env's reset seed
    task_id: str
    task_type: str
    success: bool
    outcome: float  # episode score
    num_steps: int
    num_invalid: int
    truncated: bool

    @classmethod
    def from_trajectory(cls, traj: Trajectory, seed: int) -> EpisodeRecord:
        """Summarize a finished trajectory; its `metadata["task_type"]` names its table row."""
        if "task_type" not in traj.metadata:
            raise ValueError(
                f"trajectory {traj.traj_id} (task {traj.task_id}) has no metadata['task_type']; "
                "the env should report task_type in info so episodes can be tabulated per type"
            )
        return cls(
            seed=seed,
            task_id=traj.task_id,
            task_type=str(traj.metadata["task_type"]),
            success=traj.success,
            outcome=traj.outcome,
            num_steps=len(traj.steps),
            num_invalid=traj.num_invalid,
            truncated=traj.truncated,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of a records JSONL)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeRecord:
        """Inverse of `to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class EvalProtocol:
    """How the numbers of a table were produced; printed above the table and repeated in the CSV.

    Each field's `label` metadata is its name in the Markdown header, so a new field shows up there
    and in the CSV without further edits.
    """

    env_id: str = field(metadata={"label": "Env"})
    split: str = field(metadata={"label": "Split"})
    policy: str = field(metadata={"label": "Policy"})  # model checkpoint or policy name
    seeds: tuple[int, ...] = field(metadata={"label": "Seeds"})
    episodes_per_seed: int = field(metadata={"label": "Episodes per seed"})
    catalog_size: int = field(metadata={"label": "Catalog size (tasks in the split)"})
    max_steps: int = field(metadata={"label": "Max steps"})
    success_definition: str = field(metadata={"label": "Success"})
    task_set: str = field(default="", metadata={"label": "Task set"})  # which suite / catalog / data (TextEnv.task_set)
    response_protocol: str = field(default="tags", metadata={"label": "Response protocol"})  # env.protocol

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))  # a YAML / JSON list arrives as a list

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; equal protocols give equal dicts, also after a JSON round trip."""
        return {**dataclasses.asdict(self), "seeds": list(self.seeds)}


@dataclass(frozen=True)
class TableRow:
    """One line of a success-rate table; rates are fractions in [0, 1]."""

    task_type: str
    success_mean: float
    success_std: float
    num_seeds: int
    n: int
    avg_turns: float
    invalid_rate: float
    truncated_rate: float
    mean_score: float


def summarize(records: Iterable[EpisodeRecord]) -> list[TableRow]:
    """One row per task type (sorted by name), then the overall row."""
    records = list(records)
    if not records:
        raise ValueError("no episode records to summarize")
    by_type: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        by_type[record.task_type].append(record)
    if OVERALL in by_type:
        raise ValueError(f"task type {OVERALL!r} is reserved for the overall row; rename it in the env")
    return [_row(task_type, by_type[task_type]) for task_type in sorted(by_type)] + [_row(OVERALL, records)]


def _row(task_type: str, records: Sequence[EpisodeRecord]) -> TableRow:
    by_seed: dict[int, list[bool]] = defaultdict(list)
    for record in records:
        by_seed[record.seed].append(record.success)
    rates = np.array([np.mean(successes) for successes in by_seed.values()])
    steps = sum(r.num_steps for r in records)
    return TableRow(
        task_type=task_type,
        success_mean=float(rates.mean()),
        success_std=float(rates.std(ddof=0)),
        num_seeds=len(by_seed),
        n=len(records),
        avg_turns=steps / len(records),
        invalid_rate=sum(r.num_invalid for r in records) / steps if steps else 0.0,
        truncated_rate=float(np.mean([r.truncated for r in records])),
        mean_score=float(np.mean([r.outcome for r in records])),
    )


def _success_cell(row: TableRow) -> str:
    return f"{100 * row.success_mean:.1f} ± {100 * row.success_std:.1f}"


def _markdown_table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    return "\n".join(out)


def _protocol_value(value: Any) -> str:
    if isinstance(value, tuple):  # the seeds
        return f"{', '.join(map(str, value))} ({len(value)} seeds)"
    return str(value)


def to_markdown(rows: Sequence[TableRow], protocol: EvalProtocol) -> str:
    """The protocol as a bullet list (every field, the success definition included), then the table."""
    header = [f"## Evaluation: {protocol.env_id} ({protocol.split})", ""]
    header += [
        f"- {f.metadata['label']}: {_protocol_value(getattr(protocol, f.name))}"
        for f in dataclasses.fields(protocol)
    ]
    header.append(f"- {STD_NOTE}")
    table = _markdown_table(
        ["Task type", "Success %", "N", "Avg turns", "Invalid %", "Truncated %", "Mean score"],
        (
            [
                row.task_type,
                _success_cell(row),
                str(row.n),
                f"{row.avg_turns:.1f}",
                f"{100 * row.invalid_rate:.1f}",
                f"{100 * row.truncated_rate:.1f}",
                f"{row.mean_score:.3f}",
            ]
            for row in rows
        ),
    )
    return "\n".join(header) + "\n\n" + table + "\n"  # the blank line keeps the table out of the list


def to_csv(rows: Sequence[TableRow], protocol: EvalProtocol) -> str:
    """One line per row: the metrics as raw fractions, then the protocol fields (seeds joined by ';').

    The protocol is repeated on every line so that tables of several runs concatenate into one
    self-describing CSV.
    """
    protocol_cells = {
        name: ";".join(map(str, value)) if isinstance(value, list) else value
        for name, value in protocol.to_dict().items()
    }
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer,
        fieldnames=[f.name for f in dataclasses.fields(TableRow)] + list(protocol_cells),
        lineterminator="\n",
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({**dataclasses.asdict(row), **protocol_cells})
    return buffer.getvalue()


def write_tables(out_dir: str | Path, rows: Sequence[TableRow], protocol: EvalProtocol) -> tuple[Path, Path]:
    """Write `table.md` and `table.csv` into `out_dir` (each atomically); return their paths."""
    out_dir = Path(out_dir)
    paths = (out_dir / "table.md", out_dir / "table.csv")
    for path, text in zip(paths, (to_markdown(rows, protocol), to_csv(rows, protocol))):
        with atomic_write(path) as handle:
            handle.write(text)
    return paths


def compare_markdown(
    before_rows: Sequence[TableRow],
    after_rows: Sequence[TableRow],
    labels: tuple[str, str] = ("before", "after"),
) -> str:
    """Success before and after (e.g. before and after training) per task type, with the change in points.

    A task type present on one side only shows "–" on the other and no change.
    """
    before = {row.task_type: row for row in before_rows}
    after = {row.task_type: row for row in after_rows}
    types = sorted((before.keys() | after.keys()) - {OVERALL})
    types += [OVERALL] if OVERALL in before.keys() | after.keys() else []

    def cells(task_type: str) -> list[str]:
        old, new = before.get(task_type), after.get(task_type)
        delta = f"{100 * (new.success_mean - old.success_mean):+.1f}" if old and new else "–"
        return [
            task_type,
            _success_cell(old) if old else "–",
            _success_cell(new) if new else "–",
            delta,
        ]

    header = ["Task type", f"{labels[0]} success %", f"{labels[1]} success %", "Δ points"]
    return _markdown_table(header, map(cells, types)) + "\n"
