"""remote.transport: every call is bounded, connect included; a fenced
command's reason is checked again once its per-node slot is free.

A local TCP server that accepts and never says a word stands in for a node
whose sshd hangs (or a firewall that lets the SYN through and nothing else).
"""
import socket
import threading

import pytest

from model import NodeInfo
from remote.transport import Fleet, NodeConnection, RemoteError


@pytest.fixture
def silent_node():
    """A listening socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield NodeInfo("silent", "127.0.0.1", port=server.getsockname()[1], user="nobody")
    stop.set()
    server.close()
    for s in accepted:
        s.close()


def test_a_call_never_waits_longer_than_its_own_timeout_for_another_calls_connect(silent_node):
    conn = NodeConnection(silent_node, known_hosts=None, connect_timeout=2.0)
    first = {}

    def slow_connect():
        try:
            conn.run(["true"], timeout=2.0)
        except RemoteError as e:
            first["error"] = str(e)

    t = threading.Thread(target=slow_connect)
    t.start()
    try:
        while not conn._lock.locked():          # the first call is connecting now
            t.join(0.01)
        with pytest.raises(RemoteError, match="still connecting"):
            conn.run(["true"], timeout=0.2)
    finally:
        t.join(10)
    assert "error" in first                     # the silent node never let it in


def test_a_connect_is_bounded_by_the_callers_timeout(silent_node):
    conn = NodeConnection(silent_node, known_hosts=None, connect_timeout=3600.0)
    done = threading.Event()
    errors = []

    def call():
        try:
            conn.run(["true"], timeout=0.3)
        except RemoteError as e:
            errors.append(str(e))
        done.set()

    threading.Thread(target=call, daemon=True).start()
    # Not a timing assertion: the call must end on its own, long before the
    # hour of connect_timeout would have; 20 s is only how long we look.
    assert done.wait(20), "the call waited for connect_timeout, not for its own timeout"
    assert errors and "silent" in errors[0]


def test_a_command_whose_reason_went_away_while_it_waited_for_a_slot_is_not_run():
    fleet = Fleet([NodeInfo("n1", "127.0.0.1")], known_hosts=None, per_node=1)
    ran = []
    fleet.connections["n1"].run = lambda argv, timeout=None, stdin=None: ran.append(argv)
    over = threading.Event()

    def check():
        if over.is_set():
            raise RuntimeError("epoch 101 is over")

    fleet.slots["n1"].acquire()                 # the node's only slot is busy
    errors = []
    t = threading.Thread(target=lambda: _record(errors, fleet.run, "n1", ["docker", "run"], check=check))
    t.start()
    over.set()                                  # the term ends while the command waits
    fleet.slots["n1"].release()
    t.join(10)
    assert ran == [] and errors == ["epoch 101 is over"]
    fleet.run("n1", ["docker", "rm"], check=lambda: None)
    assert ran == [["docker", "rm"]]
    fleet.close()


def _record(errors, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except RuntimeError as e:
        errors.append(str(e))
