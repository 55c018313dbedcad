"""experiments/credit_arena.py: the report's arithmetic on a hand-computed case, and --quick end to end."""

from __future__ import annotations

import csv
import json
import math

import pytest
from experiment_scripts import load_experiment

from agent_rl.credit.diagnostics import DIAGNOSTICS

arena = load_experiment("credit_arena")


def result(method: str, seed: int, budget: int, success: float, **diagnostics: float) -> dict:
    return {"method": method, "seed": seed, "budget": budget, "turns": budget + 10, "iterations": 2,
            "success": success, "train_seconds": (budget + 10) / 100, "eval_seconds": 1.0,
            **{name: diagnostics.get(name, 0.5) for name in DIAGNOSTICS}}


# GRPO 0.25, 0.5 on seeds 0, 1; GiGPO 0.5, 1.0: paired differences 0.25 and 0.5, resample means .25/.375/.5
HAND = [result("grpo", 0, 100, 0.25), result("grpo", 1, 100, 0.5),
        result("gigpo", 0, 100, 0.5, zero_advantage_fraction=0.2), result("gigpo", 1, 100, 1.0,
                                                                        zero_advantage_fraction=0.4)]


def test_summary_arithmetic_by_hand():
    summaries = {s.method: s for s in arena.summarise(HAND)}
    gigpo, grpo = summaries["gigpo"], summaries["grpo"]
    assert tuple(grpo.success) == pytest.approx((0.375, 0.25, 0.5, 2)) and grpo.vs_baseline is None
    assert tuple(gigpo.success) == pytest.approx((0.75, 0.5, 1.0, 2))
    assert tuple(gigpo.vs_baseline) == pytest.approx((0.375, 0.25, 0.5, 2))
    assert gigpo.diagnostics["zero_advantage_fraction"] == pytest.approx(0.3)
    assert gigpo.seconds_per_kstep == pytest.approx(10.0)  # 1.1 s over 110 turns


def test_paired_comparison_skips_seeds_grpo_did_not_run():
    summaries = {s.method: s for s in arena.summarise([*HAND, result("gigpo", 7, 100, 0.0)])}
    assert summaries["gigpo"].success.n == 3 and summaries["gigpo"].vs_baseline.n == 2


def test_report_table_rows_cells(tmp_path):
    arena.write_report(tmp_path, HAND, ["hand-made case"])
    table = (tmp_path / "table.md").read_text()
    assert "| gigpo | 75.0 [50.0, 100.0] | +37.5 [+25.0, +50.0] | 2 | 100 | 10 | 0.30 |" in table
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert len(rows) == 4 and {r["method"] for r in rows} == {"grpo", "gigpo"}
    assert (tmp_path / "learning_curves.png").stat().st_size > 0 and (tmp_path / "diagnostics.png").exists()


def test_report_rows_at_each_methods_longest_budget_all_seeds_reached(tmp_path):
    extended = [*HAND, result("grpo", 0, 200, 0.5), result("grpo", 1, 200, 0.75), result("gigpo", 0, 200, 1.0)]
    arena.write_report(tmp_path, extended, ["hand-made case"])
    final = (tmp_path / "table.md").read_text().split("## Every checkpoint")[0]
    assert "| grpo | 62.5 [50.0, 75.0] | – | 2 | 200 |" in final  # extended on both seeds
    assert "| gigpo | 75.0 [50.0, 100.0] | +37.5 [+25.0, +50.0] | 2 | 100 |" in final  # seed 1 stopped at 100


@pytest.mark.parametrize(("budget", "checkpoints", "expected"), [(1000, 4, (250, 500, 750, 1000)), (10, 3, (3, 7, 10))])
def test_budget_checkpoints(budget, checkpoints, expected):
    assert arena.budget_checkpoints(budget, checkpoints) == expected


def test_unknown_method_is_refused(capsys):
    with pytest.raises(SystemExit):
        arena.parse_args(["--methods", "grpo", "nope"])
    assert "unknown method(s) ['nope']" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_arena_end_to_end_and_resume(tmp_path):
    out = tmp_path / "arena"
    arena.main(["--quick", "--out", str(out)])
    rows = list(csv.DictReader((out / "report" / "table.csv").open()))
    assert sorted((r["method"], r["budget"]) for r in rows) == [("gigpo", "0"), ("gigpo", "16"), ("grpo", "0"),
                                                                  ("grpo", "16")]
    trained = [r for r in rows if r["budget"] == "16"]
    assert all(int(r["turns"]) >= 16 and not math.isnan(float(r["step_group_size"])) for r in trained)
    written = out / "grpo" / "seed-0" / "results" / "budget-0000016.json"
    before = json.loads(written.read_text())
    arena.main(["--quick", "--out", str(out)])  # everything is there: nothing is trained or evaluated again
    assert json.loads(written.read_text()) == before
    assert "| grpo |" in (out / "report" / "table.md").read_text()
    # a longer budget on the same spacing extends the runs; a budget the runs have trained past is refused
    arena.main(["--quick", "--out", str(out), "--methods", "grpo", "--budget", "80", "--checkpoints", "2"])
    assert json.loads(written.read_text()) == before
    with pytest.raises(ValueError, match="budget checkpoints changed"):
        arena.main(["--quick", "--out", str(out), "--methods", "grpo", "--budget", "30"])
