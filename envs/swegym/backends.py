"""Where an episode's repository lives and its commands run: one interface, a local and a Docker backend.

    backend = LocalBackend(repos_dir, SandboxLimits(timeout_s=60, memory_mb=2048))
    workspace = backend.start(instance)          # a fresh checkout of instance.base_commit
    result = workspace.run(["bash", "-c", "git status"])   # CommandResult(output, exit_code, error)
    workspace.close()                            # removes it (also done on garbage collection)

Local: each workspace is an `agent_rl.tools.sandbox.Sandbox` (see its docstring for what holds and
where); the repository is copied in by the host (a depth-1 fetch of the base commit from the clone under
`repos_dir`, so the workspace shares no file with the clone) before any command runs. Commands find the
interpreter `python` (default: this one) first on PATH: it must have the repo's test dependencies; or, with
`environments` (`environments.Environments`), each instance's own environment: the shared venv of its repo and
version, and a layer in the workspace with the checkout installed editable (`environments.make_layer`).
Docker: `docker_backend.DockerBackend`, the same interface over a container.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent_rl.envs.swegym.dataset import SWEInstance, repo_dir
from agent_rl.tools.sandbox import SYSTEM_PATH, CommandResult, Sandbox, SandboxLimits

if TYPE_CHECKING:
    from agent_rl.envs.swegym.environments import Environments

# Files pytest and Python leave behind: never part of the agent's diff
IGNORED = "__pycache__/\n*.pyc\n.pytest_cache/\n"
REPO = "repo"  # the checkout's folder inside a workspace


class Workspace(Protocol):
    repo_path: str  # the repository's path as commands see it

    def run(self, argv: Sequence[str], stdin: bytes = b"", timeout_s: float | None = None) -> CommandResult:
        """Run `argv` at the repository root under the backend's limits."""

    def close(self) -> None:
        """Stop everything and remove the workspace (idempotent)."""


class Backend(Protocol):
    def start(self, instance: SWEInstance) -> Workspace:
        """A fresh workspace holding the instance's repository at its base commit."""


def checkout(source: Path, commit: str, target: Path) -> None:
    """`source`'s `commit` as a new repository at `target` (objects copied: nothing shared with `source`)."""
    git = ["git", "-c", "advice.detachedHead=false"]
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
    for args in (["init", "-q", str(target)],
                 ["-C", str(target), "fetch", "-q", "--depth", "1", f"file://{source.resolve()}", commit],
                 ["-C", str(target), "checkout", "-q", "FETCH_HEAD"]):
        result = subprocess.run(git + args, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"could not check out {commit} of {source}: {result.stderr.strip()} "
                               "(is the clone up to date? git -C <clone> fetch)")
    (target / ".git" / "info").mkdir(exist_ok=True)
    (target / ".git" / "info" / "exclude").write_text(IGNORED)


@cache
def interpreter_prefixes(python: str) -> tuple[str, ...]:
    """The folders `python` runs from (its venv and base installation): the sandbox must be able to read them."""
    probe = subprocess.run([python, "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
                           capture_output=True, text=True, check=False, timeout=60)
    if probe.returncode != 0:
        raise ValueError(f"python={python!r} does not run: {probe.stderr.strip()[-300:]}")
    return tuple(probe.stdout.split())


class LocalWorkspace:
    def __init__(self, sandbox: Sandbox, bin_dir: str) -> None:
        self.sandbox = sandbox
        self.repo_path = str(sandbox.workspace / REPO)
        self._path = f"{bin_dir}:{SYSTEM_PATH}"

    def run(self, argv: Sequence[str], stdin: bytes = b"", timeout_s: float | None = None) -> CommandResult:
        return self.sandbox.run(argv, cwd=REPO, stdin=stdin, env={"PATH": self._path}, timeout_s=timeout_s)

    def close(self) -> None:
        self.sandbox.close()


class LocalBackend:
    """Workspaces in local sandboxes, repositories from clones under `repos_dir` (``<owner>__<name>``)."""

    def __init__(self, repos_dir: str | Path, limits: SandboxLimits, python: str | None = None,
                 environments: Environments | None = None) -> None:
        self.repos_dir = Path(repos_dir)
        self.limits = limits
        self.python = python or sys.executable
        self.environments = environments
        self.readable = interpreter_prefixes(self.python) + ((str(environments.root),) if environments else ())

    def start(self, instance: SWEInstance) -> LocalWorkspace:
        source = repo_dir(self.repos_dir, instance.repo)
        shared = self.environments.ensure(instance) if self.environments else None
        # the shared environment's interpreter may be another install than ours (the Python its spec names)
        readable = self.readable + (interpreter_prefixes(str(shared / "bin" / "python")) if shared else ())
        sandbox = Sandbox(self.limits, readable=readable)
        try:
            checkout(source, instance.base_commit, sandbox.workspace / REPO)
            bin_dir = os.path.dirname(self.python)
            if shared is not None:
                from agent_rl.envs.swegym.environments import LAYER_INSTALL, make_layer

                bin_dir = str(make_layer(sandbox.workspace, shared))
            sandbox.populate()
            workspace = LocalWorkspace(sandbox, bin_dir)
            if shared is not None:  # the repo's setup code runs in the sandbox, like every command
                installed = workspace.run(["bash", "-c", LAYER_INSTALL])
                if installed.error or installed.exit_code:
                    raise RuntimeError(f"{instance.instance_id}: installing the checkout failed: "
                                       f"{installed.error or installed.output[-800:]}")
        except BaseException:
            sandbox.close()
            raise
        return workspace
