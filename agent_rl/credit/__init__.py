"""Credit assignment: one module per method under one interface, pure functions of `StepRows`.

    from agent_rl.credit import make_credit
    advantages = make_credit("gigpo", gamma=0.9)(StepRows.from_trajectories(batch))  # one per step row

Importing this package registers the built-in methods; `available_credit()` lists them.
"""

from agent_rl.credit.arpo import ARPO, ARPOConfig
from agent_rl.credit.base import (
    CreditAssigner,
    CreditConfig,
    CreditSpec,
    available_credit,
    credit_config,
    credit_spec,
    make_credit,
    register_credit,
)
from agent_rl.credit.gigpo import GiGPO, GiGPOConfig
from agent_rl.credit.grpo import GRPO, GRPOConfig, episode_advantage
from agent_rl.credit.hgpo import HGPO, HGPOConfig
from agent_rl.credit.oprl import OPRL, OPRLConfig
from agent_rl.credit.ppo_gae import PPOGAE, PPOGAEConfig
from agent_rl.credit.returns import discounted_returns, invalid_penalty, step_returns
from agent_rl.credit.rloo import RLOO, RLOOConfig, leave_one_out_advantage
from agent_rl.credit.salt import SALT, SALTConfig
from agent_rl.credit.seeupo import SeeUPO, SeeUPOConfig
from agent_rl.credit.spa import SPA, SPAConfig
from agent_rl.credit.spear import SPEAR, SPEARConfig
from agent_rl.credit.stats import (
    combine_codes,
    first_per_segment,
    normalize_in_segments,
    segment_stats,
    zero_advantage_fraction,
)

register_credit("grpo", GRPO, "GRPO / Dr.GRPO: one group-normalised episode outcome per trajectory")
register_credit("gigpo", GiGPO, "GiGPO: episode-relative plus anchor-state step-relative advantage")
register_credit("rloo", RLOO, "RLOO: episode outcome minus the mean outcome of the rest of its group")
register_credit("hgpo", HGPO, "HGPO: step returns relative to nested context buckets over the last K anchors")
register_credit("oprl", OPRL, "OPRL / iStar: outcome advantage plus implicit-PRM step rewards (trajectory DPO)")
register_credit("salt", SALT, "SALT: GRPO/RLOO trajectory advantage averaged over a group's shared steps")
register_credit("ppo", PPOGAE, "PPO-GAE: a critic V(s_t) on each step's prompt, GAE over the turns")
register_credit("spa", SPA, "SPA-RL: learned step progress + grounding bonus as step rewards, PPO-GAE on them")
register_credit("seeupo", SeeUPO, "SeeUPO: reverse turn-by-turn GSPO updates, per-trajectory correction")
register_credit("arpo", ARPO, "ARPO: entropy-based branching rollouts, soft/hard prefix credit, GUI replay")
register_credit("spear", SPEAR, "SPEAR: GRPO/GiGPO + tool-call curriculum, self-imitation replay, Clip-Cov")

__all__ = [
    "ARPO",
    "GRPO",
    "HGPO",
    "OPRL",
    "PPOGAE",
    "RLOO",
    "SALT",
    "SPA",
    "SPEAR",
    "ARPOConfig",
    "CreditAssigner",
    "CreditConfig",
    "CreditSpec",
    "GRPOConfig",
    "GiGPO",
    "GiGPOConfig",
    "HGPOConfig",
    "OPRLConfig",
    "PPOGAEConfig",
    "RLOOConfig",
    "SALTConfig",
    "SPAConfig",
    "SPEARConfig",
    "SeeUPO",
    "SeeUPOConfig",
    "available_credit",
    "combine_codes",
    "credit_config",
    "credit_spec",
    "discounted_returns",
    "episode_advantage",
    "first_per_segment",
    "invalid_penalty",
    "leave_one_out_advantage",
    "make_credit",
    "normalize_in_segments",
    "register_credit",
    "segment_stats",
    "step_returns",
    "zero_advantage_fraction",
]
