"""The reconcile loop: observed + desired -> plan -> actions on the nodes.

The loop thread wakes on a write, on a change in what the probers saw, and
every probe_interval. It never waits for a node: actions run on the fleet's
pool, their slots stay `pending` until they finish, and their results are
merged into the observation at once. Failed actions back off exponentially.
"""
import secrets
import threading
import time
from dataclasses import dataclass

from master import rollouts
from master.election import NotLeader
from master.events import iso
from model import UNKNOWN, UNSEEN, Container, DELETE, NEW, READY, UNTRUSTED
from remote import commands, lease, parse
from scheduler.backoff import Backoffs
from scheduler.reconcile import SPEC_CHANGED, converged, desired_count, reconcile


@dataclass(frozen=True)
class Bookkeeping:
    """What the loop knows beyond the store and the observation, copied at
    once under its lock (for the views)."""
    busy: frozenset             # services with a placement in flight
    backoff: dict               # service -> its back-off rows (Backoffs.by_service)
    drained: frozenset          # nodes that take no work, as of the last round
    plan: tuple                 # the last round's actions
    labels: dict                # node -> labels, as of the last round
    reconcile_seconds: float
    led: tuple                  # (epoch, reconcile rounds finished as its leader)


class Loop(threading.Thread):
    def __init__(self, store, fleet, observation, election, events, settings, clock=time.monotonic,
                 wall=time.time, vault=None, woken=None, on_round=lambda seconds: None, node_labels=dict):
        """node_labels() -> {node: labels} of the members in force (placement constraints)."""
        super().__init__(name="reconcile", daemon=True)
        self.vault = vault                         # unseals services' secrets for docker run
        self.store, self.fleet, self.obs, self.settings = store, fleet, observation, settings
        self.election, self.events = election, events
        self.on_round = on_round                   # callable(seconds) after each round (metrics)
        self.clock, self.wall = clock, wall
        self.stopping = threading.Event()
        self.woken = threading.Event() if woken is None else woken     # set to start a round soon
        self.lock = self.obs.condition()           # the loop's own; probers never take it
        self.pending = {}                          # (service, slot) -> target node
        self.action_ended = {}                     # node -> when the last action there ended
        self.removing = set()                      # container ids being removed
        self.backoffs = Backoffs()                 # failed placements and crash loops per slot
        self.ready_since = {}                      # node -> start of its current ready spell
        self.drained = frozenset()                 # nodes that take no work (from the store)
        self.node_labels, self.labels = node_labels, {}   # the members' labels, as of the last round
        self.last_plan = ()
        self.reconcile_seconds = 0.0
        self.node_statuses = {}                    # last status seen per node, for transitions
        self.led = (None, 0)                       # (epoch, reconcile rounds finished as its leader)

    # -- control ----------------------------------------------------------
    def wake(self):
        self.woken.set()

    def stop(self):
        self.stopping.set()
        self.woken.set()

    def run(self):
        seen = -1
        while not self.stopping.is_set():
            # Wake at the latest when a node may turn down, so its slots move at once.
            timeout = self.settings.probe_interval
            change = self.obs.next_change(self.clock())
            self.woken.wait(timeout=timeout if change is None else min(timeout, change + 0.005))
            self.woken.clear()
            if self.stopping.is_set():
                break
            try:
                self.step()
            except Exception as e:       # the loop must outlive any one bad round
                self.events.record("error", f"reconcile round failed: {type(e).__name__}: {e}")
            self.events.flush()
            with self.lock:
                if self.obs.generation != seen:
                    seen = self.obs.generation
                    self.woken.set()

    # -- one round ----------------------------------------------------------
    def step(self):
        started = self.clock()
        now = started
        services, self.drained, epoch = self._term_view()
        self.labels = self.node_labels()
        with self.lock:
            seen = self.obs.snapshot(now)          # statuses and containers, copied together
            statuses, everything = seen.statuses, seen.containers
            self._record_nodes(statuses, now)
            for service, slot, message in self.backoffs.observe(services, everything, now, self.wall()):
                self.events.record("exited", f"{service}.{slot}: {message}", service=service)
            if epoch is None:
                self.last_plan = ()
                return               # standbys and cut-off leaders never act
            observed = [c for c in everything if c.id not in self.removing]
            removing_nodes = {c.node for c in everything if c.id in self.removing}
            plan = reconcile(services, observed, statuses, now, self.backoffs.until(),
                             max_moves=self.settings.rebalance_parallelism, pending=dict(self.pending),
                             drained=self.drained, ready_since=self.ready_since, removing_nodes=removing_nodes,
                             wall=self.wall(), place_failures=self.backoffs.place_messages(),
                             node_labels=self.labels, place_nodes=self.backoffs.place_nodes(),
                             capacity=seen.capacity)
            self._forget_gone_slots(services, plan, statuses)
            self.last_plan = plan.actions
            for action in plan.changes:
                self._start(action, services, epoch)
            # Containers still being removed count until they are gone.
            forgotten, version = self._record_progress(services, self.obs.containers(), statuses, epoch)
            judged = rollouts.record(plan.verdicts, self.store, self.election, self.events, epoch,
                                     lambda: iso(self.wall()))
            self.led = (epoch, self.led[1] + 1 if self.led[0] == epoch else 1)
        if forgotten or judged:
            try:
                self.election.commit(epoch, max(v for v in (version, judged) if v))   # outside the lock
            except NotLeader as e:
                self.events.record("error", f"{'removal of ' + ', '.join(forgotten) if forgotten else 'a rollout'} "
                                            f"not replicated: {e}")
        if judged:
            self.wake()
        self.reconcile_seconds = self.clock() - started
        self.on_round(self.reconcile_seconds)

    def _forget_gone_slots(self, services, plan, statuses):
        """A global service's back-off keeps only the slots its plan still
        has (once every node was probed: before, the plan names no slot)."""
        if UNKNOWN in statuses.values():
            return
        for s in services:
            if s.is_global:
                self.backoffs.keep_only(s.name, {a.slot for a in plan.actions
                                                 if a.service == s.name and a.kind != "stop"})

    def _term_view(self):
        """(services, drained nodes, the epoch to act in), read together: an
        adoption never falls between them. The epoch is None when this master
        may not act."""
        def desired():
            return self.store.services(), frozenset(n for n, d in self.store.nodes().items() if d.get("drained"))
        try:
            with self.election.term() as epoch:
                return (*desired(), epoch)
        except NotLeader:
            return (*desired(), None)

    def _record_nodes(self, statuses, now):
        for node, status in sorted(statuses.items()):
            before = self.node_statuses.get(node)
            if status == before:
                continue
            self.node_statuses[node] = status
            if status == READY:
                self.ready_since[node] = now
            error = self.obs.error(node) or self.obs.why(node, now)
            self.store.set_node(node, status=status, since=iso(self.wall()))
            change = f"node {node} {before or 'new'} -> {status}"
            if status == UNTRUSTED:
                self.events.record("untrusted", f"{change}: {error}; nothing is sent to it until its key "
                                                f"is pinned (bicycle.py node trust {node})", node=node)
            else:
                self.events.record("node", change + (f" ({error})" if error else ""), node=node)

    def _record_progress(self, services, observed, statuses, epoch):
        """Mark converged services; forget deleted ones (a change of `epoch`).
        -> (names forgotten, the store version that holds their removal)."""
        forgotten, version = [], None
        for s in services:
            busy = any(k[0] == s.name for k in self.pending)
            if busy or not converged(s, observed, statuses, self.drained, self.labels):
                continue
            if s.state == NEW:
                self.store.mark_running(s.name, s.version)
                count = desired_count(s, statuses, self.drained, self.labels)
                self.events.record("converged", f"service {s.name} v{s.version} runs {count} replicas"
                                                f"{' (global)' if s.is_global else ''}", service=s.name)
            elif s.state == DELETE:
                try:
                    _, version, _ = self.election.local_change(
                        lambda: self.store.remove_service(s.name, s.version), epoch)
                except NotLeader:
                    break
                self.backoffs.forget(s.name)
                forgotten.append(s.name)
                self.events.record("deleted", f"service {s.name} removed", service=s.name)
            self.lock.notify_all()
        return forgotten, version

    # -- actions -------------------------------------------------------------
    def _start(self, action, services, epoch):
        spec = next((s.spec for s in services if s.name == action.service), None)
        if action.kind in ("place", "replace"):
            self.pending[(action.service, action.slot)] = action.node
        if action.container is not None and action.kind in ("stop", "replace"):
            self.removing.add(action.container.id)
            self.backoffs.expect_exit(action.container.id)
        self.fleet.submit(self._apply, action, spec, epoch)

    def _fenced(self, node, epoch, kind, argv, stdin=None):
        """Run a mutating engine command under the node's epoch fence. Work of
        an epoch that is over is dropped, here or (if it raced) on the node."""
        self.election.ensure_claimed(node, epoch)
        argv = lease.fenced(epoch, kind, argv, stdin_length=None if stdin is None else len(stdin))
        result = self.fleet.run(node, argv, stdin=stdin, check=lambda: self.election.check(epoch))
        if result.exit == lease.FENCED_EXIT:
            self.election.refused(node, epoch, result.stderr)
            raise NotLeader(f"node {node} fenced epoch {epoch}")
        if result.exit == lease.INPUT_EXIT:
            raise RuntimeError(result.stderr.strip() or f"node {node} got an incomplete input")
        return result

    def _apply(self, action, spec, epoch):
        key = (action.service, action.slot)
        try:
            if action.kind == "stop":
                self._remove(action.container, action.reason, epoch)
                return
            if action.stop_first:
                self._remove(action.container, f"{action.reason}, stop-first", epoch)
            placed = self._place(action, spec, epoch)
            if placed and action.container is not None and not action.stop_first:
                self._remove(action.container, action.reason, epoch)
        except NotLeader as e:
            self.events.record("error", f"{action.kind} {action.service}.{action.slot} not done: {e}",
                               service=action.service)
        except Exception as e:
            self.events.record("error", f"{action.kind} {action.service}.{action.slot}: {e}", service=action.service)
        finally:
            if action.reason == SPEC_CHANGED:          # a rollout's next batch waits for this one's health
                self.obs.list_soon(action.node)
            with self.lock:
                self.action_ended[action.node] = self.clock()
                if action.kind != "stop":
                    self.pending.pop(key, None)
                if action.container is not None:
                    self.removing.discard(action.container.id)
                self.lock.notify_all()
            self.wake()

    def _place(self, action, spec, epoch):
        key = (action.service, action.slot)
        name = commands.container_name(action.service, action.slot, secrets.token_hex(3))
        argv = commands.run(name, action.service, action.slot, spec, epoch)
        try:
            # Secrets reach docker on stdin (--env-file /dev/stdin): no file, no argv.
            stdin = self.vault.env_file(spec.secrets).encode() if spec.secrets else None
            result = self._fenced(action.node, epoch, "run", argv, stdin=stdin)
            self.obs.engine_acted(action.node, self.clock())     # it answered, whatever it said
            if not result.ok:
                raise RuntimeError(_place_error(parse.engine_error(result.stderr, result.exit), spec, action.node))
            cid = parse.container_id(result.stdout)
        except NotLeader:
            raise
        except Exception as e:
            with self.lock:
                failure = self.backoffs.place_failed(key, self.clock(), str(e), spec.digest(), action.node)
            self.events.record("failed", f"place {name} on {action.node}: {e} "
                                         f"(retry in {failure.not_before - self.clock():.0f}s)",
                               service=action.service, node=action.node, command=argv)
            return False
        now = self.wall()
        self.obs.add(Container(id=cid, name=name, node=action.node, service=action.service,
                               slot=action.slot, spec=spec.digest(), image=spec.image,
                               status="running", created_at=iso(now), started_at=iso(now), health=UNSEEN))
        with self.lock:
            self.backoffs.place_ok(key)
        self.events.record("placed", f"{name} on {action.node} ({action.reason})",
                           service=action.service, node=action.node, command=argv)
        return True

    def _remove(self, container, reason, epoch):
        argv = commands.remove(container.id)
        result = self._fenced(container.node, epoch, "remove", argv)
        self.obs.engine_acted(container.node, self.clock())
        if not result.ok and "No such container" not in result.stderr:
            raise RuntimeError(parse.engine_error(result.stderr, result.exit))
        self.obs.remove(container)
        self.events.record("removed", f"{container.name} on {container.node} ({reason})",
                           service=container.service, node=container.node, command=argv)

    # -- what the views read ---------------------------------------------------
    def placing_on(self, node):
        """Whether a placement on `node` is under way."""
        with self.lock:
            return node in self.pending.values()

    def last_action_end(self, node):
        """When the last action on `node` ended (monotonic; 0 for none): a
        listing sent before then may miss a container it made."""
        with self.lock:
            return self.action_ended.get(node, 0.0)

    def bookkeeping(self):
        with self.lock:
            return Bookkeeping(frozenset(key[0] for key in self.pending), self.backoffs.by_service(self.clock()),
                               self.drained, self.last_plan, self.labels, self.reconcile_seconds, self.led)


def _place_error(engine_words, spec, node):
    """What a failed docker run says, with the way out when the image is
    absent from a node that may not pull it."""
    if spec.pull == "never" and "no such image" in engine_words.lower():
        return (f"image {spec.image} is not on {node} and the service's pull is never: "
                f"push it there (bicycle.py image push {spec.image} --node {node}) [{engine_words}]")
    return engine_words
