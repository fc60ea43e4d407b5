"""Nodes for unit tests of the master's lease code, without SSH or Docker.

Each node is a temporary HOME in which the real node scripts of
remote/lease.py run under /bin/sh and flock, exactly as sshd would run them;
what a network does to a call (a refused connect, a call that hangs until its
timeout, a session cut in the middle of its input) is injected here, at the
transport's interface.
"""
import os
import subprocess

from remote.transport import RemoteError, Result


class Clock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class ScriptNode:
    """One node: runs argv with /bin/sh in its own HOME; faults on demand."""

    def __init__(self, name, home):
        self.name, self.home = name, home
        self.dir = home / ".bicycle"
        os.makedirs(home, exist_ok=True)
        self.cut_off = False        # every call fails at once, like a refused connect
        self.hang = None            # an Event: calls wait for it (at most their timeout), then fail
        self.truncate = None        # a call's input is cut after this many bytes and the call dropped
        self.calls = []             # names of the scripts run here, in order

    def run(self, argv, timeout=None, stdin=None):
        self.calls.append(argv[3] if argv[:2] == ["sh", "-c"] else argv[0])
        hang = self.hang
        if hang is not None and not hang.wait(timeout or 60):
            raise RemoteError(f"{self.name}: no answer within {timeout}s")
        if self.cut_off:
            raise RemoteError(f"{self.name}: cannot connect")
        cut = self.truncate is not None and stdin is not None and len(stdin) > self.truncate
        data = stdin[:self.truncate] if cut else stdin
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        command = ["/bin/sh", *argv[1:]] if argv[0] == "sh" else argv
        proc = subprocess.run(command, input=data, capture_output=True, env=env, cwd=self.home, timeout=60)
        if cut:
            raise RemoteError(f"{self.name}: the connection dropped while sending")
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode(), 0.0)

    def file(self, name):
        path = self.dir / name
        return path.read_text() if path.exists() else None

    def write(self, name, text):
        os.makedirs(self.dir, exist_ok=True)
        (self.dir / name).write_text(text)

    def audit(self):
        return (self.file("audit") or "").splitlines()


class ScriptFleet:
    """The Fleet's interface over ScriptNodes."""

    def __init__(self, root, names=("n1", "n2", "n3")):
        self.connections = {n: ScriptNode(n, root / n) for n in names}

    def run(self, node, argv, timeout=None, stdin=None, check=None):
        if check is not None:
            check()
        return self.connections[node].run(argv, timeout, stdin)

    def submit(self, fn, *args):
        raise AssertionError("not used by these tests")
