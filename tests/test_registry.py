"""The env registry: specs as data, entry points (strings, callables, plugins), and errors that say what to do."""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from agent_rl import registry
from agent_rl.env_api import TextEnv
from agent_rl.registry import EnvSpec, UnknownEnvError, load_entry_point, make, register, registered_ids, spec

TEXTWORLD_IDS = ["textworld/demo-v0", "textworld/cooking-v0", "textworld/treasure_hunter-v0",
                 "textworld/coin_collector-v0", "textworld/games-v0"]


class EchoEnv(TextEnv):
    """The smallest env honouring the contract: it echoes the action; `size` is its number of tasks."""

    def __init__(self, size: int = 3, greeting: str = "hello") -> None:
        super().__init__()
        self.size = size
        self.greeting = greeting

    @property
    def num_tasks(self) -> int:
        return self.size

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        index = self.task_index(options)
        return self.greeting, {"admissible_actions": ["echo"], "anchor": str(index), "won": False,
                               "task_type": "echo", "task_id": f"echo/{index}", "task": "echo"}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return action, 0.0, True, False, {"admissible_actions": [], "anchor": "end", "won": True,
                                         "task_type": "echo", "task_id": "echo/0", "task": "echo"}


class NotAnEnv:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, EnvSpec]:
    """The registry after discovery, restored when the test ends (tests may register freely)."""
    registry.discover()
    table = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", table)
    return table


def test_register_with_a_string_entry_point(clean_registry):
    register("testpkg/echo-v0", entry_point=f"{__name__}:EchoEnv", kwargs={"size": 5}, description="echoes")
    env = make("testpkg/echo-v0")
    assert isinstance(env, EchoEnv) and env.num_tasks == 5 and env.greeting == "hello"
    assert spec("testpkg/echo-v0") == EnvSpec("testpkg/echo-v0", f"{__name__}:EchoEnv", {"size": 5}, "echoes")
    assert "testpkg/echo-v0" in registered_ids()


def test_register_with_a_callable_and_make_kwargs_override_defaults(clean_registry):
    register("testpkg/echo-v1", entry_point=EchoEnv, kwargs={"size": 5, "greeting": "hi"})
    env = make("testpkg/echo-v1", size=7)
    assert (env.num_tasks, env.greeting) == (7, "hi")
    assert spec("testpkg/echo-v1").kwargs == {"size": 5, "greeting": "hi"}  # the spec is not changed by make


def test_registering_an_id_twice_is_an_error(clean_registry):
    register("testpkg/echo-v0", entry_point=EchoEnv)
    with pytest.raises(ValueError, match="already registered"):
        register("testpkg/echo-v0", entry_point=f"{__name__}:EchoEnv")
    with pytest.raises(ValueError, match="already registered"):
        register("textworld/demo-v0", entry_point=EchoEnv)  # built-ins are protected the same way


@pytest.mark.parametrize("env_id", ["echo-v0", "testpkg/echo", "testpkg_echo_v0", ""])
def test_malformed_id_is_rejected(clean_registry, env_id: str):
    with pytest.raises(ValueError, match="must look like 'namespace/name-v0'"):
        register(env_id, entry_point=EchoEnv)
    assert env_id not in clean_registry


@pytest.mark.parametrize("env_id", ["testpkg/echo-v", "testpkg/echo-vX", "testpkg/-v0", "a/b/c-v0", "/echo-v0"])
def test_id_without_namespace_name_and_version_number_is_rejected(clean_registry, env_id: str):
    with pytest.raises(ValueError, match="must look like"):
        register(env_id, entry_point=EchoEnv)


def test_unknown_id_suggests_close_matches(clean_registry):
    with pytest.raises(UnknownEnvError) as caught:
        make("textworld/demo-v1")
    message = str(caught.value)
    assert "unknown env id 'textworld/demo-v1'" in message
    assert "did you mean textworld/demo-v0" in message
    assert "agent-rl envs" in message
    assert isinstance(caught.value, KeyError)  # callers catching KeyError keep working


def test_unknown_id_with_nothing_close_gives_no_suggestion(clean_registry):
    with pytest.raises(UnknownEnvError) as caught:
        spec("zzz/qqq-v9")
    assert "did you mean" not in str(caught.value)


def test_discovery_lists_the_builtin_textworld_ids():
    ids = registered_ids()
    assert set(TEXTWORLD_IDS) <= set(ids)
    assert ids == sorted(ids)
    assert spec("textworld/demo-v0").entry_point == "agent_rl.envs.textworld.env:TextWorldEnv"
    assert spec("textworld/demo-v0").kwargs == {"suite": "demo"}


def test_discovery_runs_in_a_fresh_process_without_any_import_of_the_plugin():
    code = "from agent_rl.registry import registered_ids; print(' '.join(registered_ids()))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert set(TEXTWORLD_IDS) <= set(out.split())


def test_a_broken_plugin_is_reported_and_does_not_hide_the_others(monkeypatch, caplog):
    def good() -> None:
        register("plugin/good-v0", entry_point=EchoEnv)

    def broken() -> None:
        raise RuntimeError("plugin exploded")

    plugins = {"good": good, "broken": broken}
    eps = [EntryPoint(name, f"{__name__}:unused_{name}", registry.ENTRY_POINT_GROUP) for name in ("broken", "good")]
    monkeypatch.setattr(EntryPoint, "load", lambda self: plugins[self.name])
    monkeypatch.setattr(registry, "entry_points", lambda group: eps if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_discovered", False)
    with caplog.at_level(logging.WARNING, logger="agent_rl.registry"):
        assert registered_ids() == ["plugin/good-v0"]
    assert "broken" in caplog.text and "plugin exploded" in caplog.text
    assert registered_ids() == ["plugin/good-v0"]  # discovery ran once: no second warning, no duplicate error
    assert caplog.text.count("plugin exploded") == 1


def test_an_entry_point_that_builds_a_non_env_raises_type_error(clean_registry):
    register("testpkg/notenv-v0", entry_point=NotAnEnv)
    register("testpkg/notenv-v1", entry_point=f"{__name__}:NotAnEnv")
    for env_id in ("testpkg/notenv-v0", "testpkg/notenv-v1"):
        with pytest.raises(TypeError, match=f"{env_id}: entry point built a NotAnEnv, not an agent_rl TextEnv"):
            make(env_id)


@pytest.mark.parametrize(
    "target, error, message",
    [
        ("agent_rl.data.Step", ValueError, "must look like 'package.module:ClassName'"),
        ("agent_rl.data:", ValueError, "must look like 'package.module:ClassName'"),
        (":Step", ValueError, "must look like 'package.module:ClassName'"),
        ("agent_rl.data:NoSuchEnv", ValueError, "module 'agent_rl.data' has no 'NoSuchEnv'"),
        ("agent_rl.no_such_module:Env", ImportError, "agent_rl.no_such_module"),
    ],
)
def test_bad_entry_point_strings_give_clear_errors(clean_registry, target: str, error: type, message: str):
    with pytest.raises(error, match=message):
        load_entry_point(target)
    register("testpkg/bad-v0", entry_point=target)  # registration is data: the string is checked on make
    with pytest.raises(error, match=message):
        make("testpkg/bad-v0")


def test_make_from_a_module_class_string_needs_no_registration(clean_registry):
    env = make(f"{__name__}:EchoEnv", size=2)
    assert isinstance(env, EchoEnv) and env.num_tasks == 2
    assert f"{__name__}:EchoEnv" not in registered_ids()  # a one-off, not added to the registry
    with pytest.raises(ValueError, match="has no 'NoSuchEnv'"):
        make("agent_rl.data:NoSuchEnv")


def test_load_entry_point_returns_the_attribute():
    assert load_entry_point(f"{__name__}:EchoEnv") is EchoEnv
