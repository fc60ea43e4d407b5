"""JSON views of the cluster, built from the master's memory only.

`/state` and `GET /service` never call a node: they read the last
observation, the store and the loop's bookkeeping under the loop's lock.
"""
import os

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


class Views:
    def __init__(self, master):
        self.m = master

    def _snapshot(self):
        loop = self.m.loop
        now = loop.clock()
        statuses = loop.obs.statuses(now)
        observed = [c for c in loop.obs.containers() if statuses.get(c.node) not in UNREACHABLE]
        return now, statuses, observed

    def service(self, service, with_containers=True):
        loop = self.m.loop
        with loop.lock:
            now, statuses, observed = self._snapshot()
            return self._service(service, statuses, observed, with_containers)

    def _service(self, service, statuses, observed, with_containers):
        loop = self.m.loop
        record = self.m.store.record(service.name) or {}
        view = {
            "name": service.name,
            "spec": service.spec.public_dict(),
            "version": service.version,
            "state": service.state,
            "status": loop.service_status(service, observed, statuses),
            "replicas": {"desired": service.replicas,
                         "running": running_count(service, observed, statuses)},
            "created_at": record.get("created_at"),
            "updated_at": record.get("updated_at"),
        }
        error = loop.service_error(service.name)
        if error:
            view["error"] = error
        backoff = loop.backoffs.slots(service.name, loop.clock())
        if backoff:
            view["backoff"] = backoff
        if with_containers:
            # The last plan for this service, with the reason of every step (or why nothing moves).
            view["plan"] = [{"kind": a.kind, "slot": a.slot, "node": a.node or None, "reason": a.reason}
                            for a in loop.last_plan if a.service == service.name]
        if with_containers:
            wall = loop.wall()
            mine = sorted((c for c in observed if c.service == service.name), key=lambda c: (c.slot, c.node))
            view["containers"] = [container_view(c, wall) for c in mine]
        return view

    def services(self):
        loop = self.m.loop
        with loop.lock:
            now, statuses, observed = self._snapshot()
            return [self._service(s, statuses, observed, False)
                    for s in sorted(self.m.store.services(), key=lambda s: s.name)]

    def nodes(self):
        loop = self.m.loop
        with loop.lock:
            now, statuses, observed = self._snapshot()
            return self._nodes(statuses, loop.obs.containers())

    def _nodes(self, statuses, everything):
        loop = self.m.loop
        stored = self.m.store.nodes()
        nodes = []
        for info in self.m.inventory.nodes:
            ns = loop.obs.nodes[info.name]
            nodes.append({"name": info.name, "address": info.address, "user": info.user,
                          "labels": dict(info.labels), "status": statuses[info.name],
                          "availability": "drain" if stored.get(info.name, {}).get("drained") else "active",
                          "last_seen": ns.last_seen, "error": ns.error or None,
                          "containers": sum(1 for c in everything if c.node == info.name)})
        return nodes

    def _leader(self):
        leader = self.m.leader()
        return None if leader is None else {"name": leader[0], "api": leader[1], "epoch": leader[2]}

    def _masters(self):
        out = []
        for m in self.m.inventory.masters:
            if m["name"] == self.m.name:
                out.append({"name": m["name"], "api": m["api"], "reachable": True,
                            "role": self.m.election.role_name, "epoch": self.m.election.epoch})
            else:
                seen = self.m.peers.get(m["name"], {"reachable": None, "role": None, "epoch": None})
                out.append(dict(seen, name=m["name"], api=m["api"]))
        return out

    def state(self):
        loop = self.m.loop
        with loop.lock:
            now, statuses, observed = self._snapshot()
            wall = loop.wall()
            everything = loop.obs.containers()
            nodes = self._nodes(statuses, everything)
            services = [self._service(s, statuses, observed, False)
                        for s in sorted(self.m.store.services(), key=lambda s: s.name)]
            containers = [container_view(c, wall, statuses.get(c.node) in UNREACHABLE)
                          for c in sorted(everything, key=lambda c: (c.service, c.slot, c.node))]
            return {
                "master": {"name": self.m.name, "pid": os.getpid(), "api": self.m.api,
                           "started_at": self.m.started_at,
                           "uptime_s": round(wall - self.m.started_wall, 1), "role": self.m.election.role_name,
                           "epoch": self.m.election.epoch, "reason": self.m.election.reason or None,
                           "reconcile_seconds": round(loop.reconcile_seconds, 4),
                           "rounds_led": loop.led[1] if loop.led[0] == self.m.election.epoch else 0},
                "leader": self._leader(),
                "masters": self._masters(),
                "nodes": nodes,
                "services": services,
                "containers": containers,
            }
