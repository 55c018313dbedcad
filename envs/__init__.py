"""Built-in environments of agent-rl, installed as `agent_rl.envs`.

Each one is a plugin exactly like a user's: it registers its ids from a function listed in the
`agent_rl.envs` entry-point group of pyproject.toml.
"""
