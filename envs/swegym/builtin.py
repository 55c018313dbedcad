"""The built-in instances: small real Python repositories with real bugs, built into git repos here.

    python -m agent_rl.envs.swegym.builtin        # builds them (once) and prints the JSONL path

The sources live in this package (`instances/<repo>/`): `repo.json` (the GitHub-style name, version and
commit message), `base/` (the files at the base commit) and one folder per instance (`problem.md`,
`gold.patch`, `test.patch`, `tests.json` with FAIL_TO_PASS and PASS_TO_PASS). Each repo becomes a git
repo with one commit whose hash is reproducible: fixed author, committer, dates and message, files added
in one sorted pass with mode 100644, so the same sources give the same `base_commit` on any machine and
git version (the hash covers only the content and this metadata). The instances are then written as a
SWE-bench-format JSONL, which `dataset.load_instances` reads like any user file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

from agent_rl.io import cache_root

SOURCES = Path(__file__).with_name("instances")
COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "agent-rl", "GIT_AUTHOR_EMAIL": "dev@agent-rl", "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "agent-rl", "GIT_COMMITTER_EMAIL": "dev@agent-rl",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **COMMIT_ENV}, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout.strip()


def _source_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def sources_digest() -> str:
    """A digest of every source file: the build folder's name, so an edit rebuilds."""
    digest = hashlib.sha256()
    for path in _source_files(SOURCES):
        digest.update(str(path.relative_to(SOURCES)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_repo(base: Path, message: str, target: Path) -> str:
    """A git repo at `target` holding `base`'s files in one deterministic commit; returns its hash."""
    target.mkdir(parents=True)
    _git(target, "init", "-q", "--initial-branch=main")
    for path in _source_files(base):
        dest = target / path.relative_to(base)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
        dest.chmod(0o644)
    _git(target, "add", "--all")
    _git(target, "commit", "-q", "--no-gpg-sign", "-m", message)
    return _git(target, "rev-parse", "HEAD")


def builtin_rows(commits: dict[str, str]) -> list[dict]:
    """The SWE-bench rows of every built-in instance, given each repo folder's base commit."""
    rows = []
    for folder in sorted(p for p in SOURCES.iterdir() if p.is_dir()):
        meta = json.loads((folder / "repo.json").read_text())
        for case in sorted((p for p in folder.iterdir() if (p / "gold.patch").is_file()), key=lambda p: int(p.name)):
            tests = json.loads((case / "tests.json").read_text())
            rows.append({
                "instance_id": f"{meta['repo'].replace('/', '__')}-{case.name}", "repo": meta["repo"],
                "base_commit": commits[folder.name], "version": meta["version"],
                "problem_statement": (case / "problem.md").read_text(), "hints_text": "",
                "created_at": "2025-01-01T00:00:00Z", "patch": (case / "gold.patch").read_text(),
                "test_patch": (case / "test.patch").read_text(),
                "FAIL_TO_PASS": tests["FAIL_TO_PASS"], "PASS_TO_PASS": tests["PASS_TO_PASS"],
            })
    return rows


def build_builtin(cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Build the repos and the JSONL (once per version of the sources); returns (jsonl path, repos dir).

    The repos dir holds ``<owner>__<name>`` clones, the layout `dataset.repo_dir` reads.
    """
    out = cache_root(cache_dir) / "swegym" / f"builtin-{sources_digest()}"
    jsonl = out / "instances.jsonl"
    if jsonl.is_file():
        return jsonl, out / "repos"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="builtin-", dir=out.parent))  # then renamed: readers never see half
    commits = {}
    for folder in sorted(p for p in SOURCES.iterdir() if p.is_dir()):
        meta = json.loads((folder / "repo.json").read_text())
        target = staging / "repos" / meta["repo"].replace("/", "__")
        commits[folder.name] = build_repo(folder / "base", meta["message"], target)
    with open(staging / "instances.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in builtin_rows(commits))
    staging.chmod(0o755)
    try:
        staging.rename(out)
    except OSError:  # another process built it first: same content
        subprocess.run(["rm", "-rf", str(staging)], check=False)
    return jsonl, out / "repos"


if __name__ == "__main__":
    path, repos = build_builtin()
    print(f"instances: {path}\nrepos: {repos}")
