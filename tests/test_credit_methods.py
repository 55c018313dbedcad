"""RLOO, HGPO and SALT: hand-computed groups, edge cases, properties, and the per-row references.

Expected numbers are worked out by hand in the comments (G = discounted step returns, "Dr" = the
Dr.GRPO advantage R − mean). Every row the hand computation says is 0 must be exactly 0 (`check`).
The per-row reference implementations live in experiments/bench_credit.py, which times them against
the vectorised methods; here they cross-check the vectorised methods on random batches.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from experiment_scripts import load_experiment
from test_credit import R2, check

from agent_rl.credit import make_credit
from agent_rl.credit.stats import combine_codes, dense_codes, first_per_segment
from agent_rl.data import Step, StepRows, Trajectory

bench = load_experiment("bench_credit")


def ep(
    group: str,
    name: str,
    rewards: list[float],
    anchors: list[str] | None = None,
    actions: list[str | None] | None = None,
    truncated: bool = False,
) -> Trajectory:
    """An episode; outcome = the sum of its rewards. Default anchors are unique to the trajectory and the
    default action is "act"; an action of None is an invalid (unparsed) step."""
    anchors = anchors or [f"{name}:{t}" for t in range(len(rewards))]
    actions = actions or ["act"] * len(rewards)
    steps = [
        Step(obs="", anchor=s, prompt="", response="", action=a, reward=r, valid=a is not None)
        for r, s, a in zip(rewards, anchors, actions, strict=True)
    ]
    return Trajectory(
        task_id=group,
        group_id=group,
        traj_id=name,
        steps=steps,
        outcome=float(sum(rewards)),
        truncated=truncated,
    )


def run(name: str, trajectories: list[Trajectory], **overrides: object) -> np.ndarray:
    return make_credit(name, **overrides)(StepRows.from_trajectories(trajectories))


# --- RLOO ----------------------------------------------------------------------------------------

RLOO_CASES = [
    pytest.param(
        # R = 1, 0, 0: a: 1 − (0 + 0)/2 = 1; b, c: 0 − (1 + 0)/2 = −0.5. One score per trajectory: a's two
        # steps both get 1 (over step rows a would count twice).
        {},
        [ep("g", "a", [0.0, 1.0]), ep("g", "b", [0.0]), ep("g", "c", [0.0])],
        [1.0, 1.0, -0.5, -0.5],
        id="three-trajectories",
    ),
    pytest.param(
        # N = 2: each is baselined by the other: 3 − 1 = 2, 1 − 3 = −2 (= 2/1 · (R − mean 2)).
        {},
        [ep("g", "a", [3.0]), ep("g", "b", [1.0])],
        [2.0, -2.0],
        id="pair",
    ),
    pytest.param(
        # All R = 0.1: exact zeros.
        {},
        [ep("g", n, [0.1]) for n in "abc"],
        [0.0, 0.0, 0.0],
        id="all-equal-exact-zeros",
    ),
    pytest.param(
        # One trajectory: no other sample; "zero" → 0.
        {},
        [ep("g", "a", [0.0, 2.0])],
        [0.0, 0.0],
        id="singleton-zero",
    ),
    pytest.param(
        # "raw" (iStar): the outcome 2 itself.
        {"singleton": "raw"},
        [ep("g", "a", [0.0, 2.0])],
        [2.0, 2.0],
        id="singleton-raw",
    ),
    pytest.param(
        # a: R = 1, b: R = 0 → ±1; a's step 1 is invalid: 1 − 0.1 = 0.9 on that row only.
        {},
        [ep("g", "a", [0.0, 1.0], actions=["act", None]), ep("g", "b", [0.0])],
        [1.0, 0.9, -1.0],
        id="invalid-penalty-on-its-row",
    ),
    pytest.param(
        # g1: R = 1, 0 → ±1. g2: R = 10, 20 → ∓10. Interleaved in the batch; groups never mix.
        {},
        [ep("g1", "a", [1.0]), ep("g2", "c", [10.0]), ep("g1", "b", [0.0]), ep("g2", "d", [20.0])],
        [1.0, -10.0, -1.0, 10.0],
        id="groups-interleaved",
    ),
]


@pytest.mark.parametrize("overrides, trajectories, expected", RLOO_CASES)
def test_rloo_hand_computed(overrides: dict, trajectories: list[Trajectory], expected: list[float]) -> None:
    check(run("rloo", trajectories, **overrides), expected)


def test_rloo_is_scaled_dr_grpo() -> None:
    """A_RLOO = N/(N−1) · A_Dr.GRPO per group (N = 5 and N = 2 here; singletons are 0 in both)."""
    batch = bench.random_batch(3, 5, (1, 8), seed=3, name="five")
    batch += bench.random_batch(2, 2, (1, 8), seed=4, name="two") + bench.random_batch(1, 1, (1, 8), seed=5)
    rows = StepRows.from_trajectories(batch)
    n = np.array([Counter(t.group_id for t in batch)[t.group_id] for t in batch for _ in t.steps])
    rloo = make_credit("rloo", invalid_penalty_coef=0.0)(rows)
    dr = make_credit("grpo", norm_by_std=False, invalid_penalty_coef=0.0)(rows)
    np.testing.assert_allclose(
        rloo, np.where(n > 1, n / np.maximum(n - 1, 1), 0.0) * dr, rtol=1e-12, atol=1e-15
    )
    assert np.any(rloo != 0)


# --- HGPO ----------------------------------------------------------------------------------------

# Three trajectories used by several HGPO cases (γ = 0.5): G_a = [0 + 0.5·1, 1] = [0.5, 1], G_b = G_c = [0,
# 0].
HISTORY = [
    ep("g", "a", [0.0, 1.0], ["x", "y"]),
    ep("g", "b", [0.0, 0.0], ["z", "y"]),
    ep("g", "c", [0.0, 0.0], ["x", "y"]),
]

HGPO_CASES = [
    pytest.param(
        # K = 0 (mean_norm): level 0 = GiGPO's anchor buckets. x = {a0 0.5, c0 0} → ±0.25; z = {b0} alone,
        # skipped; y = {1, 0, 0}, mean 1/3 → a1 2/3, b1 −1/3, c1 −1/3. One item each: A = a / (1 + ε).
        {"history_length": 0, "mode": "mean_norm", "gamma": 0.5},
        HISTORY,
        [0.25, 2 / 3, 0.0, -1 / 3, -0.25, -1 / 3],
        id="K0-mean-norm",
    ),
    pytest.param(
        # K = 1 adds level 1 for t ≥ 1: (x, y) = {a1 1, c1 0} → ±0.5; (z, y) = {b1} alone. Weights (k + 1): 1,
        # 2. a1 = (1·2/3 + 2·0.5)/3 = 5/9; c1 = (1·(−1/3) + 2·(−0.5))/3 = −4/9; the rest as K = 0.
        {"history_length": 1, "mode": "mean_norm", "gamma": 0.5},
        HISTORY,
        [0.25, 5 / 9, 0.0, -1 / 3, -0.25, -4 / 9],
        id="K1-paper-weights",
    ),
    pytest.param(
        # weight_offset 2 (recipe): weights 2, 3. a1 = (2·2/3 + 3·0.5)/5 = 0.566667; c1 = (2·(−1/3) +
        # 3·(−0.5))/5 = −0.433333. Single-item rows are unchanged (the weight cancels).
        {"history_length": 1, "mode": "mean_norm", "gamma": 0.5, "weight_offset": 2},
        HISTORY,
        [0.25, 0.5666667, 0.0, -1 / 3, -0.25, -0.4333333],
        id="K1-recipe-weights",
    ),
    pytest.param(
        # α = 0: uniform weights. a1 = (2/3 + 0.5)/2 = 0.583333; c1 = (−1/3 − 0.5)/2 = −0.416667.
        {"history_length": 1, "mode": "mean_norm", "gamma": 0.5, "alpha": 0.0},
        HISTORY,
        [0.25, 0.5833333, 0.0, -1 / 3, -0.25, -0.4166667],
        id="K1-uniform-weights",
    ),
    pytest.param(
        # mean_std_norm, population std. x = {0.5, 0}: std 0.25 → ±1 (the unbiased std would give ±r).
        # y = {1, 0, 0}: deviations 2/3, −1/3, −1/3, variance (4/9 + 1/9 + 1/9)/3 = 2/9, std 0.471405 →
        # a1 √2, b1 c1 −r. (x, y) = {1, 0} → ±1. a1 = (√2 + 2·1)/3 = 1.138071; c1 = (−r − 2)/3 = −0.902369.
        {"history_length": 1, "gamma": 0.5},
        HISTORY,
        [1.0, 1.1380712, 0.0, -R2, -1.0, -0.9023689],
        id="K1-mean-std-population",
    ),
    pytest.param(
        # base_group (mean_norm): episode item Dr = R − mean over R = 1, 0, 0: 2/3, −1/3, −1/3, weight 1. a0 =
        # (2/3 + 0.25)/2 = 0.458333; a1 = (2/3 + 2/3 + 2·0.5)/4 = 0.583333; b0 = −1/3 (episode item only); b1
        # = (−1/3 − 1/3)/2 = −1/3; c0 = (−1/3 − 0.25)/2 = −0.291667; c1 = (−1/3 − 1/3 − 2·0.5)/4 = −0.416667.
        {"history_length": 1, "mode": "mean_norm", "gamma": 0.5, "base_group": True},
        HISTORY,
        [0.4583333, 0.5833333, -1 / 3, -1 / 3, -0.2916667, -0.4166667],
        id="K1-base-group",
    ),
    pytest.param(
        # Zero items are dropped from the weights. γ = 0.5: G_a = [1, 2], G_b = [0.5, 1], G_c = [0, 0].
        # Level 0: x = {1, 0.5} → ±0.25; y = {2, 1, 0}, mean 1 → a1 +1, b1 exactly 0 (dropped), c1 −1.
        # Level 1: (x, y) = {a1 2, b1 1} → ±0.5. a1 = (1·1 + 2·0.5)/3 = 2/3; b1 = 2·(−0.5)/2 = −0.5
        # (−1/3 if the zero item kept its weight); c1 = −1; c0 = 0 (z alone).
        {"history_length": 1, "mode": "mean_norm", "gamma": 0.5},
        [
            ep("g", "a", [0.0, 2.0], ["x", "y"]),
            ep("g", "b", [0.0, 1.0], ["x", "y"]),
            ep("g", "c", [0.0, 0.0], ["z", "y"]),
        ],
        [0.25, 2 / 3, -0.25, -0.5, 0.0, -1.0],
        id="zero-items-dropped",
    ),
    pytest.param(
        # A lone trajectory revisiting s (γ = 0.5): G = [0.25, 0.5, 1]. Level 0: {0.25, 0.5, 1}, mean 7/12 →
        # −1/3, −1/12, 5/12. Level 1 (t ≥ 1): (s, s) = {0.5, 1} → ∓0.25. a0 = −1/3; a1 = (−1/12 − 2·0.25)/3 =
        # −0.194444; a2 = (5/12 + 2·0.25)/3 = 0.305556.
        {"history_length": 1, "mode": "mean_norm", "gamma": 0.5},
        [ep("g", "a", [0.0, 0.0, 1.0], ["s", "s", "s"])],
        [-1 / 3, -0.1944444, 0.3055556],
        id="repeated-anchor-lone-trajectory",
    ),
    pytest.param(
        # K = 2 but trajectories of 2 steps: level k exists only for t ≥ k, so this is the K = 1 case.
        {"history_length": 2, "mode": "mean_norm", "gamma": 0.5},
        HISTORY,
        [0.25, 5 / 9, 0.0, -1 / 3, -0.25, -4 / 9],
        id="K-limited-by-t",
    ),
    pytest.param(
        # Penalty after discounting (K = 0, mean_norm, γ = 0.5): G_a = [0.25, 0.5 − 0.1, 1], G_b = [0.25, 0.5,
        # 1]; s0 and s2 constant → 0; s1 = {0.4, 0.5} → ∓0.05.
        {"history_length": 0, "mode": "mean_norm", "gamma": 0.5},
        [
            ep("g", "a", [0.0, 0.0, 1.0], ["s0", "s1", "s2"], ["go", None, "go"]),
            ep("g", "b", [0.0, 0.0, 1.0], ["s0", "s1", "s2"]),
        ],
        [0.0, -0.05, 0.0, 0.0, 0.05, 0.0],
        id="invalid-penalty-after-discounting",
    ),
    pytest.param(
        # Every episode failed with reward 0: all returns 0, every bucket constant → exact zeros (and the
        # all-zero episode item of base_group is dropped too).
        {"base_group": True},
        [ep("g", "a", [0.0, 0.0, 0.0], ["s0", "s1", "s0"]), ep("g", "b", [0.0, 0.0], ["s0", "s1"])],
        [0.0] * 5,
        id="all-equal-exact-zeros",
    ),
    pytest.param(
        # Same anchor s in two groups: g1 = {1, 0} → ±1 (population std 0.5); g2 = {5, 5} → exact zeros.
        {},
        [
            ep("g1", "a", [1.0], ["s"]),
            ep("g2", "c", [5.0], ["s"]),
            ep("g1", "b", [0.0], ["s"]),
            ep("g2", "d", [5.0], ["s"]),
        ],
        [1.0, 0.0, -1.0, 0.0],
        id="groups-do-not-mix",
    ),
]


@pytest.mark.parametrize("overrides, trajectories, expected", HGPO_CASES)
def test_hgpo_hand_computed(overrides: dict, trajectories: list[Trajectory], expected: list[float]) -> None:
    check(run("hgpo", trajectories, **overrides), expected)


@pytest.mark.parametrize("mode", ["mean_norm", "mean_std_norm"])
def test_hgpo_current_state_level_is_gigpo_step_term(mode: str) -> None:
    """HGPO with K = 0 is GiGPO's step term A_S up to HGPO's conventions.

    GiGPO normalises a bucket with the unbiased std, HGPO with the population std: σ_pop = σ_unb·√((n−1)/n),
    so with ε → 0, A_HGPO = A_S · √(n/(n−1)) for a bucket of n steps (mean_norm: equal). HGPO's lone
    item is also divided by its weight plus ε: a/(1 + ε).
    """
    eps = 1e-12
    batch = bench.random_batch(4, 6, (1, 12), seed=7)
    rows = StepRows.from_trajectories(batch)
    hgpo = make_credit("hgpo", history_length=0, mode=mode, eps=eps)(rows)
    gigpo = make_credit("gigpo", mode=mode, eps=eps)
    step_term = gigpo(rows) - make_credit("gigpo", mode=mode, eps=eps, omega=0.0)(rows)
    sizes = Counter(zip(rows.group.tolist(), rows.anchor.tolist(), strict=True))
    n = np.array(
        [sizes[key] for key in zip(rows.group.tolist(), rows.anchor.tolist(), strict=True)], dtype=float
    )
    scale = np.sqrt(n / np.maximum(n - 1, 1)) if mode == "mean_std_norm" else np.ones_like(n)
    np.testing.assert_allclose(hgpo * (1 + eps), step_term * scale, rtol=1e-9, atol=1e-12)
    assert np.count_nonzero(hgpo) > rows.num_rows // 3  # buckets did form


# --- SALT ----------------------------------------------------------------------------------------

# a wins through s0 -go-> s1 -take->; b goes the same way first, then drops; c looks elsewhere.
# R = 1, 0, 0. Dr: 2/3, −1/3, −1/3. RLOO: 1, −0.5, −0.5. GRPO: unbiased std √(1/3) → 1.154701, −0.577350.
FORK = [
    ep("g", "a", [0.0, 1.0], ["s0", "s1"], ["go", "take"]),
    ep("g", "b", [0.0, 0.0], ["s0", "s1"], ["go", "drop"]),
    ep("g", "c", [0.0, 0.0], ["s0", "s2"], ["look", "wait"]),
]

# Two groups whose anchor and action strings coincide: a, b (g1) and d (g2) all start with s -go-> t.
TWO_GROUPS_ONE_PATH = [
    ep("g1", "a", [0.0, 1.0], ["s", "t"], ["go", "go"]),
    ep("g2", "d", [0.0, 5.0], ["s", "t"], ["go", "go"]),
    ep("g1", "b", [0.0, 0.0], ["s", "t"], ["go", "stop"]),
    ep("g2", "e", [7.0], ["u"], ["go"]),
]

SALT_CASES = [
    pytest.param(
        # Transition (s0, go, s1) is shared by a and b: (2/3 − 1/3)/2 = 1/6; every other step is unique.
        {"base": "dr_grpo"},
        FORK,
        [1 / 6, 2 / 3, 1 / 6, -1 / 3, -1 / 3, -1 / 3],
        id="dr-grpo-base-shared-first-step",
    ),
    pytest.param(
        # RLOO base: (1 − 0.5)/2 = 0.25 on the shared step.
        {"base": "rloo"},
        FORK,
        [0.25, 1.0, 0.25, -0.5, -0.5, -0.5],
        id="rloo-base",
    ),
    pytest.param(
        # GRPO base: (1.154701 − 0.577350)/2 = 0.288675 on the shared step.
        {},
        FORK,
        [0.2886751, 1.1547005, 0.2886751, -0.5773503, -0.5773503, -0.5773503],
        id="grpo-base",
    ),
    pytest.param(
        # b's second step is invalid (no action): its own node, −1/3 − 0.1; the shared step keeps 1/6.
        {"base": "dr_grpo"},
        [FORK[0], ep("g", "b", [0.0, 0.0], ["s0", "s1"], ["go", None]), FORK[2]],
        [1 / 6, 2 / 3, 1 / 6, -1 / 3 - 0.1, -1 / 3, -1 / 3],
        id="invalid-penalty-after-averaging",
    ),
    pytest.param(
        # Split and rejoin. R = 1, 2, 0 → Dr 0, 1, −1. Transition nodes: a0 = c0 = (s0, x, s1) → −0.5;
        # a2 = b2 = (s3, z, won with last reward 1) → 0.5 though their outcomes differ; a1 keeps 0 (exact).
        {"base": "dr_grpo"},
        [
            ep("g", "a", [0.0, 0.0, 1.0], ["s0", "s1", "s3"], ["x", "y", "z"]),
            ep("g", "b", [1.0, 0.0, 1.0], ["s0", "s2", "s3"], ["w", "v", "z"]),
            ep("g", "c", [0.0, 0.0], ["s0", "s1"], ["x", "q"]),
        ],
        [-0.5, 0.0, 0.5, 1.0, 1.0, 0.5, -0.5, -1.0],
        id="transition-rejoin",
    ),
    pytest.param(
        # The same group as a tree: only the common prefix (s0, x) of a and c merges → −0.5; a2 and b2 have
        # different histories and keep 0 and 1.
        {"base": "dr_grpo", "merge_key": "prefix"},
        [
            ep("g", "a", [0.0, 0.0, 1.0], ["s0", "s1", "s3"], ["x", "y", "z"]),
            ep("g", "b", [1.0, 0.0, 1.0], ["s0", "s2", "s3"], ["w", "v", "z"]),
            ep("g", "c", [0.0, 0.0], ["s0", "s1"], ["x", "q"]),
        ],
        [-0.5, 0.0, 0.0, 1.0, 1.0, 1.0, -0.5, -1.0],
        id="prefix-tree",
    ),
    pytest.param(
        # Endings: a won at (s1, take); t was cut by the step limit at the same (s1, take) with reward 0; e
        # lost at (s0, look). R = 1, 0, 0 → Dr 2/3, −1/3, −1/3. a0 = t0 = (s0, go, s1) → 1/6; a1 and t1 end
        # differently (won / truncated) and stay apart.
        {"base": "dr_grpo"},
        [
            ep("g", "a", [0.0, 1.0], ["s0", "s1"], ["go", "take"]),
            ep("g", "t", [0.0, 0.0], ["s0", "s1"], ["go", "take"], truncated=True),
            ep("g", "e", [0.0], ["s0"], ["look"]),
        ],
        [1 / 6, 2 / 3, 1 / 6, -1 / 3, -1 / 3],
        id="won-and-truncated-endings-differ",
    ),
    pytest.param(
        # A loop counts once: a visits (s0, look, s0) twice, b once. R = 1, 0, 0 → Dr 2/3, −1/3, −1/3.
        # Node mean over trajectories {a, b} = 1/6 (counting visits it would be (2·2/3 − 1/3)/3 = 1/3).
        {"base": "dr_grpo"},
        [
            ep("g", "a", [0.0, 0.0, 1.0], ["s0", "s0", "s0"], ["look", "look", "go"]),
            ep("g", "b", [0.0, 0.0], ["s0", "s0"], ["look", "wait"]),
            ep("g", "c", [0.0], ["s5"], ["x"]),
        ],
        [1 / 6, 1 / 6, 2 / 3, 1 / 6, -1 / 3, -1 / 3],
        id="loop-counts-once",
    ),
    pytest.param(
        # All outcomes equal: the base is exactly 0 everywhere, and so is every node mean.
        {},
        [ep("g", n, [0.0, 0.1], ["s0", "s1"], ["go", "go"]) for n in "abc"],
        [0.0] * 6,
        id="all-equal-exact-zeros",
    ),
    pytest.param(
        # One trajectory, singleton "raw": every node has one visitor → the outcome 2 (the default "zero" →
        # 0).
        {"singleton": "raw"},
        [ep("g", "a", [0.0, 2.0], ["s0", "s0"], ["go", "go"])],
        [2.0, 2.0],
        id="singleton-raw",
    ),
    pytest.param(
        # (s, go, t) is taken by a and b in g1 and by d in g2. g1: R = 1, 0 → Dr ±0.5, node {a, b} → 0.
        # g2: R = 5, 7 → Dr −1, +1, node {d} → −1 (pooled over groups: (0.5 − 0.5 − 1)/3 = −1/3).
        {"base": "dr_grpo"},
        TWO_GROUPS_ONE_PATH,
        [0.0, 0.5, -1.0, -1.0, 0.0, -0.5, 1.0],
        id="groups-do-not-mix",
    ),
    pytest.param(
        # The same as a tree: prefix (s, go) = {a, b} in g1 → 0, {d} in g2 → −1; (s, go, t, go) is a's in g1
        # and d's in g2, kept apart. (Sorted by sequence, g1's last trajectory b and g2's first d are
        # neighbours sharing (s, go): the group must break the node.)
        {"base": "dr_grpo", "merge_key": "prefix"},
        TWO_GROUPS_ONE_PATH,
        [0.0, 0.5, -1.0, -1.0, 0.0, -0.5, 1.0],
        id="prefix-groups-do-not-mix",
    ),
]


@pytest.mark.parametrize("overrides, trajectories, expected", SALT_CASES)
def test_salt_hand_computed(overrides: dict, trajectories: list[Trajectory], expected: list[float]) -> None:
    check(run("salt", trajectories, **overrides), expected)


@pytest.mark.parametrize("merge_key", ["transition", "prefix"])
@pytest.mark.parametrize(
    "base, method, options",
    [
        ("grpo", "grpo", {}),
        ("dr_grpo", "grpo", {"norm_by_std": False}),
        ("rloo", "rloo", {}),
    ],
)
def test_salt_without_shared_steps_is_its_base(merge_key: str, base: str, method: str, options: dict) -> None:
    # Unique anchors per trajectory: no node has two visitors, so SALT returns the base advantage exactly.
    batch = [
        ep(f"g{g}", f"g{g}t{i}", [0.0] * i + [float(i % 3)], actions=[None] + ["a"] * i)
        for g in range(3)
        for i in range(4)
    ]
    rows = StepRows.from_trajectories(batch)
    salt = make_credit("salt", base=base, merge_key=merge_key)(rows)
    np.testing.assert_array_equal(salt, make_credit(method, **options)(rows))
    assert np.any(salt != 0)


# --- all three: shared properties ----------------------------------------------------------------

METHOD_OPTIONS = [
    ("rloo", {}),
    ("rloo", {"singleton": "raw"}),
    ("hgpo", {"gamma": 0.5}),
    (
        "hgpo",
        {"gamma": 0.5, "history_length": 3, "mode": "mean_norm", "base_group": True, "weight_offset": 2},
    ),
    ("hgpo", {"gamma": 0.5, "history_length": 1, "alpha": 0.0}),
    ("salt", {}),
    ("salt", {"base": "rloo", "merge_key": "prefix"}),
    ("salt", {"base": "dr_grpo", "singleton": "raw"}),
    ("grpo", {}),
    ("gigpo", {"gamma": 0.5}),
]


@pytest.mark.parametrize("name, options", METHOD_OPTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_permuting_trajectories_permutes_advantages(name: str, options: dict, seed: int) -> None:
    # γ = 0.5 and rewards in halves keep every return and group sum exact, so a bucket member that sits on
    # its mean does so in any order (HGPO drops exactly-zero items).
    batch = bench.random_batch(3, 5, (1, 10), seed=seed) + bench.random_batch(
        1, 1, (2, 4), seed=seed, name="lone"
    )
    permuted = [batch[i] for i in np.random.default_rng(seed).permutation(len(batch))]

    def by_step(trajectories: list[Trajectory]) -> dict[tuple[str, int], float]:
        advantages = run(name, trajectories, **options)
        keys = [(t.traj_id, k) for t in trajectories for k in range(len(t.steps))]
        return dict(zip(keys, advantages.tolist(), strict=True))

    original, reordered = by_step(batch), by_step(permuted)
    np.testing.assert_allclose(
        [reordered[k] for k in original], list(original.values()), rtol=1e-12, atol=1e-12
    )
    assert [reordered[k] == 0.0 for k in original] == [v == 0.0 for v in original.values()]
    assert any(v != 0.0 for v in original.values())


@pytest.mark.parametrize("name, options", [*METHOD_OPTIONS, ("hgpo", {}), ("gigpo", {})])
@pytest.mark.parametrize("shape", [(4, 6, (1, 12)), (3, 1, (1, 5)), (2, 8, (20, 30))])
def test_vectorised_equals_per_row_reference(name: str, options: dict, shape: tuple) -> None:
    """The vectorised method and the per-row reference of experiments/bench_credit.py agree on random batches
    (bench_credit.py measures the same pair for speed)."""
    groups, size, steps = shape
    for seed in range(3):
        rows = StepRows.from_trajectories(bench.random_batch(groups, size, steps, seed=seed))
        fast = make_credit(name, **options)(rows)
        slow = bench.reference(name, rows, **options)
        np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
        if "rloo" not in (
            name,
            options.get("base"),
        ):  # the reference's R − mean of the others may miss 0 by an ulp
            assert np.array_equal(fast == 0.0, slow == 0.0)  # same zeros: HGPO drops exactly-zero items


@pytest.mark.parametrize("name", ["rloo", "hgpo"])
def test_truncated_flag_alone_changes_nothing(name: str) -> None:
    """Truncated episodes are scored on their executed steps; the flag itself does not enter RLOO or HGPO
    (SALT's transition key does use it: see won-and-truncated-endings-differ)."""
    batch = [ep("g", "a", [1.0, 0.0], ["s0", "s1"]), ep("g", "b", [0.0, 2.0], ["s0", "s1"])]
    cut = [ep("g", "a", [1.0, 0.0], ["s0", "s1"], truncated=True), batch[1]]
    np.testing.assert_array_equal(run(name, batch), run(name, cut))


def test_salt_truncation_separates_otherwise_equal_endings() -> None:
    # l (lost) and u end with (s1, take) and reward 0; t takes (s1, take) too but was cut by the step limit.
    # R = 0, 0, 1, 2, 0.5: mean 0.7 → Dr l −0.7, t −0.7, x 0.3, y 1.3, u −0.2. Node (s1, take, lost with 0)
    # = {l, u} → −0.45; t's (s1, take, truncated) stays alone → −0.7 (merged, all three would get −0.533333).
    batch = [
        ep("g", "l", [0.0, 0.0], ["s0", "s1"], ["go", "take"]),
        ep("g", "t", [0.0, 0.0], ["s1", "s1"], ["wait", "take"], truncated=True),
        ep("g", "x", [1.0], ["s9"], ["go"]),
        ep("g", "y", [2.0], ["s8"], ["go"]),
        ep("g", "u", [0.5, 0.0], ["s7", "s1"], ["go", "take"]),
    ]
    check(run("salt", batch, base="dr_grpo"), [-0.7, -0.45, -0.7, -0.7, 0.3, 1.3, -0.2, -0.45])


@pytest.mark.parametrize("name", ["rloo", "hgpo", "salt"])
def test_empty_batch(name: str) -> None:
    out = make_credit(name)(StepRows.from_trajectories([]))
    assert out.dtype == np.float64 and out.shape == (0,)


def test_salt_prefix_on_empty_and_ragged_batches() -> None:
    assert make_credit("salt", merge_key="prefix")(StepRows.from_trajectories([])).shape == (0,)
    # Ragged: a (1 step) is a prefix of b (3 steps): they share node (s0, go). R = 0, 1 → Dr ∓0.5 → 0 there.
    check(
        run(
            "salt",
            [
                ep("g", "a", [0.0], ["s0"], ["go"]),
                ep("g", "b", [0.0, 0.0, 1.0], ["s0", "s1", "s2"], ["go"] * 3),
            ],
            base="dr_grpo",
            merge_key="prefix",
        ),
        [0.0, 0.0, 0.5, 0.5],
    )


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("rloo", {"singleton": "drop"}),
        ("rloo", {"invalid_penalty_coef": -1.0}),
        ("hgpo", {"history_length": -1}),
        ("hgpo", {"history_length": 1.5}),
        ("hgpo", {"alpha": -1.0}),
        ("hgpo", {"mode": "std_only"}),
        ("hgpo", {"weight_offset": 0}),
        ("hgpo", {"gamma": 1.5}),
        ("hgpo", {"eps": 0.0}),
        ("salt", {"base": "ppo"}),
        ("salt", {"merge_key": "state"}),
        ("salt", {"singleton": "drop"}),
    ],
)
def test_invalid_config_values(name: str, overrides: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(overrides))):
        make_credit(name, **overrides)


# --- stats helpers the methods rely on -----------------------------------------------------------


def test_dense_codes_and_combine_codes_match_np_unique() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 7, 300):
        narrow = rng.integers(-3, 40, n)
        wide = rng.integers(-(2**62), 2**62, n)  # too wide for a presence table: the sorting path
        for codes in (narrow, wide):
            ranks, distinct = dense_codes(codes)
            np.testing.assert_array_equal(ranks, np.unique(codes, return_inverse=True)[1].reshape(-1))
            assert distinct == np.unique(codes).size
        expected = np.unique(np.stack([narrow, wide, narrow % 3], axis=1), axis=0, return_inverse=True)[1]
        np.testing.assert_array_equal(combine_codes(narrow, wide, narrow % 3), expected.reshape(-1))
        first, inverse = first_per_segment(narrow)
        _, np_first, np_inverse = np.unique(narrow, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(first, np_first)
        np.testing.assert_array_equal(inverse, np_inverse.reshape(-1))
    assert dense_codes(np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0]))[0].tolist() == [0, 2, 1]


def test_hgpo_depth_follows_the_policys_history_window_unless_set():
    from types import SimpleNamespace

    from agent_rl.config import TrainConfig

    trainer = SimpleNamespace(config=TrainConfig())
    trainer.config.env.history_window = 1
    unset = make_credit("hgpo")
    assert unset.history_length == 2  # unbound: the recipe's ALFWorld K
    unset.bind(trainer)
    assert unset.history_length == 1
    explicit = make_credit("hgpo", history_length=3)
    explicit.bind(trainer)
    assert explicit.history_length == 3
