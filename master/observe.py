"""What the master knows of the nodes: containers and probe history, in memory.

One prober thread per node lists Bicycle's containers over the node's
persistent connection every `probe_interval`; that listing is also the health
probe (it needs sshd and the engine). Results of the master's own actions are
merged in at once ("optimistic" entries) so the plan never acts twice on the
same slot while a slower probe is still on its way.
"""
import threading
import time

from remote import commands, parse
from remote.transport import HostKeyError
from scheduler.health import node_status


class NodeState:
    def __init__(self, name, now):
        self.name = name
        self.watched_since = now
        self.last_ok = None            # monotonic time of the last answered probe
        self.last_seen = None          # wall-clock string of the same, for /state
        self.last_failed = False
        self.untrusted = False         # the last probe met a host key that is not pinned
        self.error = ""
        self.containers = {}           # id -> Container
        self.added = {}                # id -> (Container, monotonic time added by an action)
        self.removed = {}              # id -> monotonic time removed by an action


class Observation:
    def __init__(self, node_names, settings, clock=time.monotonic, wall=None):
        self.clock = clock
        self.wall = wall
        self.settings = settings
        now = clock()
        self.nodes = {n: NodeState(n, now) for n in node_names}
        self.changed = threading.Condition(threading.RLock())
        self.generation = 0

    # -- reading --------------------------------------------------------
    def statuses(self, now):
        with self.changed:
            return {n: node_status(s.last_ok, s.last_failed, s.watched_since, now,
                                   self.settings["down_after"], self.settings["probe_interval"], s.untrusted)
                    for n, s in self.nodes.items()}

    def next_change(self, now):
        """Seconds until some node's status can change without a new probe
        (it reaches down_after), or None."""
        down_after = self.settings["down_after"]
        with self.changed:
            waits = [(s.last_ok if s.last_ok is not None else s.watched_since) + down_after - now
                     for s in self.nodes.values()]
        waits = [w for w in waits if w > 0]
        return min(waits) if waits else None

    def containers(self):
        with self.changed:
            return [c for s in self.nodes.values() for c in s.containers.values()]

    # -- writing --------------------------------------------------------
    def _bump(self):
        self.generation += 1
        self.changed.notify_all()

    def probe_ok(self, node, started, listed, wall_now):
        with self.changed:
            s = self.nodes[node]
            current = {c.id: c for c in listed if s.removed.get(c.id, -1) <= started}
            for cid, (c, added_at) in s.added.items():
                if added_at > started:
                    current[cid] = c
            s.added = {k: v for k, v in s.added.items() if v[1] > started}
            s.removed = {k: v for k, v in s.removed.items() if v > started}
            was_failed = s.last_failed or s.last_ok is None
            before = s.containers
            s.containers = current
            s.last_ok, s.last_seen, s.last_failed, s.error = self.clock(), wall_now, False, ""
            s.untrusted = False
            if was_failed or _digest(before) != _digest(current):
                self._bump()

    def probe_failed(self, node, error, untrusted=False):
        with self.changed:
            s = self.nodes[node]
            if not s.last_failed or s.untrusted != untrusted:
                s.last_failed, s.untrusted = True, untrusted
                s.error = str(error)
                self._bump()

    def add(self, container):
        with self.changed:
            s = self.nodes[container.node]
            s.added[container.id] = (container, self.clock())
            s.containers[container.id] = container
            self._bump()

    def remove(self, container):
        with self.changed:
            s = self.nodes[container.node]
            s.removed[container.id] = self.clock()
            s.added.pop(container.id, None)
            s.containers.pop(container.id, None)
            self._bump()


def _digest(containers):
    return sorted((c.id, c.status, c.spec) for c in containers.values())


class Prober(threading.Thread):
    """Probes one node forever: list containers, record the answer or the failure."""

    def __init__(self, node, fleet, observation, stopping, wall_iso):
        super().__init__(name=f"probe-{node}", daemon=True)
        self.node, self.fleet, self.obs, self.stopping = node, fleet, observation, stopping
        self.wall_iso = wall_iso

    def run(self):
        interval = self.obs.settings["probe_interval"]
        timeout = max(interval, self.obs.settings["down_after"])
        while not self.stopping.is_set():
            started = self.obs.clock()
            try:
                result = self.fleet.connections[self.node].run(commands.list_containers(), timeout=timeout)
                if not result.ok and not parse.only_vanished(result.stderr):
                    raise RuntimeError(result.stderr.strip()[-300:] or f"exit {result.exit}")
                self.obs.probe_ok(self.node, started, parse.containers(self.node, result.stdout), self.wall_iso())
            except Exception as e:       # any failure is a missed probe
                self.obs.probe_failed(self.node, e, untrusted=isinstance(e, HostKeyError))
                if self.stopping.wait(min(interval, 1.0)):
                    return
                continue
            self.stopping.wait(max(0.0, interval - (self.obs.clock() - started)))
