"""SWE-Gym / SWE-bench: fix a real repository's issue with shell and editor tools, graded by its tests.

Importing this package imports no optional library: `register_envs` only records entry-point strings;
`swebench` (grading) and `docker` (the container backend) are imported when they are used.
"""

from __future__ import annotations

from agent_rl.registry import register


def register_envs() -> None:
    """Register the SWE-Gym env ids (the `agent_rl.envs` entry point of this package)."""
    register(
        "swegym/builtin-v0",
        entry_point="agent_rl.envs.swegym.env:SWEGymEnv",
        kwargs={"path": None},
        description="SWE-bench-format instances built here (small real Python repos with real bugs and tests); "
                    "kwargs: backend=local|docker, max_steps (30), expert, timeout_s, memory_mb, "
                    "max_output_chars, partial_credit",
    )
    register(
        "swegym/jsonl-v0",
        entry_point="agent_rl.envs.swegym.env:SWEGymEnv",
        description="SWE-Gym / SWE-bench rows from a file: path=<.jsonl|.json|.parquet>, repos_dir=<clones as "
                    "owner__name>; kwargs: setup=none|swebench (a virtual env per repo + version from swebench's "
                    "specs), envs_dir, backend=local|docker, image (docker), python (local), test_cmd, "
                    "max_steps, timeout_s, memory_mb, max_output_chars, partial_credit",
    )
