"""agent-rl: multi-turn reinforcement learning for LLM agents."""

from agent_rl.data import Group, Step, StepRows, Trajectory
from agent_rl.env_api import TextEnv
from agent_rl.registry import EnvSpec, make, register, registered_ids

__version__ = "0.1.0"
__all__ = ["EnvSpec", "Group", "Step", "StepRows", "TextEnv", "Trajectory", "make", "register", "registered_ids"]
