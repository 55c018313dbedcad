"""Hostile commands against the command sandbox (`agent_rl.tools.sandbox.Sandbox`): does every attack fail?

    python experiments/faults_sandbox.py           # the full campaign (over 120 trials, about a minute)
    python experiments/faults_sandbox.py --quick   # about 50 trials

`sandbox_trials(quick)` runs real commands (sh and Python) through fresh sandboxes and returns one dict per
trial: {"campaign": "sandbox", "trial": name, "held": bool, "detail": what was observed}. The attacks:
runaway resources (loops, output, memory, file size, workspace size, fork bombs); writes outside the
workspace and deleting everything; the network (an external address, 127.0.0.1, a TCP server and Unix
sockets this process listens on); the host's secrets (canary files it plants in the home directories, /tmp,
/var/tmp and the temp dir, a canary environment variable of this process, /proc/<pid>/environ, another
sandbox's workspace); and processes left behind after a command (background, setsid, double fork, nohup,
SIGTERM ignored), looked for on the host by a marker in their command line and by the sandbox uid. The
"appworld:" trials run hostile code as the model's cells in a real AppWorld env (its `LimitedWorker`), past
AppWorld's own guard: the same canary files, variable (and a host process started with it), /proc environs,
the host's TCP server and abstract socket, and a shell it spawns; they need the AppWorld interpreter
(`python -m agent_rl.envs.appworld.setup`) and are left out without it. Every check is made on the host,
not on what the command says. Where `isolation() != "namespaces"` only the rlimits hold and there is
nothing to try: it returns [] (the caller says so).
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from agent_rl.envs.appworld.env import AppWorldEnv
from agent_rl.envs.appworld.setup import default_python
from agent_rl.tools.sandbox import CommandResult, Sandbox, SandboxLimits, isolation

READABLE = (sys.prefix, sys.base_prefix)  # so that sandboxed Python is this interpreter
PY = sys.executable
LIMITS = {"timeout_s": 5.0, "memory_mb": 1024, "max_processes": 64, "file_mb": 8, "disk_mb": 32,
          "max_reply_chars": 100_000}
Check = Callable[[], tuple[bool, str]]
CELL_RAN = "cell_ran"  # what an AppWorld cell prints first: the code ran (AppWorld's guard did not stop it)


@functools.cache
def appworld_missing() -> str:
    """Why the AppWorld trials cannot run here ('' when they can): its interpreter has no appworld apps."""
    probe = subprocess.run([default_python(), "-c", "import appworld.apps.venmo.apis"], capture_output=True,
                           text=True, check=False, timeout=120)
    return "" if probe.returncode == 0 else f"{default_python()} has no appworld (python -m agent_rl.envs.appworld.setup)"


def first_line(result: CommandResult) -> str:
    """One line saying what the command left: the sandbox's error, else its last output line and exit code."""
    if result.error:
        return result.error
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    return f"exit {result.exit_code}: {(lines[-1] if lines else '(no output)')[:160]}"


def processes_of(marker: str, uid: int | None) -> list[int]:
    """Host pids whose command line holds `marker`, or whose real uid is `uid` (the sandbox's own)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().decode(errors="replace")
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        real_uid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("Uid:")), None)
        if marker in cmdline or (uid is not None and real_uid == uid):
            found.append(int(entry.name))
    return found


class TCPServer:
    """A real server on the host's 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.socket.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


class UnixServer:
    """A Unix socket this process listens on (abstract, or a file in /tmp): a sandbox must not reach either."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.bind(address)
        if not address.startswith("\0"):
            os.chmod(address, 0o777)  # so that only the sandbox's hiding keeps it out
        self.socket.listen()
        self.socket.setblocking(False)

    def accepted(self) -> int:
        count = 0
        while True:
            try:
                self.socket.accept()[0].close()
            except BlockingIOError:
                return count
            count += 1

    def close(self) -> None:
        self.socket.close()
        if not self.address.startswith("\0"):
            os.unlink(self.address)


def argv_of(command: str | list[str]) -> list[str]:
    """A trial's command as an argv: a string is a bash script, a list is an argv already."""
    return ["bash", "-c", command] if isinstance(command, str) else command


class Campaign:
    """The host-side fixtures (canaries, servers, a folder anyone may write) and the trials that use them."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.token = f"s3cret_{secrets.token_hex(16)}"  # what the canaries hold: it must never reach an output
        self.name = f"agent_rl_canary_{secrets.token_hex(8)}"  # their name: a listing must not show it either
        self.canaries: dict[str, Path] = {}
        homes = [Path.home(), Path("/home")]
        temps = [Path("/tmp"), Path("/var/tmp"), Path(tempfile.gettempdir())]
        for where in dict.fromkeys(p.resolve() for p in homes + temps if p.is_dir()):
            path = where / f"{self.name}.txt"
            path.write_text(self.token + "\n")
            path.chmod(0o644)  # world-readable: only the sandbox's hiding may keep it out
            stack.callback(path.unlink, missing_ok=True)
            self.canaries[str(where)] = path
        # a folder anyone may write, outside the hidden ones, so that only the read-only mounts keep it intact
        shared = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path.cwd()
        self.host_dir = Path(tempfile.mkdtemp(prefix="agent_rl_faults_", dir=shared))
        self.host_dir.chmod(0o777)
        stack.callback(shutil.rmtree, self.host_dir, ignore_errors=True)
        self.target = self.host_dir / "host_file.txt"
        self.target.write_text("original")
        self.target.chmod(0o666)
        os.environ["AGENT_RL_CANARY_SECRET"] = self.token
        stack.callback(os.environ.pop, "AGENT_RL_CANARY_SECRET", None)
        # /proc/<pid>/environ shows what a process started with, not a later os.environ: a host process that
        # started with the canary variable, beside this one (which holds it too)
        self.holder = subprocess.Popen([PY, "-c", "import time; time.sleep(3600)"], env=dict(os.environ))
        stack.callback(self.holder.wait)
        stack.callback(self.holder.kill)
        self.tcp = TCPServer()
        stack.callback(self.tcp.close)
        self.abstract = UnixServer(f"\0{self.name}")
        stack.callback(self.abstract.close)
        self.unix_file = UnixServer(f"{tempfile.gettempdir()}/{self.name}.sock")
        stack.callback(self.unix_file.close)

    @contextmanager
    def box(self, **limits: float) -> Iterator[Sandbox]:
        sandbox = Sandbox(SandboxLimits(**{**LIMITS, **limits}), readable=READABLE)
        sandbox.populate()
        try:
            yield sandbox
        finally:
            sandbox.close()

    def run(self, command: str | list[str], **limits: float) -> CommandResult:
        """One command in a fresh sandbox: a string is a bash script, a list an argv."""
        with self.box(**limits) as sandbox:
            return sandbox.run(argv_of(command))

    # --- each family: (name, check, in the quick campaign)

    def resources(self) -> Iterator[tuple[str, Check, bool]]:
        def stopped(command: str | list[str], error: str, **limits: float) -> Check:
            def check() -> tuple[bool, str]:
                with self.box(**limits) as sandbox:
                    start = time.monotonic()
                    result = sandbox.run(argv_of(command))
                    took = time.monotonic() - start
                    # the sandbox goes on (a full workspace still reports itself: the exit code says it ran)
                    alive = sandbox.run(["bash", "-c", "echo alive"]).exit_code == 0
                cut = len(result.output) <= sandbox.limits.max_reply_chars
                return error in result.error and cut and alive and took < 10, f"{first_line(result)} ({took:.1f} s)"
            return check

        loops = ["while true; do :; done", [PY, "-c", "while True: pass"], "yes > /dev/null"]
        for i, command in enumerate(loops):
            yield f"infinite loop {i + 1}", stopped(command, "time limit", timeout_s=1), i == 0
        floods = ["yes", "cat /dev/zero", [PY, "-c", "while True: print('x' * 1000)"]]
        for i, command in enumerate(floods):
            yield f"huge output {i + 1}", stopped(command, "more than 10000 bytes", max_reply_chars=10_000), i == 0

        def failed(command: str | list[str], **limits: float) -> Check:
            def check() -> tuple[bool, str]:
                with self.box(**limits) as sandbox:
                    result = sandbox.run(argv_of(command))
                    alive = sandbox.run(["bash", "-c", "echo alive"]).ok
                return not result.ok and alive, first_line(result)
            return check

        hogs = [[PY, "-c", "x = bytearray(1024 * 2**20)"], [PY, "-c", "x = [0] * 2**28"],
                'x=$(head -c 600000000 /dev/zero | tr "\\0" a); echo ${#x}']
        for i, command in enumerate(hogs):
            yield f"memory hog {i + 1}", failed(command, memory_mb=256), i == 0

        def capped(command: str | list[str]) -> Check:
            def check() -> tuple[bool, str]:
                with self.box(file_mb=1) as sandbox:
                    result = sandbox.run(argv_of(command))
                    size = (sandbox.workspace / "big").stat().st_size if (sandbox.workspace / "big").exists() else 0
                return size <= 2**20, f"big is {size} bytes, cap {2**20}; {first_line(result)}"
            return check

        bigs = ["head -c 5000000 /dev/zero > big", [PY, "-c", "open('big', 'wb').write(bytes(5 * 2**20))"],
                "dd if=/dev/zero of=big bs=1M count=5 2>&1"]
        for i, command in enumerate(bigs):
            yield f"big file {i + 1}", capped(command), i == 0
        fills = ["for i in 1 2 3; do head -c 900000 /dev/zero > f$i; done",
                 [PY, "-c", "[open(f'f{i}', 'wb').write(bytes(900_000)) for i in range(3)]"]]
        for i, command in enumerate(fills):
            yield f"full workspace {i + 1}", stopped(command, "over the limit of 1 MB", disk_mb=1, file_mb=4), i == 0

        def bomb(command: str | list[str]) -> Check:
            def check() -> tuple[bool, str]:
                with self.box(max_processes=32, timeout_s=4) as sandbox:
                    result = sandbox.run(argv_of(command))
                    left = processes_of(self.name + "_bomb", sandbox.uid)
                    alive = sandbox.run(["bash", "-c", "echo alive"]).ok
                return not left and alive, f"{first_line(result)}; {len(left)} processes left"
            return check

        yield "fork bomb sh", bomb(f": {self.name}_bomb; bomb() {{ bomb | bomb & }}; bomb; sleep 2; echo done"), True
        yield "fork bomb python", bomb([PY, "-c", (f"# {self.name}_bomb\nimport os, time\nfor _ in range(10000):\n"
                                        "    try: os.fork()\n    except OSError: pass\ntime.sleep(2)")]), False

    def writes(self) -> Iterator[tuple[str, Check, bool]]:
        target, outside = self.target, self.host_dir / "new_file.txt"
        hidden_targets = [Path(tempfile.gettempdir()) / f"{self.name}_pwned", Path.home() / f"{self.name}_pwned"]

        def intact(command: str | list[str], extra: tuple[Path, ...] = ()) -> Check:
            def check() -> tuple[bool, str]:
                passwd = Path("/etc/passwd").read_bytes()
                result = self.run(command)
                created = [str(p) for p in (outside, *extra, *hidden_targets) if p.exists()]
                kept = target.read_text() == "original" and Path("/etc/passwd").read_bytes() == passwd
                return kept and not created, f"{first_line(result)}; created {created or 'nothing'}"
            return check

        depth = "../" * 8  # deeper than any workspace path: `..` stops at /
        forms: list[tuple[str, str | list[str]]] = [
            ("absolute path", f"echo pwned > {target}; echo pwned > {outside}"),
            ("dot-dot", f"echo pwned > {depth}{str(target).lstrip('/')}; echo pwned > {depth}{str(outside).lstrip('/')}"),
            ("symlink", f"ln -s {target} link && echo pwned > link; ln -s {self.host_dir} d && echo x > d/new_file.txt"),
            ("hard link", f"ln {target} hard && echo pwned > hard"),
            ("python", [PY, "-c", f"open('{target}', 'w').write('pwned'); open('{outside}', 'w').write('pwned')"]),
            ("cp and mv", f"echo pwned > mine; cp mine {target}; mv mine {outside}"),
            ("/proc/self/root", f"echo pwned > /proc/self/root{target}; echo pwned > /proc/1/root{outside}"),
            ("remount rw", (f"mount -o remount,rw / 2>&1; mount -o remount,bind,rw {self.host_dir} 2>&1; "
                           f"echo pwned > {outside}")),
            ("/etc/passwd", "echo 'pwned::0:0::/:/bin/sh' >> /etc/passwd; sed -i s/root/pwned/ /etc/passwd"),
            ("hidden tmp and home", f"for p in {' '.join(map(str, hidden_targets))}; do echo pwned > $p; done"),
        ]
        for i, (name, command) in enumerate(forms):
            yield f"write outside: {name}", intact(command), i < 3
        usr = Path("/usr") / f"{self.name}_pwned"
        yield "write outside: /usr", intact(f"touch {usr}; mkdir {usr}.d", (usr, Path(f"{usr}.d"))), False

    def deletes(self) -> Iterator[tuple[str, Check, bool]]:
        def survives(command: str | list[str]) -> Check:
            def check() -> tuple[bool, str]:
                with self.box(timeout_s=15) as sandbox:
                    (sandbox.workspace / "mine.txt").write_text("mine")
                    result = sandbox.run(argv_of(command))
                    own_gone = not (sandbox.workspace / "mine.txt").exists()
                kept = self.target.read_text() == "original" and Path(PY).exists() and Path("/bin/sh").exists()
                return kept and own_gone, f"{first_line(result)}; host kept: {kept}; own file deleted: {own_gone}"
            return check

        yield "rm -rf /", survives("rm -rf --no-preserve-root / 2>/dev/null; echo done"), True
        yield "find / -delete", survives("find / -depth -delete 2>/dev/null; echo done"), False
        yield "python rmtree /", survives([PY, "-c", "import shutil; shutil.rmtree('/', ignore_errors=True)"]), False

    def network(self) -> Iterator[tuple[str, Check, bool]]:
        def refused(command: str | list[str], server: TCPServer | UnixServer | None = None) -> Check:
            def check() -> tuple[bool, str]:
                before = self.tcp.accepted
                result = self.run(command, timeout_s=5)
                reached = "CONNECTED" in result.output
                if isinstance(server, TCPServer):
                    reached |= server.accepted > before
                elif isinstance(server, UnixServer):
                    reached |= server.accepted() > 0
                return not reached, first_line(result)
            return check

        def py_connect(host: str, port: int) -> list[str]:
            return [PY, "-c", (f"import socket; socket.create_connection(({host!r}, {port}), timeout=2); "
                              "print('CONNECTED')")]

        port = self.tcp.port
        forms: list[tuple[str, str | list[str], TCPServer | UnixServer | None]] = [
            ("host server python", py_connect("127.0.0.1", port), self.tcp),
            ("external python", py_connect("1.1.1.1", 80), None),
            ("host server bash /dev/tcp", f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo CONNECTED", self.tcp),
            ("host server by name", py_connect("localhost", port), self.tcp),
            ("host server via 0.0.0.0", py_connect("0.0.0.0", port), self.tcp),
            ("127.0.0.1 closed port", "exec 3<>/dev/tcp/127.0.0.1/22 && echo CONNECTED", None),
            ("external bash /dev/tcp", "exec 3<>/dev/tcp/8.8.8.8/53 && echo CONNECTED", None),
            ("external dns", [PY, "-c", "import socket; print('CONNECTED', socket.gethostbyname('example.com'))"], None),
            ("external udp", [PY, "-c", ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                                        "s.sendto(b'x', ('8.8.8.8', 53)); print('CONNECTED')")], None),
            ("interface up", ("ip -o link 2>/dev/null | grep -v 'lo:' | grep -q UP && echo CONNECTED; "
                             "ip link set lo up 2>&1 && echo CONNECTED"), None),
            ("host abstract unix socket", [PY, "-c", ("import socket; s = socket.socket(socket.AF_UNIX); "
                                                     f"s.connect('\\0{self.name}'); print('CONNECTED')")], self.abstract),
            ("host unix socket in tmp", [PY, "-c", ("import socket; s = socket.socket(socket.AF_UNIX); "
                                                   f"s.connect({self.unix_file.address!r}); print('CONNECTED')")],
             self.unix_file),
        ]
        for i, (name, command, server) in enumerate(forms):
            yield f"network: {name}", refused(command, server), i < 5

    def secrets_(self) -> Iterator[tuple[str, Check, bool]]:
        def hidden(command: str | list[str], needle: str) -> Check:
            def check() -> tuple[bool, str]:
                result = self.run(command)
                return needle not in result.output, first_line(result)
            return check

        # a read must not show the secret (the name is in the command, and in its error); a listing, the name

        for where, path in self.canaries.items():
            name, rel = path.name, str(path).lstrip("/")
            forms: list[tuple[str, str | list[str], str]] = [
                ("cat", f"cat {path}", self.token),
                ("python open", [PY, "-c", f"print(open({str(path)!r}).read())"], self.token),
                ("umount the cover", f"umount {where} 2>&1; umount -l {where} 2>&1; cat {path}", self.token),
                ("ls", f"ls -la {where}", self.name),
                ("python listdir", [PY, "-c", f"import os; print(os.listdir({where!r}))"], self.name),
                ("find", f"find {where} -maxdepth 2 -name '*canary*'", self.name),
                ("dot-dot", f"cat {'../' * 8}{rel}", self.token),
                ("/proc/1/root", f"cat /proc/1/root{path} /proc/self/root{path}", self.token),
                ("symlink", f"ln -s {path} link; cat link", self.token),
                ("cp", f"cp {path} . && cat {name}", self.token),
                ("bind mount", f"mkdir -p m && mount --bind {where} m 2>&1; cat m/{name}", self.token),
                # `..` from a path the sandbox shows again (the interpreter) must stay on the cover
                ("dot-dot from a shown path", f"cat {sys.base_prefix}/{'../' * 8}{rel}", self.token),
            ]
            for i, (form, command, needle) in enumerate(forms):
                yield f"read {where}: {form}", hidden(command, needle), i < 4
        env_forms: list[tuple[str, str | list[str]]] = [
            ("env", "env"),
            ("/proc/1/environ", "tr '\\0' '\\n' < /proc/1/environ"),
            ("/proc/<host pid>/environ", f"cat /proc/{self.holder.pid}/environ /proc/{os.getpid()}/environ | tr '\\0' '\\n'"),
            ("python os.environ", [PY, "-c", "import os; print(dict(os.environ))"]),
            ("printenv", "printenv AGENT_RL_CANARY_SECRET"),
            ("/proc/self/environ", "tr '\\0' '\\n' < /proc/self/environ"),
            ("every /proc/*/environ", "cat /proc/[0-9]*/environ | tr '\\0' '\\n'"),
            ("python every environ", [PY, "-c", ("import glob\nfor p in glob.glob('/proc/[0-9]*/environ'):\n"
                                                "    print(open(p, 'rb').read())")]),
        ]
        for i, (form, command) in enumerate(env_forms):
            yield f"environment: {form}", hidden(command, self.token), i < 4

        def other_workspace(command: Callable[[Path], str], needle: Callable[[Path], str]) -> Check:
            def check() -> tuple[bool, str]:
                with self.box() as first:
                    secret = first.workspace / "secret.txt"
                    secret.write_text(self.token)
                    secret.chmod(0o644)
                    result = self.run(command(first.workspace))
                return needle(first.workspace) not in result.output, first_line(result)
            return check

        yield "another sandbox's file", other_workspace(lambda ws: f"cat {ws}/secret.txt", lambda _: self.token), True
        yield "another sandbox's folder", other_workspace(lambda ws: f"ls -R {ws.parent}", lambda ws: ws.name), False

    def appworld(self) -> Iterator[tuple[str, Check, bool]]:
        """The model's code in real AppWorld env steps: the env's `LimitedWorker` must hide the same secrets.
        Each cell prints CELL_RAN first, so a trial holds only where the code ran and the sandbox stopped it
        (AppWorld's own guard, which pathlib's read_text, `__import__` and os.posix_spawn pass, is not tried)."""
        if appworld_missing():
            return
        env = AppWorldEnv(split="test", max_steps=10_000, timeout_s=5, max_output_chars=100_000)
        self.stack.callback(env.close)
        episode = {"over": True}

        def cell(code: str, needle: str, server: TCPServer | UnixServer | None = None) -> Check:
            def check() -> tuple[bool, str]:
                if episode["over"]:
                    env.reset(options={"task_index": 0})
                before = self.tcp.accepted
                marked = f"print({CELL_RAN[:4]!r} + {CELL_RAN[4:]!r})\n{code}"  # the marker is not in the code
                obs, _, terminated, truncated, _ = env.step(marked)
                episode["over"] = terminated or truncated
                reached = (isinstance(server, TCPServer) and server.accepted > before
                           or isinstance(server, UnixServer) and server.accepted() > 0)
                lines = [line.strip() for line in obs.splitlines() if line.strip() not in ("", CELL_RAN)]
                detail = (lines[-1] if lines else "(no output)")[:160]
                return CELL_RAN in obs and needle not in obs and not reached, detail
            return check

        read = "from pathlib import Path\n"
        for i, (where, path) in enumerate(self.canaries.items()):
            yield f"appworld: read {where}", cell(f"{read}print(Path({str(path)!r}).read_text())", self.token), True
            listing = f"import os\nprint(sorted(entry.name for entry in os.scandir({where!r})))"
            yield f"appworld: list {where}", cell(listing, self.name), i == 0
        tmp_canary = self.canaries[str(Path(tempfile.gettempdir()).resolve())]
        home_canary = self.canaries[str(Path.home().resolve())]
        # `..` from a path shown again (importing sys is refused by AppWorld's guard; __import__ is not)
        up = f"__import__('sys').prefix + '/' + '../' * 8 + {str(tmp_canary).lstrip('/')!r}"
        yield "appworld: dot-dot from the interpreter", cell(f"{read}print(Path({up}).read_text())", self.token), False


        def environ(*pids: str | int) -> str:
            paths = [f"/proc/{pid}/environ" for pid in pids]
            return (f"{read}for p in {paths!r}:\n"
                    "    try: print(Path(p).read_text(encoding='latin-1'))\n    except OSError as err: print(err)")

        every = (f"{read}for p in Path('/proc').glob('[0-9]*/environ'):\n"
                 "    try: print(p.read_text(encoding='latin-1'))\n    except OSError as err: print(err)")
        yield "appworld: os.environ", cell("import os\nprint(dict(os.environ))", self.token), True
        yield "appworld: /proc/self/environ", cell(environ("self", 1), self.token), False
        yield "appworld: /proc/<host pid>/environ", cell(environ(self.holder.pid, os.getpid()), self.token), True
        yield "appworld: every /proc/*/environ", cell(every, self.token), False

        def connect(address: str) -> str:
            return f"s = __import__('socket').create_connection({address}, timeout=2)\nprint('CONNECTED')"

        port = self.tcp.port
        yield "appworld: host server 127.0.0.1", cell(connect(f"('127.0.0.1', {port})"), "CONNECTED", self.tcp), True
        yield "appworld: host server localhost", cell(connect(f"('localhost', {port})"), "CONNECTED", self.tcp), False
        unix = f"s = __import__('socket').socket(1)\ns.connect({self.abstract.address!r})\nprint('CONNECTED')"
        yield "appworld: host abstract unix socket", cell(unix, "CONNECTED", self.abstract), False
        # a shell past AppWorld's guard, with the worker's environment: the canaries, every environ, the covers
        script = (f"cat {' '.join(map(str, self.canaries.values()))}; env; cat /proc/[0-9]*/environ; "
                  f"umount -l /tmp; umount -l {Path.home()}; cat {tmp_canary} {home_canary}")
        shell = (f"import os\n{read}"
                 "out = [(os.POSIX_SPAWN_OPEN, 1, 'shell.txt', os.O_WRONLY | os.O_CREAT, 0o600),\n"
                 "       (os.POSIX_SPAWN_DUP2, 1, 2)]\n"
                 f"pid = os.posix_spawn('/bin/sh', ['sh', '-c', {script!r}], os.environ, file_actions=out)\n"
                 "os.waitpid(pid, 0)\nprint(Path('shell.txt').read_text(encoding='latin-1'))")
        yield "appworld: a shell past the guard", cell(shell, self.token), True

    def leftovers(self) -> Iterator[tuple[str, Check, bool]]:
        def none_left(command: str | list[str], marker: str, **limits: float) -> Check:
            def check() -> tuple[bool, str]:
                with self.box(**limits) as sandbox:
                    start = time.monotonic()
                    result = sandbox.run(argv_of(command))
                    took = time.monotonic() - start
                    left = processes_of(marker, sandbox.uid)  # right when the command has returned
                for pid in left:  # a failed trial must not leak into the next ones
                    try:
                        os.kill(pid, 9)
                    except ProcessLookupError:
                        pass
                return not left, f"{first_line(result)} ({took:.1f} s); {len(left)} left: {left}"
            return check

        def sleeper(n: int) -> tuple[str, str]:  # a sleep whose command line is unique to this trial
            marker = f"{7000 + n}.{secrets.randbelow(10**6)}"
            return f"sleep {marker}", marker

        ignore = "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        py_daemon = (ignore + "if os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\n"
                     "os.close(1); os.close(2)\ntime.sleep(300)\n")
        forms: list[tuple[str, Callable[[str], str | list[str]], dict[str, float]]] = [
            ("background sleep", lambda s: f"{s} & echo started", {}),
            ("setsid double fork", lambda s: f"(setsid {s} &); echo started", {}),
            ("python daemon ignoring SIGTERM", lambda s: [PY, "-c", f"# {s}\n" + py_daemon], {}),
            ("nohup", lambda s: f"nohup {s} > /dev/null 2>&1 & echo started", {}),
            ("setsid", lambda s: f"setsid {s} > /dev/null 2>&1 < /dev/null & echo started", {}),
            ("sh ignoring SIGTERM", lambda s: f"(trap '' TERM; setsid sh -c 'trap \"\" TERM HUP; {s}' &) ; echo ok", {}),
            ("disown holding stdout", lambda s: f"{s} & disown; echo started", {}),
            # the command itself leaves unshare's process group, ignores SIGTERM, closes its output: it lingers
            ("lingering session leader", lambda s: [PY, "-c", f"# {s}\n" + ignore + "os.setsid()\n"
                                                    "os.close(1); os.close(2)\ntime.sleep(300)\n"], {"timeout_s": 2}),
            ("session leader past the timeout", lambda s: [PY, "-c", f"# {s}\n" + ignore + "os.setsid()\n"
                                                           "time.sleep(300)\n"], {"timeout_s": 1}),
            ("children past the timeout", lambda s: f"for i in 1 2 3; do (setsid {s} &); done; {s}", {"timeout_s": 1}),
        ]
        for i, (name, make, limits) in enumerate(forms):
            command, marker = sleeper(i)
            yield f"left behind: {name}", none_left(make(command), marker, **limits), i < 3 or i == 7


def sandbox_trials(quick: bool = False) -> list[dict]:
    """Every hostile trial (about 50 with `quick`), one dict each; [] where the host has no namespaces."""
    if isolation() != "namespaces":
        return []
    rows = []
    with ExitStack() as stack:
        campaign = Campaign(stack)
        families = [campaign.resources, campaign.writes, campaign.deletes, campaign.network, campaign.secrets_,
                    campaign.appworld, campaign.leftovers]
        for family in families:
            for name, check, in_quick in family():
                if quick and not in_quick:
                    continue
                start = time.monotonic()
                try:
                    held, detail = check()
                except Exception as err:  # noqa: BLE001 - a trial that breaks did not show the attack failing
                    held, detail = False, f"the trial raised {type(err).__name__}: {err}"
                rows.append({"campaign": "sandbox", "trial": name, "held": held, "detail": detail,
                             "seconds": round(time.monotonic() - start, 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="about 50 trials instead of over 120")
    args = parser.parse_args()
    start = time.monotonic()
    rows = sandbox_trials(quick=args.quick)
    if not rows:
        print(f"isolation() is {isolation()!r}: no namespaces on this host, only rlimits hold; nothing to try")
        return
    if missing := appworld_missing():
        print(f"the appworld trials are left out: {missing}")
    for row in rows:
        print(f"{'held' if row['held'] else 'BROKEN':6}  {row['trial']:48}  {row['detail']}")
    broken = sum(not row["held"] for row in rows)
    print(f"{len(rows) - broken}/{len(rows)} held in {time.monotonic() - start:.0f} s")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
