"""Real SWE-bench rows graded end to end here: environment set-up, the gold patch and the empty patch.

    python experiments/swebench_rows.py --rows ../shared/data/swebench/sweagent_swe-bench-dev-easy.json \
        --repos-dir <clones as owner__name> --out experiments/results/swebench_rows/rows.jsonl

For each distinct row (in file order): build (or reuse) its repo + version environment from swebench's spec
(`agent_rl.envs.swegym.environments`, setup="swebench"), then grade the gold patch and the empty patch in
fresh sandboxed workspaces with the spec's test command and swebench's parser and rule. One JSONL record a
row (set-up seconds, whether the environment was built or reused, grading seconds, both grades, the
FAIL_TO_PASS / PASS_TO_PASS tests that went wrong, or the error that stopped it), appended as it finishes;
a row already in `--out` is not run again. Prints the Markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from agent_rl.envs.swegym.env import SWEGymEnv, evaluate_patch
from agent_rl.envs.swegym.environments import MARKER, build_info

from agent_rl.io import append_jsonl, read_jsonl


def failures(report: dict) -> list[str]:
    """The tests of a swebench report that did not do what the row says they should."""
    tests = report.get("tests_status", report)
    return [test for kind in ("FAIL_TO_PASS", "PASS_TO_PASS") for test in tests.get(kind, {}).get("failure", [])]


def grade_row(env: SWEGymEnv, index: int) -> dict:
    instance = env.instances[index]
    assert env.environments is not None
    venv = env.environments.path(instance)
    record = {"instance_id": instance.instance_id, "repo": instance.repo, "version": instance.extra.get("version"),
              "fail_to_pass": len(instance.fail_to_pass), "pass_to_pass": len(instance.pass_to_pass)}
    reused = (venv / MARKER).is_file()
    start = time.perf_counter()
    try:
        env.environments.ensure(instance)
    except Exception as err:  # noqa: BLE001 - reported, not hidden: the row did not work, and why
        return {**record, "setup_s": round(time.perf_counter() - start, 1), "error": f"set-up: {err}"[:2000]}
    info = build_info(venv)
    record.update(setup_s=round(time.perf_counter() - start, 1), env_reused=reused, env_build_s=info["build_s"],
                  python=info["python"], python_asked=info["python_asked"],
                  requirements_not_served=info.get("requirements_not_served", []))
    command = env.instance_test_cmd(instance)
    for name, patch in (("gold", instance.patch), ("empty", "")):
        start = time.perf_counter()
        try:
            grade = evaluate_patch(env.backend, instance, patch, command, timeout_s=env.grade_timeout_s)
        except Exception as err:  # noqa: BLE001 - the grade that could not be made is reported
            record[f"{name}_error"] = str(err)[:2000]
            continue
        record.update({f"{name}_s": round(time.perf_counter() - start, 1), f"{name}_status": grade.status,
                       f"{name}_wrong_n": len(failures(grade.report)), f"{name}_wrong": failures(grade.report)[:20]})
    return record


def table(records: list[dict]) -> str:
    lines = ["| instance | repo version | env set-up (s) | gold: grade (s) | empty: grade | claimed |",
             "|---|---|---|---|---|---|"]
    for r in records:
        setup = "reused" if r.get("env_reused") else f"{r.get('env_build_s', r.get('setup_s'))}"
        claimed = r.get("gold_status") == "RESOLVED_FULL" and r.get("empty_status") not in (None, "RESOLVED_FULL")
        gold = f"{r.get('gold_status', r.get('gold_error', r.get('error', '-')))[:80]} ({r.get('gold_s', '-')})"
        empty = r.get("empty_status", r.get("empty_error", "-"))[:80]
        lines.append(f"| {r['instance_id']} | {r['repo']} {r['version']} | {setup} | {gold} | {empty} | "
                     f"{'yes' if claimed else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", required=True, help="a SWE-bench .json / .jsonl / .parquet file")
    parser.add_argument("--repos-dir", required=True, help="clones of the rows' repos as <owner>__<name>")
    parser.add_argument("--envs-dir", default=None, help="where the environments go (default <cache>/swe-envs)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/swebench_rows/rows.jsonl"))
    parser.add_argument("--instances", nargs="+", default=None, help="grade only these instance ids")
    parser.add_argument("--grade-timeout", type=float, default=1800.0, help="seconds the grading tests may run")
    args = parser.parse_args(argv)
    env = SWEGymEnv(path=args.rows, repos_dir=args.repos_dir, setup="swebench", envs_dir=args.envs_dir,
                    grade_timeout_s=args.grade_timeout, timeout_s=args.grade_timeout, memory_mb=8192)
    done = {r["instance_id"] for r in read_jsonl(args.out)} if args.out.exists() else set()
    for index, instance in enumerate(env.instances):
        if instance.instance_id not in done and (args.instances is None or instance.instance_id in args.instances):
            record = grade_row(env, index)
            append_jsonl(args.out, [record])
            print(record, flush=True)
    print(table(read_jsonl(args.out)))


if __name__ == "__main__":
    main()
