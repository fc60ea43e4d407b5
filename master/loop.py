"""The reconcile loop: observed + desired -> plan -> actions on the nodes.

The loop thread wakes on a write, on a change in what the probers saw, and
every probe_interval. It never waits for a node: actions run on the fleet's
pool, their slots stay `pending` until they finish, and their results are
merged into the observation at once. Failed actions back off exponentially.
"""
import secrets
import threading
import time
from datetime import datetime, timezone

from model import Container, DELETE, NEW, READY
from remote import commands, parse
from scheduler.reconcile import reconcile, converged, running_count

FAILED_AFTER = 3          # consecutive failures of a slot that make its service `failed`
MAX_BACKOFF = 30.0


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Loop(threading.Thread):
    def __init__(self, store, fleet, observation, settings, clock=time.monotonic, wall=time.time):
        super().__init__(name="reconcile", daemon=True)
        self.store, self.fleet, self.obs, self.settings = store, fleet, observation, settings
        self.clock, self.wall = clock, wall
        self.stopping = threading.Event()
        self.woken = threading.Event()
        self.lock = self.obs.changed               # one lock for everything the API reads
        self.pending = {}                          # (service, slot) -> target node
        self.removing = set()                      # container ids being removed
        self.failures = {}                         # (service, slot) -> (count, not_before, message)
        self.last_plan = ()
        self._events = []
        self.reconcile_seconds = 0.0
        self.node_statuses = {}                    # last status seen per node, for transitions

    # -- control ----------------------------------------------------------
    def wake(self):
        self.woken.set()

    def stop(self):
        self.stopping.set()
        self.woken.set()

    def run(self):
        seen = -1
        while not self.stopping.is_set():
            self.woken.wait(timeout=self.settings["probe_interval"])
            self.woken.clear()
            if self.stopping.is_set():
                break
            try:
                self.step()
            except Exception as e:       # the loop must outlive any one bad round
                self.event("error", f"reconcile round failed: {type(e).__name__}: {e}")
            self.flush_events()
            with self.lock:
                if self.obs.generation != seen:
                    seen = self.obs.generation
                    self.woken.set()

    # -- one round ----------------------------------------------------------
    def step(self):
        started = self.clock()
        now = started
        services = self.store.services()
        with self.lock:
            statuses = self.obs.statuses(now)
            self._record_nodes(statuses)
            observed = [c for c in self.obs.containers() if c.id not in self.removing]
            backoff = {k: v[1] for k, v in self.failures.items()}
            plan = reconcile(services, observed, statuses, now, backoff,
                             max_moves=int(self.settings["rebalance_parallelism"]), pending=dict(self.pending))
            self.last_plan = plan.actions
            for action in plan.changes:
                self._start(action, services)
            # Containers still being removed count until they are gone.
            self._record_progress(services, self.obs.containers(), statuses)
        self.reconcile_seconds = self.clock() - started

    def _record_nodes(self, statuses):
        for node, status in sorted(statuses.items()):
            before = self.node_statuses.get(node)
            if status == before:
                continue
            self.node_statuses[node] = status
            error = self.obs.nodes[node].error
            self.store.set_node(node, status=status, since=iso(self.wall()))
            self.event("node", f"node {node} {before or 'new'} -> {status}" + (f" ({error})" if error else ""),
                       node=node)

    def _record_progress(self, services, observed, statuses):
        for s in services:
            busy = any(k[0] == s.name for k in self.pending)
            if busy or not converged(s, observed, statuses):
                continue
            if s.state == NEW:
                self.store.mark_running(s.name, s.version)
                self.event("converged", f"service {s.name} v{s.version} runs {s.replicas} replicas", service=s.name)
            elif s.state == DELETE:
                self.store.remove_service(s.name, s.version)
                self.event("deleted", f"service {s.name} removed", service=s.name)
            self.lock.notify_all()

    # -- actions -------------------------------------------------------------
    def _start(self, action, services):
        spec = next((s.spec for s in services if s.name == action.service), None)
        if action.kind in ("place", "replace"):
            self.pending[(action.service, action.slot)] = action.node
        if action.container is not None and action.kind in ("stop", "replace"):
            self.removing.add(action.container.id)
        self.fleet.submit(self._apply, action, spec)

    def _apply(self, action, spec):
        key = (action.service, action.slot)
        try:
            if action.kind == "stop":
                self._remove(action.container, action.reason)
                return
            stop_first = bool(spec.ports) and action.container is not None
            if stop_first:
                self._remove(action.container, f"{action.reason}, stop-first")
            placed = self._place(action, spec)
            if placed and action.container is not None and not stop_first:
                self._remove(action.container, action.reason)
        except Exception as e:
            self.event("error", f"{action.kind} {action.service}.{action.slot}: {e}", service=action.service)
        finally:
            with self.lock:
                if action.kind != "stop":
                    self.pending.pop(key, None)
                if action.container is not None:
                    self.removing.discard(action.container.id)
                self.lock.notify_all()
            self.wake()

    def _place(self, action, spec):
        key = (action.service, action.slot)
        name = commands.container_name(action.service, action.slot, secrets.token_hex(3))
        argv = commands.run(name, action.service, action.slot, spec)
        try:
            result = self.fleet.run(action.node, argv)
            if not result.ok:
                raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip()
                                   else f"docker run exited {result.exit}")
            cid = parse.container_id(result.stdout)
        except Exception as e:
            with self.lock:
                count = self.failures.get(key, (0, 0, ""))[0] + 1
                delay = min(MAX_BACKOFF, 2.0 ** (count - 1))
                self.failures[key] = (count, self.clock() + delay, str(e))
            self.event("failed", f"place {name} on {action.node}: {e} (retry in {delay:.0f}s)",
                       service=action.service, node=action.node, command=argv)
            return False
        now = self.wall()
        self.obs.add(Container(id=cid, name=name, node=action.node, service=action.service,
                               slot=action.slot, spec=spec.digest(), image=spec.image,
                               status="running", created_at=iso(now), started_at=iso(now)))
        with self.lock:
            self.failures.pop(key, None)
        self.event("placed", f"{name} on {action.node} ({action.reason})",
                   service=action.service, node=action.node, command=argv)
        return True

    def _remove(self, container, reason):
        argv = commands.remove(container.id)
        result = self.fleet.run(container.node, argv)
        if not result.ok and "No such container" not in result.stderr:
            raise RuntimeError(result.stderr.strip() or f"docker rm exited {result.exit}")
        self.obs.remove(container)
        self.event("removed", f"{container.name} on {container.node} ({reason})",
                   service=container.service, node=container.node, command=argv)

    # -- events ----------------------------------------------------------------
    def event(self, kind, message, **fields):
        with self.lock:
            self._events.append(dict(fields, time=iso(self.wall()), kind=kind, message=message))

    def flush_events(self):
        with self.lock:
            batch, self._events = self._events, []
        self.store.add_events(batch)

    # -- views for the API -----------------------------------------------------
    def service_status(self, service, observed, statuses):
        if service.state == DELETE:
            return "deleting"
        if converged(service, observed, statuses) and not any(k[0] == service.name for k in self.pending):
            return "running"
        if any(k[0] == service.name and v[0] >= FAILED_AFTER for k, v in self.failures.items()):
            return "failed"
        return "converging"

    def service_error(self, name):
        errors = [v[2] for k, v in sorted(self.failures.items()) if k[0] == name]
        return errors[-1] if errors else None

    def replicas_running(self, service, observed, statuses):
        return running_count(service, observed, statuses)

    def ready_nodes(self, now):
        return [n for n, s in self.obs.statuses(now).items() if s == READY]
