"""SWE-Gym / SWE-bench as an agent-rl `TextEnv`: fix a repository's issue with a shell and an editor.

    env = SWEGymEnv()                                    # the built-in instances (`builtin.py`)
    env = SWEGymEnv(path="swe-gym.jsonl", repos_dir="repos")   # SWE-bench-format rows and their clones
    obs, info = env.reset(options={"task_index": 0})
    obs, reward, terminated, truncated, info = env.step('{"name": "bash", "arguments": {"command": "ls"}}')

Each action is one JSON tool call (`agent_rl.tools.calls`): ``bash`` (a shell command at the repository
root, a fresh shell each time; background processes end with it), ``view``, ``str_replace`` and
``create`` (the file viewer and editor, `editor.py`, run inside the sandbox too) and ``submit``. Every
observation is cut to `max_output_chars`. `submit` ends the episode (terminated); at `max_steps` the
episode is truncated and the work so far is submitted all the same (as SWE-agent does at its limits).
The reward grades the final diff of the repository against the base commit (`grading.py`: the test patch
applied, the tests run, swebench's parser and FAIL_TO_PASS / PASS_TO_PASS rule): 1 when resolved, else 0
(with `partial_credit`, the share of FAIL_TO_PASS tests passing when no PASS_TO_PASS test breaks).
``info["won"]`` is "resolved". The grade is in ``info["grade"]`` and swebench's report in ``info["report"]``.

A command that hits a limit (time, output) is stopped and the episode goes on, its observation saying
why; a workspace grown past the disk limit ends the episode with reward 0 and ``info["ended_by"]``. Every
episode gets a fresh workspace (`backends.py`): nothing carries over between episodes or between envs.

With `expert=True`, ``info["expert_action"]`` applies the gold patch (`git apply`), then submits.
The anchor hashes the instance and the actions that may have changed the repository so far.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any, ClassVar

from agent_rl.envs.swegym.backends import Backend, LocalBackend, Workspace
from agent_rl.envs.swegym.builtin import build_builtin
from agent_rl.envs.swegym.dataset import SWEInstance, load_instances
from agent_rl.envs.swegym.environments import Environments, spec_test_command
from agent_rl.envs.swegym.grading import DEFAULT_TEST_CMD, Grade, eval_script, grade_log
from agent_rl.tools.calls import format_tool_call, parse_tool_call
from agent_rl.tools.env import call_template, tool_instructions
from agent_rl.tools.runner import render_output
from agent_rl.tools.sandbox import CommandResult, SandboxLimits
from agent_rl.tools.schema import make_tool

from agent_rl.env_api import ActionSyntax, TextEnv, check_max_steps, to_printable

DEFAULT_MAX_STEPS = 30
EDITOR_SOURCE = Path(__file__).with_name("editor.py").read_text()
SPLITS = ("train", "test", "all")
SETUPS = ("none", "swebench")
HELP = ("You are in the repository's root folder. Find the cause of the issue and fix the source code so that "
        "the issue is resolved (tests that check it will be run on your changes; do not edit existing tests). "
        "Submit when done.")


def bash(command: str) -> str:
    """Run a shell command at the repository root (a fresh bash each time; no network).

    Args:
        command: The bash command line, e.g. "grep -rn slugify ." or "python -m pytest -q".
    """
    return command


def view(path: str, start: int = 1, end: int = -1) -> str:
    """Show a file with line numbers, or list a folder.

    Args:
        path: The file or folder, relative to the repository root.
        start: The first line to show (1-based).
        end: The last line to show (-1: to the end).
    """
    return path


def str_replace(path: str, old: str, new: str) -> str:
    """Replace the one occurrence of `old` in a file by `new`.

    Args:
        path: The file, relative to the repository root.
        old: The exact text to replace (whitespace included); it must occur exactly once.
        new: The text to put in its place.
    """
    return path


def create(path: str, content: str) -> str:
    """Write a file (a new one, or replace an existing one whole).

    Args:
        path: The file, relative to the repository root.
        content: The whole content of the file.
    """
    return path


def submit() -> str:
    """Submit the repository as it is now: this ends the episode and your changes are graded."""
    return "submit"


# The functions above are the tools' signatures and docs (their schemas); `SWEGymEnv.step` carries them out.
TOOLS = [make_tool(fn) for fn in (bash, view, str_replace, create, submit)]
TOOLS_BY_NAME = {tool.name: tool for tool in TOOLS}
EDITOR_TOOLS = ("view", "str_replace", "create")


def diff_command(base_commit: str) -> str:
    """The shell line that prints the repository's changes against the base commit, new files included."""
    return (f"git add -A >/dev/null 2>&1; git -c core.fsmonitor=false diff --cached --no-color --no-ext-diff "
            f"--binary {shlex.quote(base_commit)}")


def evaluate_patch(backend: Backend, instance: SWEInstance, patch: str, test_cmd: str = DEFAULT_TEST_CMD,
                   partial_credit: bool = False, timeout_s: float | None = None) -> Grade:
    """Grade `patch` in a fresh workspace of `backend` (the agent's workspace is never trusted with it)."""
    workspace = backend.start(instance)
    try:
        result = workspace.run(["bash", "-c", eval_script(instance, test_cmd)], stdin=patch.encode(),
                               timeout_s=timeout_s)
    finally:
        workspace.close()
    if result.error:
        return Grade("TESTS_DID_NOT_RUN", 0.0, {"error": result.error})
    return grade_log(instance, result.output, partial_credit)


class SWEGymEnv(TextEnv):
    """SWE-bench-format instances in a local or Docker sandbox.

    Args:
        path: a .jsonl / .json / .parquet file of SWE-bench rows; None plays the built-in instances.
        repos_dir: the folder holding a clone of each row's repo as ``<owner>__<name>`` (built-in: built here).
        split: SWE-Gym files are one split: every instance is played; the name labels result tables.
        backend: "local" (a sandbox on this machine) or "docker" (a container per workspace).
        max_steps: tool calls before the episode is truncated (and submitted).
        expert: put the gold-patch expert's next action in ``info["expert_action"]``.
        python: the interpreter local commands and tests use (default: this one); it needs the repo's deps.
        setup: "none" (commands and tests use `python` as it is) or "swebench" (local backend: each repo and
            version gets its own virtual environment, built from swebench's spec and the package registry,
            and each workspace installs its checkout into a layer over it; tests run with the spec's
            `test_cmd`; see `environments.py`).
        envs_dir: where setup="swebench" keeps the environments (default ``<cache>/swe-envs``).
        image: the docker image (may hold {instance_id} / {repo}); see `docker_backend.py`.
        test_cmd: the test command; the test patch's files are appended (SWE-bench runs those only). Default:
            ``python -m pytest -rA -p no:cacheprovider``, or the spec's with setup="swebench".
        timeout_s: seconds one command may run; grade_timeout_s: seconds the grading tests may run.
        memory_mb, max_processes, disk_mb: the sandbox's limits (per process, per workspace, per workspace).
        max_output_chars: observations are cut to this many characters.
        partial_credit: reward the share of FAIL_TO_PASS tests fixed (when no PASS_TO_PASS test breaks).
        cache_dir: where the built-in instances are built (default `agent_rl.io.cache_root()`).
    """

    won_means: ClassVar[str] = "resolved: every FAIL_TO_PASS and PASS_TO_PASS test passes after the final diff"

    action_syntax: ClassVar[ActionSyntax] = ActionSyntax(multiline=True, max_chars=20000)  # patches, whole files

    def __init__(
        self,
        path: str | None = None,
        repos_dir: str | None = None,
        split: str = "test",
        backend: str = "local",
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
        python: str | None = None,
        image: str | None = None,
        test_cmd: str | None = None,
        timeout_s: float = 60.0,
        grade_timeout_s: float = 600.0,
        memory_mb: int = 4096,
        max_processes: int = 256,
        disk_mb: int = 2048,
        max_output_chars: int = 8000,
        partial_credit: bool = False,
        cache_dir: str | None = None,
        setup: str = "none",
        envs_dir: str | None = None,
    ) -> None:
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if path is None:
            if repos_dir is not None:
                raise ValueError("repos_dir is for a user file (path=...); the built-in repos are built here")
            jsonl, repos = build_builtin(cache_dir)
            self.instances, self.source = load_instances(jsonl), "built-in instances (agent_rl.envs.swegym)"
        else:
            if repos_dir is None:
                raise ValueError(f"path={path!r} needs repos_dir=<folder with a git clone of each repo as "
                                 "<owner>__<name>>: the rows name repositories and commits, not their files")
            self.instances, self.source, repos = load_instances(path), str(path), Path(repos_dir)
        self.max_steps = check_max_steps(max_steps)
        self.expert = expert
        self.split = split
        self.test_cmd = test_cmd
        self.grade_timeout_s = grade_timeout_s
        self.max_output_chars = max_output_chars
        self.partial_credit = partial_credit
        limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb, max_processes=max_processes,
                               disk_mb=disk_mb)
        if setup not in SETUPS:
            raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")
        if setup == "swebench" and backend != "local":
            raise ValueError("setup='swebench' builds virtual environments for backend='local'; a docker image "
                             "brings its own environment")
        self.environments = Environments(repos, envs_dir, python) if setup == "swebench" else None
        if backend == "local":
            if image is not None:
                raise ValueError("image= is for backend='docker'")
            self.backend: Backend = LocalBackend(repos, limits, python, self.environments)
        elif backend == "docker":
            if python is not None:
                raise ValueError("python= is for backend='local'; the docker image brings its own")
            from agent_rl.envs.swegym.docker_backend import DEFAULT_IMAGE, DockerBackend

            self.backend = DockerBackend(repos, limits, image or DEFAULT_IMAGE)
        else:
            raise ValueError(f"backend must be 'local' or 'docker', got {backend!r}")
        self.backend_name = backend
        self._instructions = tool_instructions(TOOLS).replace("the answer tool", "the submit tool")
        self._templates = [call_template(tool) for tool in TOOLS]
        self._workspace: Workspace | None = None
        self._instance: SWEInstance | None = None
        self._done = True
        self._steps = 0
        self._state = hashlib.sha1()
        self._task = ""

    @property
    def num_tasks(self) -> int:
        return len(self.instances)

    @property
    def task_set(self) -> str:
        return f"SWE-bench format: {self.source}, {self.num_tasks} instances, {self.backend_name} backend"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        instance = self.instances[self.task_index(options)]
        self._close_workspace()
        self._workspace = self.backend.start(instance)
        self._instance = instance
        self._done = False
        self._steps = 0
        self._state = hashlib.sha1(instance.instance_id.encode())
        self._task = to_printable(f"Repository {instance.repo}. Issue:\n{instance.problem_statement}\n{HELP}\n\n"
                                  f"{self._instructions}")
        return "No tool called yet.", self._info(won=False, action_valid=True)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._done or self._workspace is None or self._instance is None:
            raise RuntimeError("step() after the episode ended: call reset() first")
        self._steps += 1
        parsed = parse_tool_call(action, self.action_syntax.max_chars)
        call = parsed.call
        problem = parsed.error or (f"unknown tool {call.name!r}; the tools are {sorted(TOOLS_BY_NAME)}"
                                   if call.name not in TOOLS_BY_NAME else TOOLS_BY_NAME[call.name].check_arguments(
                                       call.arguments))
        ended_by, result = "", None
        if problem:
            obs, valid = f"Error: {problem}", False
        elif call.name == "submit":
            obs, valid, ended_by = "Submitted.", True, "submit"
        else:
            result = self._run_tool(call.name, call.arguments)
            obs, valid = self._observation(result), True
            if call.name != "view":
                self._state.update(json.dumps([call.name, call.arguments], sort_keys=True).encode())
            if "over the limit" in result.error:
                ended_by = f"the workspace broke a limit: {result.error}"
        terminated = bool(ended_by)
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        reward, info = 0.0, self._info(won=False, action_valid=valid)
        if self._done:
            grade = self._grade() if ended_by in ("submit", "") else Grade("WORKSPACE_LIMIT", 0.0)
            reward = grade.reward
            info.update(won=grade.resolved, grade=grade.status, report=grade.report, ended_by=ended_by or "max_steps")
            obs = f"{obs}\nGrade: {grade.status}."
        return to_printable(obs), reward, terminated, truncated, info

    def _run_tool(self, name: str, arguments: dict[str, Any]) -> CommandResult:
        assert self._workspace is not None
        if name == "bash":
            return self._workspace.run(["bash", "-c", arguments["command"]])
        request = json.dumps({"op": name, **arguments}).encode()
        return self._workspace.run(["python3", "-c", EDITOR_SOURCE], stdin=request)

    def _observation(self, result: CommandResult) -> str:
        text = render_output(result.output, self.max_output_chars)
        if result.error:
            return f"{text}\n[{result.error}]"
        if result.exit_code:
            return f"{text}\n[exit code {result.exit_code}]"
        return text or "[no output]"

    def _grade(self) -> Grade:
        """Take the workspace's diff, drop the workspace, grade the diff in a fresh one."""
        assert self._workspace is not None and self._instance is not None
        diff = self._workspace.run(["bash", "-c", diff_command(self._instance.base_commit)])
        self._close_workspace()
        if diff.error:
            return Grade("DIFF_FAILED", 0.0, {"error": diff.error})
        return evaluate_patch(self.backend, self._instance, diff.output, self.instance_test_cmd(self._instance),
                              self.partial_credit, self.grade_timeout_s)

    def instance_test_cmd(self, instance: SWEInstance) -> str:
        """The command that runs `instance`'s tests: `test_cmd` if given, else its spec's or the default."""
        if self.test_cmd is not None:
            return self.test_cmd
        if self.environments is not None:
            return spec_test_command(self.environments.spec(instance))
        return DEFAULT_TEST_CMD

    def _info(self, won: bool, action_valid: bool) -> dict[str, Any]:
        assert self._instance is not None
        info: dict[str, Any] = {
            "admissible_actions": list(self._templates),
            "anchor": f"{self._instance.instance_id}|{self._state.hexdigest()[:16]}",
            "won": won,
            "task_type": self._instance.repo_name,
            "task_id": self._instance.instance_id,
            "task": self._task,
            "tools": [tool.schema for tool in TOOLS],
            "tool_calls": self._steps,
            "action_valid": action_valid,
        }
        if self.expert:
            info["expert_action"] = self._expert_action()
        return info

    def _expert_action(self) -> str:
        """Apply the gold patch first, then submit."""
        assert self._instance is not None
        if self._steps == 0:
            patch = self._instance.patch.rstrip("\n")
            return format_tool_call("bash", command=f"git apply - <<'AGENT_RL_GOLD_PATCH'\n{patch}\nAGENT_RL_GOLD_PATCH")
        return format_tool_call("submit")

    def _close_workspace(self) -> None:
        if self._workspace is not None:
            self._workspace.close()
            self._workspace = None

    def close(self) -> None:
        self._close_workspace()
        super().close()
