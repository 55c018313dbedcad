"""Grade a patch the SWE-bench way, with the `swebench` package's own log parser and resolution rule.

    script = eval_script(instance, test_cmd)   # run in a fresh checkout, the model patch on stdin
    grade = grade_log(instance, log)           # Grade(status="RESOLVED_FULL", reward=1.0, ...)

The script applies the model patch (refused patches stop it: not resolved), puts the files the test patch
touches back to the base commit (so the model cannot rewrite the tests it is judged by), applies the test
patch, and runs the test command on those test files. The log between the markers is parsed by
swebench's parser for the repo (pytest's ``-rA`` summary for repos swebench does not know), and
`swebench.harness.grading` decides: RESOLVED_FULL when every FAIL_TO_PASS and PASS_TO_PASS test passes,
RESOLVED_PARTIAL when PASS_TO_PASS all pass and some FAIL_TO_PASS do. Reward 1 for RESOLVED_FULL; with
partial credit, the share of FAIL_TO_PASS tests that pass once every PASS_TO_PASS test does.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from agent_rl.envs.swegym.dataset import SWEInstance

DEFAULT_TEST_CMD = "python -m pytest -rA -p no:cacheprovider"
START, END = ">>>>> Start Test Output", ">>>>> End Test Output"  # swebench's markers
APPLY_FAILED = "AGENT_RL_PATCH_APPLY_FAILED"
TEST_PATCH_FAILED = "AGENT_RL_TEST_PATCH_APPLY_FAILED"


def eval_script(instance: SWEInstance, test_cmd: str = DEFAULT_TEST_CMD) -> str:
    """The bash script that grades the patch it reads on stdin, run at the repo root of a fresh checkout."""
    files = " ".join(shlex.quote(f) for f in instance.test_files)
    base = shlex.quote(instance.base_commit)
    return "\n".join([
        # --allow-empty: an empty diff (nothing changed) is graded by running the tests, not refused
        "git -c core.hooksPath=/dev/null apply --allow-empty --whitespace=nowarn - || { echo " + APPLY_FAILED
        + "; exit 0; }",
        # the test files go back to the base commit (those that exist there), then the test patch
        f"for f in {files}; do git cat-file -e {base}:\"$f\" 2>/dev/null && git checkout -q {base} -- \"$f\"; done",
        f"git apply --whitespace=nowarn - <<'AGENT_RL_TEST_PATCH' || {{ echo {TEST_PATCH_FAILED}; exit 0; }}",
        instance.test_patch.rstrip("\n"),
        "AGENT_RL_TEST_PATCH",
        f"echo '{START}'",
        f"{test_cmd} {files}",
        f"echo '{END}'",
    ]) + "\n"


@dataclass(frozen=True)
class Grade:
    status: str  # swebench's ResolvedStatus value, or "PATCH_APPLY_FAILED" / "TESTS_DID_NOT_RUN"
    reward: float
    report: dict[str, Any] = field(default_factory=dict)  # swebench's FAIL_TO_PASS / PASS_TO_PASS success/failure

    @property
    def resolved(self) -> bool:
        return self.status == "RESOLVED_FULL"


def _parser(repo: str):
    from swebench.harness.log_parsers.python import MAP_REPO_TO_PARSER_PY, parse_log_pytest

    return MAP_REPO_TO_PARSER_PY.get(repo, parse_log_pytest)


def grade_log(instance: SWEInstance, log: str, partial_credit: bool = False) -> Grade:
    """The grade of an `eval_script` log, by swebench's parser and its FAIL_TO_PASS / PASS_TO_PASS rule."""
    try:
        from swebench.harness.constants import FAIL_TO_PASS, PASS_TO_PASS, ResolvedStatus
        from swebench.harness.grading import (
            compute_fail_to_pass,
            get_eval_tests_report,
            get_resolution_status,
        )
        from swebench.types import TestSpec
    except ImportError as err:
        raise ImportError("grading SWE instances needs swebench: pip install 'agent-rl[swe]'") from err
    if APPLY_FAILED in log or TEST_PATCH_FAILED in log:
        return Grade("PATCH_APPLY_FAILED", 0.0)
    if START not in log or END not in log:
        return Grade("TESTS_DID_NOT_RUN", 0.0)
    test_output = log.split(START, 1)[1].split(END, 1)[0]
    spec = TestSpec(instance_id=instance.instance_id, image="", eval_script_list=[], repo=instance.repo,
                    version=str(instance.extra.get("version", "")), FAIL_TO_PASS=list(instance.fail_to_pass),
                    PASS_TO_PASS=list(instance.pass_to_pass))
    status_map = _parser(instance.repo)(test_output, spec)
    report = get_eval_tests_report(status_map, {FAIL_TO_PASS: list(instance.fail_to_pass),
                                                PASS_TO_PASS: list(instance.pass_to_pass)})
    status = get_resolution_status(report)
    if status == ResolvedStatus.FULL.value:
        reward = 1.0
    elif partial_credit and status == ResolvedStatus.PARTIAL.value:
        reward = float(compute_fail_to_pass(report))
    else:
        reward = 0.0
    return Grade(status, reward, report)
