"""Open a report page in Debian's headless Chromium: its DOM after the scripts ran, its console, a screenshot.

Used by the tests, the viewer benchmark and the README screenshot; nothing in `agent-rl view` needs it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = "chromium"
# Offline and quiet: no sync, updates or background requests, a throw-away profile. --no-sandbox because
# the test machines run as root; the pages are our own report.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0")
CONSOLE = re.compile(r':INFO:CONSOLE[^\]]*\] "(.*)", source: (.*)')


@dataclass
class PageResult:
    dom: str  # the serialized DOM after the page's scripts ran ("" for a screenshot)
    console: list[str]  # console messages (console.log / console.error, uncaught errors, CSP reports)
    seconds: float  # wall-clock of the whole Chromium process, start to exit


def chromium_path() -> str | None:
    return shutil.which(CHROMIUM)


def open_page(url: str, screenshot: Path | None = None, size: tuple[int, int] = (1400, 1000),
              budget_ms: int = 5000, timeout: float = 120.0) -> PageResult:
    """Load `url`, let it run for up to `budget_ms` of virtual time (scripts it adds load within it), then
    dump its DOM, or save a PNG to `screenshot`. Raises FileNotFoundError without Chromium."""
    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="agent-rl-chromium-") as profile:
        action = [f"--screenshot={screenshot}", f"--window-size={size[0]},{size[1]}"] if screenshot else ["--dump-dom"]
        command = [binary, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *action, url]
        clock = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        seconds = time.perf_counter() - clock
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    console = [f"{m.group(1)} ({m.group(2)})" for m in CONSOLE.finditer(done.stderr)]
    return PageResult(dom="" if screenshot else done.stdout, console=console, seconds=seconds)
