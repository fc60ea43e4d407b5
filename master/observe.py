"""What the master knows of the nodes: containers and probe history, in memory.

One prober thread per node lists Bicycle's containers over the node's
persistent connection every `probe_interval`; that listing is also the health
probe (it needs sshd and the engine). While a listing is out for longer than
`probe_interval`, the prober checks every `probe_interval` that SSH alone
still answers (`true` on a new channel of the same connection), so that a
busy engine is told from a silent node. Every time is the prober's own
clock; scheduler/health.py judges.

Results of the master's own actions are merged in at once ("optimistic"
entries) so the plan never acts twice on the same slot while a slower probe
is still on its way.

Locks: the observation has a small lock of its own, held only to record an
answer or to copy what a reader needs, never while calling out; probers take
no other lock, so neither the loop nor the API can delay the recording of an
answer. Waiters (the API's) wait on `changed`, a Signal raised after that
lock is released; the loop's lock is made here too (`condition()`) so that
the loop's own notifications reach the same waiters. Order: the loop's lock
may be held while taking the observation's lock or the Signal's, never the
other way round.
"""
import threading
import time
from collections import namedtuple
from concurrent.futures import Future, wait
from contextlib import contextmanager

from remote import commands, parse
from remote.transport import HostKeyError
from scheduler import health

LIST, PING = "list", "ping"          # the two requests a prober sends

# One consistent copy of the observation, for one reader.
Snapshot = namedtuple("Snapshot", "statuses containers last_seen errors capacity")


class Signal:
    """Tells waiting threads that something changed. Its lock is a leaf: held
    only to count and notify, no other lock is ever taken under it."""

    def __init__(self):
        self._condition = threading.Condition(threading.Lock())
        self.count = 0

    def notify(self):
        with self._condition:
            self.count += 1
            self._condition.notify_all()

    def mark(self):
        """Take a mark before checking a condition, then wait(mark, ...):
        a change in between is never missed."""
        with self._condition:
            return self.count

    def wait(self, mark, timeout):
        """Block until a change after `mark` or `timeout`; True on a change."""
        with self._condition:
            return self._condition.wait_for(lambda: self.count != mark, timeout)


class NotifyingCondition(threading.Condition):
    """A condition on an RLock whose notify_all also raises a Signal."""

    def __init__(self, signal):
        super().__init__(threading.RLock())
        self.signal = signal

    def notify_all(self):
        super().notify_all()
        self.signal.notify()

    notifyAll = notify_all


class NodeState:
    """One node's probe history and containers; changed only under the
    observation's lock."""

    def __init__(self, name):
        self.name = name
        self.ssh_answered = None       # monotonic time of the node's last answer over SSH (listing or ping)
        self.engine_answered = None    # monotonic time of the engine's last listing
        self.engine_acted = None       # monotonic time the engine last answered an action (docker run, rm)
        self.listing_sent = None       # monotonic sending time of the newest listing that came back
        self.last_seen = None          # wall-clock string of the same, for /state
        self.out = {}                  # LIST / PING -> when the request still out was sent
        self.unanswered_since = None   # sending of the first failed request since ssh_answered
        self.engine_unanswered_since = None   # sending of the first failed listing since engine_answered
        self.engine_error = False      # the last listing came back over SSH with an engine error
        self.last_failed = False       # the last listing failed
        self.untrusted = False         # the last attempt met a host key that is not pinned
        self.error = ""
        self.capacity = None           # (cpus, memory bytes) of its engine, read once
        self.containers = {}           # id -> Container
        self.added = {}                # id -> (Container, monotonic time added by an action)
        self.removed = {}              # id -> monotonic time removed by an action

    def probes(self):
        """The health input: silences count from requests sent after the last answer."""
        silent = [t for t in self.out.values() if _after(t, self.ssh_answered)]
        listing = self.out.get(LIST)
        # A listing out counts as the engine's silence from its sending, or
        # from the engine's last answer to an action since: an engine busy
        # starting containers lists slowly but answers them, and is not frozen.
        engine_silent = [listing if self.engine_acted is None else max(listing, self.engine_acted)] \
            if listing is not None and _after(listing, self.engine_answered) else []
        return health.Probes(
            answered=self.engine_answered,
            silent_since=_first([self.unanswered_since] + silent),
            engine_silent_since=_first([self.engine_unanswered_since] + engine_silent),
            engine_error=self.engine_error, failed=self.last_failed, untrusted=self.untrusted)

    def heard(self, at):
        """The node answered over SSH at `at`: requests sent before are not silences."""
        self.ssh_answered = at if self.ssh_answered is None else max(self.ssh_answered, at)
        if self.unanswered_since is not None and self.unanswered_since <= at:
            self.unanswered_since = None

    def not_heard(self, sent):
        """A request sent at `sent` failed without any SSH answer."""
        if _after(sent, self.ssh_answered):
            self.unanswered_since = _first([self.unanswered_since, sent])

    def listing_failed(self, sent):
        if _after(sent, self.engine_answered):
            self.engine_unanswered_since = _first([self.engine_unanswered_since, sent])


def _after(t, answered):
    return answered is None or t >= answered


def _first(times):
    times = [t for t in times if t is not None]
    return min(times) if times else None


class Observation:
    def __init__(self, node_names, settings, clock=time.monotonic):
        self.clock = clock
        self.settings = settings
        self.limits = health.Limits.of(settings)
        self.nodes = {n: NodeState(n) for n in node_names}
        self.lock = threading.Lock()       # small: records and copies only
        self.changed = Signal()            # raised after `lock` is released
        self.generation = 0                # moves on every change that matters to the plan
        self.wanted = {}                   # node -> Event: a listing is wanted before the next interval

    def condition(self):
        """A new condition for a user of the observation (the loop's lock):
        its notify_all reaches whoever waits on `changed`."""
        return NotifyingCondition(self.changed)

    # -- reading --------------------------------------------------------
    def _probes(self):
        with self.lock:
            return {n: s.probes() for n, s in self.nodes.items()}

    def statuses(self, now):
        return {n: health.node_status(p, now, self.limits) for n, p in self._probes().items()}

    def next_change(self, now):
        """Seconds until some node's status changes without a new probe
        (a silence reaches a limit), or None."""
        waits = [health.next_change(p, now, self.limits) for p in self._probes().values()]
        waits = [w for w in waits if w is not None]
        return min(waits) if waits else None

    def containers(self):
        with self.lock:
            return [c for s in self.nodes.values() for c in s.containers.values()]

    def snapshot(self, now):
        """Statuses, containers and node facts, copied together under the lock once."""
        with self.lock:
            probes = {n: s.probes() for n, s in self.nodes.items()}
            containers = [c for s in self.nodes.values() for c in s.containers.values()]
            last_seen = {n: s.last_seen for n, s in self.nodes.items()}
            errors = {n: s.error for n, s in self.nodes.items()}
            capacity = {n: s.capacity for n, s in self.nodes.items() if s.capacity is not None}
        statuses = {n: health.node_status(p, now, self.limits) for n, p in probes.items()}
        return Snapshot(statuses, containers, last_seen, errors, capacity)

    def empty(self, node, since):
        """Whether a listing of `node` sent at or after `since` came back and
        the node holds no container now; False for a node not listed since
        (down, or not probed yet) and for one that is not a member."""
        with self.lock:
            s = self.nodes.get(node)
            return s is not None and s.listing_sent is not None and s.listing_sent >= since and not s.containers

    def error(self, node):
        with self.lock:
            return self._state(node).error

    def why(self, node, now):
        """What makes the node not ready at `now`, in a few words ("" if nothing)."""
        with self.lock:
            return health.why(self._state(node).probes(), now, self.limits)

    # -- membership -----------------------------------------------------
    def add_node(self, name):
        """A node that joined: `unknown` until its first probe."""
        with self._recording():
            self.nodes.setdefault(name, NodeState(name))
            self._bump()

    def remove_node(self, name):
        """A node that left: its containers and history are forgotten; late
        answers of its prober go nowhere."""
        with self._recording():
            if self.nodes.pop(name, None) is not None:
                self._bump()
        self.list_soon(name)               # its prober wakes and sees it is stopped
        with self.lock:
            self.wanted.pop(name, None)    # a prober of a node of that name later gets its own

    def listing_wanted(self, node):
        """The Event a node's prober waits on between listings."""
        with self.lock:
            return self.wanted.setdefault(node, threading.Event())

    def list_soon(self, node):
        """Ask for a listing of `node` before its next interval (an action there
        ended: what it did, and the new container's health, show sooner)."""
        self.listing_wanted(node).set()

    def _state(self, name):
        """The node's state (under the lock); a throwaway one for a node that left."""
        return self.nodes.get(name) or NodeState(name)

    # -- writing --------------------------------------------------------
    @contextmanager
    def _recording(self):
        """One write under the small lock; waiters hear of a change after it is released."""
        with self.lock:
            before = self.generation
            yield
            bumped = self.generation != before
        if bumped:
            self.changed.notify()

    def _bump(self):
        self.generation += 1

    def asked(self, node, kind, at):
        """The prober sent a LIST or PING at `at`; it is out until answered or failed."""
        with self._recording():
            self._state(node).out[kind] = at

    def probe_ok(self, node, started, listed, wall_now, answered=None):
        """The listing sent at `started` came back at `answered` (default: now)."""
        answered = self.clock() if answered is None else answered
        with self._recording():
            s = self._state(node)
            _done(s, LIST, started)
            current = {c.id: c for c in listed if s.removed.get(c.id, -1) <= started}
            for cid, (c, added_at) in s.added.items():
                if added_at > started:
                    current[cid] = c
            s.added = {k: v for k, v in s.added.items() if v[1] > started}
            s.removed = {k: v for k, v in s.removed.items() if v > started}
            was_failed = s.last_failed or s.engine_answered is None or s.unanswered_since is not None
            before = s.containers
            s.containers = current
            s.heard(answered)
            s.engine_answered = answered if s.engine_answered is None else max(s.engine_answered, answered)
            s.listing_sent = started if s.listing_sent is None else max(s.listing_sent, started)
            s.engine_unanswered_since = None
            s.last_seen, s.last_failed, s.engine_error, s.untrusted, s.error = wall_now, False, False, False, ""
            if was_failed or _digest(before) != _digest(current):
                self._bump()

    def probe_failed(self, node, error, untrusted=False, started=None, answered=None):
        """The listing sent at `started` (default: now) failed. `answered`:
        when SSH answered with the engine's error; None when nothing answered
        (no connection, no answer in time)."""
        started = self.clock() if started is None else started
        with self._recording():
            s = self._state(node)
            _done(s, LIST, started)
            if answered is None:
                s.not_heard(started)
            else:
                s.heard(answered)
            s.listing_failed(started)
            engine_error = answered is not None
            if not s.last_failed or s.untrusted != untrusted or s.engine_error != engine_error:
                s.error = str(error)
                self._bump()
            s.last_failed, s.untrusted, s.engine_error = True, untrusted, engine_error

    def ping_ok(self, node, sent, answered=None):
        """SSH answered the check sent at `sent`, at `answered` (default: now)."""
        answered = self.clock() if answered is None else answered
        with self._recording():
            s = self._state(node)
            _done(s, PING, sent)
            was_silent = s.unanswered_since is not None
            s.heard(answered)
            if was_silent and s.unanswered_since is None:
                self._bump()

    def ping_failed(self, node, sent, error, untrusted=False):
        """Nothing answered the check sent at `sent`."""
        with self._recording():
            s = self._state(node)
            _done(s, PING, sent)
            was_silent = s.unanswered_since is not None
            s.not_heard(sent)
            if (not was_silent and s.unanswered_since is not None) or (untrusted and not s.untrusted):
                s.error = str(error)
                s.untrusted = s.untrusted or untrusted
                self._bump()

    def engine_acted(self, node, at):
        """The node's engine answered an action (a docker run or rm) at `at`."""
        with self._recording():
            s = self.nodes.get(node)
            if s is not None:
                s.heard(at)
                s.engine_acted = at if s.engine_acted is None else max(s.engine_acted, at)

    def has_capacity(self, node):
        with self.lock:
            return node in self.nodes and self.nodes[node].capacity is not None

    def set_capacity(self, node, capacity):
        """What the node's engine has (placement weighs reservations against it)."""
        with self._recording():
            s = self.nodes.get(node)
            if s is not None and s.capacity != capacity:
                s.capacity = capacity
                self._bump()

    def add(self, container):
        with self._recording():
            s = self._state(container.node)
            s.added[container.id] = (container, self.clock())
            s.containers[container.id] = container
            self._bump()

    def remove(self, container):
        with self._recording():
            s = self._state(container.node)
            s.removed[container.id] = self.clock()
            s.added.pop(container.id, None)
            s.containers.pop(container.id, None)
            self._bump()


def _done(s, kind, sent):
    """The request of `kind` sent at `sent` is no longer out."""
    if s.out.get(kind) == sent:
        del s.out[kind]


def _digest(containers):
    return sorted((c.id, c.status, c.spec) for c in containers.values())


def _in_background(name, fn, *args):
    """fn(*args) on a daemon thread of its own -> a Future of its result."""
    future = Future()

    def run():
        try:
            future.set_result(fn(*args))
        except BaseException as e:        # noqa: B036 - handed to whoever waits
            future.set_exception(e)
    threading.Thread(target=run, name=name, daemon=True).start()
    return future


MIN_GAP = 0.25       # seconds at least between two listings of one node (when one is wanted sooner)


class Prober(threading.Thread):
    """Probes one node forever: lists its containers every probe_interval and
    records the answer or the failure; while a listing is out, checks every
    probe_interval that SSH alone still answers."""

    def __init__(self, node, fleet, observation, stopping, wall_iso):
        """stopping: an Event set when the master stops or the node leaves."""
        super().__init__(name=f"probe-{node}", daemon=True)
        self.node, self.fleet, self.obs, self.stopping = node, fleet, observation, stopping
        self.wall_iso = wall_iso
        self.interval = observation.settings.probe_interval
        self.wanted = observation.listing_wanted(node)
        self.reading = None                 # the read of the engine's capacity under way

    @property
    def connection(self):
        return self.fleet.connections[self.node]

    def run(self):
        while not self.stopping.is_set():
            started = self.obs.clock()
            listing = _in_background(f"list-{self.node}", self._list, started)
            listed = self._watch(listing)
            if listed and not self.obs.has_capacity(self.node) and (self.reading is None or self.reading.done()):
                self.reading = _in_background(f"capacity-{self.node}", self._capacity)    # never holds a probe
            # After a failure, try again within a second whatever the interval.
            pause = self.interval - (self.obs.clock() - started) if listed else min(self.interval, 1.0)
            if self._pause(max(0.0, pause)):
                return

    def _pause(self, seconds):
        """Wait until the next listing: `seconds`, or less when one is wanted
        sooner (never closer than MIN_GAP to the last); True when stopped."""
        if self.stopping.wait(min(seconds, MIN_GAP)):
            return True
        self.wanted.wait(max(0.0, seconds - MIN_GAP))
        self.wanted.clear()
        return self.stopping.is_set()

    def _watch(self, listing):
        """Wait for the listing (True when the engine answered); each
        probe_interval it is still out, check that SSH alone answers."""
        while not wait([listing], timeout=self.interval).done:
            if self.stopping.is_set():
                return False
            self._ping()
        return listing.exception() is None and listing.result()

    def _list(self, started):
        """One listing, bounded by engine_timeout; records its outcome at once."""
        self.obs.asked(self.node, LIST, started)
        try:
            result = self.connection.run(commands.list_containers(), timeout=self.obs.settings.engine_timeout)
        except Exception as e:           # no answer over SSH: no connection, or none in time
            self.obs.probe_failed(self.node, e, untrusted=isinstance(e, HostKeyError), started=started)
            return False
        answered = self.obs.clock()
        try:
            if not result.ok and not parse.only_vanished(result.stderr):
                raise RuntimeError(result.stderr.strip()[-300:] or f"exit {result.exit}")
            self.obs.probe_ok(self.node, started, parse.containers(self.node, result.stdout), self.wall_iso(),
                              answered=answered)
            return True
        except Exception as e:           # SSH answered, the engine did not (or not sensibly)
            self.obs.probe_failed(self.node, e, started=started, answered=answered)
            return False

    def _capacity(self):
        """Read the engine's CPUs and memory once (again after a failure)."""
        try:
            result = self.connection.run(commands.capacity(), timeout=self.obs.settings.engine_timeout)
            self.obs.set_capacity(self.node, parse.capacity(result.stdout))
        except Exception:            # read again after the next listing; until then no reservation goes here
            return

    def _ping(self):
        """An SSH keepalive on the same connection (sshd answers it without
        starting a process), bounded by down_after (by then the silence
        counts as down anyway)."""
        sent = self.obs.clock()
        self.obs.asked(self.node, PING, sent)
        try:
            self.connection.ping(timeout=self.obs.settings.down_after)
        except Exception as e:
            self.obs.ping_failed(self.node, sent, e, untrusted=isinstance(e, HostKeyError))
            return
        self.obs.ping_ok(self.node, sent, self.obs.clock())
