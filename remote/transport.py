"""Persistent SSH connections to nodes and the parallel fan-out over them.

One fabric Connection (paramiko underneath) per node, opened on first use,
reused by every command (each command is one channel on the same transport)
and re-opened after a failure. Host keys are pinned: only keys in Bicycle's
known_hosts are accepted (remote/hostkeys.py), never added on the fly; the
file is read again at each new connection, so a key pinned by
`bicycle.py node trust` counts from the next attempt.
"""
import shlex
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import fabric
import paramiko

from remote.hostkeys import HostKeyRefused, PinnedOnly, fingerprint


def command_line(argv):
    """The one place where an argv becomes a remote shell's command line:
    every word quoted, once (names were checked against patterns before)."""
    return shlex.join(argv)


class RemoteError(Exception):
    """A node could not be reached or did not answer in time."""


class HostKeyError(RemoteError):
    """The node presented a host key that is not pinned."""


@dataclass(frozen=True)
class Result:
    exit: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self):
        return self.exit == 0


class NodeConnection:
    """The one SSH connection to one node."""

    def __init__(self, node, known_hosts, connect_timeout=5.0, command_timeout=120.0, source=None):
        self.node = node
        self.source = source      # local address to connect from, when a master has its own
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self._conn = None
        self._lock = threading.Lock()
        self.opened = 0           # how many times a connection was opened (tests read it)
        self.on_command = None    # callable(node, seconds) after each command (metrics)

    def _transport(self, deadline):
        """The open transport, connecting first if needed. Bounded by `deadline`
        (monotonic): a caller never waits longer for another caller's connect,
        nor connects for longer itself."""
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RemoteError(f"{self.node.name}: still connecting to {self.node.address}")
        try:
            return self._open(deadline)
        finally:
            self._lock.release()

    def _open(self, deadline):
        conn = self._conn
        if conn is not None and conn.transport is not None and conn.transport.is_active():
            return conn.transport
        if conn is not None:
            conn.close()
        self._conn = None
        left = deadline - time.monotonic()
        if left <= 0:
            raise RemoteError(f"{self.node.name}: no time left to connect to {self.node.address}")
        wait = min(self.connect_timeout, left)
        conn = fabric.Connection(
            self.node.host, user=self.node.user, port=self.node.port,
            config=fabric.Config(lazy=True, overrides={"load_ssh_configs": False}),
            connect_timeout=wait,
            connect_kwargs={
                "key_filename": [self.node.key] if self.node.key else [],
                "look_for_keys": False, "allow_agent": False,
                "auth_timeout": wait, "banner_timeout": wait,
            })
        # Fabric adds unknown host keys by default; Bicycle pins them.
        conn.client.set_missing_host_key_policy(PinnedOnly())
        if self.known_hosts:
            conn.client.load_host_keys(self.known_hosts)
        try:
            if self.source:
                conn.connect_kwargs["sock"] = self._socket(wait)
            conn.open()
        except HostKeyRefused as e:
            _discard(conn)
            raise HostKeyError(f"{self.node.name}: host key not trusted: {e}") from None
        except paramiko.BadHostKeyException as e:
            _discard(conn)
            raise HostKeyError(f"{self.node.name}: host key not trusted: {self.node.address} presents "
                               f"{e.key.get_name()} key {fingerprint(e.key)}, pinned is "
                               f"{fingerprint(e.expected_key)}") from None
        except paramiko.SSHException as e:
            _discard(conn)
            raise RemoteError(f"{self.node.name}: ssh: {e}") from None
        except (OSError, EOFError) as e:
            _discard(conn)
            raise RemoteError(f"{self.node.name}: cannot connect to {self.node.address}: {e}") from None
        # Small request/answer packets: without NODELAY every channel open
        # waits ~40 ms on Nagle's algorithm and delayed ACKs.
        conn.transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.transport.set_keepalive(max(1, int(self.connect_timeout)))
        self._conn = conn
        self.opened += 1
        return conn.transport

    def _socket(self, wait):
        return socket.create_connection((self.node.host, self.node.port), timeout=wait,
                                        source_address=(self.source, 0))

    def run(self, argv, timeout=None, stdin=None):
        """Run argv on the node; returns Result whatever the exit code.
        stdin: text or bytes, or an iterable of bytes chunks sent as they come.

        Raises RemoteError when the node cannot be reached or the command
        outlives `timeout`, which bounds everything: waiting for a connect,
        connecting, sending stdin and reading the answer. A broken connection
        is dropped (the next command re-opens it); a command that is only
        slow ends its own channel and leaves the connection to the others.
        """
        command = command_line(argv)
        timeout = self.command_timeout if timeout is None else timeout
        start = time.monotonic()
        deadline = start + timeout
        transport = self._transport(deadline)
        chan = None
        try:
            left = max(0.001, deadline - time.monotonic())
            chan = transport.open_session(timeout=min(self.connect_timeout, left))
            chan.settimeout(left)
            chan.exec_command(command)
            if stdin is not None:
                for chunk in ([stdin] if isinstance(stdin, (str, bytes)) else stdin):
                    chan.sendall(chunk)
                chan.shutdown_write()
            out, err = _drain(chan, deadline)
            if not chan.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise socket.timeout("no exit status in time")
            code = chan.recv_exit_status()
            chan.close()
        except socket.timeout:
            # The node is slow (a busy engine), not necessarily gone: end this
            # command's channel and keep the connection for the others.
            _close_channel(chan)
            if not transport.is_active():
                self._drop(transport)
            raise RemoteError(f"{self.node.name}: no answer within {timeout:.1f}s") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            self._drop(transport)
            raise RemoteError(f"{self.node.name}: {type(e).__name__}: {e}") from None
        seconds = time.monotonic() - start
        if self.on_command is not None:
            self.on_command(self.node.name, seconds)
        return Result(code, out.decode(errors="replace"), err.decode(errors="replace"), seconds)

    def ping(self, timeout):
        """An SSH keepalive request on the open connection, answered by the
        node's sshd itself: no channel, no process started on the node, so a
        node busy forking and creating containers still answers at once.
        Returns the seconds it took; raises RemoteError when nothing answers
        within `timeout` (connecting included) or the connection broke."""
        start = time.monotonic()
        deadline = start + timeout
        transport = self._transport(deadline)
        answer = threading.Thread(target=_keepalive, args=(transport,), name=f"ping-{self.node.name}", daemon=True)
        answer.start()
        answer.join(max(0.0, deadline - time.monotonic()))
        if answer.is_alive():
            raise RemoteError(f"{self.node.name}: no answer within {timeout:.1f}s")
        if not transport.is_active():
            self._drop(transport)
            raise RemoteError(f"{self.node.name}: the connection closed")
        return time.monotonic() - start

    def stream(self, argv, combine_stderr=True):
        """Start a long-running command (a log follower, an image's archive)
        on its own channel of the same connection; returns a LineStream to
        read and close. Without combine_stderr, stdout alone is read."""
        transport = self._transport(time.monotonic() + self.connect_timeout)
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.set_combine_stderr(combine_stderr)
            chan.settimeout(0.5)
            chan.exec_command(command_line(argv))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise RemoteError(f"{self.node.name}: {type(e).__name__}: {e}") from None
        return LineStream(chan)

    def _drop(self, transport):
        """Forget a broken connection so that the next command opens a new one.
        Never waits for a connect in progress (that one replaces it anyway)."""
        if not self._lock.acquire(timeout=0.1):
            transport.close()
            return
        try:
            if self._conn is not None and self._conn.transport is transport:
                self._conn.close()
                self._conn = None
        finally:
            self._lock.release()

    def close(self):
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _keepalive(transport):
    """Send OpenSSH's keepalive request and wait for the answer (sshd
    refuses the request: the refusal is the answer), or for the connection
    to end. paramiko's wait has no bound of its own: the caller bounds it."""
    transport.global_request("keepalive@openssh.com", wait=True)


def _close_channel(chan):
    if chan is not None:
        try:
            chan.close()
        except (paramiko.SSHException, OSError, EOFError):
            pass


def _discard(conn):
    """Close a connection whose open failed. fabric's close() does nothing
    then (it never saw the connection as open), but paramiko may already hold
    the TCP connection and its transport thread: close the client itself."""
    conn.close()
    conn.client.close()


class LineStream:
    """Lines of a running remote command, as they come."""

    def __init__(self, chan):
        self.chan = chan
        self.buffer = b""

    def lines(self, stopping):
        """Yield complete lines until the command ends or `stopping` is set."""
        while not stopping.is_set():
            try:
                data = self.chan.recv(65536)
            except socket.timeout:
                continue
            except (OSError, EOFError, paramiko.SSHException):
                break
            if not data:
                break
            self.buffer += data
            *complete, self.buffer = self.buffer.split(b"\n")
            for line in complete:
                yield line.decode(errors="replace")
        if self.buffer:
            yield self.buffer.decode(errors="replace")
            self.buffer = b""

    def chunks(self, idle_timeout):
        """Yield the output as it comes, in chunks of bytes; RemoteError when
        nothing comes for `idle_timeout` seconds."""
        quiet_since = time.monotonic()
        while True:
            try:
                data = self.chan.recv(1 << 20)
            except socket.timeout:
                if time.monotonic() - quiet_since > idle_timeout:
                    raise RemoteError(f"no output for {idle_timeout:.0f}s") from None
                continue
            except (OSError, EOFError, paramiko.SSHException) as e:
                raise RemoteError(f"{type(e).__name__}: {e}") from None
            if not data:
                return
            quiet_since = time.monotonic()
            yield data

    def exit_status(self):
        """The command's exit code, once its output has ended."""
        return self.chan.recv_exit_status()

    def exit_status_if_ended(self):
        """The command's exit code if it ended, else None (no waiting)."""
        return self.chan.recv_exit_status() if self.chan.exit_status_ready() else None

    def close(self):
        self.chan.close()


def _drain(chan, deadline):
    """stdout and stderr of a command, read until stdout closes; socket.timeout
    once `deadline` (monotonic) passes, whatever each read waited."""
    out, err = bytearray(), bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("command timed out")
        chan.settimeout(left)
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
            continue
        data = chan.recv(65536)      # blocks up to the channel timeout
        if data:
            out += data
            continue
        # stdout closed: collect what is left on stderr
        while chan.recv_stderr_ready() or not chan.exit_status_ready():
            chunk = chan.recv_stderr(65536)
            if not chunk:
                break
            err += chunk
        return bytes(out), bytes(err)


class Fleet:
    """Connections to every node of an inventory and the fan-out over them."""

    def __init__(self, nodes, known_hosts, connect_timeout=5.0, command_timeout=120.0, per_node=4, source=None,
                 send_delay=0.0, on_command=None):
        """on_command(node, seconds): after each command on any connection,
        those of nodes that join later too (metrics)."""
        self.known_hosts, self.connect_timeout, self.command_timeout = known_hosts, connect_timeout, command_timeout
        self.source, self.per_node, self.on_command = source, per_node, on_command
        self.connections = {n.name: self._connection(n) for n in nodes}
        self.send_delay = send_delay    # tests only: a checked command waits this long before it goes
        self.slots = {n.name: threading.BoundedSemaphore(per_node) for n in nodes}
        self.workers = max(4, len(nodes) * (per_node + 1))
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="remote")

    def run(self, node, argv, timeout=None, stdin=None, check=None):
        """One command on one node, at most `per_node` at once per node.
        `check()` runs once a slot is free, just before the command: it raises
        to drop a command whose reason went away while it waited."""
        with self.slots[node]:
            if check is not None:
                check()
                if self.send_delay:
                    time.sleep(self.send_delay)
            return self.connections[node].run(argv, timeout, stdin)

    def fan_out(self, fn, nodes=None):
        """fn(node_name) on every node in parallel -> {node: result or exception}."""
        nodes = list(self.connections) if nodes is None else list(nodes)
        return dict(zip(nodes, self.fan_out_items(fn, nodes)))

    def fan_out_items(self, fn, items):
        """fn(item) for every item in parallel -> [result or exception], in order."""
        futures = [self.pool.submit(fn, item) for item in items]
        results = []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as e:     # a bad node is data, never a stopped sweep
                results.append(e)
        return results

    def submit(self, fn, *args):
        return self.pool.submit(fn, *args)

    def add(self, node):
        """A node that joined: its connection (opened on first use) and slots."""
        self.connections[node.name] = self._connection(node)
        self.slots[node.name] = threading.BoundedSemaphore(self.per_node)
        self.pool, self.workers = _grown(self.pool, self.workers, len(self.connections) * (self.per_node + 1),
                                         "remote")

    def _connection(self, node):
        conn = NodeConnection(node, self.known_hosts, self.connect_timeout, self.command_timeout, self.source)
        conn.on_command = self.on_command
        return conn

    def remove(self, name):
        """A node that left: its connection is closed."""
        conn = self.connections.pop(name, None)
        if conn is not None:
            conn.close()

    def close(self):
        for c in list(self.connections.values()):
            c.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


class Rounds:
    """Rounds of one kind of call on many nodes, each round bounded in time, on
    a pool of their own (so other traffic never queues in front of them).

    A node slow to answer (cut off, or still connecting) counts as no answer
    and never holds a round up, and it gets no second call of the same kind
    while its first one still runs. Deadlines are real time: this waits for
    I/O, it decides nothing.
    """

    def __init__(self, workers, name):
        self.name, self.workers = name, workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self.inflight = {}            # (kind, node) -> future of a call still running
        self.lock = threading.Lock()

    def run(self, kind, fn, nodes, timeout):
        """fn(node) on every node; waits at most `timeout` seconds.
        -> {node: result, or the exception, or TimeoutError when not done}."""
        futures = self._submit(kind, fn, nodes)
        wait(futures.values(), timeout=timeout)
        return {n: _outcome(futures.get(n), n) for n in nodes}

    def run_until(self, kind, fn, nodes, timeout, enough):
        """As run, but returns as soon as enough() is true (checked as each call ends)."""
        futures = self._submit(kind, fn, nodes)
        deadline = time.monotonic() + timeout
        pending = set(futures.values())
        while pending and not enough():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
        return {n: _outcome(futures.get(n), n) for n in nodes}

    def _submit(self, kind, fn, nodes):
        futures = {}
        with self.lock:
            for n in nodes:
                busy = self.inflight.get((kind, n))
                if busy is not None and not busy.done():
                    continue
                futures[n] = self.inflight[(kind, n)] = self.pool.submit(fn, n)
        return futures

    def grow(self, workers):
        """Room for `workers` calls at once (nodes joined)."""
        with self.lock:
            self.pool, self.workers = _grown(self.pool, self.workers, workers, self.name)

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)


def _grown(pool, have, workers, name):
    """(pool, its size): `pool` of `have` workers, or a larger one in its
    place when `workers` are needed. The old one is not shut down (a thread
    may be submitting to it right now): its calls finish, and its idle
    workers end once it is collected."""
    if have >= workers:
        return pool, have
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name), workers


def _outcome(future, node):
    if future is None or not future.done():
        return TimeoutError(f"node {node} did not answer in time")
    return future.exception() or future.result()
