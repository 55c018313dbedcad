"""The AppWorld side of the env: runs in an interpreter that has `appworld` (not necessarily agent-rl's).

    python worker.py TASKS_FILE     # then one JSON request per line on stdin, one JSON reply per line

Requests: {"op": "start_generated", "task_id", "seed"} | {"op": "start_official", "data", "task_id"} |
{"op": "execute", "code"} | {"op": "evaluate"}. Every reply has "error" ("" when all went well).
The agent's code runs with AppWorld's own safety: its syntax check (no disallowed imports or calls)
and its null patching of dangerous functions while the code runs; the process itself is limited by
`agent_rl.tools.sandbox.LimitedWorker` (no network, no host secrets, a private workspace as its cwd
and HOME). Imports only the standard library and appworld.
"""

from __future__ import annotations

import builtins
import contextlib
import importlib.util
import io
import json
import os
import signal
import sys
import traceback
from datetime import datetime
from typing import Any

AGENT_FILE = "<python-input>"  # the file name tracebacks show for the agent's code (as AppWorld's do)
GENERATED_DATETIME = datetime(2024, 5, 1, 12, 0)  # the simulated apps' clock, fixed for reproducibility


class CappedText(io.TextIOBase):
    """A stdout that keeps the first `limit` characters and counts the rest (huge prints cost no memory)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self.limit - self.kept
        self.parts.append(text[:room])
        self.kept += min(len(text), max(room, 0))
        self.dropped += max(len(text) - max(room, 0), 0)
        return len(text)

    def text(self) -> str:
        note = f"\n... [output truncated: {self.dropped} more characters]" if self.dropped else ""
        return "".join(self.parts) + note


class CodeTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise CodeTimeout("Execution timed out.")


class GeneratedWorld:
    """A task of `tasks.py` on fresh in-memory databases of the real apps."""

    def __init__(self, tasks: Any, task_id: str, seed: int, name: str) -> None:
        from appworld.api_docs import prepare_api_docs
        from appworld.collections.apis import ApiCollection
        from appworld.common.utils import import_models_module

        self.task = tasks.TASKS_BY_ID[task_id]
        self.user = tasks.USER
        self._models = import_models_module
        self.apis, _ = ApiCollection.load(
            to_db_home_path=f":memory:{name}", from_db_home_path=f":memory:{name}",
            load_apps=[*self.task.apps, "api_docs"], date_and_time=GENERATED_DATETIME, random_seed=seed,
            create_db=True,
        )
        # prepare_api_docs caches its dicts: copy them, renaming the field the ApiDoc model calls app_name_
        docs = [{("app_name_" if k == "app_name" else k): v for k, v in doc.items()}
                for app in self.task.apps for doc in prepare_api_docs(app)]
        api_doc = import_models_module("api_docs").ApiDoc
        api_doc.save_all([api_doc(**doc) for doc in docs])
        self._tokens: dict[tuple[str, str], str] = {}
        for app in self.task.apps:
            self.add_user(app, self.user)
        self.task.setup(self)

    def add_user(self, app: str, person: dict, **fields: Any) -> None:
        self._models(app).User(**person, verified=True, **fields).save()
        if app == "file_system":
            self.apis.file_system.create_directory(directory_path="/", recursive=True,
                                                   access_token=self.login(app, person))

    def set_fields(self, app: str, email: str, **fields: Any) -> None:
        user = self._models(app).User.find_one(email=email)
        for name, value in fields.items():
            setattr(user, name, value)
        user.save()

    def login(self, app: str, person: dict | None = None) -> str:
        person = person or self.user
        key = (app, person["email"])
        if key not in self._tokens:
            reply = self.apis[app].login(username=person["email"], password=person["password"])
            self._tokens[key] = reply["access_token"]
        return self._tokens[key]

    def instruction(self) -> str:
        return self.task.instruction

    def close(self) -> None:
        self.apis.close()


class Session:
    def __init__(self, tasks_file: str) -> None:
        spec = importlib.util.spec_from_file_location("appworld_generated_tasks", tasks_file)
        assert spec is not None and spec.loader is not None
        self.tasks = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = self.tasks  # dataclasses look their module up there
        spec.loader.exec_module(self.tasks)
        self.world: Any = None
        self.official: Any = None
        self.namespace: dict[str, Any] = {}
        self.answer: Any = None
        self.completed = False
        self.episodes = 0
        self.max_output_chars = 4000
        self.timeout_s = 10.0

    def start_generated(self, task_id: str, seed: int, max_output_chars: int, timeout_s: float) -> dict:
        from appworld.common.safety_guard import SafetyGuard
        from appworld.environment import SAID_AVAILABLE_IMPORTS

        self._close_world()
        self.max_output_chars, self.timeout_s = max_output_chars, timeout_s
        self.episodes += 1
        self.world = GeneratedWorld(self.tasks, task_id, seed, name=f"ep{self.episodes}")
        self.guard = SafetyGuard()
        self.namespace = {"apis": self.world.apis, "complete_task": self._complete_task,
                          "__name__": "__main__", "__builtins__": builtins}
        exec(SAID_AVAILABLE_IMPORTS, self.namespace)  # noqa: S102 - AppWorld's own preamble
        return {"instruction": self.world.instruction()}

    def start_official(self, data: str, task_id: str, max_output_chars: int, timeout_s: float) -> dict:
        # AppWorld writes its outputs under APPWORLD_ROOT: give it the workspace, with the data linked in.
        os.makedirs("appworld_root", exist_ok=True)
        if not os.path.lexists("appworld_root/data"):
            os.symlink(data, "appworld_root/data")
        os.environ["APPWORLD_ROOT"] = os.path.abspath("appworld_root")
        from appworld import AppWorld

        self._close_world()
        self.max_output_chars, self.timeout_s = max_output_chars, timeout_s
        self.official = AppWorld(task_id=task_id, experiment_name="agent_rl", timeout_seconds=max(1, int(timeout_s)))
        supervisor = self.official.task.supervisor
        return {"instruction": self.official.task.instruction,
                "supervisor": {k: supervisor[k] for k in ("first_name", "last_name", "email", "phone_number")}}

    def _complete_task(self, answer: Any = None) -> None:
        """Ends the episode; `answer` is what a question task asks for."""
        self.completed, self.answer = True, answer

    def execute(self, code: str) -> dict:
        if self.official is not None:
            output = self.official.execute(code)
            return {"output": self._cap(output), "completed": self.official.task_completed()}
        if self.world is None:
            return {"error": "no episode: send start_generated or start_official first"}
        safe, why = self.guard.is_syntax_safe(code)
        if not safe:
            return {"output": "Execution failed. Traceback:\n" + why, "completed": self.completed, "failed": True}
        stdout = CappedText(self.max_output_chars)
        failed = False
        signal.signal(signal.SIGALRM, _on_alarm)
        self.guard.enable()
        try:
            compiled = compile(code, AGENT_FILE, "exec")
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stdout):
                signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
                try:
                    exec(compiled, self.namespace)  # noqa: S102 - running the agent's code is the point
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException as err:  # noqa: BLE001 - whatever the agent's code raises becomes its observation
            failed = True
            stdout.write("Execution failed. Traceback:\n" + _agent_traceback(err))
        finally:
            self.guard.disable()
        output = stdout.text() or "Execution successful."
        return {"output": output, "completed": self.completed, "failed": failed}

    def _cap(self, text: str) -> str:
        capped = CappedText(self.max_output_chars)
        capped.write(text)
        return capped.text()

    def evaluate(self) -> dict:
        if self.official is not None:
            tracker = self.official.evaluate()
            return {"success": bool(tracker.success), "report": json.dumps(tracker.to_dict(stats_only=True))[:2000]}
        try:
            reason = self.world.task.check(self.world, self.answer)
        except Exception as err:  # noqa: BLE001 - a state the check cannot read is a failed check
            reason = f"the check could not read the state: {type(err).__name__}: {err}"
        return {"success": reason == "", "report": reason or "solved", "answer": repr(self.answer)[:500]}

    def _close_world(self) -> None:
        if self.world is not None:
            self.world.close()
        if self.official is not None:
            self.official.close()
        self.world = self.official = None
        self.completed, self.answer = False, None


def _agent_traceback(err: BaseException) -> str:
    """The traceback's frames in the agent's own code, then the error (library internals left out)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == AGENT_FILE]
    lines = traceback.format_list(frames)
    if isinstance(err, SyntaxError):
        return f"SyntaxError: {err.msg} (line {err.lineno})"
    return "".join(lines) + "".join(traceback.format_exception_only(type(err), err)).strip()


def main() -> None:
    # Replies go to a private copy of stdout; fd 1 is pointed at stderr so nothing else can write to it.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    session = Session(sys.argv[1])
    for line in sys.stdin:
        try:
            request = json.loads(line)
            op = request.pop("op")
            reply = getattr(session, op)(**request) if op in OPS else {"error": f"unknown op {op!r}"}
            reply.setdefault("error", "")
        except Exception as err:  # noqa: BLE001 - the parent decides what a failed request means
            reply = {"error": f"{type(err).__name__}: {err}"[:2000]}
        replies.write(json.dumps(reply, default=str) + "\n")
        replies.flush()
    os._exit(0)  # the apps' server threads would keep a normal exit waiting


OPS = ("start_generated", "start_official", "execute", "evaluate")

if __name__ == "__main__":
    main()
