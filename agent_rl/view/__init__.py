"""`agent-rl view`: a static HTML report of a training run or an eval folder (see `render_report`)."""

from agent_rl.view.render import render_report

__all__ = ["render_report"]
