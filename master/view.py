"""JSON views of the cluster, built from the master's memory only; the
status text of a service (`running`, `converging`, `failed`, `deleting`).

`/state` and `GET /service` never call a node. Each answer reads the world
once (`World`): one copy of the store's cache, one snapshot of the
observation (under the observation's own small lock), one copy of the loop's
bookkeeping (under the loop's lock, held only for that copy), and one
grouping of the containers by service; the JSON is built after every lock is
released, in time linear in services and containers. No lock a prober needs
is ever held here.
"""
import os
from collections import defaultdict
from dataclasses import dataclass

from master.events import iso
from model import DELETE, PAUSED, UNKNOWN, UNREACHABLE, UNSEEN, parse_time
from scheduler.backoff import failed
from scheduler.reconcile import converged, desired_count, running_count, unplaced


def uptime(started_at, wall_now):
    started = parse_time(started_at) if started_at else None
    return None if started is None else round(max(0.0, wall_now - started), 1)


def container_view(c, wall_now, node_down=False):
    """A container as /state shows it; on a down node its state is not known
    any more: status `unknown`, and `last_status` says what was seen last."""
    view = {"id": c.id[:12], "name": c.name, "service": c.service, "slot": c.slot, "node": c.node,
            "image": c.image, "status": "unknown" if node_down else c.status, "created_at": c.created_at,
            "started_at": c.started_at or None,
            "uptime_s": uptime(c.started_at, wall_now) if c.running and not node_down else None,
            "health": c.health if c.health not in ("", UNSEEN) else None}
    if node_down:
        view["last_status"] = c.status
    return view


def service_status(service, mine, statuses, book):
    """The status text of a service, from its containers `mine` and the
    loop's bookkeeping `book`."""
    if service.state == DELETE:
        return "deleting"
    if failed(book.backoff.get(service.name, ())) or any(
            c.status == "exited" and c.exit_code != 0 and service.spec.restart == "never" for c in mine):
        return "failed"
    if converged(service, mine, statuses, book.drained, book.labels) and service.name not in book.busy \
            and not service.rolling:
        return "running"                # a rollout ends when the loop writes its verdict
    if service.rollout is not None and service.rollout.state == PAUSED:
        return "paused"
    return "converging"


def update_view(service, mine, current):
    """A service's rolling update as /state shows it: its state and reason,
    `current` (the slots running the current spec), and the settings."""
    digest = service.spec.digest()
    rollout = service.rollout
    view = {"state": rollout.state if rollout else None, "reason": rollout.reason if rollout else "",
            "started_at": rollout.started_at if rollout else None, "version": rollout.version if rollout else None,
            "failed_slots": list(rollout.failed) if rollout else [],
            "slots": {"current": current, "other": len({c.slot for c in mine if c.spec != digest})},
            "settings": service.update.to_dict(), "rollback_settings": service.rollback.to_dict()}
    if service.previous is not None:
        view["previous"] = {"image": service.previous.image, "spec": service.previous.digest()}
    return view


def spec_word(service, digest):
    """Which spec of `service` a container's spec digest is."""
    if digest == service.spec.digest():
        return "current"
    return "previous" if service.previous is not None and digest == service.previous.digest() else "older"


@dataclass(frozen=True)
class ThisMaster:
    """This master as /state names it."""
    name: str
    api: str
    started_wall: float        # wall-clock time it started


@dataclass
class World:
    """Everything one answer needs, read once."""
    wall: float
    statuses: dict                 # node -> status
    everything: list               # every container observed, reachable or not
    observed: dict                 # service -> its containers on reachable nodes
    last_seen: dict                # node -> wall-clock string of its last listing
    errors: dict                   # node -> last probe error
    services: list                 # the services to show, by name
    stored: object                 # the store's cache (store.state.Cached)
    book: object                   # the loop's bookkeeping (master.loop.Bookkeeping)


class Views:
    def __init__(self, store, observation, loop, election, inventory, me, peers, leader, members=None):
        """loop: its bookkeeping() and clocks; election: its status() and
        reason; me: a ThisMaster; peers: the other masters as last seen
        (name -> dict, kept up to date by the daemon); leader: () ->
        (name, api, epoch) or None; members: () -> [NodeInfo] in force
        (master/membership.py; default: the inventory's nodes)."""
        self.store, self.observation, self.loop, self.election = store, observation, loop, election
        self.inventory, self.me, self.peers, self.leader = inventory, me, peers, leader
        self.members = members or (lambda: inventory.nodes)

    def _world(self, services=None):
        """The world for `services` (default: every stored service)."""
        stored = self.store.current()
        if services is None:
            services = [service for _, service in stored.services.values()]
        seen = self.observation.snapshot(self.loop.clock())
        observed = defaultdict(list)
        for c in seen.containers:
            if seen.statuses.get(c.node) not in UNREACHABLE:
                observed[c.service].append(c)
        return World(self.loop.wall(), seen.statuses, seen.containers, observed, seen.last_seen, seen.errors,
                     sorted(services, key=lambda s: s.name), stored, self.loop.bookkeeping())

    # -- services ----------------------------------------------------------------
    def service(self, service, with_containers=True):
        return self._service(self._world([service]), service, with_containers)

    def services(self):
        world = self._world()
        return [self._service(world, s, False) for s in world.services]

    def settled(self, service):
        """True once `service` converged or failed: what a write waits for.
        Its containers on every node count here, reachable or not."""
        world = self._world([service])
        mine = [c for c in world.everything if c.service == service.name]
        return service_status(service, mine, world.statuses, world.book) in ("running", "failed", "paused")

    def _service(self, world, service, with_containers):
        kept = world.stored.services.get(service.name)
        record = kept[0] if kept else {}
        rows = world.book.backoff.get(service.name, [])
        mine = world.observed.get(service.name, [])
        running = running_count(service, mine, world.statuses)
        view = {
            "name": service.name,
            "spec": service.spec.public_dict(),
            "version": service.version,
            "state": service.state,
            "status": service_status(service, mine, world.statuses, world.book),
            "mode": service.mode,
            "constraints": list(service.constraints),
            "replicas": {"desired": desired_count(service, world.statuses, world.book.drained, world.book.labels),
                         "running": running},
            "created_at": record.get("created_at"),
            "updated_at": record.get("updated_at"),
            "update": update_view(service, mine, running),
        }
        error = rows[-1]["message"] if rows else unplaced(service, world.book.plan)
        if error:
            view["error"] = error
        if rows:
            view["backoff"] = rows
        if with_containers:
            # The last plan for this service, with the reason of every step (or why nothing moves).
            view["plan"] = [{"kind": a.kind, "slot": a.slot, "node": a.node or None, "reason": a.reason}
                            for a in world.book.plan if a.service == service.name]
            view["containers"] = [dict(container_view(c, world.wall), spec=spec_word(service, c.spec))
                                  for c in sorted(mine, key=lambda c: (c.slot, c.node))]
        return view

    # -- nodes -------------------------------------------------------------------
    def nodes(self):
        return self._nodes(self._world([]))

    def _nodes(self, world):
        per_node = defaultdict(int)
        for c in world.everything:
            per_node[c.node] += 1
        return [{"name": info.name, "address": info.address, "user": info.user,
                 "labels": dict(info.labels), "status": world.statuses.get(info.name, UNKNOWN),
                 "availability": "drain" if world.stored.nodes.get(info.name, {}).get("drained") else "active",
                 "last_seen": world.last_seen.get(info.name), "error": world.errors.get(info.name) or None,
                 "containers": per_node[info.name]}
                for info in self.members()]

    # -- the whole state ---------------------------------------------------------
    def _leader(self):
        leader = self.leader()
        return None if leader is None else {"name": leader[0], "api": leader[1], "epoch": leader[2]}

    def _masters(self, role, epoch):
        out = []
        for m in self.inventory.masters:
            if m["name"] == self.me.name:
                out.append({"name": m["name"], "api": m["api"], "reachable": True, "role": role, "epoch": epoch})
            else:
                seen = self.peers.get(m["name"], {"reachable": None, "role": None, "epoch": None})
                out.append(dict(seen, name=m["name"], api=m["api"]))
        return out

    def state(self):
        world = self._world()
        role, epoch = self.election.status()
        led = world.book.led
        containers = [container_view(c, world.wall, world.statuses.get(c.node) in UNREACHABLE)
                      for c in sorted(world.everything, key=lambda c: (c.service, c.slot, c.node))]
        return {
            "master": {"name": self.me.name, "pid": os.getpid(), "api": self.me.api,
                       "started_at": iso(self.me.started_wall),
                       "uptime_s": round(world.wall - self.me.started_wall, 1), "role": role,
                       "epoch": epoch, "reason": self.election.reason or None,
                       "reconcile_seconds": round(world.book.reconcile_seconds, 4),
                       "rounds_led": led[1] if led[0] == epoch else 0},
            "leader": self._leader(),
            "masters": self._masters(role, epoch),
            "nodes": self._nodes(world),
            "services": [self._service(world, s, False) for s in world.services],
            "containers": containers,
        }
