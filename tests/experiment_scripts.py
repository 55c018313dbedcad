"""Load a script of experiments/ as a module, for tests that check its functions (the folder is no package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment(name: str) -> ModuleType:
    """`load_experiment("bench_credit")` executes experiments/bench_credit.py and returns it as a module."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses (and pickling for worker processes) look their module up here
    spec.loader.exec_module(module)
    return module
