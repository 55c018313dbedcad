"""Adapters that let other training libraries drive agent-rl envs."""
