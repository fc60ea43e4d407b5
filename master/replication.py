"""The desired state's copies on the nodes: the leader's grouped writes, and
the adoption of the newest readable copy by a new leader or a standby.

A write is acknowledged only once a majority of ALL nodes holds a copy at
least as new as the write, sent under the epoch the write was made in
(docs/design.md, Lease, fencing and failover). Writes are grouped: each node has
at most one replicate in flight, and it always sends the newest snapshot, so
a burst of writes costs every node a few sends, not one per write, and a slow
or unreachable node holds up only its own sender, never other nodes' copies
nor the lease renewals (which have their own pool).
"""
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from model import Stamp
from scheduler import lease as rules

RETRY_PAUSE = 0.2          # seconds between two sends to a node that failed, while a write waits


class NotLeader(Exception):
    """Raised to stop an action or a write: this master may not act now."""


class Replicator:
    """Sends the store's snapshot to every node for the writers waiting on it.

    snapshot(epoch) -> (version, bytes): the store as of now, raising
    NotLeader unless `epoch` is still this master's. send(node, epoch,
    version, data) -> True once the node holds that version (or a newer
    one); False or an exception when it does not.
    """

    def __init__(self, nodes, snapshot, send):
        self.nodes = list(nodes)
        self.snapshot, self.send = snapshot, send
        self.cond = threading.Condition()
        self.acked = {n: Stamp() for n in self.nodes}     # newest stamp each node confirmed
        self.wanted = Stamp()                             # newest stamp a writer waits for
        self.waiting = 0                                  # writers waiting now
        self.sending = set()                              # nodes with a sender running
        self.ended = set()                                # epochs that can take no more writes
        self.errors = {}                                  # node -> why its last send failed
        self.workers = max(1, len(self.nodes))
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="replicate")

    def commit(self, epoch, version, timeout):
        """Block until a majority of nodes holds (epoch, version) or newer.
        Raises NotLeader when the epoch ends first or `timeout` passes: the
        write's outcome is then unknown (it may still be applied later)."""
        want = Stamp(epoch, version)
        deadline = time.monotonic() + timeout
        with self.cond:
            self.wanted = max(self.wanted, want)
            self.waiting += 1
            try:
                self._start_senders()
                while True:
                    if epoch in self.ended:
                        raise NotLeader(f"epoch {epoch} ended before the write reached a majority")
                    # Only copies written under the write's own epoch hold it.
                    held = sum(1 for n in self.nodes if self.acked[n].epoch == epoch and self.acked[n] >= want)
                    if held >= rules.majority(len(self.nodes)):
                        return held
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise NotLeader(f"write reached {held} of {len(self.nodes)} nodes, no majority"
                                        + self._why())
                    self.cond.wait(left)
            finally:
                self.waiting -= 1

    def set_nodes(self, nodes):
        """The membership changed: majorities count `nodes` from the next check on."""
        with self.cond:
            self.nodes = list(nodes)
            for n in self.nodes:
                self.acked.setdefault(n, Stamp())
            if len(self.nodes) > self.workers:
                self.workers = len(self.nodes)
                self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="replicate")
            self.cond.notify_all()

    def end(self, epoch):
        """The epoch is over: its waiting writers fail at once, its senders stop."""
        with self.cond:
            self.ended.add(epoch)
            self.cond.notify_all()

    def close(self):
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _why(self):
        return "".join(f"; {n}: {e}" for n, e in sorted(self.errors.items()) if self.acked[n] < self.wanted)

    def _start_senders(self):
        for node in self.nodes:
            if node not in self.sending and self.acked[node] < self.wanted:
                self.sending.add(node)
                self.pool.submit(self._sender, node)

    def _sender(self, node):
        """Send the newest snapshot to `node` until it holds what was written.
        After a failure it tries again (RETRY_PAUSE later) only while a writer
        waits. The decision to stop and leaving `sending` are one step under
        the condition, so a writer never finds a sender that is about to go."""
        ok = True
        try:
            while True:
                with self.cond:
                    if not self._due(node, ok):
                        self.sending.discard(node)
                        self.cond.notify_all()
                        return
                    epoch = self.wanted.epoch
                ok = self._send_once(node, epoch)
                if not ok:
                    time.sleep(RETRY_PAUSE)
        except BaseException:
            with self.cond:
                self.sending.discard(node)
                self.cond.notify_all()
            raise

    def _due(self, node, last_ok):
        """Is there something newer to send to `node`, and a reason to try? (under cond)"""
        target = self.wanted
        return self.acked[node] < target and target.epoch not in self.ended and (last_ok or self.waiting > 0)

    def _send_once(self, node, epoch):
        try:
            version, data = self.snapshot(epoch)
            ok = self.send(node, epoch, version, data)
        except NotLeader:
            self.end(epoch)
            return False
        except Exception as e:          # an unreachable node is data, never a stopped writer
            ok, error = False, f"{type(e).__name__}: {e}"
        else:
            error = None if ok else "the node did not take the copy"
        with self.cond:
            if error:
                self.errors[node] = error
            if ok:
                self.acked[node] = max(self.acked[node], Stamp(epoch, version))
                self.errors.pop(node, None)
            self.cond.notify_all()
        return ok


def digest(data):
    """What the node checks a replica's input against before installing it."""
    return hashlib.sha256(data).hexdigest()


def newest_readable(replicas, event):
    """The document of the newest replica that reads as a state document, or
    None. Every newer copy that does not read (torn, garbled) is skipped with
    an event naming the node: one bad file never ends an election."""
    best, skipped = rules.best_replica(replicas)
    for node, replica, reason in skipped:
        event("replica", f"the replica on {node} at ({replica.stamp.epoch}, {replica.stamp.version}) "
                         f"is unreadable and was skipped: {reason}", node=node)
    return None if best is None else best[2]
