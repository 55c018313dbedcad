"""Checkpoints that resume exactly: weights, optimizer, every RNG, the step counter, the collector state.

Each checkpoint is a directory written under a temporary name and renamed into place in one step,
so a kill mid-save leaves the previous checkpoint intact and never a half one.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from agent_rl.io import atomic_directory

_NAME = re.compile(r"^iter-(\d{6})$")


@dataclass
class TrainerState:
    iteration: int  # iterations completed
    sampler: dict[str, Any]
    method: dict[str, Any] = field(default_factory=dict)  # the credit method's state_dict() (models, buffers)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Path, state: TrainerState, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    optimizer: torch.optim.Optimizer, keep: int,
                    state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """`state_dict`: the full weights where the model itself holds only a shard (FSDP / ZeRO-3)."""
    final = root / f"iter-{state.iteration:06d}"
    with atomic_directory(final) as tmp:
        model.save_pretrained(tmp / "model", state_dict=state_dict)
        tokenizer.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        torch.save(state.method, tmp / "method.pt")
        (tmp / "state.json").write_text(json.dumps({"iteration": state.iteration, "sampler": state.sampler}))
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories of an interrupted save are ignored)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def load_checkpoint(path: Path, optimizer: torch.optim.Optimizer) -> TrainerState:
    """Restore optimizer and RNG in place; the caller has loaded the weights from `path / "model"`."""
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    data = json.loads((path / "state.json").read_text())
    method_file = path / "method.pt"
    method = torch.load(method_file, weights_only=False) if method_file.exists() else {}
    return TrainerState(iteration=data["iteration"], sampler=data["sampler"], method=method)
