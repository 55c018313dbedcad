"""Environment registry: registration is data (an `EnvSpec`), kept apart from construction.

    register("mypkg/maze-v0", entry_point="mypkg.maze:MazeEnv", kwargs={"size": 5})
    env = make("mypkg/maze-v0", size=7)
    env = make("mypkg.maze:MazeEnv", size=7)  # no registration needed for a one-off

Other packages add environments without touching this repository by declaring a callable in the
``agent_rl.envs`` entry-point group that calls `register`; the built-in environments are registered
through that same group. Discovery runs once, lazily, the first time the registry is read, so it
happens in every process (worker processes included) that looks an id up.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from agent_rl.env_api import TextEnv

ENTRY_POINT_GROUP = "agent_rl.envs"
ENV_ID = re.compile(r"[\w.-]+/[\w.-]+-v\d+")  # namespace/name-vN; a whole id must match
logger = logging.getLogger(__name__)


class UnknownEnvError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class EnvSpec:
    """How to build an env: an importable entry point plus default keyword arguments."""

    id: str
    entry_point: str | Callable[..., TextEnv]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def make(self, **kwargs: Any) -> TextEnv:
        factory = self.factory()
        arguments = {**self.kwargs, **kwargs}
        try:  # a mistyped argument is the user's mistake: name it, not a TypeError from inside the factory
            inspect.signature(factory).bind(**arguments)
        except TypeError as err:
            raise ValueError(f"{self.id}: {err}; it takes {self.parameters()}") from err
        env = factory(**arguments)
        if not isinstance(env, TextEnv):
            raise TypeError(f"{self.id}: entry point built a {type(env).__name__}, not an agent_rl TextEnv")
        return env

    def factory(self) -> Callable[..., TextEnv]:
        return load_entry_point(self.entry_point) if isinstance(self.entry_point, str) else self.entry_point

    def parameters(self) -> list[str]:
        """The keyword arguments the env's factory takes ('**kwargs' where it takes any)."""
        return [f"**{p.name}" if p.kind is p.VAR_KEYWORD else p.name
                for p in inspect.signature(self.factory()).parameters.values() if p.kind is not p.VAR_POSITIONAL]

    def takes(self, argument: str) -> bool:
        parameters = self.parameters()
        return argument in parameters or any(p.startswith("**") for p in parameters)


_REGISTRY: dict[str, EnvSpec] = {}
_discovered = False


def load_entry_point(target: str) -> Callable[..., Any]:
    """Import `pkg.mod:Attr`, with an error that says what to write when the string is off."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entry point {target!r} must look like 'package.module:ClassName'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ValueError(f"entry point {target!r}: module {module_name!r} has no {attr!r}") from err


def register(
    id: str, entry_point: str | Callable[..., TextEnv], kwargs: dict[str, Any] | None = None, description: str = ""
) -> None:
    """Add an environment id. Ids look like ``namespace/name-vN``; registering an id twice is an error."""
    if not isinstance(id, str) or not ENV_ID.fullmatch(id):
        raise ValueError(f"env id {id!r} must look like 'namespace/name-v0' (letters, digits, '_', '.', '-'; "
                         "one '/'; a version number)")
    if id in _REGISTRY:
        raise ValueError(f"env id {id!r} is already registered (entry point {_REGISTRY[id].entry_point!r})")
    _REGISTRY[id] = EnvSpec(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}), description=description)


def discover() -> None:
    """Run every ``agent_rl.envs`` entry point once. A broken plugin is reported, not fatal."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()()
        except Exception as err:  # noqa: BLE001 - one broken plugin must not hide every other env
            logger.warning("env plugin %r (%s) failed to register: %s", ep.name, ep.value, err)


def registered_ids() -> list[str]:
    discover()
    return sorted(_REGISTRY)


def spec(id: str) -> EnvSpec:
    """The spec registered as `id`; a plain ``pkg.mod:Class`` string is its own unregistered spec."""
    discover()
    if id not in _REGISTRY and ":" in id:
        return EnvSpec(id=id, entry_point=id, description="built from its entry point")
    if id not in _REGISTRY:
        close = difflib.get_close_matches(id, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownEnvError(f"unknown env id {id!r}{hint} (`agent-rl envs` lists them all)")
    return _REGISTRY[id]


def make(id: str, **kwargs: Any) -> TextEnv:
    """Build the env registered as `id`; `kwargs` override the registered defaults."""
    return spec(id).make(**kwargs)
