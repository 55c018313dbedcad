"""Each SWE-bench instance's Python environment, built here from the package registry (no Docker engine).

    environments = Environments(repos_dir="repos")         # virtual envs under <cache>/swe-envs
    spec = environments.spec(instance)                     # swebench's install / test spec of repo + version
    venv = environments.ensure(instance)                   # built once per repo + version, then reused

What swebench's Docker images hold, as virtual environments: one **shared environment** per repository and
version (SWE-bench's "env image") holding the dependencies, and per workspace a thin **layer** with the
repository itself installed, editable, at the instance's base commit (its "instance image").

- The spec comes from swebench's `MAP_REPO_VERSION_TO_SPECS` (install command, `pip_packages`, `packages`,
  `test_cmd`, `eval_commands`). swebench 5 dropped those tables from the package (its rows name prebuilt
  images instead), so when the installed swebench lacks them they are read from the last release that has
  them, `swebench==4.1.0`, whose wheel pip downloads once into the cache (the file is plain data: it is
  executed with no imports). Repositories swebench does not know (the built-in ones) get `DEFAULT_SPEC`.
- The shared environment: `python -m venv`, then `pip install` (of the releases published before the
  `environment_setup_commit`'s date, or the interpreter's release if later: `resolution_date`) of the
  spec's `packages` (conda names, or
  "requirements.txt": the repo's requirement files at the row's `environment_setup_commit`, as swebench
  reads them) and `pip_packages`, then the test data a repo's tests would download (`TEST_DATA_PACKAGES`),
  then the spec's install command in a checkout of the
  `environment_setup_commit` (which pulls the project's own dependencies), after which the project itself
  is uninstalled again: each workspace installs its own checkout. It is built in a hidden sibling folder
  and renamed into place when complete (`agent_rl.io.atomic_directory`), under a lock, so a killed build
  leaves nothing half-made and parallel envs build it once. Only `bin/python -m ...` is used from it,
  which stays valid after the rename.
- The layer (`make_layer`): a venv without pip in the workspace whose `.pth` file adds the shared
  environment's site-packages; the workspace's checkout is then installed into it with
  `pip install --no-deps --no-build-isolation -e .`, inside the sandbox (setup.py is the repo's code).
- Tests run as the spec's `test_cmd` with `pytest` started as `python -m pytest` of the layer, after the
  spec's `eval_commands`.

The interpreter is the one the spec names (`spec["python"]`, which swebench's images get from conda; 3.9 at
least, `MIN_PYTHON`) where this machine has it (`python3.9` on PATH, or a pyenv install), else this one; the
version asked for and the one used are both recorded. Packages come from the index pip is pointed at, read with the machine's
pip config files and find-links set aside (`pip_environ`): the date cut needs the upload times an index
reports, and a local mirror or wheel folder without them hands out today's releases. A requirement the
index no longer serves (every release yanked, as for `types-pkg_resources`) is left out and recorded.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from agent_rl.envs.swegym.backends import checkout
from agent_rl.envs.swegym.dataset import SWEInstance, repo_dir

from agent_rl.io import atomic_directory, cache_root, write_json

SPECS_RELEASE = "swebench==4.1.0"  # the last swebench release that ships MAP_REPO_VERSION_TO_SPECS
SPECS_FILE = "swebench/harness/constants/python.py"
DEFAULT_SPEC: dict[str, Any] = {"install": "python -m pip install -e .", "pip_packages": ["pytest"],
                                "test_cmd": "pytest -rA"}
# Editable installs run with --no-build-isolation (the sandbox has no network): the env has the build tools,
# not dated, as a setuptools with PEP 660's editable hook (64+) is needed by pip's editable installs since 25.3.
BUILD_PACKAGES = ("setuptools>=64,<70", "wheel")
# pip's date cut (--uploaded-prior-to) needs a pip that no longer runs on 3.8: older specs get 3.9.
MIN_PYTHON = (3, 9)
# First release dates of the interpreters: packages older than the interpreter rarely install on it.
PYTHON_RELEASED = {(3, 8): "2019-10-14", (3, 9): "2020-10-05", (3, 10): "2021-10-04", (3, 11): "2022-10-24",
                   (3, 12): "2023-10-02", (3, 13): "2024-10-07", (3, 14): "2025-10-07"}
# Test data a repository's tests download at run time (swebench's containers have the network; the sandbox has
# none), from the package index instead: pydicom's `get_testdata_file` prefers the pydicom-data package.
TEST_DATA_PACKAGES: dict[str, tuple[str, ...]] = {"pydicom/pydicom": ("pydicom-data",)}
MARKER = "agent_rl_env.json"  # what the environment was built from, and how long it took
LAYER = "env"  # the layer's folder inside a workspace (next to the checkout, so never in the agent's diff)
PIP_TIMEOUT_S = 1800


@cache
def swebench_specs() -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, list[str]]]:
    """swebench's (MAP_REPO_VERSION_TO_SPECS, MAP_REPO_TO_REQS_PATHS), from the installed package or 4.1.0."""
    try:
        from swebench.harness.constants import MAP_REPO_TO_REQS_PATHS, MAP_REPO_VERSION_TO_SPECS

        return MAP_REPO_VERSION_TO_SPECS, MAP_REPO_TO_REQS_PATHS
    except ImportError:
        pass
    source = _specs_source()
    namespace: dict[str, Any] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)  # noqa: S102 - swebench's data tables
    return namespace["MAP_REPO_VERSION_TO_SPECS_PY"], namespace["MAP_REPO_TO_REQS_PATHS"]


def _specs_source() -> Path:
    """swebench 4.1.0's constants file, downloaded once (pip, from the registry) into the cache."""
    target = cache_root() / "swebench-specs" / SPECS_RELEASE.replace("==", "-") / "python.py"
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, SPECS_RELEASE],
                                capture_output=True, text=True, check=False, timeout=600)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(f"could not download {SPECS_RELEASE} for swebench's per-repo specs: "
                               f"{result.stderr.strip()[-300:]} (pip must reach the package registry once)")
        import zipfile

        with zipfile.ZipFile(wheels[0]) as wheel:
            text = wheel.read(SPECS_FILE).decode()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_target = target.with_suffix(".tmp")
    tmp_target.write_text(text)
    os.replace(tmp_target, target)
    return target


def instance_spec(instance: SWEInstance) -> dict[str, Any]:
    """swebench's spec for the instance's repo and version (`DEFAULT_SPEC` for a repo swebench does not know)."""
    specs, _ = swebench_specs()
    version = str(instance.extra.get("version", ""))
    if instance.repo not in specs:
        return dict(DEFAULT_SPEC)
    if version not in specs[instance.repo]:
        raise ValueError(f"{instance.instance_id}: swebench has no spec for {instance.repo} version {version!r} "
                         f"(it knows {sorted(specs[instance.repo])}); set the row's 'version' field")
    return dict(specs[instance.repo][version])


def spec_test_command(spec: Mapping[str, Any]) -> str:
    """The shell line that runs the tests (the test files are appended): the spec's `eval_commands`, then its
    `test_cmd` with `pytest` started as `python -m pytest` of the workspace's environment."""
    command = re.sub(r"^pytest\b", "python -m pytest", spec.get("test_cmd", DEFAULT_SPEC["test_cmd"]))
    return " && ".join([*spec.get("eval_commands", []), command])


def env_key(instance: SWEInstance, spec: Mapping[str, Any], python_version: str | None = None) -> str:
    """The shared environment's folder name: repo, version and a hash of what goes into it (the interpreter's
    version included: default this one's)."""
    setup_commit = instance.extra.get("environment_setup_commit") or instance.base_commit
    version_text = python_version or sys.version
    data = list(TEST_DATA_PACKAGES.get(instance.repo, ()))
    digest = hashlib.sha1(json.dumps([spec, setup_commit, version_text, *([data] if data else [])],
                                     sort_keys=True).encode()).hexdigest()[:10]
    version = re.sub(r"[^A-Za-z0-9.]", "_", str(instance.extra.get("version", "")) or "none")
    return f"{instance.repo.replace('/', '__')}-{version}-{digest}"


@cache
def python_version(python: str) -> str:
    """The full version of an interpreter ("3.9.18"); a clear error when it does not run."""
    probe = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                           text=True, check=False, timeout=60)
    if probe.returncode != 0:
        raise ValueError(f"python={python!r} does not run: {probe.stderr.strip()[-300:]}")
    return probe.stdout.strip()


def find_python(version: str | None) -> str | None:
    """The real executable of an interpreter of `version` ("3.9") on this machine: `python3.9` on PATH
    (a pyenv shim resolves to the install it runs), else the newest pyenv install of it; None if none."""
    if not version:
        return None
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.executable); print(sys.version.split()[0])"],
                               capture_output=True, text=True, check=False, timeout=60)
        lines = probe.stdout.splitlines()
        if probe.returncode == 0 and len(lines) == 2 and lines[1].startswith(f"{version}."):
            return lines[0]
    return None


def pip_environ() -> dict[str, str]:
    """The environment pip builds the environments in: the machine's pip config files and find-links /
    extra index set aside (their files carry no upload time, so `--uploaded-prior-to` cannot date them);
    the index URL, certificates and timeouts the caller set are kept."""
    environ = {key: value for key, value in os.environ.items()
               if key not in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")}
    return {**environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def resolution_date(clone: Path, setup_commit: str, python_version_text: str | None = None) -> str:
    """The day the environment's packages are resolved as of: the `environment_setup_commit`'s date, or the
    interpreter's release if later (unpinned requirements then get the releases of the repo's own time, as
    swebench's images did when they were built, not today's, which drop APIs old code uses)."""
    shown = subprocess.run(["git", "-C", str(clone), "show", "-s", "--format=%cs", setup_commit], capture_output=True,
                           text=True, check=False)
    if shown.returncode != 0:
        raise RuntimeError(f"{setup_commit} is not in the clone {clone}: {shown.stderr.strip()} (git -C <clone> fetch)")
    major_minor = tuple(int(part) for part in (python_version_text or sys.version).split()[0].split(".")[:2])
    return max(shown.stdout.strip(), PYTHON_RELEASED.get(major_minor, "1970-01-01"))


def _run(argv: list[str], cwd: Path | None = None, what: str = "") -> None:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=PIP_TIMEOUT_S,
                            env=pip_environ())
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-800:]
        raise RuntimeError(f"{what or ' '.join(argv)} failed (exit {result.returncode}): {tail}")


UNSERVED = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")
MAX_UNSERVED = 5  # a requirement file missing more than this many is not the registry's doing


def install_requirements(pip: list[str], path: str, cwd: Path, max_unserved: int = MAX_UNSERVED) -> list[str]:
    """`pip install -r path`, leaving out requirements the index serves no release of (all yanked or
    deleted since the repo pinned them), at most `max_unserved`; returns the ones left out."""
    text = (cwd / path).read_text()
    dropped: list[str] = []
    while True:
        filtered = cwd / f".{Path(path).name}.agent_rl"
        filtered.write_text("\n".join(line for line in text.splitlines()
                                      if requirement_name(line) not in {normalize(d) for d in dropped}) + "\n")
        try:
            _run([*pip, "-r", str(filtered)], cwd=cwd, what=f"pip install -r {path}")
            return dropped
        except RuntimeError as err:
            missing = UNSERVED.search(str(err))
            if missing is None or len(dropped) >= max_unserved or normalize(missing.group(1)) in map(normalize, dropped):
                raise
            dropped.append(missing.group(1))


def normalize(name: str) -> str:
    """A project name as the index compares them (PEP 503): "types-pkg_resources" -> "types-pkg-resources"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The normalized project name a requirements-file line asks for (None for comments, options, paths)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
    return normalize(match.group(1)) if match and not line.lstrip().startswith("-") else None


def site_packages(venv: Path) -> Path:
    """A venv's site-packages folder (whichever Python it was made with)."""
    found = glob.glob(str(venv / "lib" / "python3*" / "site-packages"))
    if len(found) != 1:
        raise RuntimeError(f"{venv} is not a Python 3 venv (found {found or 'no lib/python3*/site-packages'})")
    return Path(found[0])


class Environments:
    """Builds and finds each instance's environment (see the module docstring).

    Args:
        repos_dir: the clones, ``<owner>__<name>`` (the repo's `environment_setup_commit` is read from them).
        root: where the shared environments live (default ``<cache>/swe-envs``).
        python: the interpreter every environment is made from (default: the spec's Python where this machine
            has it, else this one).
    """

    def __init__(self, repos_dir: str | Path, root: str | Path | None = None, python: str | None = None) -> None:
        self.repos_dir = Path(repos_dir)
        self.root = Path(root) if root is not None else cache_root() / "swe-envs"
        self.python = python

    def spec(self, instance: SWEInstance) -> dict[str, Any]:
        return instance_spec(instance)

    def interpreter(self, spec: Mapping[str, Any]) -> str:
        """The interpreter an environment of `spec` is made from: the one given, else the spec's (3.9 at least),
        else this one."""
        asked = spec.get("python")
        if asked and tuple(int(part) for part in str(asked).split(".")[:2]) < MIN_PYTHON:
            asked = ".".join(map(str, MIN_PYTHON))
        return self.python or find_python(asked) or sys.executable

    def path(self, instance: SWEInstance) -> Path:
        """Where the instance's shared environment is (or will be)."""
        spec = self.spec(instance)
        return self.root / env_key(instance, spec, python_version(self.interpreter(spec)))

    def ensure(self, instance: SWEInstance) -> Path:
        """The instance's shared environment, built first if it is not there yet."""
        spec = self.spec(instance)
        venv = self.path(instance)
        if (venv / MARKER).is_file():
            return venv
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f".{venv.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build per environment, however many envs ask at once
            if not (venv / MARKER).is_file():
                self._build(instance, spec, venv)
        return venv

    def _build(self, instance: SWEInstance, spec: dict[str, Any], venv: Path) -> None:
        started = time.monotonic()
        clone = repo_dir(self.repos_dir, instance.repo)
        setup_commit = instance.extra.get("environment_setup_commit") or instance.base_commit
        unsupported = [key for key in ("pre_install", "env_patches") if spec.get(key)]
        if unsupported:
            raise ValueError(f"{instance.instance_id}: swebench's spec needs {unsupported} (system packages), which "
                             f"this builder does not run: {[spec[k] for k in unsupported]}")
        base_python = self.interpreter(spec)
        version = python_version(base_python)
        dropped: list[str] = []
        with atomic_directory(venv) as tmp:
            _run([base_python, "-m", "venv", str(tmp)], what=f"python{version} -m venv")
            python = str(tmp / "bin" / "python")
            _run([python, "-m", "pip", "install", "-q", "--upgrade", "pip"], what="pip install --upgrade pip")
            as_of = resolution_date(clone, setup_commit, version)
            _run([python, "-m", "pip", "install", "-q", *BUILD_PACKAGES], what="pip install setuptools wheel")
            pip = [python, "-m", "pip", "install", "-q", "--uploaded-prior-to", f"{as_of}T00:00:00Z"]
            with tempfile.TemporaryDirectory() as work:
                source = Path(work) / "repo"
                checkout(clone, setup_commit, source)
                packages = spec.get("packages", "")
                if packages == "requirements.txt":  # swebench: the repo's own requirement files
                    _, paths = swebench_specs()
                    files = [path for path in paths.get(instance.repo, ["requirements.txt"]) if (source / path).is_file()]
                    if not files:
                        raise ValueError(f"{instance.instance_id}: swebench's spec installs the repo's requirements, "
                                         f"but none of {paths.get(instance.repo)} exists at {setup_commit}")
                    for path in files:
                        dropped += install_requirements(pip, path, source)
                elif packages.endswith((".yml", ".yaml")):
                    raise ValueError(f"{instance.instance_id}: swebench's spec installs a conda environment file "
                                     f"({packages}), which pip cannot read")
                elif packages:
                    _run([*pip, *shlex.split(packages)], what=f"pip install {packages}")
                if spec.get("pip_packages"):
                    _run([*pip, *spec["pip_packages"]], what=f"pip install {' '.join(spec['pip_packages'])}")
                data = TEST_DATA_PACKAGES.get(instance.repo, ())
                if data:  # data files, not code: not dated (pydicom-data's first release is from 2022)
                    _run([python, "-m", "pip", "install", "-q", "--no-deps", *data], what=f"pip install {' '.join(data)}")
                if spec.get("install"):
                    install = re.sub(r"^python\b", python, spec["install"])
                    _run(["bash", "-c", install], cwd=source, what=f"{spec['install']} (at {setup_commit[:12]})")
                    self._uninstall_editables(python)
            write_json(tmp / MARKER, {"repo": instance.repo, "version": instance.extra.get("version"),
                                      "environment_setup_commit": setup_commit, "spec": spec,
                                      "packages_as_of": as_of, "requirements_not_served": dropped,
                                      "test_data_packages": list(TEST_DATA_PACKAGES.get(instance.repo, ())),
                                      "python": version, "python_asked": spec.get("python"),
                                      "build_s": round(time.monotonic() - started, 1)})

    @staticmethod
    def _uninstall_editables(python: str) -> None:
        """Drop the project's own editable install (every workspace installs its own checkout)."""
        listed = subprocess.run([python, "-m", "pip", "list", "--editable", "--format=json"], capture_output=True,
                                text=True, check=True)
        names = [item["name"] for item in json.loads(listed.stdout or "[]")]
        if names:
            _run([python, "-m", "pip", "uninstall", "-y", "-q", *names], what=f"pip uninstall {names}")


def make_layer(workspace: Path, shared: Path) -> Path:
    """A pip-less venv at ``<workspace>/env`` on the shared environment's interpreter that sees its packages
    (host side: no repo code runs here). Returns its ``bin`` folder."""
    layer = workspace / LAYER
    # venv run from a venv makes the new one on the same base interpreter
    _run([str(shared / "bin" / "python"), "-m", "venv", "--without-pip", str(layer)], what="python -m venv --without-pip")
    shared_site = site_packages(shared)
    # addsitedir also runs the shared env's own .pth files (setuptools' distutils shim, namespace packages)
    (site_packages(layer) / "agent_rl_shared_env.pth").write_text(
        f"import site; site.addsitedir({str(shared_site)!r})\n")
    return layer / "bin"


LAYER_INSTALL = "python -m pip install -q --no-deps --no-build-isolation --no-index -e ."


def build_info(venv: Path) -> dict[str, Any]:
    """What a shared environment was built from and how long it took (its marker file)."""
    return json.loads((venv / MARKER).read_text())
