"""Read what a training run or an eval folder left on disk into the plain records the report shows.

A training run (`agent-rl train --out RUN`) holds `config.yaml`, `metrics.jsonl`,
`trajectories/iter-*.jsonl` and `eval/<stage>/`; an eval folder (`agent-rl eval --out DIR`, or one
`eval/<stage>/` of a run) holds `episodes.jsonl`, `metadata.json` and `table.csv`. Everything is
read through the project's own readers (`read_jsonl`, `read_trajectories`), so the report shows
exactly the public files.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_rl.data import Trajectory
from agent_rl.io import read_jsonl, read_trajectories

EVAL_STAGE_ORDER = ("before", "after_sft")  # then iter-* in order, then after_rl, then anything else


@dataclass
class EvalFolder:
    """One evaluation: its protocol, its success-rate table (rows of table.csv) and its episodes file."""

    name: str
    path: Path
    protocol: dict[str, Any]
    table: list[dict[str, str]]

    def episodes(self) -> list[Trajectory]:
        return read_trajectories(self.path / "episodes.jsonl")


@dataclass
class Source:
    """A run or an eval folder: its small files read, its episode files only located (they are read one at a time)."""

    kind: str  # "run" or "eval"
    path: Path
    config_text: str = ""  # the run's config.yaml as saved
    metrics: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.jsonl
    iterations: list[tuple[int, Path]] = field(default_factory=list)  # (iteration, trajectories/iter-*.jsonl)
    evals: list[EvalFolder] = field(default_factory=list)


def load_source(path: str | Path) -> Source:
    """Recognise `path` as a training run or an eval folder and read its small files.

    Raises FileNotFoundError when `path` is missing and ValueError when it is neither.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory: give a run directory (agent-rl train --out) "
                                "or an eval folder (agent-rl eval --out)")
    if (root / "episodes.jsonl").is_file():
        return Source(kind="eval", path=root, evals=[load_eval_folder(root, root.name)])
    if not any((root / name).exists() for name in ("config.yaml", "metrics.jsonl", "trajectories")):
        raise ValueError(f"{root} is neither a training run (config.yaml, metrics.jsonl, trajectories/) "
                         "nor an eval folder (episodes.jsonl)")
    config = root / "config.yaml"
    metrics = root / "metrics.jsonl"
    return Source(
        kind="run",
        path=root,
        config_text=config.read_text() if config.is_file() else "",
        metrics=read_jsonl(metrics) if metrics.is_file() else [],
        iterations=sorted((int(p.stem.split("-")[1]), p) for p in (root / "trajectories").glob("iter-*.jsonl")),
        evals=[load_eval_folder(p, p.name) for p in _eval_stages(root / "eval")],
    )


def load_eval_folder(path: Path, name: str) -> EvalFolder:
    metadata = path / "metadata.json"
    protocol = json.loads(metadata.read_text()).get("protocol", {}) if metadata.is_file() else {}
    table = path / "table.csv"
    rows: list[dict[str, str]] = []
    if table.is_file():
        with table.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    return EvalFolder(name=name, path=path, protocol=protocol, table=rows)


def _eval_stages(folder: Path) -> list[Path]:
    """The run's eval stages in the order they happened."""
    stages = [p for p in folder.glob("*") if (p / "episodes.jsonl").is_file()] if folder.is_dir() else []

    def order(stage: Path) -> tuple[int, str]:
        if stage.name in EVAL_STAGE_ORDER:
            return EVAL_STAGE_ORDER.index(stage.name), ""
        if stage.name.startswith("iter-"):
            return len(EVAL_STAGE_ORDER), stage.name
        return len(EVAL_STAGE_ORDER) + (1 if stage.name == "after_rl" else 2), stage.name

    return sorted(stages, key=order)


def anchor_links(trajectories: list[Trajectory]) -> dict[tuple[str, str], int]:
    """Step groups of GiGPO / HGPO: (group_id, anchor) -> a small label number, for anchors that more
    than one step of the group shares (a state the group met more than once, in one or several rollouts)."""
    counts = Counter((t.group_id, s.anchor) for t in trajectories for s in t.steps)
    shared = [key for key, count in counts.items() if count > 1]
    return {key: number for number, key in enumerate(shared, start=1)}
