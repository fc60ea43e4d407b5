"""Reconcile: desired services + observed containers + node health -> Plan.

Pure. The loop applies the plan elsewhere (master/loop.py). Rules, in order:

1. While any node is `unknown` (not yet probed once) nothing is planned: its
   containers may fill slots we cannot see yet, and placing them again would
   duplicate them (a restarted master adopts what runs).
2. Containers on `down` nodes count for nothing; those on `suspect` nodes
   still hold their slot but cannot be acted upon.
3. Per service and slot 1..replicas: no container -> place; several -> keep
   the best (running, current spec, on the node ready the longest), stop the
   rest; an exited one -> replace (unless its restart policy says no); an
   older spec -> replace on the same node.
4. Slots above replicas, services being deleted and labelled containers no
   service owns are stopped.
5. Then, start-first and at most `max_moves` per service at a time (changes
   still under way count), containers leave drained nodes and the spread is
   restored.
6. Nothing new goes to a node that still has containers to remove: a node
   that comes back first loses its surplus, then gets work again.
"""
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from model import Action, Plan, READY, SUSPECT, UNKNOWN, DELETE
from scheduler.place import choose_node, spread_ok


@dataclass
class Round:
    """What one reconcile round knows besides services and containers."""
    node_status: dict
    now: float
    backoff: dict = field(default_factory=dict)       # (service, slot) -> no new try before
    pending: dict = field(default_factory=dict)       # (service, slot) -> node of a change under way
    drained: frozenset = frozenset()                  # nodes that take no work
    ready_since: dict = field(default_factory=dict)   # node -> start of its current ready spell
    max_moves: int = 1

    def __post_init__(self):
        self.eligible = sorted(n for n, s in self.node_status.items() if s == READY and n not in self.drained)

    def ready(self, node):
        return self.node_status.get(node) == READY

    def waiting(self, service, slot):
        return self.backoff.get((service, slot), 0) > self.now


def reconcile(services, observed, node_status, now, backoff=None, max_moves=1, pending=None,
              drained=frozenset(), ready_since=None, removing_nodes=frozenset()):
    """backoff: (service, slot) -> time before which no new try is made.
    pending: (service, slot) -> node, changes still under way for those slots.
    removing_nodes: nodes where removals are still under way."""
    r = Round(node_status, now, backoff or {}, pending or {}, frozenset(drained), ready_since or {}, max_moves)
    unknown = sorted(n for n, s in node_status.items() if s == UNKNOWN)
    if unknown:
        return Plan(tuple(Action("keep", s.name, reason=f"waiting for first probe of {', '.join(unknown)}")
                          for s in services))
    visible = [c for c in observed if node_status.get(c.node) in (READY, SUSPECT)]
    totals = Counter(c.node for c in visible if r.ready(c.node))
    by_service = defaultdict(list)
    for c in visible:
        by_service[c.service].append(c)

    actions = []
    owned = set()
    for service in sorted(services, key=lambda s: s.name):
        owned.add(service.name)
        mine = by_service.get(service.name, [])
        if service.state == DELETE:
            actions += [_stop(c, "service deleted") for c in mine if r.ready(c.node)]
            continue
        actions += _reconcile_service(service, mine, r, totals)
    for name, containers in sorted(by_service.items()):
        if name not in owned:
            actions += [_stop(c, "no service owns it") for c in containers if r.ready(c.node)]
    return Plan(tuple(_surplus_first(actions, removing_nodes)))


def _surplus_first(actions, removing_nodes):
    """Hold back new containers on nodes that still have some to remove."""
    clearing = {a.node for a in actions if a.kind == "stop"} | set(removing_nodes)
    out = []
    for a in actions:
        if a.kind in ("place", "replace") and a.node in clearing:
            a = Action("keep", a.service, a.slot, a.node, a.container, f"waiting for removals on {a.node}")
        out.append(a)
    return out


def _stop(c, reason):
    return Action("stop", c.service, c.slot, c.node, c, reason)


def _rank(c, digest, r):
    """Sort key: the container to keep for a slot comes first."""
    return (not r.ready(c.node), not c.running, c.node in r.drained, c.spec != digest,
            r.ready_since.get(c.node, 0), c.started_at or "~", c.id)


def _restarts(policy, exit_code):
    return policy == "always" or (policy == "on-failure" and exit_code != 0)


def _reconcile_service(service, mine, r, totals):
    digest = service.spec.digest()
    one_per_node = bool(service.spec.ports)
    in_flight = {slot: node for (name, slot), node in r.pending.items() if name == service.name}
    by_slot = defaultdict(list)
    for c in mine:
        by_slot[c.slot].append(c)

    actions = []
    keepers = {}          # slot -> container that stays (for now)
    for slot, containers in sorted(by_slot.items()):
        if slot in in_flight:
            continue
        if not 1 <= slot <= service.replicas:
            actions += [_stop(c, "slot above replicas") for c in containers if r.ready(c.node)]
            continue
        containers.sort(key=lambda c: _rank(c, digest, r))
        keepers[slot] = containers[0]
        actions += [_stop(c, "duplicate for slot") for c in containers[1:] if r.ready(c.node)]

    # Counts as they will be after this round: keepers stay where they are.
    def holds(c):
        """Settled containers (exited, and their policy keeps them down) hold no place."""
        return (c.running or _restarts(service.spec.restart, c.exit_code)
                or (c.spec != digest and c.node in r.eligible))     # to be replaced in place

    counts = Counter(c.node for c in keepers.values() if r.ready(c.node) and holds(c))
    counts.update(node for slot, node in in_flight.items() if 1 <= slot <= service.replicas)
    busy = set(in_flight)  # slots with a change under way or planned this round

    def target(keeper):
        """Where a replacement goes: the same node unless it is drained."""
        if keeper is not None and keeper.node in r.eligible:
            if not holds(keeper):
                counts[keeper.node] += 1
            return keeper.node
        node = choose_node(r.eligible, counts, totals, one_per_node)
        if node is not None:
            counts[node] += 1
            totals[node] += 1
            if keeper is not None and holds(keeper):
                counts[keeper.node] -= 1
        return node

    for slot in range(1, service.replicas + 1):
        if slot in in_flight:
            actions.append(Action("keep", service.name, slot, in_flight[slot], reason="change in progress"))
            continue
        keeper = keepers.get(slot)
        waiting = r.waiting(service.name, slot)
        if keeper is not None and not r.ready(keeper.node):
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, "node suspect"))
            continue
        if keeper is None:
            why = "slot empty"
        elif not keeper.running and _restarts(service.spec.restart, keeper.exit_code):
            why = f"container {keeper.status} (exit {keeper.exit_code})"
        elif keeper.spec != digest:
            why = "spec changed"
        else:
            reason = "running" if keeper.running else f"{keeper.status}, restart={service.spec.restart}"
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, reason))
            continue
        busy.add(slot)
        if waiting:
            actions.append(Action("keep", service.name, slot, keeper.node if keeper else "", keeper,
                                  "backing off after failures"))
            continue
        node = target(keeper)
        if node is None:
            actions.append(Action("keep", service.name, slot, reason="no eligible node"))
        elif keeper is None:
            actions.append(Action("place", service.name, slot, node, reason=why))
        else:
            actions.append(Action("replace", service.name, slot, node, keeper, why))

    busy |= {slot for slot in keepers if r.waiting(service.name, slot)}
    budget = r.max_moves - len(in_flight)
    actions += _moves(service, keepers, counts, totals, r, busy, one_per_node, budget)
    return actions


def _moves(service, keepers, counts, totals, r, busy, one_per_node, budget):
    """Start-first moves: off drained nodes first, then fullest -> emptiest."""
    moves = []

    def move(slot, dst, why):
        src = keepers[slot].node
        busy.add(slot)
        counts[src] -= 1
        counts[dst] += 1
        totals[dst] += 1
        moves.append(Action("replace", service.name, slot, dst, keepers[slot], why))

    for slot, c in sorted(keepers.items()):
        if len(moves) >= budget:
            return moves
        if slot in busy or c.node not in r.drained or not r.ready(c.node):
            continue
        dst = choose_node(r.eligible, counts, totals, one_per_node)
        if dst is None:
            break
        move(slot, dst, f"node {c.node} drained")

    while len(moves) < budget and not spread_ok(r.eligible, counts):
        src = max(r.eligible, key=lambda n: (counts[n], -totals[n], n))
        movable = sorted(s for s, c in keepers.items()
                         if c.node == src and s not in busy and c.running and r.ready(c.node))
        dst = choose_node([n for n in r.eligible if n != src], counts, totals, one_per_node)
        if not movable or dst is None:
            break
        move(movable[-1], dst, f"rebalance from {src}")
    return moves


def stops_first(action, spec):
    """Does `action` remove the container it replaces before it starts the new
    one? Only when the service publishes host ports and the new container goes
    to the same node: that node's port is taken until the old one is gone. A
    move to another node starts first, so the service keeps running meanwhile."""
    return (action.kind == "replace" and bool(spec.ports) and action.container is not None
            and action.container.node == action.node)


def converged(service, observed, node_status, drained=frozenset()):
    """True when every slot has exactly one running container of the current
    spec on a live, undrained node, nothing extra runs and the spread is even."""
    digest = service.spec.digest()
    mine = [c for c in observed if c.service == service.name and node_status.get(c.node) in (READY, SUSPECT)]
    if service.state == DELETE:
        return not mine
    slots = Counter(c.slot for c in mine)
    if sorted(slots) != list(range(1, service.replicas + 1)) or any(v != 1 for v in slots.values()):
        return False
    # An exited container whose restart policy keeps it down is settled too.
    if not all((c.running or not _restarts(service.spec.restart, c.exit_code))
               and c.spec == digest and c.node not in drained for c in mine):
        return False
    eligible = sorted(n for n, s in node_status.items() if s == READY and n not in drained)
    return spread_ok(eligible, Counter(c.node for c in mine if c.running))


def running_count(service, observed, node_status):
    digest = service.spec.digest()
    return len({c.slot for c in observed
                if c.service == service.name and c.running and c.spec == digest
                and node_status.get(c.node) in (READY, SUSPECT) and 1 <= c.slot <= service.replicas})
