"""The update on one process or on many: accelerate (DDP / FSDP / DeepSpeed) when the run was launched distributed.

Every rank holds the whole batch (the trainer gathers each rank's rollouts), so every rank knows the
token count of a mini-batch without a reduction. Each rank back-propagates its share of the rows, each
micro-batch's summed loss divided by (mini-batch tokens / ranks); the engines average gradients over
the ranks, so the step equals one process's token-mean step on the whole mini-batch.

A single process that was not launched distributed and asks for no mixed precision uses no accelerate
object at all: the same calls run as plain torch, bit for bit what the trainer did before scale-out.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch

from agent_rl.config import TrainSettings

T = TypeVar("T")


def launched_distributed() -> bool:
    """Started by `accelerate launch` / `torchrun` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Distributed:
    """The rank's view of the run: which rows it trains, and the collectives the update needs."""

    def __init__(self, accelerator: Any | None = None) -> None:
        self.accelerator = accelerator

    @classmethod
    def from_settings(cls, settings: TrainSettings) -> Distributed:
        if not launched_distributed() and settings.mixed_precision == "no":
            return cls()
        from accelerate import Accelerator  # the `dist` extra

        # without CUDA, ranks are CPU processes talking over gloo (as `accelerate launch --cpu`)
        return cls(Accelerator(mixed_precision=settings.mixed_precision, cpu=not torch.cuda.is_available()))

    # -- where this process stands -----------------------------------------------------------------

    @property
    def rank(self) -> int:
        return 0 if self.accelerator is None else self.accelerator.process_index

    @property
    def world(self) -> int:
        return 1 if self.accelerator is None else self.accelerator.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shards_parameters(self) -> bool:
        """FSDP or DeepSpeed ZeRO-3: no rank holds the whole model outside the engine's collectives."""
        if self.accelerator is None:
            return False
        kind = str(self.accelerator.distributed_type)
        if kind.endswith("FSDP"):
            return True
        plugin = self.accelerator.state.deepspeed_plugin
        return kind.endswith("DEEPSPEED") and plugin is not None and plugin.zero_stage == 3

    # -- the model -----------------------------------------------------------------------------------

    def prepare(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        """The engine-wrapped model and optimizer (unchanged on a plain process)."""
        if self.accelerator is None:
            return model, optimizer
        return self.accelerator.prepare(model, optimizer)

    def unwrap(self, model: Any) -> torch.nn.Module:
        return model if self.accelerator is None else self.accelerator.unwrap_model(model)

    def state_dict(self, model: Any) -> dict[str, torch.Tensor] | None:
        """The full weights for saving; a collective on every rank under FSDP / ZeRO-3, None where not needed."""
        if self.accelerator is None or not self.shards_parameters:
            return None
        return self.accelerator.get_state_dict(model)

    # -- one optimizer step --------------------------------------------------------------------------

    def micro_batches(self, num_rows: int, micro_batch_rows: int) -> list[list[int] | None]:
        """This rank's micro-batches of a mini-batch's rows; None pads it to the count every rank runs.

        Ranks take rows r, r + W, ...; all run the same number of forward/backward passes, because
        FSDP and ZeRO-3 gather parameters in every forward, a collective no rank may skip.
        """
        mine = list(range(self.rank, num_rows, self.world))
        steps = max(1, math.ceil(math.ceil(num_rows / self.world) / micro_batch_rows))
        chunks: list[list[int] | None] = [mine[i:i + micro_batch_rows] for i in range(0, len(mine), micro_batch_rows)]
        return chunks + [None] * (steps - len(chunks))

    @contextlib.contextmanager
    def micro_step(self, model: Any, last: bool) -> Iterator[None]:
        """Accumulate gradients locally; only the last micro-batch of a step communicates (and, on DeepSpeed, steps)."""
        if self.accelerator is None:
            yield
            return
        # accelerate reads this flag to tell DeepSpeed where the accumulation boundary is; its optimizer
        # wrapper skips step/zero_grad away from the boundary
        self.accelerator.gradient_state._set_sync_gradients(last)
        with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        if self.accelerator is None:
            loss.backward()
        else:
            self.accelerator.backward(loss)

    def clip_grad_norm(self, model: Any, max_norm: float) -> float:
        """The gradient norm before clipping (DeepSpeed clips inside its step and reports its own)."""
        if self.accelerator is None:
            return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
        norm = self.accelerator.clip_grad_norm_(model.parameters(), max_norm)
        return float("nan") if norm is None else float(norm)

    def sum_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """Each stat summed over the ranks (every rank weighted its share by the global token count)."""
        if self.accelerator is None:
            return stats
        names = sorted(stats)
        values = torch.tensor([stats[n] for n in names], dtype=torch.float64, device=self.accelerator.device)
        return dict(zip(names, self.accelerator.reduce(values, "sum").tolist(), strict=True))

    # -- rollouts ------------------------------------------------------------------------------------

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share of `items` (every W-th, from its rank)."""
        return list(items[self.rank::self.world])

    def gather(self, items: list[T]) -> list[T]:
        """Every rank's `items`, concatenated in rank order, on every rank."""
        if self.accelerator is None:
            return items
        from accelerate.utils import gather_object

        return gather_object(items)

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's `tensor` on every rank (shuffles must agree: each rank's RNG has drawn differently)."""
        if self.accelerator is None:
            return tensor
        from accelerate.utils import broadcast

        return broadcast(tensor.to(self.accelerator.device)).cpu()

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()
