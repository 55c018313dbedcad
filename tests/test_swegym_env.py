"""SWE-Gym env: built-in instances graded by real pytest runs and swebench's rule, hostile actions, loaders, docker.

Grading needs swebench (the `swe` extra); the Docker tests need an engine and skip with the reason without one.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("swebench", reason="grading needs swebench: pip install 'agent-rl[swe]'")

from agent_rl.envs.swegym.backends import LocalBackend
from agent_rl.envs.swegym.builtin import build_builtin, build_repo, sources_digest
from agent_rl.envs.swegym.dataset import load_instances, repo_dir
from agent_rl.envs.swegym.env import SWEGymEnv, evaluate_patch
from agent_rl.envs.swegym.grading import grade_log
from agent_rl.tools.calls import format_tool_call
from agent_rl.tools.sandbox import SandboxLimits, isolation

from agent_rl.registry import make

needs_namespaces = pytest.mark.skipif(isolation() != "namespaces", reason="this host refuses unshare")
SHARED_ROWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "swebench" / "sweagent_swe-bench-dev-easy.json"


@pytest.fixture(scope="module")
def builtin() -> tuple[Path, Path]:
    return build_builtin()


@pytest.fixture(scope="module")
def instances(builtin):
    return load_instances(builtin[0])


@pytest.fixture(scope="module")
def backend(builtin) -> LocalBackend:
    return LocalBackend(builtin[1], SandboxLimits(timeout_s=60, max_processes=256))


def bash(command: str) -> str:
    return format_tool_call("bash", command=command)


# --- grading -----------------------------------------------------------------------------------------

def test_the_builtin_set(instances) -> None:
    assert len(instances) == 7 and len({i.repo for i in instances}) == 3
    for instance in instances:
        assert instance.fail_to_pass and instance.pass_to_pass and instance.test_files


def test_gold_patches_resolve_every_instance(backend, instances) -> None:
    with ThreadPoolExecutor(2) as pool:
        grades = list(pool.map(lambda i: evaluate_patch(backend, i, i.patch), instances))
    assert [g.status for g in grades] == ["RESOLVED_FULL"] * len(instances)
    assert [g.reward for g in grades] == [1.0] * len(instances)


def test_empty_patch_resolves_none(backend, instances) -> None:
    for instance in instances:
        grade = evaluate_patch(backend, instance, "")
        assert not grade.resolved and grade.reward == 0.0


def test_a_wrong_patch_fails_and_partial_credit_counts_fixed_tests(backend, instances) -> None:
    textkit = next(i for i in instances if i.instance_id == "agent-rl-demo__textkit-1")
    other_fix = next(i for i in instances if i.instance_id == "agent-rl-demo__textkit-2").patch
    grade = evaluate_patch(backend, textkit, other_fix)  # applies, runs, but fixes the wrong function
    assert grade.status == "RESOLVED_NO" and grade.reward == 0.0
    assert sorted(grade.report["FAIL_TO_PASS"]["failure"]) == sorted(textkit.fail_to_pass)
    # half a fix: dashes stripped at the ends but not collapsed -> 1 of the 2 FAIL_TO_PASS tests passes
    half = textkit.patch.replace('"[^a-z0-9]+", "-", text.lower()).strip', '"[^a-z0-9]", "-", text.lower()).strip')
    assert evaluate_patch(backend, textkit, half).reward == 0.0
    assert evaluate_patch(backend, textkit, half, partial_credit=True).reward == 0.5


def test_the_grade_uses_swebench_markers_and_parser(instances) -> None:
    instance = instances[0]
    passed = "\n".join(f"PASSED {t}" for t in (*instance.fail_to_pass, *instance.pass_to_pass))
    log = f">>>>> Start Test Output\n{passed}\n>>>>> End Test Output\n"
    assert grade_log(instance, log).resolved
    broken = log.replace(f"PASSED {instance.pass_to_pass[0]}", f"FAILED {instance.pass_to_pass[0]}")
    assert grade_log(instance, broken).status == "RESOLVED_NO"
    assert grade_log(instance, "no markers").status == "TESTS_DID_NOT_RUN"


def test_tests_edited_by_the_agent_are_put_back(backend, instances) -> None:
    instance = instances[0]  # intervals-1; the edit below would break every test of the file if it were kept
    edit = ("diff --git a/tests/test_ops.py b/tests/test_ops.py\n--- a/tests/test_ops.py\n+++ b/tests/test_ops.py\n"
            "@@ -1,3 +1,3 @@\n-import pytest\n+import pytest_is_not_there\n from intervals import Interval, merge, "
            "total_length\n \n")
    assert evaluate_patch(backend, instance, instance.patch + edit).resolved


# --- the env ------------------------------------------------------------------------------------------

def test_expert_resolves_through_the_registered_env() -> None:
    env = make("swegym/builtin-v0", expert=True)
    try:
        _, info = env.reset(options={"task_index": 4})
        assert info["task_type"] == "textkit" and "slugify" in info["task"] and "submit" in info["task"]
        _, reward, terminated, _, info = env.step(info["expert_action"])
        assert (reward, terminated, info["action_valid"]) == (0.0, False, True)
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        assert (reward, terminated, truncated, info["won"], info["grade"]) == (1.0, True, False, True, "RESOLVED_FULL")
    finally:
        env.close()


def test_tools_view_edit_and_turn_limit() -> None:
    env = SWEGymEnv(max_steps=4, max_output_chars=200)
    try:
        env.reset(options={"task_index": 4})
        obs, *_ = env.step(format_tool_call("view", path="textkit/core.py", start=6, end=8))
        assert obs.startswith("     6\tdef slugify")
        obs, *_, info = env.step(format_tool_call("str_replace", path="textkit/core.py", old="text.lower())",
                                                  new='text.lower()).strip("-")'))
        assert obs.startswith("Replaced in textkit/core.py at line 8") and info["action_valid"]
        obs, *_, info = env.step(bash("cat /etc/services; false"))
        assert "[output truncated" in obs and "[exit code 1]" in obs
        obs, reward, terminated, truncated, info = env.step("not a call")
        assert not info["action_valid"] and truncated and not terminated
        assert info["ended_by"] == "max_steps" and info["grade"] == "RESOLVED_PARTIAL" and reward == 0.0
    finally:
        env.close()


@needs_namespaces
def test_editor_refuses_paths_out_of_the_repo() -> None:
    env = SWEGymEnv()
    try:
        env.reset(options={"task_index": 0})
        env.step(bash("ln -s /etc escape"))
        for path in ("../../x.txt", "escape/x.txt", "/tmp/x.txt"):
            obs, *_ = env.step(format_tool_call("create", path=path, content="x"))
            assert "outside the repository" in obs
    finally:
        env.close()


@needs_namespaces
@pytest.mark.parametrize("command, expect", [
    ("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)\"", "Error"),
    ("while true; do :; done", "time limit"),
    ("yes", "bytes and was stopped"),
    ("python3 -c 'bytearray(8 * 2**30)'", "MemoryError"),
    ("bomb() { bomb | bomb & }; bomb", ""),
    ("rm -rf /etc /root \"$PWD\" 2>/dev/null; echo gone", "gone"),  # the workspace goes; rm -rf / is in test_sandbox
])
def test_hostile_actions_are_contained_and_the_next_episode_is_clean(command: str, expect: str) -> None:
    env = SWEGymEnv(timeout_s=3, max_processes=64, memory_mb=1024)
    try:
        env.reset(options={"task_index": 0})
        obs, _, terminated, *_ = env.step(bash(command))
        assert expect in obs and not terminated  # the episode goes on
        obs, *_ = env.step(bash("echo next"))
        assert "next" in obs if "rm -rf" not in command else "is gone (deleted by an earlier command)" in obs
        env.reset(options={"task_index": 0})
        obs, *_ = env.step(bash("git status --short; ls"))
        assert obs.split() == ["README.md", "intervals", "tests"]
    finally:
        env.close()
    assert Path("/etc/passwd").exists() and shutil.which("python3")


def test_a_workspace_over_the_disk_limit_ends_the_episode() -> None:
    env = SWEGymEnv(disk_mb=1)
    try:
        env.reset(options={"task_index": 0})
        _, reward, terminated, _, info = env.step(bash("head -c 2000000 /dev/zero > big"))
        assert terminated and reward == 0.0 and "over the limit of 1 MB" in info["ended_by"]
    finally:
        env.close()


@needs_namespaces
def test_parallel_episodes_never_see_each_other() -> None:
    first, second = SWEGymEnv(), SWEGymEnv()
    try:
        first.reset(options={"task_index": 0})
        second.reset(options={"task_index": 0})
        first.step(bash("echo mine > intervals/secret.py"))
        first_path = first._workspace.repo_path
        obs, *_ = second.step(bash(f"cat {first_path}/intervals/secret.py; git status --short; ls .."))
        assert "mine" not in obs and "secret" not in obs.replace(f"{first_path}/intervals/secret.py", "")
    finally:
        first.close()
        second.close()


def test_closing_removes_the_workspace() -> None:
    env = SWEGymEnv()
    env.reset(options={"task_index": 0})
    workspace = Path(env._workspace.repo_path).parent
    assert workspace.exists()
    env.close()
    assert not workspace.exists()


# --- instances and loaders ----------------------------------------------------------------------------

def test_base_commits_are_reproducible(tmp_path: Path, instances) -> None:
    source = Path(__file__).resolve().parents[1] / "envs" / "swegym" / "instances" / "textkit"
    meta = json.loads((source / "repo.json").read_text())
    commit = build_repo(source / "base", meta["message"], tmp_path / "again")
    assert commit == next(i.base_commit for i in instances if i.repo == meta["repo"])
    assert len(sources_digest()) == 16


def test_user_files_jsonl_json_parquet_and_repos_dir(tmp_path: Path, builtin) -> None:
    rows = [json.loads(line) for line in builtin[0].read_text().splitlines()]
    for row in rows:  # hub datasets encode the lists as JSON strings
        row["FAIL_TO_PASS"] = json.dumps(row["FAIL_TO_PASS"])
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    for name in ("rows.json", "rows.parquet"):
        loaded = load_instances(tmp_path / name)
        assert [i.instance_id for i in loaded] == [r["instance_id"] for r in rows]
        assert loaded[0].fail_to_pass == tuple(json.loads(rows[0]["FAIL_TO_PASS"]))
    env = make("swegym/jsonl-v0", path=str(tmp_path / "rows.parquet"), repos_dir=str(builtin[1]), expert=True)
    try:
        _, info = env.reset(options={"task_index": 0})
        env.step(info["expert_action"])
        assert env.step(format_tool_call("submit"))[1] == 1.0
    finally:
        env.close()


def test_clear_errors_for_bad_input(tmp_path: Path, builtin) -> None:
    with pytest.raises(ValueError, match="needs repos_dir"):
        SWEGymEnv(path=str(builtin[0]))
    with pytest.raises(FileNotFoundError, match="no clone of agent-rl-demo/intervals"):
        SWEGymEnv(path=str(builtin[0]), repos_dir=str(tmp_path)).reset(options={"task_index": 0})
    (tmp_path / "bad.jsonl").write_text('{"instance_id": "x"}\n')
    with pytest.raises(ValueError, match="missing field"):
        load_instances(tmp_path / "bad.jsonl")
    row = json.loads(builtin[0].read_text().splitlines()[0])
    (tmp_path / "twice.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "patch": "other"}) + "\n")
    with pytest.raises(ValueError, match="used by two different rows"):
        load_instances(tmp_path / "twice.jsonl")
    with pytest.raises(ValueError, match="backend must be"):
        SWEGymEnv(backend="vm")


def test_the_official_rows_load_and_name_their_clones(tmp_path: Path) -> None:
    if not SHARED_ROWS.exists():
        pytest.skip(f"{SHARED_ROWS} (the shared SWE-bench sample) is not here")
    instances = load_instances(SHARED_ROWS)  # 5 rows, one of them repeated
    assert len(instances) == 4 and all(i.fail_to_pass for i in instances)
    assert {i.repo_name for i in instances} <= {"pydicom", "astroid", "sqlfluff"}
    (tmp_path / "pydicom__pydicom" / ".git").mkdir(parents=True)
    assert repo_dir(tmp_path, "pydicom/pydicom") == tmp_path / "pydicom__pydicom"


# --- docker ---------------------------------------------------------------------------------------------

def _docker_engine() -> str:
    docker = pytest.importorskip("docker", reason="the docker SDK is not installed (the swe extra)")
    try:
        docker.from_env().ping()
    except Exception as err:  # noqa: BLE001 - any failure means: no engine to test against
        return f"no Docker engine answers ({type(err).__name__}): the docker backend's live tests need one"
    return ""


def test_docker_container_config_carries_the_limits() -> None:
    pytest.importorskip("docker")
    from agent_rl.envs.swegym.docker_backend import container_config

    config = container_config(SandboxLimits(memory_mb=512, max_processes=64, file_mb=8, cpu_s=30), "vol1", cpus=0.5)
    assert config["network_mode"] == "none" and config["read_only"] is True
    assert config["mem_limit"] == config["memswap_limit"] == "512m"
    assert config["pids_limit"] == 64 and config["nano_cpus"] == 500_000_000
    assert config["volumes"] == {"vol1": {"bind": "/work", "mode": "rw"}}
    assert config["cap_drop"] == ["ALL"] and "no-new-privileges" in config["security_opt"]
    assert {u["Name"]: u["Hard"] for u in config["ulimits"]} == {"fsize": 8 * 2**20, "cpu": 30, "core": 0}
    assert config["user"] == "1000:1000"


def test_docker_backend_without_an_engine_says_so() -> None:
    if not _docker_engine():
        pytest.skip("an engine answers here")
    with pytest.raises(RuntimeError, match="no Docker engine answers"):
        SWEGymEnv(backend="docker")


def test_docker_backend_resolves_with_gold_and_contains_the_network() -> None:
    reason = _docker_engine()
    if reason:
        pytest.skip(reason)
    env = SWEGymEnv(backend="docker", expert=True, timeout_s=10)  # needs the image of docker/Dockerfile.swe
    try:
        _, info = env.reset(options={"task_index": 0})
        obs, *_ = env.step(bash("python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=3)\""))
        assert "Error" in obs
        obs, *_ = env.step(bash("echo x > /etc/x"))
        assert "Read-only" in obs or "denied" in obs
        env.step(info["expert_action"])
        assert env.step(format_tool_call("submit"))[1] == 1.0
    finally:
        env.close()
