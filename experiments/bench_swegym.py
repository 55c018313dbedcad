"""What a SWE-Gym episode costs on the local backend: workspace setup and grading, per built-in instance.

    python experiments/bench_swegym.py
    python experiments/bench_swegym.py --repeats 5

Per instance, the median over `--repeats` of:
- setup: `LocalBackend.start` (a sandbox workspace, a depth-1 fetch of the base commit, handing it to the
  sandbox uid) plus `close`, i.e. what `reset` adds to an episode;
- command: one `bash` action (`true`) through the sandbox (namespaces, mounts, uid drop, process start);
- grading: `evaluate_patch` with the gold patch (a fresh workspace, git apply of the patch and the test
  patch, pytest on the test files in the sandbox, swebench's parser and rule).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from agent_rl.envs.swegym.backends import LocalBackend
from agent_rl.envs.swegym.builtin import build_builtin
from agent_rl.envs.swegym.dataset import SWEInstance, load_instances
from agent_rl.envs.swegym.env import evaluate_patch
from agent_rl.tools.sandbox import SandboxLimits, isolation


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(backend: LocalBackend, instance: SWEInstance, repeats: int) -> tuple[float, float, float, bool]:
    """Setup, one command and gold grading times (medians), and whether every grading resolved."""
    setup = median_s(lambda: backend.start(instance).close(), repeats)
    workspace = backend.start(instance)
    command = median_s(lambda: workspace.run(["bash", "-c", "true"]), repeats)
    workspace.close()
    grades = []
    grading = median_s(lambda: grades.append(evaluate_patch(backend, instance, instance.patch)), repeats)
    return setup, command, grading, all(g.resolved for g in grades)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    jsonl, repos = build_builtin()
    backend = LocalBackend(repos, SandboxLimits(timeout_s=120))
    print(f"isolation: {isolation()}; median of {args.repeats} runs, seconds\n")
    print("| instance | setup | one command | grading (gold) | resolved |")
    print("|---|---|---|---|---|")
    rows = []
    for instance in load_instances(jsonl):
        row = measure(backend, instance, args.repeats)
        rows.append(row[:3])
        print(f"| {instance.instance_id} | {row[0]:.3f} | {row[1]:.3f} | {row[2]:.3f} | {row[3]} |")
    means = [statistics.mean(column) for column in zip(*rows, strict=True)]
    print(f"| mean | {means[0]:.3f} | {means[1]:.3f} | {means[2]:.3f} | |")


if __name__ == "__main__":
    main()
