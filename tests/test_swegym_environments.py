"""Per-instance Python environments for SWE-bench rows (setup="swebench"): swebench's specs, the shared venv
per repo + version and the workspace layer, on a built-in repo (runs anywhere pip reaches the registry) and on
real SWE-bench rows when their clones are given ($AGENT_RL_SWE_REPOS: a folder of <owner>__<name> clones)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("swebench", reason="grading needs swebench: pip install 'agent-rl[swe]'")

from agent_rl.envs.swegym.dataset import SWEInstance
from agent_rl.envs.swegym.env import SWEGymEnv, evaluate_patch
from agent_rl.envs.swegym.environments import (
    MARKER,
    build_info,
    find_python,
    install_requirements,
    instance_spec,
    pip_environ,
    requirement_name,
    spec_test_command,
)
from agent_rl.envs.swegym.grading import DEFAULT_TEST_CMD

SHARED_ROWS = Path(__file__).resolve().parents[2] / "shared" / "data" / "swebench" / "sweagent_swe-bench-dev-easy.json"
REPOS = os.environ.get("AGENT_RL_SWE_REPOS")


def row(repo: str, version: str) -> SWEInstance:
    return SWEInstance("x__y-1", repo, "0" * 40, "", "", "", (), (), {"version": version})


@pytest.mark.parametrize(
    ("repo", "version", "install", "test_cmd"),
    [("pydicom/pydicom", "2.2", "python -m pip install -e .", "python -m pytest -rA"),
     ("sqlfluff/sqlfluff", "0.8", "python -m pip install -e .", "python -m pytest -rA"),
     ("agent-rl-demo/minicsv", "0.1", "python -m pip install -e .", "python -m pytest -rA")],
)
def test_specs_are_swebenchs_and_their_pytest_runs_in_the_instance_env(repo, version, install, test_cmd) -> None:
    spec = instance_spec(row(repo, version))
    assert spec["install"] == install and spec_test_command(spec) == test_cmd
    if repo == "sqlfluff/sqlfluff":
        assert spec["packages"] == "requirements.txt"  # the repo's requirements_dev.txt, as swebench reads it
    with pytest.raises(ValueError, match="no spec for pydicom/pydicom version '9.9'"):
        instance_spec(row("pydicom/pydicom", "9.9"))


def test_the_specs_python_is_found_where_this_machine_has_it() -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = find_python(version)
    assert found is not None and Path(found).is_file() and f"python{version}" in Path(found).name
    assert find_python("2.1") is None and find_python(None) is None


def test_pip_builds_see_no_local_mirror_that_cannot_be_dated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    environ = pip_environ()
    assert "PIP_FIND_LINKS" not in environ and "PIP_EXTRA_INDEX_URL" not in environ
    assert environ["PIP_CONFIG_FILE"] == os.devnull and environ["PIP_INDEX_URL"] == "https://mirror.example/simple"


def test_requirement_names_are_read_as_the_index_compares_them() -> None:
    assert requirement_name("types-pkg_resources  # stubs") == "types-pkg-resources"
    assert requirement_name("Flake8>=3.9; python_version < '3.12'") == "flake8"
    assert [requirement_name(line) for line in ("# a comment", "-e .", "-r other.txt", "")] == [None] * 4


def test_requirements_the_index_does_not_serve_are_left_out_and_named(tmp_path: Path) -> None:
    """Real pip against an empty local index: every requirement is unserved, so each is dropped in turn."""
    index = tmp_path / "index"
    index.mkdir()
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links", str(index)]
    (tmp_path / "requirements.txt").write_text("# dev tools\nagent-rl-nowhere-a\nagent_rl.nowhere-b>=1\n")
    assert install_requirements(pip, "requirements.txt", tmp_path) == ["agent-rl-nowhere-a", "agent_rl.nowhere-b"]
    with pytest.raises(RuntimeError, match="No matching distribution found for agent_rl.nowhere-b"):
        install_requirements(pip, "requirements.txt", tmp_path, max_unserved=1)  # more missing: not the index's doing


def test_setup_is_checked() -> None:
    with pytest.raises(ValueError, match="setup must be one of"):
        SWEGymEnv(setup="conda")
    with pytest.raises(ValueError, match="builds virtual environments for backend='local'"):
        SWEGymEnv(setup="swebench", backend="docker")
    assert SWEGymEnv().instance_test_cmd(SWEGymEnv().instances[0]) == DEFAULT_TEST_CMD


@pytest.mark.slow
def test_a_builtin_repo_gets_its_own_cached_env_with_the_checkout_installed_editable(tmp_path: Path) -> None:
    env = SWEGymEnv(setup="swebench", envs_dir=str(tmp_path / "envs"))
    instance = next(i for i in env.instances if i.repo == "agent-rl-demo/minicsv")
    workspace = env.backend.start(instance)
    try:
        probe = workspace.run(["bash", "-c", ("python -c 'import minicsv, sys; print(minicsv.__file__); print(sys.prefix)'"
                               " && python -m pip list --editable")])
    finally:
        workspace.close()
    module, prefix = probe.output.splitlines()[:2]
    assert module == f"{workspace.repo_path}/minicsv/__init__.py", probe.output  # the workspace's own checkout
    assert prefix.startswith(str(Path(workspace.repo_path).parent)) and "minicsv" in probe.output
    venv = env.environments.path(instance)
    assert build_info(venv)["repo"] == "agent-rl-demo/minicsv" and not list(venv.parent.glob(".*.tmp"))
    stamp = (venv / MARKER).stat().st_mtime_ns
    assert env.environments.ensure(instance) == venv and (venv / MARKER).stat().st_mtime_ns == stamp  # reused
    command = env.instance_test_cmd(instance)
    assert evaluate_patch(env.backend, instance, instance.patch, command).status == "RESOLVED_FULL"
    empty = evaluate_patch(env.backend, instance, "", command)
    assert empty.status == "RESOLVED_NO" and empty.report["FAIL_TO_PASS"]["failure"]  # the tests ran, and failed


@pytest.mark.slow
@pytest.mark.skipif(not REPOS or not SHARED_ROWS.is_file(),
                    reason="set AGENT_RL_SWE_REPOS=<folder of pydicom__pydicom, pylint-dev__astroid, "
                           "sqlfluff__sqlfluff clones> (and have ../shared/data/swebench) to grade real rows")
# the rows proven in experiments/README.md; pydicom__pydicom-1458 is not one: 44 of its PASS_TO_PASS ids name
# paths of the machine the row was made on, so they never match a run elsewhere
@pytest.mark.parametrize("instance_id", ["pylint-dev__astroid-1268", "pydicom__pydicom-1194", "sqlfluff__sqlfluff-2386"])
def test_real_swebench_rows_gold_resolves_empty_does_not(instance_id: str) -> None:
    env = SWEGymEnv(path=str(SHARED_ROWS), repos_dir=REPOS, setup="swebench", envs_dir=os.environ.get(
        "AGENT_RL_SWE_ENVS"), grade_timeout_s=1800, timeout_s=1800, memory_mb=8192)
    instance = next(i for i in env.instances if i.instance_id == instance_id)
    command = env.instance_test_cmd(instance)
    assert evaluate_patch(env.backend, instance, instance.patch, command).status == "RESOLVED_FULL"
    assert evaluate_patch(env.backend, instance, "", command).status != "RESOLVED_FULL"
