"""GRPO, multi-turn, trajectory level (and Dr.GRPO).

Shao et al. 2024, "DeepSeekMath" (arXiv:2402.03300), §4.1.2 outcome supervision: every token of
output i gets Â_i = (r_i − mean(r)) / std(r) over the G outputs of one prompt. In the multi-turn
setting (credit.md §2) output i is a whole trajectory, r_i its episode outcome R_i, and every step
row of the trajectory gets the same advantage:

    A(i) = (R_i − mean_g R) / (std_g R + ε)        ε = 1e-6, std unbiased (torch.std)

statistics taken over one score per trajectory of group g (credit.md §2 recommends de-duplicating:
statistics over step rows over-weight long trajectories). Dr.GRPO (Liu et al. 2025,
"Understanding R1-Zero-Like Training", arXiv:2503.20783) drops the std: A(i) = R_i − mean_g R.

Invalid-action penalty. verl-agent writes −coef on an invalid step row's token reward, so a
trajectory-level method reading each row's reward sum sees R_i − coef in that row's numerator. We
subtract the penalty from that row's advantage AFTER the group normalisation (the trajectory-level
analogue of GiGPO's "after discounting"): A(i,t) = A(i) − coef·[step t invalid]. With Dr.GRPO the
two coincide; with std normalisation ours does not divide the penalty by the group std, which keeps
it bounded by coef — dividing by std_g + ε would turn −0.1 into −10⁵ in a group whose episode
rewards are all equal. Group statistics are over the episode outcomes, untouched by the penalty,
and the penalty never spreads to the trajectory's other steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent_rl.credit.base import CreditAssigner, CreditConfig, check_choice, check_range
from agent_rl.credit.returns import invalid_penalty
from agent_rl.credit.stats import SINGLETON_POLICIES, first_per_segment, normalize_in_segments
from agent_rl.data import StepRows


@dataclass(frozen=True)
class GRPOConfig(CreditConfig):
    norm_by_std: bool = field(
        default=True,
        metadata={
            "help": "Divide by the group std (GRPO, verl `norm_adv_by_std_in_grpo=True`); False = Dr.GRPO."
        },
    )
    eps: float = field(default=1e-6, metadata={"help": "ε added to the group std (verl / verl-agent: 1e-6)."})
    singleton: str = field(
        default="zero",
        metadata={
            "help": "Advantage of a one-trajectory group: 'zero' (credit.md §12 recommendation) or 'raw' = the "
            "episode outcome itself (verl: mean 0, std 1 for a singleton)."
        },
    )
    invalid_penalty_coef: float = field(
        default=0.1,
        metadata={
            "help": "Subtracted from an invalid step's advantage after normalisation (verl-agent "
            "`invalid_action_penalty_coef` = 0.1); 0 disables."
        },
    )

    def __post_init__(self) -> None:
        check_range("eps", self.eps, 0.0, low_open=True)
        check_choice("singleton", self.singleton, SINGLETON_POLICIES)
        check_range("invalid_penalty_coef", self.invalid_penalty_coef, 0.0)


def episode_advantage(rows: StepRows, *, norm_by_std: bool, eps: float, singleton: str) -> np.ndarray:
    """Trajectory-level group-relative advantage of each row's episode outcome, broadcast to its rows.

    (R_i − mean_g R) / (std_g R + ε) (or R_i − mean_g R), with mean and unbiased std over the unique
    trajectories of group g. Shared by GRPO and GiGPO's episode term A_E (and the methods built on them).
    """
    first, inverse = first_per_segment(rows.traj)
    per_traj = normalize_in_segments(
        rows.outcome[first],
        rows.group[first],
        by_std=norm_by_std,
        unbiased=True,
        eps=eps,
        singleton=singleton,
    )
    return per_traj[inverse]


class GRPO(CreditAssigner):
    """A(i, t) = (R_i − mean_g R) / (std_g R + ε) − coef·[step t invalid]  (Dr.GRPO: no division)."""

    config_cls = GRPOConfig
    config: GRPOConfig

    def __call__(self, rows: StepRows) -> np.ndarray:
        c = self.config
        advantage = episode_advantage(rows, norm_by_std=c.norm_by_std, eps=c.eps, singleton=c.singleton)
        return advantage - invalid_penalty(rows.valid, c.invalid_penalty_coef)
