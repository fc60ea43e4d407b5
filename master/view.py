"""JSON views of the cluster, built from the master's memory only.

`/state` and `GET /service` never call a node. Each answer reads the world
once (`World`): one snapshot of the observation (under the observation's own
small lock), the store's cached services and nodes, and the loop's
bookkeeping for those services (under the loop's lock, held only for that
copy); the JSON is built after every lock is released. No lock a prober
needs is ever held here.
"""
import os
from collections import defaultdict
from dataclasses import dataclass

from model import UNREACHABLE, parse_time
from scheduler.reconcile import running_count


def uptime(started_at, wall_now):
    started = parse_time(started_at) if started_at else None
    return None if started is None else round(max(0.0, wall_now - started), 1)


def container_view(c, wall_now, node_down=False):
    """A container as /state shows it; on a down node its state is not known
    any more: status `unknown`, and `last_status` says what was seen last."""
    view = {"id": c.id[:12], "name": c.name, "service": c.service, "slot": c.slot, "node": c.node,
            "image": c.image, "status": "unknown" if node_down else c.status, "created_at": c.created_at,
            "started_at": c.started_at or None,
            "uptime_s": uptime(c.started_at, wall_now) if c.running and not node_down else None}
    if node_down:
        view["last_status"] = c.status
    return view


@dataclass(frozen=True)
class LoopFacts:
    """The loop's bookkeeping about one service, copied under its lock."""
    status: str
    error: object
    backoff: list


@dataclass
class World:
    """Everything one answer needs, read once."""
    wall: float
    statuses: dict                 # node -> status
    everything: list               # every container observed, reachable or not
    observed: dict                 # service -> its containers on reachable nodes
    last_seen: dict                # node -> wall-clock string of its last listing
    errors: dict                   # node -> last probe error
    services: list                 # the store's services, by name
    loop: dict                     # service name -> LoopFacts
    plan: tuple                    # the loop's last plan
    reconcile_seconds: float
    led: tuple


class Views:
    def __init__(self, master):
        self.m = master

    def _world(self, services):
        loop = self.m.loop
        seen = loop.obs.snapshot(loop.clock())
        observed = defaultdict(list)
        for c in seen.containers:
            if seen.statuses.get(c.node) not in UNREACHABLE:
                observed[c.service].append(c)
        services = sorted(services, key=lambda s: s.name)
        with loop.lock:
            now = loop.clock()
            facts = {s.name: LoopFacts(loop.service_status(s, observed.get(s.name, []), seen.statuses),
                                       loop.service_error(s.name), loop.backoffs.slots(s.name, now))
                     for s in services}
            plan, seconds, led = loop.last_plan, loop.reconcile_seconds, loop.led
        return World(loop.wall(), seen.statuses, seen.containers, observed, seen.last_seen, seen.errors,
                     services, facts, plan, seconds, led)

    # -- services ----------------------------------------------------------------
    def service(self, service, with_containers=True):
        return self._service(self._world([service]), service, with_containers)

    def services(self):
        world = self._world(self.m.store.services())
        return [self._service(world, s, False) for s in world.services]

    def _service(self, world, service, with_containers):
        record = self.m.store.record(service.name) or {}
        facts = world.loop[service.name]
        mine = world.observed.get(service.name, [])
        view = {
            "name": service.name,
            "spec": service.spec.public_dict(),
            "version": service.version,
            "state": service.state,
            "status": facts.status,
            "replicas": {"desired": service.replicas,
                         "running": running_count(service, mine, world.statuses)},
            "created_at": record.get("created_at"),
            "updated_at": record.get("updated_at"),
        }
        if facts.error:
            view["error"] = facts.error
        if facts.backoff:
            view["backoff"] = facts.backoff
        if with_containers:
            # The last plan for this service, with the reason of every step (or why nothing moves).
            view["plan"] = [{"kind": a.kind, "slot": a.slot, "node": a.node or None, "reason": a.reason}
                            for a in world.plan if a.service == service.name]
            view["containers"] = [container_view(c, world.wall)
                                  for c in sorted(mine, key=lambda c: (c.slot, c.node))]
        return view

    # -- nodes -------------------------------------------------------------------
    def nodes(self):
        return self._nodes(self._world([]))

    def _nodes(self, world):
        stored = self.m.store.nodes()
        per_node = defaultdict(int)
        for c in world.everything:
            per_node[c.node] += 1
        return [{"name": info.name, "address": info.address, "user": info.user,
                 "labels": dict(info.labels), "status": world.statuses[info.name],
                 "availability": "drain" if stored.get(info.name, {}).get("drained") else "active",
                 "last_seen": world.last_seen[info.name], "error": world.errors[info.name] or None,
                 "containers": per_node[info.name]}
                for info in self.m.inventory.nodes]

    # -- the whole state ---------------------------------------------------------
    def _leader(self):
        leader = self.m.leader()
        return None if leader is None else {"name": leader[0], "api": leader[1], "epoch": leader[2]}

    def _masters(self, role, epoch):
        out = []
        for m in self.m.inventory.masters:
            if m["name"] == self.m.name:
                out.append({"name": m["name"], "api": m["api"], "reachable": True, "role": role, "epoch": epoch})
            else:
                seen = self.m.peers.get(m["name"], {"reachable": None, "role": None, "epoch": None})
                out.append(dict(seen, name=m["name"], api=m["api"]))
        return out

    def state(self):
        world = self._world(self.m.store.services())
        role, epoch = self.m.election.status()
        containers = [container_view(c, world.wall, world.statuses.get(c.node) in UNREACHABLE)
                      for c in sorted(world.everything, key=lambda c: (c.service, c.slot, c.node))]
        return {
            "master": {"name": self.m.name, "pid": os.getpid(), "api": self.m.api,
                       "started_at": self.m.started_at,
                       "uptime_s": round(world.wall - self.m.started_wall, 1), "role": role,
                       "epoch": epoch, "reason": self.m.election.reason or None,
                       "reconcile_seconds": round(world.reconcile_seconds, 4),
                       "rounds_led": world.led[1] if world.led[0] == epoch else 0},
            "leader": self._leader(),
            "masters": self._masters(role, epoch),
            "nodes": self._nodes(world),
            "services": [self._service(world, s, False) for s in world.services],
            "containers": containers,
        }
