"""Tools that agent-rl's tool environments call, installed as `agent_rl.tools`."""
