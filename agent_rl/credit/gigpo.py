"""GiGPO: Group-in-Group Policy Optimization.

Feng et al. 2025, "Group-in-Group Policy Optimization for LLM Agent Training" (arXiv:2505.10978),
as released in verl-agent `gigpo/core_gigpo.py`; credit.md §3 and Appendix A:

    A_E(i)   = (R_i − mean_g R) / F            episode-relative, one score per trajectory (= GRPO)
    G_t      = Σ_{k≥t} γ^{k−t} r_k − coef·[step t invalid]       penalty after discounting
    A_S(i,t) = (G_t − mean_b G) / F            b = anchor bucket: same group, same anchor state
    A(i,t)   = A_E(i) + ω · A_S(i,t)

F = std + ε (unbiased std, ε = 1e-6) in mode "mean_std_norm", F = 1 in "mean_norm"; the mode applies
to both levels, as in the reference code. We default to "mean_std_norm", the value the released
run scripts set (the code's default argument is "mean_norm", credit.md §3.1).

Anchor buckets hold every step of the group whose anchor is exactly equal — any position, any
trajectory, repeats inside one trajectory included. A bucket of one step has no peer: A_S = 0
(its mean is itself). Truncated episodes use returns over their executed steps only, with no
bootstrap (credit.md §12). All-equal episode rewards give A_E = 0 exactly; A_S is exactly 0 in
every bucket whose returns are equal (e.g. a group where every episode failed with zero reward),
but stays non-zero where equal-outcome trajectories reach the reward at different distances from a
shared state — that is the step-level signal GiGPO is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent_rl.credit.base import CreditAssigner, CreditConfig, check_choice, check_range
from agent_rl.credit.grpo import episode_advantage
from agent_rl.credit.returns import step_returns
from agent_rl.credit.stats import SINGLETON_POLICIES, combine_codes, normalize_in_segments
from agent_rl.data import StepRows

MODES = ("mean_std_norm", "mean_norm")


@dataclass(frozen=True)
class GiGPOConfig(CreditConfig):
    mode: str = field(
        default="mean_std_norm",
        metadata={
            "help": "'mean_std_norm': (x − mean)/(std + ε); 'mean_norm': x − mean. Both levels. Default from the "
            "released verl-agent scripts (the code's own default argument is 'mean_norm')."
        },
    )
    gamma: float = field(
        default=0.95, metadata={"help": "Discount of the step returns (verl-agent scripts: 0.95)."}
    )
    omega: float = field(
        default=1.0,
        metadata={"help": "ω, weight of the step term A_S (verl-agent `step_advantage_w` = 1.0)."},
    )
    invalid_penalty_coef: float = field(
        default=0.1,
        metadata={
            "help": "Subtracted from an invalid step's return after discounting (verl-agent "
            "`invalid_action_penalty_coef` = 0.1); 0 disables."
        },
    )
    eps: float = field(
        default=1e-6, metadata={"help": "ε added to the std in 'mean_std_norm' (verl-agent: 1e-6)."}
    )
    singleton: str = field(
        default="zero",
        metadata={
            "help": "Episode term of a one-trajectory group: 'zero' (credit.md §12) or 'raw' = the outcome "
            "(verl-agent's behaviour). One-step anchor buckets always get A_S = 0."
        },
    )

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("invalid_penalty_coef", self.invalid_penalty_coef, 0.0)
        check_range("eps", self.eps, 0.0, low_open=True)
        check_choice("singleton", self.singleton, SINGLETON_POLICIES)


class GiGPO(CreditAssigner):
    """A(i, t) = A_E(i) + ω · A_S(i, t): episode-relative plus anchor-state-relative advantage."""

    config_cls = GiGPOConfig
    config: GiGPOConfig

    def __call__(self, rows: StepRows) -> np.ndarray:
        c = self.config
        by_std = c.mode == "mean_std_norm"
        episode = episode_advantage(rows, norm_by_std=by_std, eps=c.eps, singleton=c.singleton)
        returns = step_returns(rows, c.gamma, c.invalid_penalty_coef)
        buckets = combine_codes(rows.group, rows.anchor)  # anchor codes are batch-global; stay inside a group
        step = normalize_in_segments(
            returns, buckets, by_std=by_std, unbiased=True, eps=c.eps, singleton="zero"
        )
        return episode + c.omega * step
