"""AppWorld (Trivedi et al., 2024) as an agent-rl `TextEnv`: the agent writes Python against the apps' APIs.

    env = AppWorldEnv(tasks="generated", split="test")
    obs, info = env.reset(options={"task_index": 0})
    obs, reward, terminated, truncated, info = env.step("print(apis.api_docs.show_api_descriptions(app_name='venmo'))")

Each action is a code cell run in the episode's Python session (variables persist between cells, as in
AppWorld's own agents); the observation is what the cell printed, or its error. `apis.<app>.<api>(...)`
calls the real simulated apps; `apis.api_docs` documents them. The episode ends when the code calls
`complete_task(...)` (generated tasks) or `apis.supervisor.complete_task(...)` (official tasks): the
reward is 1 if the task's check (generated) or AppWorld's own evaluator (official) passes, else 0.

The apps (and the agent's code) run in a worker process (`worker.py`) in an `agent_rl.tools.sandbox.LimitedWorker`
(limits; no network; no host environment, homes or /tmp: see its threat model), in the
interpreter `python` (default $AGENT_RL_APPWORLD_PYTHON, else the venv `python -m agent_rl.envs.appworld.setup` builds,
else this one): appworld pins old pydantic, httpx and pytest, so it usually lives in a venv of its own. A cell that fails (syntax, exception, AppWorld's safety check,
its timeout) is an invalid step with the error as observation; a worker that must be killed (hard
timeout, memory) ends the episode with reward 0, and the next reset starts a fresh worker.

With `expert=True`, ``info["expert_action"]`` is the task's scripted cell for the number of cells that
have run without error: it follows the expert's own path and does not replan after other code.

The anchor hashes the task and the code cells that ran without error (the apps' state is a function of
them): equal histories give equal anchors, but two histories reaching one state may not.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, ClassVar

from agent_rl.envs.appworld.official import official_task_ids, resolve_root
from agent_rl.envs.appworld.setup import PYTHON_ENV_VAR, default_python
from agent_rl.envs.appworld.tasks import CREDENTIALS, TASKS, GeneratedTask
from agent_rl.tools.sandbox import LimitedWorker, SandboxError, SandboxLimits, interpreter_paths

from agent_rl.env_api import ActionSyntax, TextEnv, check_max_steps, to_printable

DEFAULT_MAX_STEPS = 10
WORKER = Path(__file__).with_name("worker.py")
TASKS_FILE = Path(__file__).with_name("tasks.py")
WORKER_START_S = 300.0  # importing appworld and building the apps' tables, on a loaded machine
GENERATED_HELP = (
    "Write Python code as your action; it runs in a persistent session and you see what it prints. "
    "Call the apps through `apis.<app>.<api>(...)`; `apis.api_docs.show_api_descriptions(app_name=...)` "
    "and `apis.api_docs.show_api_doc(app_name=..., api_name=...)` document them. Log in with "
    "`apis.<app>.login(username=email, password=password)` to get an access_token. "
    "When done, call complete_task() (with answer=... if asked a question)."
)


class AppWorldEnv(TextEnv):
    """AppWorld tasks, built here ("generated") or the official data ("official").

    Args:
        tasks: "generated" (`tasks.py`, on the real apps) or "official" (AppWorld's task data under `path`).
        split: generated: "train", "test" or "all"; official: a dataset name (train, dev, test_normal, ...).
        max_steps: code cells before the episode is truncated (invalid cells count).
        expert: put the expert's next cell in ``info["expert_action"]`` (generated tasks only).
        path: the official APPWORLD_ROOT (the folder holding data/); default $APPWORLD_ROOT.
        python: the interpreter with appworld installed (default: `setup.default_python()`).
        timeout_s: seconds a cell may run (the worker is killed 5 s after, should the cell not stop).
        memory_mb: the worker's address-space limit.
        max_output_chars: a cell's output is truncated to this many characters.
        seed: the apps' random seed.
    """

    won_means: ClassVar[str] = "every check on the apps' resulting state passes"

    action_syntax: ClassVar[ActionSyntax] = ActionSyntax(multiline=True, max_chars=8000)  # code cells

    def __init__(
        self,
        tasks: str = "generated",
        split: str = "train",
        max_steps: int = DEFAULT_MAX_STEPS,
        expert: bool = False,
        path: str | None = None,
        python: str | None = None,
        timeout_s: float = 10.0,
        memory_mb: int = 4096,
        max_output_chars: int = 4000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.max_steps = check_max_steps(max_steps)
        self.expert = expert
        self.seed_value = seed
        self.python = python or default_python()
        self.cell_timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self.limits = SandboxLimits(timeout_s=timeout_s + 5.0, memory_mb=memory_mb)
        if tasks == "generated":
            if split not in ("train", "test", "all"):
                raise ValueError(f"split must be 'train', 'test' or 'all' for generated tasks, got {split!r}")
            self.generated: list[GeneratedTask] = [t for t in TASKS if split in ("all", t.split)]
            self.task_ids = [t.id for t in self.generated]
            self.root: Path | None = None
            self._data: Path | None = None
        elif tasks == "official":
            if expert:
                raise ValueError("expert=True needs generated tasks: official tasks come with no expert here")
            self.root = resolve_root(path)
            self._data = (self.root / "data").resolve()  # the sandbox shows real paths: no symlink on the way
            self.task_ids = official_task_ids(self.root, split)
            self.generated = []
        else:
            raise ValueError(f"tasks must be 'generated' or 'official', got {tasks!r}")
        self.tasks_name, self.split = tasks, split
        self._worker: LimitedWorker | None = None
        self._task_id = ""
        self._instruction = ""
        self._done = True

    @property
    def num_tasks(self) -> int:
        return len(self.task_ids)

    @property
    def task_set(self) -> str:
        if self.root is None:
            return f"appworld generated tasks (built here on the real apps), split {self.split}"
        return f"appworld official tasks ({self.root}), dataset {self.split}"

    def _call(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        if self._worker is None or not self._worker.alive:
            # The sandbox hides the homes and /tmp (where the venv and the data usually are): it shows again
            # the interpreter, this folder (worker.py, tasks.py) and the official data, read-only. It passes
            # no host variable: AppWorld's own (APPWORLD_ROOT, APPWORLD_CACHE) default to the cwd and
            # ~/.appworld, both in the worker's private writable workspace (its cwd and HOME); for official
            # tasks the worker points APPWORLD_ROOT at a folder there, with the data linked in.
            python = shutil.which(self.python) or self.python  # the sandbox's PATH is the system's alone
            readable = [*interpreter_paths(python), str(WORKER.parent)]
            if self._data is not None:
                readable.append(str(self._data))
            self._worker = LimitedWorker([python, str(WORKER), str(TASKS_FILE)], self.limits, readable=readable)
        return self._worker.call(request, timeout_s)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        index = self.task_index(options)
        self._task_id = self.task_ids[index]
        common = {"task_id": self._task_id, "max_output_chars": self.max_output_chars,
                  "timeout_s": self.cell_timeout_s}
        if self.root is None:
            request = {"op": "start_generated", "seed": self.seed_value, **common}
            help_text = f"{GENERATED_HELP}\n{CREDENTIALS}"
        else:
            request = {"op": "start_official", "data": str(self._data), **common}
            help_text = ("Write Python code as your action (AppWorld's protocol: `apis.<app>.<api>(...)`, "
                         "`apis.supervisor.complete_task(...)` when done).")
        try:
            reply = self._call(request, timeout_s=WORKER_START_S)
        except SandboxError as err:
            raise RuntimeError(f"the AppWorld worker ({self.python}) could not start: {err}. Install appworld "
                               "there (python -m agent_rl.envs.appworld.setup builds one) or set "
                               f"{PYTHON_ENV_VAR}") from err
        if reply["error"]:
            raise RuntimeError(f"AppWorld task {self._task_id!r} could not start: {reply['error']}")
        self._instruction = to_printable(reply["instruction"])
        if "supervisor" in reply:
            who = reply["supervisor"]
            self._instruction += f" (You are {who['first_name']} {who['last_name']}, {who['email']}.)"
        self._done = False
        self._steps = 0
        self._cells: list[str] = []
        return to_printable(f"{self._instruction}\n{help_text}"), self._info(won=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("step() after the episode ended: call reset() first")
        self._steps += 1
        try:
            reply = self._call({"op": "execute", "code": action})
            if reply["error"]:
                raise SandboxError(reply["error"])
        except SandboxError as err:
            self._done = True
            self._stop_worker()
            observation = f"Execution failed: {err}. The sandbox was stopped; the episode ends."
            return to_printable(observation), 0.0, True, False, self._info(won=False, action_valid=False)
        valid = not reply.get("failed", False) and not reply["output"].startswith("Execution failed")
        if valid:
            self._cells.append(action)
        won, report = False, ""
        if reply["completed"]:
            verdict = self._call({"op": "evaluate"}, timeout_s=WORKER_START_S)
            won, report = bool(verdict.get("success")), verdict.get("report", verdict["error"])
            self._done = True
        truncated = not self._done and self._steps >= self.max_steps
        self._done = self._done or truncated
        info = self._info(won=won, action_valid=valid)
        if report:
            info["check"] = report
        return to_printable(reply["output"]), float(won), reply["completed"], truncated, info

    def _info(self, won: bool, action_valid: bool | None = None) -> dict[str, Any]:
        task = next((t for t in self.generated if t.id == self._task_id), None)
        apps = task.apps if task else ()
        anchor = hashlib.sha256("\0".join([self._task_id, *getattr(self, "_cells", [])]).encode()).hexdigest()
        info: dict[str, Any] = {
            "admissible_actions": [f"print(apis.api_docs.show_api_descriptions(app_name='{app}'))" for app in apps]
            + ["print(apis.api_docs.show_api_doc(app_name='<app>', api_name='<api>'))", "complete_task()"],
            "anchor": anchor[:32],
            "won": won,
            "task_type": task.task_type if task else self._task_id.split("_")[0],
            "task_id": self._task_id,
            "task": self._instruction,
        }
        if action_valid is not None:
            info["action_valid"] = action_valid
        if self.expert and task is not None:
            info["expert_action"] = task.expert[min(len(self._cells), len(task.expert) - 1)]
        return info

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def close(self) -> None:
        self._stop_worker()
        super().close()
