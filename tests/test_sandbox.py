"""The command sandbox (`agent_rl.tools.sandbox.Sandbox`): hostile commands are contained, the host is untouched.

Isolation tests need `unshare` (namespaces) and skip with the reason where the host refuses it; the
resource-limit tests run everywhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from agent_rl.tools.sandbox import KILL_GRACE_S, Sandbox, SandboxLimits, _cover_plan, isolation
from experiment_scripts import load_experiment

needs_namespaces = pytest.mark.skipif(isolation() != "namespaces",
                                      reason="this host refuses unshare: only rlimits hold (tools/sandbox.py)")
READABLE = (sys.prefix, sys.base_prefix)  # so the sandbox can run this interpreter


@pytest.fixture
def host_dir():
    """A host folder anyone may write to (so only the sandbox's read-only mounts keep commands out of it),
    outside the folders the sandbox hides (/tmp, pytest's tmp_path among them)."""
    path = Path(tempfile.mkdtemp(prefix="agent_rl_host_", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else "."))
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
def test_the_host_homes_and_temporary_folders_are_hidden(box) -> None:
    secret, name = f"s3cret_{secrets.token_hex(8)}", f"agent_rl_canary_{secrets.token_hex(4)}.txt"
    folders = list(dict.fromkeys(p.resolve() for p in (Path.home(), Path("/tmp"), Path("/var/tmp"),
                                                       Path(tempfile.gettempdir())) if p.is_dir()))
    canaries = [folder / name for folder in folders]
    try:
        for canary in canaries:
            canary.write_text(secret)
            canary.chmod(0o644)  # world-readable: only the hiding keeps it out
        sandbox = box()
        read = sh(sandbox, "; ".join(f"cat {canary}" for canary in canaries))
        listed = sh(sandbox, f"ls -a {' '.join(map(str, folders))}")
        python = sandbox.run([sys.executable, "-c", f"import os; print([os.listdir(d) for d in {list(map(str, folders))}])"])
    finally:
        for canary in canaries:
            canary.unlink(missing_ok=True)
    assert secret not in read.output and read.output.count("No such file") == len(canaries)
    assert listed.ok and python.ok and name not in listed.output + python.output


@needs_namespaces
def test_readable_paths_under_hidden_folders_stay_readable(box, monkeypatch) -> None:
    shown = Path(tempfile.mkdtemp(prefix="agent_rl_shown_"))  # in /tmp, which the sandbox hides
    try:
        (shown / "lib").mkdir()
        (shown / "lib" / "tool.py").write_text("print('tool ran')")
        (shown / "data.txt").write_text("data")
        (shown / "sibling.txt").write_text("hidden")
        for path in [shown, *shown.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        sandbox = Sandbox(SandboxLimits(timeout_s=10), readable=(*READABLE, str(shown / "lib"), str(shown / "data.txt")))
        sandbox.populate()
        result = sandbox.run([sys.executable, f"{shown}/lib/tool.py"])
        listed = sh(sandbox, f"cat {shown}/data.txt; echo; ls {shown}; cat {shown}/sibling.txt")
        sandbox.close()
    finally:
        shutil.rmtree(shown)
    assert result.output == "tool ran\n"
    assert listed.output.splitlines()[:3] == ["data", "data.txt", "lib"] and "No such file" in listed.output
    assert "hidden" not in listed.output


def test_covers_nest_and_show_only_what_they_must() -> None:
    # /tmp/root (the sandbox root) is inside /tmp's cover: hidden already, its workspace shown by /tmp's
    plan = _cover_plan("/tmp/root/ws", ["/tmp", "/tmp/root", "/root"],
                       ["/tmp/venv", "/tmp/venv/lib", "/usr", "/root/.pyenv"], private=False)
    assert plan == [("/root", ["/root/.pyenv"]), ("/tmp", ["/tmp/root/ws", "/tmp/venv"])]
    # a hidden folder inside a path shown again is covered again
    plan = _cover_plan("/tmp/a/root/ws", ["/tmp", "/tmp/a/root"], ["/tmp/a"], private=False)
    assert plan == [("/tmp", ["/tmp/a"]), ("/tmp/a/root", ["/tmp/a/root/ws"])]
    with pytest.raises(ValueError, match="directories the sandbox hides"):
        _cover_plan("/tmp/root/ws", ["/tmp"], ["/tmp"], private=False)


@needs_namespaces
def test_background_processes_end_with_their_command(box) -> None:
    sandbox = box()
    sh(sandbox, "setsid sleep 300 & (sleep 301 &) ; echo started")
    assert _gone_within(KILL_GRACE_S, lambda p: _cmdline(p) in ("sleep300", "sleep301"))


def _gone_within(seconds: float, matches) -> bool:
    """No process in /proc matches, at once or within `seconds` (once seen in CI on a loaded machine, the
    kernel's teardown of a PID namespace trailed the command's end; the sandbox's own wait is bounded too)."""
    deadline = time.monotonic() + seconds
    while [p for p in Path("/proc").iterdir() if p.name.isdigit() and matches(p)]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b"").decode()
    except OSError:
        return ""


@needs_namespaces
@pytest.mark.parametrize("how", ["double fork and setsid", "session leader past the timeout"])
def test_no_process_ignoring_sigterm_outlives_its_command(box, how: str) -> None:
    marker = f"# agent_rl_leftover_{secrets.token_hex(4)}"
    code = f"{marker}\nimport os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + {
        "double fork and setsid": "if os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\n"
                                  "os.close(1); os.close(2)\ntime.sleep(300)",
        # the command itself leaves unshare's process group: killing that group alone left it running
        "session leader past the timeout": "os.setsid()\ntime.sleep(300)",
    }[how]
    sandbox = box()
    sandbox.run([sys.executable, "-c", code], timeout_s=2)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and marker in _cmdline(p)]
    if sandbox.uid is not None:
        assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid(p) == sandbox.uid]


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


@needs_namespaces
def test_every_quick_fault_trial_holds() -> None:
    rows = load_experiment("faults_sandbox").sandbox_trials(quick=True)
    assert len(rows) >= 30
    assert [row for row in rows if not row["held"]] == []


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="disk_mb must be a positive number"):
        SandboxLimits(disk_mb=0)
