"""Write the static report folder: `index.html`, the page's script and style, and its data as `.js` files.

The data are JavaScript files that hand JSON to the page (`window.AGENT_RL_SUMMARY = {...}` and
`agentRlChunk(name, {...})`), not `.json` files: a page opened from disk (`file://`) may not `fetch()`
in Chromium, but it may load a `<script>`. The summary (config, metrics, tables, the list of
iterations) loads with the page; each iteration's and each evaluation's episodes are one file, loaded
when the user opens it, so a large run opens as fast as a small one.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from agent_rl.data import Trajectory
from agent_rl.io import atomic_directory, read_trajectories
from agent_rl.view.loader import anchor_links, load_source

STATIC_FILES = ("index.html", "app.js", "style.css")


def render_report(source_dir: str | Path, out_dir: str | Path) -> Path:
    """Render the report of the run or eval folder `source_dir` into `out_dir` (an earlier report there
    is replaced whole); returns the path of its `index.html`."""
    source = load_source(source_dir)
    out = Path(out_dir)
    _check_replaceable(out, source.path)
    with atomic_directory(out) as tmp:
        static = resources.files("agent_rl.view") / "static"
        for name in STATIC_FILES:
            with resources.as_file(static / name) as path:
                shutil.copyfile(path, tmp / name)
        (tmp / "data").mkdir()
        iterations = []
        for iteration, path in source.iterations:
            trajectories = read_trajectories(path)
            chunk = f"iter-{iteration:06d}"
            _write_chunk(tmp, chunk, trajectories)
            iterations.append({"iteration": iteration, "chunk": chunk, **_counts(trajectories)})
        evals = []
        for folder in source.evals:
            trajectories = sorted(folder.episodes(), key=lambda t: t.success)  # failures first (stable)
            chunk = f"eval-{_file_safe(folder.name)}"
            _write_chunk(tmp, chunk, trajectories)
            evals.append({"name": folder.name, "chunk": chunk, "protocol": folder.protocol, "table": folder.table,
                          **_counts(trajectories)})
        summary = {"kind": source.kind, "title": source.path.resolve().name, "path": str(source.path.resolve()),
                   "config": source.config_text, "metrics": source.metrics, "iterations": iterations, "evals": evals}
        (tmp / "data" / "summary.js").write_text(f"window.AGENT_RL_SUMMARY = {js_json(summary)};\n")
    return out / "index.html"


def episode_records(trajectories: list[Trajectory]) -> list[dict[str, Any]]:
    """What the page shows of each episode: the text of every step but its prompt (`prompt_records`), its
    reward, validity, advantage and step-group link (token ids and log-probs stay in the JSONL)."""
    links = anchor_links(trajectories)
    return [
        {
            "id": t.traj_id,
            "group": t.group_id,
            "task": t.task_id,
            "type": str(t.metadata.get("task_type", "")),
            "success": t.success,
            "outcome": t.outcome,
            "terminated": t.terminated,
            "truncated": t.truncated,
            "metadata": t.metadata,
            "steps": [
                {
                    "obs": s.obs,
                    "response": s.response,
                    "action": s.action,
                    "reward": s.reward,
                    "valid": s.valid,
                    "advantage": s.advantage,
                    "link": links.get((t.group_id, s.anchor)),
                    "error": s.info.get("error") or None,
                }
                for s in t.steps
            ],
        }
        for t in trajectories
    ]


def prompt_records(trajectories: list[Trajectory]) -> list[list[str]]:
    """Each step's prompt, per episode: most of the text (history), so the page loads it only when asked."""
    return [[s.prompt for s in t.steps] for t in trajectories]


def js_json(value: Any) -> str:
    """A JavaScript literal of `value` that is safe in any JavaScript or HTML context: `<` is written
    `\\u003c` (so no `</script>` or `<!--` can appear), U+2028 / U+2029 (line breaks to older JavaScript)
    are escaped; NaN and Infinity (a metric of an iteration without episodes) stay JavaScript's own."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _counts(trajectories: list[Trajectory]) -> dict[str, int]:
    return {"episodes": len(trajectories), "successes": sum(t.success for t in trajectories),
            "groups": len({t.group_id for t in trajectories})}


def _write_chunk(folder: Path, name: str, trajectories: list[Trajectory]) -> None:
    """`data/NAME.js` (the episodes) and `data/NAME.prompts.js` (their prompts)."""
    for chunk, records in ((name, episode_records(trajectories)), (f"{name}.prompts", prompt_records(trajectories))):
        (folder / "data" / f"{chunk}.js").write_text(f"agentRlChunk({js_json(chunk)}, {js_json(records)});\n")


def _check_replaceable(out: Path, source: Path) -> None:
    """Rendering replaces `out` whole: only an earlier report may be there, never the run itself."""
    out, source = out.resolve(), source.resolve()
    if out == source or out in source.parents:
        raise ValueError(f"--out {out} would replace the folder being viewed; pick a new folder")
    if out.exists() and not (out / "data" / "summary.js").is_file():
        raise ValueError(f"--out {out} exists and is not an earlier report; pick a new or empty folder")


def _file_safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)
