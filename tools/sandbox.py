"""Run untrusted programs under kernel limits: one-shot commands (`Sandbox`) or a JSON-lines worker (`LimitedWorker`).

    with Sandbox(SandboxLimits(timeout_s=30, memory_mb=2048)) as box:
        result = box.run(["bash", "-c", "pytest -q"], cwd="repo")   # CommandResult(output, exit_code, error)

    worker = LimitedWorker([python, "worker.py"], SandboxLimits(timeout_s=10), readable=interpreter_paths(python))
    reply = worker.call({"op": "execute", "code": "print(1)"})  # SandboxTimeout if it takes too long

Threat model (what holds, and where). The code run here is written by a model and may be hostile. What
it is given: its workspace (a directory it owns), the read-only host file system less the folders where a
host keeps its secrets and scratch files, its own environment variables, and the limits below.
- Resource limits (`resource.setrlimit`, always): address space (`memory_mb`), CPU seconds, the size of
  any file it writes, processes, no core files; a wall-clock timeout that kills it; output beyond
  `max_reply_chars` is cut and the program stopped (a worker's over-long reply is refused).
- With `isolation() == "namespaces"` (`unshare` works: this container as root, or any Linux host that
  allows unprivileged user namespaces), a `Sandbox` command runs in new network, mount and PID
  namespaces: no network interface but a downed loopback (no host, LAN or Internet connection, not even
  to the host's 127.0.0.1 or its abstract Unix sockets); every mount read-only except its workspace, so
  no write outside it, through symlinks, `..` or anything else. The host's home and temporary folders
  (`hidden_directories`: /root, /home, $HOME, /tmp, /var/tmp, the temp dir, the sandbox root) are each
  covered by an empty tmpfs that shows again only its workspace and the `readable=` paths below them
  (bound back from descriptors opened before the cover; `..` from them leads onto the cover): the
  host's files there (keys, tokens, checkouts, other runs' files, Unix sockets) are not hidden by
  permissions but absent, and parallel sandboxes never see each other's workspaces. It gets only the
  variables `run` passes, never the host's environment, and its own /proc: no host process, so no
  /proc/<pid>/environ of the host. No process outlives its command: when the command (its PID
  namespace's init) exits, the kernel kills every process it left, `setsid`, double forks and SIGTERM
  ignored included, before `run` returns; when the sandbox stops a command (timeout, too much output),
  it kills that init itself (not only unshare's process group, which a command that calls setsid
  leaves), then waits, bounded, until none of the namespace's processes is left. Then it drops every
  capability (empty bounding set, no_new_privs: it cannot remount, unmount a cover, mount or gain
  privileges through setuid programs). Where the host runs us as root, it also becomes a uid of its own
  (random, above 2^20, no name, no groups), so it owns nothing outside its workspace and RLIMIT_NPROC
  (which root ignores) counts its processes alone: a fork bomb stops at `max_processes`; directories
  root keeps private above a `readable=` path are covered the same way. Without root, it runs as the
  calling user inside a user namespace, and RLIMIT_NPROC counts that user's other processes too (the
  limit is set above their number).
- What it can still do: read the world-readable host files outside the hidden folders (/etc, /usr,
  /opt, /srv, /dev/shm, /run, a project checkout outside the homes; without root, what the caller may);
  use CPU and memory up to the limits (no cgroup: the memory limit is per process, so `max_processes` x
  `memory_mb` bounds the total); fill its workspace up to `disk_mb` (checked after each command, the
  command's result says so; each file is capped at `file_mb`); connect to filesystem Unix sockets
  outside the hidden folders that its uid may open (none, as a uid of its own).
- With `isolation() == "none"` (no `unshare`), only the resource limits and timeouts hold: it keeps the
  network, the caller's file access, and processes that leave its process group may outlive it. A
  warning says so; the tests of the isolation are skipped.
`LimitedWorker` (AppWorld's app worker: the model's code runs inside it) is one long-lived command of a
`Sandbox` of its own, so all of the above holds for it (`disk_mb` aside), with `close` in place of the end
of the command: no process it started outlives `close`. It gets only the variables its caller passes
(AppWorld's env passes none: the sandbox's PATH, HOME, TMPDIR and locale alone), and the hidden folders
show only its workspace and the `readable=` paths its caller names, read-only (AppWorld's env: the
interpreter's prefixes and sys.path, `interpreter_paths`; the worker's folder; the official task data).
Even with `isolation() == "none"`, a command or a worker gets no host variable.
experiments/faults_sandbox.py tries these claims with over 100 hostile commands, and with hostile code in
real AppWorld env steps (past AppWorld's own guard).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import resource
import secrets
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typing.Self needs Python 3.11; annotations are never evaluated at runtime here
    from typing_extensions import Self

logger = logging.getLogger(__name__)

# Inside the new mount namespace: every mount read-only (proc aside); the workspace is made writable after.
_READ_ONLY_MOUNTS = (
    'for m in $(awk \'$3 != "proc" {print $2}\' /proc/self/mounts); do mount -o remount,bind,ro "$m" 2>/dev/null; done'
)
SANDBOX_UID_MIN = 2**20  # sandbox uids are drawn above every uid a distribution hands out
SANDBOX_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
KILL_GRACE_S = 2.0  # how long to wait for the pipe to close after a kill (processes that escaped the group)
HIDDEN_DIRS = ("/root", "/home", "/tmp", "/var/tmp")  # with $HOME, the temp dir and the sandbox root


class SandboxError(RuntimeError):
    """The worker could not answer: it timed out, died, or broke the protocol (it is stopped)."""


class SandboxTimeout(SandboxError):
    pass


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 30.0  # wall clock per call or command
    memory_mb: int = 4096  # address space per process (RLIMIT_AS); the AppWorld worker alone maps ~1.5 GB
    cpu_s: int = 3600  # CPU seconds per process (RLIMIT_CPU)
    file_mb: int = 64  # largest file a process may write (RLIMIT_FSIZE)
    # RLIMIT_NPROC: exact for a `Sandbox` run as root (a uid of its own); otherwise it counts every process
    # of the user machine-wide, so it is loose
    max_processes: int = 4096
    max_reply_chars: int = 1_000_000  # output read from the program: a longer command output is cut
    disk_mb: int = 1024  # what a `Sandbox` workspace may hold after a command (LimitedWorker: unused)
    isolate: bool = True  # no network, read-only file system outside the workspace (where the host allows)

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "cpu_s", "file_mb", "max_processes", "max_reply_chars", "disk_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"SandboxLimits.{name} must be a positive number, got {value!r}")


@functools.cache
def isolation() -> str:
    """How this host isolates sandboxes: "namespaces" (no network, read-only fs) or "none" (rlimits only)."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        logger.warning("unshare/setpriv (util-linux) not found: sandboxed code keeps network and file access, "
                       "limited by rlimits only")
        return "none"
    uid = SANDBOX_UID_MIN if os.geteuid() == 0 else None  # the uid drop is part of what is probed
    with tempfile.TemporaryDirectory() as workspace:
        # the probe covers the hidden directories too (its workspace is under one): all a command needs
        probe = subprocess.run(_namespace_argv(workspace, hidden_directories(), uid=uid, readable=()) + ["true"],
                               cwd=workspace, env={"PATH": SYSTEM_PATH, "AGENT_RL_CWD": workspace}, check=False,
                               capture_output=True, timeout=30)
    if probe.returncode == 0:
        return "namespaces"
    logger.warning("unshare is not allowed here (%s): sandboxed code keeps network and file access, "
                   "limited by rlimits only", probe.stderr.decode(errors="replace").strip()[:200])
    return "none"


def _under(path: str, directory: str) -> bool:
    """Whether `path` lies strictly below `directory` (both absolute and normalised)."""
    return path.startswith(directory.rstrip("/") + "/")


def hidden_directories(root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The host directories a sandbox sees empty but for its workspace and `readable` paths: the homes, the
    temporary folders and the sandbox root (`root`), where a training host keeps its secrets and scratch files."""
    candidates = [*HIDDEN_DIRS, os.path.expanduser("~"), tempfile.gettempdir(), *([os.fspath(root)] if root else [])]
    real = (os.path.realpath(path) for path in candidates)
    return tuple(dict.fromkeys(path for path in real if path != "/" and os.path.isdir(path)))


@functools.cache
def interpreter_paths(python: str) -> tuple[str, ...]:
    """What the Python interpreter `python` reads to start and import (its prefixes and sys.path folders),
    for `readable=` when it lies under a hidden folder (a venv in ~/.cache, a pyenv build in /root). Asked of
    the interpreter itself, isolated (-I) as a sandbox's minimal environment leaves it; () if it cannot say
    (missing, broken): the sandboxed start then fails and says so."""
    code = ("import json, sys; "
            "print(json.dumps([sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *sys.path]))")
    try:
        probe = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60,
                               env={"PATH": SYSTEM_PATH, **SANDBOX_ENV})
        paths = json.loads(probe.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError):
        return ()
    return tuple(dict.fromkeys(path for path in paths if os.path.isabs(path) and os.path.exists(path)))


def _first_private_ancestor(path: str) -> str | None:
    """The highest directory above `path` that others may not search (its mode lacks o+x), if any."""
    current = "/"
    for part in Path(path).parts[1:-1]:
        current = os.path.join(current, part)
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return current
    return None


def _cover_plan(workspace: str, hidden: Sequence[str], readable: Sequence[str], private: bool
                ) -> list[tuple[str, list[str]]]:
    """Which directories get an empty tmpfs, outermost first, each with the paths it shows again (the
    workspace, the `readable` paths below it): `hidden`, and with `private` the private ancestors of `readable`."""
    paths = list(dict.fromkeys(os.path.realpath(path) for path in readable))
    if clash := [path for path in paths if path in hidden]:
        raise ValueError(f"readable paths {clash} are directories the sandbox hides (tools/sandbox.py)")
    covers = set(hidden)
    if private:  # a uid of its own cannot search them: a tmpfs shows the paths alone, as for hidden ones
        covers |= {ancestor for path in paths if (ancestor := _first_private_ancestor(path)) is not None}
    shown = [workspace, *paths]
    plan: list[tuple[str, list[str]]] = []
    for cover in sorted(covers, key=lambda path: (path.count("/"), path)):  # outermost first
        enclosing = [kept for outer, kept in plan if _under(cover, outer)]
        if enclosing and not any(_under(cover, path) for path in enclosing[-1]):
            continue  # inside an earlier cover and not shown again by it: hidden already
        inside = [path for path in shown if _under(path, cover)]
        plan.append((cover, [path for path in inside if not any(_under(path, other) for other in inside)]))
    return plan


def _cover_script(workspace: str, plan: list[tuple[str, list[str]]]) -> list[str]:
    """Shell lines that carry out `_cover_plan`: each path is bound back from a file descriptor opened before
    its cover (the workspace from the cwd), on a directory or file made for it in the tmpfs."""
    lines = ["umask 022"]  # the tmpfs folders leading to a shown path must be searchable by the sandbox uid
    for cover, kept in plan:
        held = [path for path in kept if path != workspace]
        if len(held) > 7:  # sh redirections take single-digit descriptors: 3 to 9
            raise ValueError(f"too many readable paths under {cover} to show in the sandbox: {held}")
        lines += [f"exec {fd}<{shlex.quote(path)}" for fd, path in enumerate(held, start=3)]
        lines.append(f"mount -t tmpfs -o mode=755,size=1m agent_rl_hidden {shlex.quote(cover)}")
        for fd, path in enumerate(held, start=3):
            target = shlex.quote(path)
            make = (f"mkdir -p {target}" if os.path.isdir(path)
                    else f"mkdir -p {shlex.quote(os.path.dirname(path))} && : > {target}")
            lines.append(f"{make} && mount -c --rbind /proc/self/fd/{fd} {target} && exec {fd}<&-")
        if workspace in kept:
            lines += [f"mkdir -p {shlex.quote(workspace)}", f"mount -c --bind /proc/self/cwd {shlex.quote(workspace)}"]
    if not any(workspace in kept for _, kept in plan):  # its own mount, so that it alone is made writable
        lines.append(f"mount --bind {shlex.quote(workspace)} {shlex.quote(workspace)}")
    return lines


def _namespace_argv(workspace: str, hidden: Sequence[str], uid: int | None, readable: Sequence[str]) -> list[str]:
    """`unshare` + a setup script: new net/mount/pid namespaces, `hidden` covered but for `workspace` and
    `readable`, every mount read-only but the workspace, then no capabilities (and `uid` if given).
    It must start in `workspace` (the cwd is how the workspace comes back under its cover)."""
    workspace = os.path.realpath(workspace)
    ws = shlex.quote(workspace)
    shown = [path for path in readable if os.access(path, os.R_OK)]  # one missing or closed would stop the script
    lines = ["set -e", "mount --make-rprivate /",
             *_cover_script(workspace, _cover_plan(workspace, hidden, shown, private=uid is not None)),
             "set +e", _READ_ONLY_MOUNTS, "set -e", f"mount -o remount,bind,rw {ws}",
             ('cd "$AGENT_RL_CWD" 2>/dev/null || { echo "the working folder $AGENT_RL_CWD is gone (deleted by an '
              'earlier command)"; exit 1; }')]
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"]
    if uid is not None:  # a user namespace (no root) denies setgroups: its groups are unmapped already
        drop += ["--clear-groups", f"--reuid={uid}", f"--regid={uid}"]
    lines.append(f'exec {shlex.join(drop)} -- "$@"')
    user = [] if os.geteuid() == 0 else ["--map-root-user"]
    return ["unshare", *user, "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--propagation", "private", "sh", "-c", "\n".join(lines), "sh"]


def _limit_resources(limits: SandboxLimits, max_processes: int) -> None:
    """Runs in the child between fork and exec: own process group (so a timeout kills it all), rlimits."""
    os.setsid()
    memory = limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s))
    size = limits.file_mb * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_NPROC, (max_processes, max_processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _user_process_count() -> int:
    """How many processes this user runs now (RLIMIT_NPROC counts them with the sandbox's own)."""
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                continue
    return count


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _namespace_init(unshare_pid: int) -> tuple[int, str | None] | None:
    """A pidfd of the PID namespace's init (unshare's one child, found by its parent pid while unshare lives:
    /proc/<pid>/task/<pid>/children needs CONFIG_PROC_CHILDREN) and its namespace link, if it can be read."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or _parent_pid(pid := int(entry.name)) != unshare_pid:
            continue
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            namespace: str | None = os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:  # a non-dumpable process, for a caller that is not root: the kill alone must do
            namespace = None
        if _parent_pid(pid) == unshare_pid:  # still unshare's child: the pidfd and the link are no reused pid's
            return pidfd, namespace
        os.close(pidfd)
    return None


def _namespace_members(namespace: str) -> list[int]:
    """The host pids of the processes in the PID namespace `namespace` (a /proc/<pid>/ns/pid link)."""
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.readlink(f"/proc/{entry.name}/ns/pid") == namespace:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_namespace(proc: subprocess.Popen) -> None:
    """Stop a namespaced command and everything it started, then unshare. Killing unshare's process group is
    not enough: a command that calls setsid leaves the group, and (as root) its drop to the sandbox uid clears
    the --kill-child death signal. Killing the namespace's init makes the kernel kill every process in it."""
    init = _namespace_init(proc.pid) if proc.poll() is None else None
    namespace = None
    if init is not None:
        pidfd, namespace = init
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.close(pidfd)
    try:  # unshare returns once its child has exited, and init exits last, once the namespace is empty
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc)
    deadline = time.monotonic() + KILL_GRACE_S
    while namespace is not None and (left := _namespace_members(namespace)):  # leftovers: none expected
        if time.monotonic() > deadline:
            logger.warning("sandbox processes %s outlived their namespace's init", left)
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


@dataclass(frozen=True)
class CommandResult:
    """What a command left: its output (stdout and stderr interleaved, cut at the limit), its exit code
    (negative: killed by that signal; None: stopped by the sandbox), and why the sandbox stopped it ('' if not)."""

    output: str
    exit_code: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error


def default_sandbox_root() -> Path:
    """Where workspaces are made: $AGENT_RL_SANDBOX_DIR, else <tmp>/agent_rl_sandboxes (hidden from each sandbox)."""
    return Path(os.environ.get("AGENT_RL_SANDBOX_DIR") or Path(tempfile.gettempdir()) / "agent_rl_sandboxes")


def _remove_stale_workspaces(root: Path) -> None:
    """Workspaces whose owning process is gone (it crashed or was killed before `close`)."""
    for entry in root.iterdir():
        pid = entry.name.split("_", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(entry, ignore_errors=True)


class Sandbox:
    """A private workspace directory and the limits every command in it runs under (see the module docstring).

    `workspace` is the directory commands see as theirs (its path is the same inside and out); the caller
    fills it from the host (`populate`, trusted content only) before commands run. `close` (or the context
    manager, or garbage collection) removes it; workspaces left by a process that died are removed by the
    next `Sandbox` made under the same root.

    Args:
        limits: the resource limits and the timeout of each command.
        readable: host paths commands must be able to read (an interpreter and its libraries); needed when
            they lie in a hidden directory (`hidden_directories`: /root, /home, /tmp...) or, as root, below
            a directory private to root.
        root: the directory holding every workspace (default `default_sandbox_root()`; hidden).
    """

    def __init__(self, limits: SandboxLimits, readable: Sequence[str] = (), root: str | os.PathLike | None = None
                 ) -> None:
        self.limits = limits
        self.isolation = isolation() if limits.isolate else "none"
        # resolved, so that the workspace's path is the one its cover shows again (no symlink in a hidden folder)
        self.root = (Path(root) if root is not None else default_sandbox_root()).resolve()
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self.hidden = hidden_directories(self.root)
        _remove_stale_workspaces(self.root)
        self.workspace = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}_", dir=self.root))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.workspace, ignore_errors=True)
        as_root = self.isolation == "namespaces" and os.geteuid() == 0
        self.uid = SANDBOX_UID_MIN + secrets.randbelow(2**30) if as_root else None
        self.readable = tuple(readable)
        # RLIMIT_NPROC counts the whole user's processes unless the sandbox has a uid of its own
        self._nproc = limits.max_processes if self.uid is not None else _user_process_count() + limits.max_processes

    def populate(self) -> None:
        """Hand the workspace over to the sandbox uid, after the host has written its trusted content."""
        if self.uid is None:
            return
        for directory, dirs, files in os.walk(self.workspace):
            for name in [directory, *(os.path.join(directory, n) for n in dirs + files)]:
                os.lchown(name, self.uid, self.uid)

    def start(self, argv: Sequence[str], cwd: str = ".", env: dict[str, str] | None = None,
              stderr: int = subprocess.STDOUT) -> subprocess.Popen:
        """Start `argv` in `cwd` (relative to the workspace) under the isolation and limits, without waiting:
        stdin and stdout are pipes, stderr goes to `stderr`. It gets only `env` (with PATH, HOME and TMPDIR
        pointing into the workspace), never the host's environment. The caller ends it with `stop`."""
        workdir = os.path.normpath(self.workspace / cwd)
        if not workdir.startswith(str(self.workspace)):
            raise ValueError(f"cwd {cwd!r} leaves the workspace")
        variables = {"PATH": SYSTEM_PATH, "HOME": str(self.workspace), "TMPDIR": str(self.workspace),
                     **SANDBOX_ENV, **(env or {}), "AGENT_RL_CWD": workdir}
        if self.isolation == "namespaces":
            prefix = _namespace_argv(str(self.workspace), self.hidden, uid=self.uid, readable=self.readable)
            # the setup script opens the workspace from its cwd; the command's cwd is $AGENT_RL_CWD
            start_dir = str(self.workspace)
        else:
            prefix, start_dir = [], workdir
        return subprocess.Popen(
            [*prefix, *argv], cwd=start_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
            env=variables,
            # rlimits must be set in the child before exec; sandboxes are started from one thread at a time
            preexec_fn=functools.partial(_limit_resources, self.limits, self._nproc),  # noqa: PLW1509
        )

    def stop(self, proc: subprocess.Popen) -> None:
        """Kill a command `start` began and every process it left."""
        (_kill_namespace if self.isolation == "namespaces" else _kill_group)(proc)

    def run(self, argv: Sequence[str], cwd: str = ".", stdin: bytes = b"", env: dict[str, str] | None = None,
            timeout_s: float | None = None) -> CommandResult:
        """Run `argv` in `cwd` (relative to the workspace) under the limits, as `start` does, feeding it `stdin`."""
        proc = self.start(argv, cwd, env)
        output, error = self._communicate(proc, stdin, self.limits.timeout_s if timeout_s is None else timeout_s)
        code = None if error else proc.returncode
        disk = self.disk_usage_mb()
        if not error and disk > self.limits.disk_mb:
            error = f"the workspace holds {disk:.0f} MB, over the limit of {self.limits.disk_mb} MB"
        return CommandResult(output.decode(errors="replace"), code, error)

    def _communicate(self, proc: subprocess.Popen, stdin: bytes, timeout_s: float) -> tuple[bytes, str]:
        """Feed stdin, read the output up to the limit; on a timeout or too much output, kill the group."""
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(stdin)
        except BrokenPipeError:
            pass
        proc.stdin.close()
        deadline = time.monotonic() + timeout_s
        chunks, size, error = [], 0, ""
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    error = f"the command ran past the {timeout_s:g} s time limit and was stopped"
                    break
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > self.limits.max_reply_chars:
                    error = f"the command printed more than {self.limits.max_reply_chars} bytes and was stopped"
                    break
        if error:
            proc.stdout.close()  # unshare may be blocked writing to the full pipe: its write must fail, not wait
            self.stop(proc)
        else:
            try:  # a command that ended alone leaves an empty namespace: its init exits last
                proc.wait(timeout=KILL_GRACE_S)
            except subprocess.TimeoutExpired:  # output closed but the process lingers: it is stopped
                self.stop(proc)
        proc.stdout.close()
        return b"".join(chunks)[: self.limits.max_reply_chars], error

    def disk_usage_mb(self) -> float:
        """The size of the files in the workspace (lstat only: links are not followed)."""
        total = 0
        for directory, _, files in os.walk(self.workspace):
            for name in files:
                try:
                    total += os.lstat(os.path.join(directory, name)).st_size
                except OSError:
                    continue
        return total / 2**20

    def close(self) -> None:
        """Remove the workspace (idempotent)."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LimitedWorker:
    """A long-lived worker process (`argv`) in a `Sandbox` of its own, answering one JSON line per request.

    It is isolated as a `Sandbox` command is (the module docstring): its workspace (private, writable) is
    its cwd, HOME and TMPDIR; it gets only `env`, never the host's environment; the hidden folders show only
    its workspace and `readable`, which must name what it reads there (`interpreter_paths` of its
    interpreter, its script). `close` stops it with every process it started and removes the workspace.
    """

    def __init__(self, argv: list[str], limits: SandboxLimits, env: dict[str, str] | None = None,
                 readable: Sequence[str] = ()) -> None:
        self.limits = limits
        self._box = Sandbox(limits, readable=readable)
        self._box.populate()  # still empty: this hands the workspace to the sandbox uid
        self.workspace = str(self._box.workspace)
        self.isolation = self._box.isolation
        self._proc = self._box.start(argv, env=env, stderr=subprocess.DEVNULL)
        self._buffer = b""

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def call(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request, wait for its one-line JSON reply; a timeout or a death stops the worker."""
        if not self.alive:
            raise SandboxError(f"the worker has exited (code {self._proc.returncode})")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError as err:
            self.close()
            raise SandboxError("the worker closed its input") from err
        line = self._read_line(self.limits.timeout_s if timeout_s is None else timeout_s)
        try:
            return json.loads(line)
        except json.JSONDecodeError as err:
            self.close()
            raise SandboxError(f"the worker's reply is not JSON: {line[:200]!r}") from err

    def _read_line(self, timeout_s: float) -> bytes:
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    self.close()
                    raise SandboxTimeout(f"the worker gave no answer within {timeout_s:g} s and was stopped")
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    code = self._proc.wait()
                    self.close()
                    raise SandboxError(f"the worker died (exit code {code}; a memory or CPU limit, or a crash)")
                self._buffer += chunk
                if len(self._buffer) > self.limits.max_reply_chars:
                    self.close()
                    raise SandboxError(f"the worker's reply exceeded {self.limits.max_reply_chars} bytes")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def close(self) -> None:
        """Kill the worker and every process it started, remove its workspace (idempotent)."""
        self._box.stop(self._proc)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._box.close()
