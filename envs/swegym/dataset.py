"""SWE-bench-format instances: read rows from a JSONL / JSON / parquet file and find each row's repository.

    instances = load_instances("swe-gym.jsonl")
    repo = repo_dir(Path("repos"), instances[0].repo)   # repos/<owner>__<name>, a git clone

A row holds at least ``instance_id, repo, base_commit, problem_statement, patch, test_patch,
FAIL_TO_PASS, PASS_TO_PASS`` (SWE-bench, SWE-Gym); ``FAIL_TO_PASS`` / ``PASS_TO_PASS`` are JSON lists,
or JSON-encoded strings as in the hub datasets: both are accepted. Other fields (``version``,
``hints_text``, ``created_at``, ...) are kept in `SWEInstance.extra`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
REQUIRED_FIELDS = ("instance_id", "repo", "base_commit", "problem_statement", "patch", "test_patch",
                   "FAIL_TO_PASS", "PASS_TO_PASS")
_DIFF_TARGET = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class SWEInstance:
    instance_id: str
    repo: str  # owner/name
    base_commit: str
    problem_statement: str
    patch: str  # the gold patch (source files)
    test_patch: str  # the tests that check the fix
    fail_to_pass: tuple[str, ...]
    pass_to_pass: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def test_files(self) -> list[str]:
        """The files the test patch touches: the tests that are run when grading."""
        return list(dict.fromkeys(target for _, target in _DIFF_TARGET.findall(self.test_patch)))

    @property
    def repo_name(self) -> str:
        """The repository's short name (``owner/name`` -> ``name``): the task type in result tables."""
        return self.repo.rsplit("/", 1)[-1]


def _test_list(value: Any, name: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: {name} is a string but not a JSON list ({err})") from err
    if hasattr(value, "tolist"):  # parquet gives numpy arrays
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where}: {name} must be a list of test ids, got {type(value).__name__}")
    return tuple(value)


def instance_from_row(row: dict[str, Any], where: str = "row") -> SWEInstance:
    """One `SWEInstance` from a SWE-bench row; a missing field is an error naming it."""
    missing = [name for name in REQUIRED_FIELDS if name not in row]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; a SWE-bench row needs {list(REQUIRED_FIELDS)}")
    for name in REQUIRED_FIELDS[:6]:
        if not isinstance(row[name], str):
            raise TypeError(f"{where}: {name} must be a string, got {type(row[name]).__name__}")
    if not re.fullmatch(r"[0-9a-f]{7,40}", row["base_commit"]):
        raise ValueError(f"{where}: base_commit {row['base_commit']!r} is not a git commit hash")
    return SWEInstance(
        instance_id=row["instance_id"], repo=row["repo"], base_commit=row["base_commit"],
        problem_statement=row["problem_statement"], patch=row["patch"], test_patch=row["test_patch"],
        fail_to_pass=_test_list(row["FAIL_TO_PASS"], "FAIL_TO_PASS", where),
        pass_to_pass=_test_list(row["PASS_TO_PASS"], "PASS_TO_PASS", where),
        extra={k: v for k, v in row.items() if k not in REQUIRED_FIELDS},
    )


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as err:
            raise ImportError("reading parquet needs pyarrow: pip install 'agent-rl[swe]'") from err
        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError(f"{path}: a .json file must hold a list of rows")
        return rows
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number}: not a JSON object ({err})") from err
        return rows
    raise ValueError(f"{path}: unknown format {path.suffix!r}; give a .jsonl, .json or .parquet file")


def load_instances(path: str | Path) -> list[SWEInstance]:
    """Every instance of a SWE-bench-format file (.jsonl, .json list, or .parquet), in file order; a row that
repeats an earlier one is skipped, two different rows with one instance_id are an error."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no SWE-bench instance file at {path}")
    by_id: dict[str, SWEInstance] = {}
    for number, row in enumerate(_read_rows(path)):
        instance = instance_from_row(row, f"{path} row {number}")
        seen = by_id.setdefault(instance.instance_id, instance)
        if seen != instance:
            raise ValueError(f"{path} row {number}: instance_id {instance.instance_id!r} is used by two different rows")
        if seen is not instance:  # an identical copy (published samples have some): played once
            logger.warning("%s row %d repeats instance %s: skipped", path, number, instance.instance_id)
    if not by_id:
        raise ValueError(f"{path} holds no instances")
    return list(by_id.values())


def repo_dir(repos_dir: str | Path, repo: str) -> Path:
    """The clone of `repo` (owner/name) under `repos_dir`: ``<owner>__<name>`` (SWE-bench's naming) or
    ``<owner>/<name>``; a clear error when neither is a git repository."""
    owner, _, name = repo.partition("/")
    root = Path(repos_dir).expanduser()
    candidates = [root / f"{owner}__{name}", root / owner / name]
    for candidate in candidates:
        if (candidate / ".git").exists() or (candidate / "HEAD").is_file():  # a clone, or a bare one
            return candidate
    raise FileNotFoundError(f"no clone of {repo} under {root}: clone it as {candidates[0]} "
                            f"(git clone https://github.com/{repo} {candidates[0]})")
