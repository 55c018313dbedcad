"""`agent-rl view --serve`: the report folder over HTTP on this machine only (127.0.0.1)."""

from __future__ import annotations

import functools
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"  # loopback only: a report holds a run's prompts and configs


def make_server(folder: str | Path, port: int = 0) -> ThreadingHTTPServer:
    """A server of `folder` on 127.0.0.1:`port` (0 = any free port); call `serve_forever()` on it."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return ThreadingHTTPServer((HOST, port), handler)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on the console: one line per data file would bury the URL."""
