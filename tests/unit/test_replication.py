"""master.replication.Replicator: grouped copies to the nodes, acknowledged
only by a majority of copies written under the write's own epoch."""
import threading

import pytest

from master.replication import NotLeader, Replicator

NODES = ("n1", "n2", "n3")


class Nodes:
    """Fake nodes that take every copy (or refuse, for the names in `down`)."""

    def __init__(self):
        self.version = 0
        self.lock = threading.Lock()
        self.down = set()
        self.sent = []

    def snapshot(self, epoch):
        with self.lock:
            return self.version, b"{}"

    def send(self, node, epoch, version, data):
        self.sent.append((node, epoch, version))
        return node not in self.down

    def write(self):
        with self.lock:
            self.version += 1
            return self.version


@pytest.fixture
def nodes():
    return Nodes()


def test_a_write_is_acknowledged_once_a_majority_holds_it(nodes):
    r = Replicator(NODES, nodes.snapshot, nodes.send)
    nodes.down = {"n3"}
    assert r.commit(101, nodes.write(), timeout=5) >= 2
    nodes.down = {"n2", "n3"}
    with pytest.raises(NotLeader, match="reached 1 of 3"):
        r.commit(101, nodes.write(), timeout=0.5)
    r.close()


def test_copies_of_a_newer_epoch_never_acknowledge_a_write_of_an_older_one(nodes):
    """A writer of epoch 101 that comes late, after 202 began and was copied
    everywhere: those copies need not hold its write, so it is not acknowledged."""
    r = Replicator(NODES, nodes.snapshot, nodes.send)
    nodes.version = 7
    r.commit(202, 7, timeout=5)
    with pytest.raises(NotLeader):
        r.commit(101, 9, timeout=0.5)
    r.close()


def test_an_ended_epoch_fails_its_waiting_writers_at_once(nodes):
    r = Replicator(NODES, nodes.snapshot, nodes.send)
    nodes.down = set(NODES)
    errors = []

    def writer():
        try:
            r.commit(101, nodes.write(), timeout=60)
        except NotLeader as e:
            errors.append(str(e))

    t = threading.Thread(target=writer)
    t.start()
    r.end(101)
    t.join(10)
    assert not t.is_alive() and errors and "epoch 101 ended" in errors[0]
    r.close()


def test_many_writers_at_once_are_all_acknowledged_with_grouped_copies(nodes):
    """Every writer is answered (no sender leaves while a writer still needs it),
    and a burst costs far fewer copies than writes."""
    r = Replicator(NODES, nodes.snapshot, nodes.send)
    failures = []

    def writer():
        for _ in range(200):
            try:
                r.commit(101, nodes.write(), timeout=5)
            except NotLeader as e:
                failures.append(str(e))

    writers = [threading.Thread(target=writer) for _ in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    assert failures == []
    assert len(nodes.sent) < 3 * 1600
    r.close()
