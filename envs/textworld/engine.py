"""The one place that imports the TextWorld engine, so that a missing install fails with the fix."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

INSTALL_HINT = "pip install 'agent-rl[textworld]'"


def load_textworld() -> ModuleType:
    """Import `textworld` (an optional dependency of agent-rl) or say how to install it."""
    try:
        return importlib.import_module("textworld")
    except ImportError as err:
        raise ImportError(f"the TextWorld environments need the textworld package: {INSTALL_HINT}") from err


@contextmanager
def quiet_engine() -> Iterator[None]:
    """Silence Jericho's warnings about games it has no bindings for.

    Jericho (the Z-machine under TextWorld) warns that it cannot read the score, walkthrough or valid
    actions of any game it does not know, which is every generated game. TextWorld reads those from
    the game's .json instead, so the warnings are noise here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="jericho")
        yield
