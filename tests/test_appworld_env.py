"""AppWorld env: the generated tasks on the real apps, the sandbox's limits, the official loader.

The apps need an interpreter with `appworld` installed and its apps unpacked (`appworld install`):
$AGENT_RL_APPWORLD_PYTHON, else this one. Tests that need it skip with the reason when it is missing;
the sandbox tests use a small stand-in worker and run everywhere (namespace ones where `unshare` works).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from agent_rl.envs.appworld.env import AppWorldEnv
from agent_rl.envs.appworld.official import official_task_ids, resolve_root
from agent_rl.envs.appworld.setup import PYTHON_ENV_VAR, default_python
from agent_rl.envs.appworld.tasks import TASKS, TASKS_BY_ID
from agent_rl.tools.sandbox import (
    LimitedWorker,
    SandboxError,
    SandboxLimits,
    SandboxTimeout,
    interpreter_paths,
    isolation,
)

from agent_rl.registry import make

PYTHON = default_python()


def _appworld_missing() -> str:
    probe = subprocess.run([PYTHON, "-c", "import appworld.apps.venmo.apis"], capture_output=True, text=True,
                           check=False, timeout=120)
    if probe.returncode == 0:
        return ""
    return (f"{PYTHON} has no appworld with unpacked apps (python -m agent_rl.envs.appworld.setup, or set "
            f"{PYTHON_ENV_VAR}): {probe.stderr.strip().splitlines()[-1:]}")


MISSING = _appworld_missing()
needs_appworld = pytest.mark.skipif(bool(MISSING), reason=MISSING)
needs_namespaces = pytest.mark.skipif(isolation() != "namespaces", reason="unshare --net --mount is not allowed here")

# A stand-in worker: runs each request's "code" with exec and answers with what it printed.
ECHO_WORKER = textwrap.dedent("""
    import contextlib, io, json, sys
    for line in sys.stdin:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(json.loads(line)["code"], {})
            reply = {"output": out.getvalue(), "error": ""}
        except BaseException as err:
            reply = {"output": out.getvalue(), "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), flush=True)
""")


@pytest.fixture
def echo(tmp_path: Path):
    script = tmp_path / "echo_worker.py"
    script.write_text(ECHO_WORKER)
    workers = []

    def start(**limits) -> LimitedWorker:
        # the sandbox hides /tmp (where the script is) and /root (where this interpreter may be): shown again
        workers.append(LimitedWorker([sys.executable, str(script)], SandboxLimits(**{"timeout_s": 10, **limits}),
                                     readable=(*interpreter_paths(sys.executable), str(script))))
        return workers[-1]

    yield start
    for worker in workers:
        worker.close()


# --- the sandbox -----------------------------------------------------------------------------------

def test_sandbox_runs_code_in_its_workspace(echo) -> None:
    worker = echo()
    reply = worker.call({"code": "import os; print(os.getcwd())"})
    assert reply == {"output": worker.workspace + "\n", "error": ""}


def test_sandbox_timeout_fires_and_stops_the_worker(echo) -> None:
    worker = echo(timeout_s=1)
    with pytest.raises(SandboxTimeout, match="within 1 s"):
        worker.call({"code": "while True: pass"})
    assert not worker.alive
    with pytest.raises(SandboxError, match="exited"):
        worker.call({"code": "print(1)"})


def test_sandbox_memory_limit(echo) -> None:
    worker = echo(memory_mb=256)
    reply = worker.call({"code": "x = bytearray(512 * 2**20)"})
    assert reply["error"].startswith("MemoryError")


def test_sandbox_refuses_a_huge_reply(echo) -> None:
    worker = echo(max_reply_chars=10_000)
    with pytest.raises(SandboxError, match="exceeded 10000 bytes"):
        worker.call({"code": "print('x' * 100_000)"})


def test_sandbox_closing_removes_the_workspace(echo) -> None:
    worker = echo()
    worker.call({"code": "open('scratch.txt', 'w').write('kept in the workspace')"})
    assert (Path(worker.workspace) / "scratch.txt").read_text() == "kept in the workspace"
    worker.close()
    assert not Path(worker.workspace).exists()


@needs_namespaces
def test_sandbox_has_no_network(echo) -> None:
    reply = echo().call({"code": "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"})
    assert reply["error"].startswith("OSError")  # network unreachable: the namespace has no interface up


@pytest.fixture
def canary(monkeypatch: pytest.MonkeyPatch):
    """A secret in a world-readable file of the temp dir and in a variable of this process's environment."""
    secret = f"s3cret_{secrets.token_hex(8)}"
    path = Path(tempfile.gettempdir()) / f"agent_rl_canary_{secrets.token_hex(4)}.txt"
    path.write_text(secret)
    path.chmod(0o644)  # only the sandbox's hiding keeps it out
    monkeypatch.setenv("AGENT_RL_CANARY_SECRET", secret)
    yield secret, path
    path.unlink()


@needs_namespaces
def test_sandbox_cannot_write_outside_its_workspace(echo) -> None:
    # a folder anyone may write, outside the ones the sandbox hides: only the read-only mounts keep it intact
    host = Path(tempfile.mkdtemp(prefix="agent_rl_host_", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else "."))
    try:
        host.chmod(0o777)
        outside = host / "outside.txt"
        reply = echo().call({"code": f"open({str(outside)!r}, 'w').write('escaped')"})
        assert "Read-only file system" in reply["error"]
        assert not outside.exists()
    finally:
        shutil.rmtree(host)


def test_sandbox_worker_gets_no_host_environment(echo, canary) -> None:
    secret, _ = canary
    reply = echo().call({"code": "import os; print(dict(os.environ), open('/proc/self/environ').read())"})
    assert reply["error"] == "" and secret not in reply["output"]


@needs_namespaces
def test_sandbox_worker_sees_no_host_temp_files(echo, canary) -> None:
    secret, path = canary
    reply = echo().call({"code": f"import os; print(os.listdir({str(path.parent)!r})); print(open({str(path)!r}).read())"})
    assert reply["error"].startswith("FileNotFoundError") and path.name not in reply["output"]
    assert secret not in reply["output"]


def test_sandbox_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="timeout_s must be a positive number"):
        SandboxLimits(timeout_s=0)


# --- the official loader, on a fixture written here (NOT official data: two made-up task folders) ----

def _official_fixture(root: Path) -> Path:
    for task_id in ("fixture_1", "fixture_2"):
        folder = root / "data" / "tasks" / task_id
        folder.mkdir(parents=True)
        (folder / "specs.json").write_text(json.dumps({"instruction": f"made-up task {task_id}"}))
    (root / "data" / "datasets").mkdir()
    (root / "data" / "datasets" / "dev.txt").write_text("fixture_1\nfixture_2\n")
    (root / "data" / "datasets" / "broken.txt").write_text("fixture_1\nnot_there\n")
    return root


def test_official_loader_lists_a_datasets_tasks(tmp_path: Path) -> None:
    root = _official_fixture(tmp_path)
    assert official_task_ids(resolve_root(str(root)), "dev") == ["fixture_1", "fixture_2"]
    env = AppWorldEnv(tasks="official", split="dev", path=str(root))
    assert env.num_tasks == 2 and "official" in env.task_set and "dev" in env.task_set
    env.close()


def test_official_loader_errors_name_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _official_fixture(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no dataset 'test_normal'.*found: \['broken', 'dev'\]"):
        official_task_ids(root, "test_normal")
    with pytest.raises(FileNotFoundError, match="1 without a folder"):
        official_task_ids(root, "broken")
    monkeypatch.delenv("APPWORLD_ROOT", raising=False)
    with pytest.raises(ValueError, match="need path="):
        resolve_root(None)
    with pytest.raises(FileNotFoundError, match="has no data/tasks"):
        resolve_root(str(tmp_path / "elsewhere"))
    with pytest.raises(ValueError, match="no expert"):
        AppWorldEnv(tasks="official", split="dev", path=str(root), expert=True)


@needs_appworld
def test_official_task_appworld_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    env = AppWorldEnv(tasks="official", split="dev", path=str(_official_fixture(tmp_path)), python=PYTHON)
    with pytest.raises(RuntimeError, match="AppWorld task 'fixture_1' could not start"):
        env.reset(options={"task_index": 0})
    env.close()


# --- the generated tasks on the real apps ----------------------------------------------------------

def test_generated_tasks_cover_several_apps_and_both_splits() -> None:
    assert len(TASKS) >= 12 and len(TASKS_BY_ID) == len(TASKS)
    assert {t.task_type for t in TASKS} == {"todoist", "simple_note", "file_system", "venmo"}
    assert {t.task_type for t in TASKS if t.split == "test"} == {t.task_type for t in TASKS}
    assert all(len(cell) <= 256 and "\n" not in cell for t in TASKS for cell in t.expert)


@pytest.fixture(scope="module")
def env():
    env = AppWorldEnv(split="all", expert=True, python=PYTHON, timeout_s=3, max_output_chars=200)
    yield env
    env.close()


def _reset(env: AppWorldEnv, task_id: str) -> tuple[str, dict]:
    return env.reset(options={"task_index": env.task_ids.index(task_id)})


@needs_appworld
def test_expert_solves_every_generated_task(env: AppWorldEnv) -> None:
    for index, task in enumerate(env.generated):
        _, info = env.reset(options={"task_index": index})
        for _ in range(len(task.expert)):
            _, reward, terminated, truncated, info = env.step(info["expert_action"])
            assert info["action_valid"], (task.id, info)
        assert (reward, terminated, truncated, info["won"]) == (1.0, True, False, True), (task.id, info)


@needs_appworld
@needs_namespaces
def test_the_agents_code_cannot_read_the_hosts_temp_files_or_environment(canary) -> None:
    secret, path = canary
    # read past AppWorld's own guard (it lets pathlib's read_text and os.environ through): only the sandbox stops it
    cells = [f"from pathlib import Path\nprint('code' + 'ran')\nprint(Path({str(path)!r}).read_text())",
             f"import os\nprint(sorted(entry.name for entry in os.scandir({str(path.parent)!r})))",
             "import os\nprint(dict(os.environ))",
             "from pathlib import Path\nprint(Path('/proc/self/environ').read_text(encoding='latin-1'))"]
    env = AppWorldEnv(split="test", python=PYTHON)  # started after the canary: its worker would inherit it
    try:
        env.reset(options={"task_index": 0})
        observations = [env.step(cell)[0] for cell in cells]
    finally:
        env.close()
    assert "coderan" in observations[0] and "No such file or directory" in observations[0]
    assert all(secret not in obs for obs in observations) and path.name not in observations[1], observations
    assert "HOME" in observations[2] and "HOME" in observations[3]  # the code ran, with its own variables


@needs_appworld
def test_wrong_solutions_fail_the_check(env: AppWorldEnv) -> None:
    _, info = _reset(env, "venmo-pay-friend")
    env.step(TASKS_BY_ID["venmo-pay-friend"].expert[0])
    cell = ("apis.venmo.create_transaction(receiver_email='maya.chen@example.com', amount=20, description='pizza', "
            "access_token=t); complete_task()")
    _, reward, terminated, _, info = env.step(cell)
    assert (reward, terminated, info["won"]) == (0.0, True, False)
    assert "expected one $25 'pizza' payment" in info["check"]
    _reset(env, "todoist-count-open")
    _, reward, terminated, _, info = env.step("complete_task(answer=4)")
    assert (reward, terminated, info["won"]) == (0.0, True, False) and "the answer was 4" in info["check"]


@needs_appworld
def test_errors_become_observations(env: AppWorldEnv) -> None:
    _reset(env, "venmo-balance")
    cases = {
        "print(": "SyntaxError",
        "1 / 0": "ZeroDivisionError",
        "import subprocess": "Usage of the following module is not allowed: subprocess",  # AppWorld's safety
        "import os; os.system('ls')": "Usage of the following function is not allowed: os.system",
        "apis.venmo.show_venmo_balance(access_token='forged')": "Execution failed",
        "while True: pass": "Execution timed out",  # the in-worker timeout: the session survives it
    }
    for code, expected in cases.items():
        obs, reward, terminated, truncated, info = env.step(code)
        assert expected in obs and not info["action_valid"], (code, obs)
        assert (reward, terminated, truncated) == (0.0, False, False)
    obs, *_, info = env.step("print('y' * 10_000)")
    assert obs.startswith("y" * 200) and "[output truncated: 9801 more characters]" in obs and info["action_valid"]


@needs_appworld
def test_state_is_per_episode_and_per_env(env: AppWorldEnv) -> None:
    balance = "print(apis.venmo.show_venmo_balance(access_token=t)['venmo_balance'])"
    _reset(env, "venmo-pay-friend")
    env.step(TASKS_BY_ID["venmo-pay-friend"].expert[0])
    env.step("apis.venmo.create_transaction(receiver_email='maya.chen@example.com', amount=25, access_token=t)")
    assert env.step(balance)[0].strip() == "250.0"
    other = make("appworld/generated-v0", split="all", python=PYTHON)
    try:
        other.reset(options={"task_index": other.task_ids.index("venmo-pay-friend")})
        other.step(TASKS_BY_ID["venmo-pay-friend"].expert[0])
        assert other.step(balance)[0].strip() == "275.0"  # the other env's apps never saw the payment
    finally:
        other.close()
    assert env.step(balance)[0].strip() == "250.0"
    _reset(env, "venmo-pay-friend")  # a new episode starts from the task's state again
    env.step(TASKS_BY_ID["venmo-pay-friend"].expert[0])
    assert env.step(balance)[0].strip() == "275.0"


@needs_appworld
def test_anchor_follows_the_code_that_ran(env: AppWorldEnv) -> None:
    _, first = _reset(env, "note-create")
    _, again = _reset(env, "note-create")
    assert first["anchor"] == again["anchor"]
    *_, failed = env.step("1 / 0")  # a failed cell changes no state
    assert failed["anchor"] == first["anchor"]
    *_, moved = env.step("x = 1")
    assert moved["anchor"] != first["anchor"]


@needs_appworld
def test_a_cell_that_will_not_stop_ends_the_episode_and_the_next_reset_recovers() -> None:
    # sum() over a range runs in C, where the in-worker alarm cannot interrupt it: the sandbox kills the worker
    env = AppWorldEnv(split="test", python=PYTHON, timeout_s=1)
    try:
        env.reset(options={"task_index": 0})
        obs, reward, terminated, truncated, info = env.step("sum(range(10 ** 12))")
        assert "The sandbox was stopped; the episode ends" in obs
        assert (reward, terminated, truncated, info["action_valid"]) == (0.0, True, False, False)
        env.reset(options={"task_index": 0})
        assert env.step("print(6 * 7)")[0].strip() == "42"
    finally:
        env.close()


def test_the_appworld_interpreter_is_the_configured_one_else_the_built_venv_else_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_RL_CACHE", str(tmp_path))
    monkeypatch.delenv(PYTHON_ENV_VAR, raising=False)
    assert default_python() == sys.executable  # nothing built yet
    built = tmp_path / "appworld-venv" / "bin" / "python"
    built.parent.mkdir(parents=True)
    built.write_text("")
    assert default_python() == str(built)
    monkeypatch.setenv(PYTHON_ENV_VAR, "appworld-python")
    assert default_python() == "appworld-python"
