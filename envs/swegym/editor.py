"""The file viewer and editor, run inside the sandbox (standard library only): one JSON request on stdin.

    {"op": "view", "path": "pkg/mod.py", "start": 1, "end": -1}
    {"op": "str_replace", "path": "pkg/mod.py", "old": "...", "new": "..."}
    {"op": "create", "path": "pkg/new.py", "content": "..."}

It prints what the agent sees and exits 0, or prints the error and exits 1. Paths are relative to the
repository root (the cwd); a path that leads out of it is refused. Running it in the sandbox rather than
in the host process means a symlink planted by the agent can never make the host write through it.
"""

import json
import os
import sys


def resolve(path: str) -> str:
    root = os.path.realpath(".")
    full = os.path.realpath(os.path.join(root, path))
    if full != root and not full.startswith(root + os.sep):
        raise ValueError(f"{path!r} is outside the repository")
    return full


def view(path: str, start: int = 1, end: int = -1) -> str:
    full = resolve(path)
    if os.path.isdir(full):
        names = sorted(n + ("/" if os.path.isdir(os.path.join(full, n)) else "") for n in os.listdir(full)
                       if n != ".git")
        return "\n".join(names)
    with open(full, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    last = len(lines) if end == -1 else min(end, len(lines))
    if start < 1 or start > max(last, 1):
        raise ValueError(f"start={start} is outside the file's {len(lines)} lines")
    return "\n".join(f"{n:6d}\t{lines[n - 1]}" for n in range(start, last + 1))


def str_replace(path: str, old: str, new: str) -> str:
    full = resolve(path)
    with open(full, encoding="utf-8") as f:
        text = f.read()
    count = text.count(old) if old else 0
    if count != 1:
        raise ValueError(f"old must occur exactly once in {path}; it occurs {count} times")
    with open(full, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new, 1))
    line = text[: text.index(old)].count("\n") + 1
    return f"Replaced in {path} at line {line}."


def create(path: str, content: str) -> str:
    full = resolve(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as f:
        f.write(content)
    return f"Wrote {path} ({len(content.splitlines())} lines)."


def main() -> int:
    request = json.load(sys.stdin)
    op = request.pop("op")
    try:
        print({"view": view, "str_replace": str_replace, "create": create}[op](**request))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        print(f"Error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
