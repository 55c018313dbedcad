"""YAML configs shipped with agent-rl (installed as `agent_rl.configs`)."""
