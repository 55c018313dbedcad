"""How many intra-op threads torch uses: the cores this process may run on, or what the config says.

torch's default is every core of the machine, even those a container or `taskset` keeps from us, and
on a machine shared with other jobs more threads than free cores make each step slower, not faster
(experiments/bench_threads.py measures it). So the default is the process's CPU affinity, and
`train.num_threads` (or OMP_NUM_THREADS) caps it.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def choose_num_threads(requested: int = 0, environ: dict[str, str] | None = None) -> int:
    """`requested` if > 0, else OMP_NUM_THREADS if set, else `available_cores()`; never above the cores we have."""
    environ = os.environ if environ is None else environ
    if requested < 0:
        raise ValueError(f"train.num_threads must be >= 0 (0 = one per available core), got {requested}")
    if requested == 0 and environ.get("OMP_NUM_THREADS", "").isdigit() and int(environ["OMP_NUM_THREADS"]) > 0:
        requested = int(environ["OMP_NUM_THREADS"])
    cores = available_cores()
    return min(requested, cores) if requested > 0 else cores


def apply_num_threads(requested: int = 0) -> int:
    """Set torch's intra-op thread count once, at the start of train / eval; returns the count set."""
    import torch  # here, so that the CLI's listings start without loading torch

    threads = choose_num_threads(requested)
    torch.set_num_threads(threads)
    return threads
