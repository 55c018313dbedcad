"""Search-tool question answering in the Search-R1 protocol, registered as a plugin.

`search/demo-v0` runs on the corpus and questions shipped in the package (the Python Language Reference,
see `build_demo`); `search/nq-v0` on a user's Search-R1 data (`corpus=` JSONL passages, `path=` a QA file
or a folder of `{split}.parquet` / `{split}.jsonl`). Importing this package imports neither bm25s nor
pyarrow: registration only records entry-point strings.
"""

from __future__ import annotations

from pathlib import Path

from agent_rl.registry import register

DEMO_DIR = Path(__file__).parent / "data" / "python_docs"


def register_envs() -> None:
    """Register the search env ids (the `agent_rl.envs` entry point of this package)."""
    register(
        "search/demo-v0",
        entry_point="agent_rl.envs.search.env:SearchEnv",
        kwargs={"corpus": str(DEMO_DIR / "corpus.jsonl"), "path": str(DEMO_DIR), "name": "python-docs demo"},
        description="Search-R1 QA on the Python Language Reference (373 passages; 16 train / 8 test hand-written "
                    "questions), offline; kwargs: split=train|test, top_k (3), max_steps (4), expert, instruction=search-r1|plain",
    )
    register(
        "search/nq-v0",
        entry_point="agent_rl.envs.search.env:SearchEnv",
        description="Search-R1 QA on your data: corpus=<wiki-18-style .jsonl>, path=<QA .parquet/.jsonl, or a "
                    "folder of {split}.parquet|jsonl>; kwargs: split, top_k (3), max_steps (4), expert, cache_dir, instruction=search-r1|plain",
    )
