"""The Docker backend: each workspace is a container started from an image under `docker/` (or the user's).

    backend = DockerBackend(repos_dir, SandboxLimits(timeout_s=60, memory_mb=2048), image="agent-rl-swe:latest")
    workspace = backend.start(instance)   # same interface as the local backend (`backends.Workspace`)

The limits map onto the container (`container_config`): no network (``network_mode="none"``), memory
(``mem_limit``, swap included), processes (``pids_limit``), CPU (``nano_cpus``, one CPU by default), a
read-only root file system with a writable volume of its own at /work (the repository at /work/repo) and a
small tmpfs at /tmp, every capability dropped, no-new-privileges, file-size and CPU-time ulimits, and the
image's non-root user. Every command runs under coreutils `timeout`; its output is read up to the limit.
The repository is checked out on the host (as for the local backend) and copied in as a tar archive.
`image` may name the instance (``"sweb.eval.x86_64.{instance_id}"``): then each instance runs in its own
image, which must hold the repo's dependencies, git, coreutils and python3.

Build the default image with ``docker build -f docker/Dockerfile.swe -t agent-rl-swe:latest .``.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent_rl.envs.swegym.backends import REPO, checkout
from agent_rl.envs.swegym.dataset import SWEInstance, repo_dir
from agent_rl.tools.sandbox import SANDBOX_ENV, CommandResult, SandboxLimits

logger = logging.getLogger(__name__)
DEFAULT_IMAGE = "agent-rl-swe:latest"
WORK = "/work"  # the container's writable volume
SANDBOX_USER = 1000  # the image's non-root user (docker/Dockerfile.swe)
STDIN_FILE = f"{WORK}/.agent_rl_stdin"


def container_config(limits: SandboxLimits, volume: str, cpus: float = 1.0) -> dict[str, Any]:
    """The `docker.containers.run` keyword arguments that enforce `limits` (no engine needed to build them)."""
    from docker.types import Ulimit

    memory = f"{limits.memory_mb}m"
    file_size = limits.file_mb * 2**20
    return {
        "network_mode": "none",
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap beyond the memory limit
        "pids_limit": limits.max_processes,
        "nano_cpus": int(cpus * 1e9),
        "read_only": True,
        "tmpfs": {"/tmp": "rw,size=64m,mode=1777"},
        "volumes": {volume: {"bind": WORK, "mode": "rw"}},
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "ulimits": [Ulimit(name="fsize", soft=file_size, hard=file_size),
                    Ulimit(name="cpu", soft=limits.cpu_s, hard=limits.cpu_s),
                    Ulimit(name="core", soft=0, hard=0)],
        "user": f"{SANDBOX_USER}:{SANDBOX_USER}",
        "environment": {**SANDBOX_ENV, "HOME": WORK, "TMPDIR": "/tmp"},
        "working_dir": f"{WORK}/{REPO}",
        "detach": True,
        "command": ["sleep", "infinity"],
    }


def _tar(files: dict[str, bytes] | None = None, tree: Path | None = None) -> bytes:
    """A tar archive owned by the container's user: `tree` under REPO/, or `files` by name."""
    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = SANDBOX_USER
        info.uname = info.gname = ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        if tree is not None:
            archive.add(tree, arcname=REPO, filter=owned)
        for name, data in (files or {}).items():
            info = owned(tarfile.TarInfo(name))
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class DockerWorkspace:
    def __init__(self, client: Any, container: Any, volume: Any, limits: SandboxLimits) -> None:
        self.client, self.container, self.volume, self.limits = client, container, volume, limits
        self.repo_path = f"{WORK}/{REPO}"

    def run(self, argv: Sequence[str], stdin: bytes = b"", timeout_s: float | None = None) -> CommandResult:
        timeout_s = self.limits.timeout_s if timeout_s is None else timeout_s
        command = ["timeout", "--signal=KILL", f"{timeout_s:g}", *argv]
        if stdin:  # exec has no stdin to write to: the input goes in as a file
            self.container.put_archive(WORK, _tar({STDIN_FILE.rsplit("/", 1)[1]: stdin}))
            command = ["sh", "-c", f'exec "$@" < {STDIN_FILE}', "sh", *command]
        api = self.client.api
        exec_id = api.exec_create(self.container.id, command, workdir=self.repo_path, stdout=True, stderr=True)["Id"]
        started = time.monotonic()
        chunks, size, error = [], 0, ""
        for chunk in api.exec_start(exec_id, stream=True):
            chunks.append(chunk)
            size += len(chunk)
            if size > self.limits.max_reply_chars:
                error = f"the command printed more than {self.limits.max_reply_chars} bytes and was stopped"
                break
        code = api.exec_inspect(exec_id)["ExitCode"]
        if not error and code == 137 and time.monotonic() - started >= timeout_s:
            error = f"the command ran past the {timeout_s:g} s time limit and was stopped"
        if error:  # kill -1 as the sandbox user: every process it started (background ones too), not init
            self.container.exec_run(["kill", "-KILL", "-1"])
        output = b"".join(chunks)[: self.limits.max_reply_chars].decode(errors="replace")
        return CommandResult(output, None if error else code, error)

    def close(self) -> None:
        for thing in (self.container, self.volume):
            try:
                thing.remove(force=True)
            except Exception as err:  # noqa: BLE001 - already gone, or the engine went away: nothing left to do
                logger.debug("could not remove %s: %s", thing, err)


class DockerBackend:
    """Workspaces in containers of `image` (a format string may use {instance_id} and {repo})."""

    def __init__(self, repos_dir: str | Path, limits: SandboxLimits, image: str = DEFAULT_IMAGE, cpus: float = 1.0,
                 client: Any = None) -> None:
        try:
            import docker
        except ImportError as err:
            raise ImportError("the docker backend needs the docker SDK: pip install 'agent-rl[swe]'") from err
        try:
            self.client = client or docker.from_env()
            self.client.ping()
        except Exception as err:  # every transport error means the same thing to the user
            raise RuntimeError(f"no Docker engine answers ({err}); start one, or use backend='local'") from err
        self.repos_dir = Path(repos_dir)
        self.limits = limits
        self.image = image
        self.cpus = cpus

    def start(self, instance: SWEInstance) -> DockerWorkspace:
        source = repo_dir(self.repos_dir, instance.repo)
        with tempfile.TemporaryDirectory() as tmp:
            checkout(source, instance.base_commit, Path(tmp) / REPO)
            archive = _tar(tree=Path(tmp) / REPO)
        image = self.image.format(instance_id=instance.instance_id, repo=instance.repo.replace("/", "__"))
        volume = self.client.volumes.create(labels={"agent_rl": "swegym"})
        try:
            container = self.client.containers.run(image, **container_config(self.limits, volume.name, self.cpus),
                                                   labels={"agent_rl": "swegym"})
        except Exception:
            volume.remove(force=True)
            raise
        workspace = DockerWorkspace(self.client, container, volume, self.limits)
        try:
            container.put_archive(WORK, archive)
        except Exception:
            workspace.close()
            raise
        return workspace
