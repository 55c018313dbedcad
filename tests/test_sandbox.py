"""The command sandbox (`agent_rl.tools.sandbox.Sandbox`): hostile commands are contained, the host is untouched.

Isolation tests need `unshare` (namespaces) and skip with the reason where the host refuses it; the
resource-limit tests run everywhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from agent_rl.tools.sandbox import Sandbox, SandboxLimits, isolation

needs_namespaces = pytest.mark.skipif(isolation() != "namespaces",
                                      reason="this host refuses unshare: only rlimits hold (tools/sandbox.py)")
READABLE = (sys.prefix, sys.base_prefix)  # so the sandbox can run this interpreter


@pytest.fixture
def host_dir():
    """A host folder anyone may write to (so only the sandbox's read-only mounts keep commands out of it),
    outside pytest's private tmp_path, which a sandbox uid could not even reach."""
    path = Path(tempfile.mkdtemp(prefix="agent_rl_host_"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def box():
    boxes = []

    def make(**limits) -> Sandbox:
        sandbox = Sandbox(SandboxLimits(**{"timeout_s": 10, "max_processes": 64, **limits}), readable=READABLE)
        sandbox.populate()
        boxes.append(sandbox)
        return sandbox

    yield make
    for sandbox in boxes:
        sandbox.close()


def sh(sandbox: Sandbox, command: str, **kwargs):
    return sandbox.run(["bash", "-c", command], **kwargs)


def test_commands_run_in_the_workspace_with_stdin(box) -> None:
    sandbox = box()
    result = sh(sandbox, 'pwd; cat; echo made > f.txt', stdin=b"from stdin\n")
    assert result.ok and result.output == f"{sandbox.workspace}\nfrom stdin\n"
    assert (sandbox.workspace / "f.txt").read_text() == "made\n"


def test_the_host_environment_is_not_passed(box, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_RL_SECRET_TOKEN", "s3cret")
    assert "s3cret" not in sh(box(), "env").output


def test_an_infinite_loop_is_stopped_and_the_sandbox_goes_on(box) -> None:
    sandbox = box()
    result = sh(sandbox, "while true; do :; done", timeout_s=1)
    assert result.exit_code is None and "1 s time limit" in result.error
    assert sh(sandbox, "echo still here").output == "still here\n"


def test_a_huge_output_is_cut_and_stopped(box) -> None:
    result = sh(box(max_reply_chars=10_000), "yes")
    assert "more than 10000 bytes" in result.error and len(result.output) == 10_000


def test_a_memory_hog_fails_alone(box) -> None:
    sandbox = box(memory_mb=256)
    result = sandbox.run([sys.executable, "-c", "x = bytearray(1024 * 2**20)"])
    assert result.exit_code == 1 and "MemoryError" in result.output
    assert sh(sandbox, "echo alive").ok


def test_a_big_file_is_refused(box) -> None:
    result = sh(box(file_mb=1), "head -c 5000000 /dev/zero > big; echo $?")
    assert result.output.strip().endswith("153")  # 128 + SIGXFSZ: the write past file_mb was refused


def test_a_full_workspace_is_reported(box) -> None:
    result = sh(box(disk_mb=1, file_mb=4), "head -c 3000000 /dev/zero > big")
    assert "over the limit of 1 MB" in result.error


def test_the_workspace_is_removed_on_close_and_stale_ones_by_the_next_sandbox(tmp_path: Path) -> None:
    root = tmp_path / "sandboxes"
    sandbox = Sandbox(SandboxLimits(), root=root)
    sandbox.close()
    assert not sandbox.workspace.exists()
    stale = root / "999999999_crashed"  # a pid that cannot exist: its process died without closing
    stale.mkdir()
    Sandbox(SandboxLimits(), root=root).close()
    assert not stale.exists()


@needs_namespaces
def test_no_network_not_even_to_the_host(box) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []
    server.settimeout(3)
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)))
    thread.start()
    result = box().run([sys.executable, "-c",
                        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"])
    thread.join()
    server.close()
    assert result.exit_code == 1 and "Error" in result.output
    assert accepted == [False]


def _accept(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
        return True
    except TimeoutError:
        return False


@needs_namespaces
@pytest.mark.parametrize("how", ["absolute path", "dot-dot", "symlink", "hard link target", "python"])
def test_no_write_outside_the_workspace(box, host_dir: Path, how: str) -> None:
    target = host_dir / "host_file.txt"
    target.write_text("original")
    target.chmod(0o666)
    outside = host_dir / "new_file.txt"
    sandbox = box()
    depth = "../" * len(sandbox.workspace.parts)
    command = {
        "absolute path": f"echo pwned > {target}; echo pwned > {outside}",
        "dot-dot": f"echo pwned > {depth}{str(target).lstrip('/')}; echo pwned > {depth}{str(outside).lstrip('/')}",
        "symlink": f"ln -s {target} link && echo pwned > link; ln -s {host_dir} dir && echo pwned > dir/new_file.txt",
        "hard link target": f"ln {target} hard && echo pwned > hard",
        "python": f"python3 -c \"open('{target}', 'w').write('pwned'); open('{outside}', 'w').write('pwned')\"",
    }[how]
    sh(sandbox, command)
    assert target.read_text() == "original"
    assert not outside.exists()


@needs_namespaces
def test_deleting_everything_deletes_only_the_workspace(box, host_dir: Path) -> None:
    sentinel = host_dir / "sentinel.txt"
    sentinel.write_text("keep")
    sandbox = box()
    (sandbox.workspace / "mine.txt").write_text("mine")
    sh(sandbox, "rm -rf --no-preserve-root / 2>/dev/null; rm -rf ~ 2>/dev/null", timeout_s=10)
    assert sentinel.read_text() == "keep" and Path(sys.executable).exists()
    assert not (sandbox.workspace / "mine.txt").exists()
    assert sh(sandbox, "echo next command runs").ok


@needs_namespaces
def test_a_fork_bomb_stops_at_the_process_limit(box) -> None:
    sandbox = box(max_processes=32)
    result = sh(sandbox, "bomb() { bomb | bomb & }; bomb; sleep 2; echo done", timeout_s=5)
    assert result.exit_code is not None or "time limit" in result.error
    assert sh(sandbox, "echo alive").ok
    if sandbox.uid is not None:  # as root the sandbox has a uid of its own: none of its processes is left
        assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(p) == sandbox.uid]


def _uid(proc: Path) -> int | None:
    try:
        return proc.stat().st_uid
    except OSError:
        return None


@needs_namespaces
def test_background_processes_end_with_their_command(box) -> None:
    sandbox = box()
    sh(sandbox, "setsid sleep 300 & (sleep 301 &) ; echo started")
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) in ("sleep300", "sleep301")]


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b"").decode()
    except OSError:
        return ""


@needs_namespaces
def test_sandboxes_never_see_each_other(box) -> None:
    first, second = box(), box()
    sh(first, "echo private > secret.txt")
    read = sh(second, f"cat {first.workspace}/secret.txt")
    assert "private" not in read.output and read.exit_code != 0
    assert sh(second, f"ls {first.workspace.parent}").output.split() == [second.workspace.name]
    if os.geteuid() == 0:
        assert first.uid != second.uid


@needs_namespaces
def test_no_capabilities_left(box) -> None:
    result = sh(box(), "grep CapEff /proc/self/status; mount -t tmpfs x /mnt 2>&1; echo rc=$?")
    assert "CapEff:\t0000000000000000" in result.output and "rc=0" not in result.output


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="disk_mb must be a positive number"):
        SandboxLimits(disk_mb=0)
