"""Files that must never be half-written: atomic writes and append-only JSONL."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from agent_rl.data import Trajectory


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file next to `path`, then rename it over `path` in one step.

    A reader (or a resumed run after a kill) sees either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)


def append_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Append whole lines and flush them to disk; a kill loses at most the line being written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read the complete lines of a JSONL file; a torn last line (from a kill) is dropped."""
    records = []
    with Path(path).open() as handle:
        lines = handle.read().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):  # the last line has no newline: it was being written
                break
            raise ValueError(f"{path}:{number}: not a JSON line ({err})") from err
    return records


def write_trajectories(path: str | Path, trajectories: Iterable[Trajectory]) -> None:
    append_jsonl(path, (t.to_dict() for t in trajectories))


def read_trajectories(path: str | Path) -> list[Trajectory]:
    return [Trajectory.from_dict(r) for r in read_jsonl(path)]
