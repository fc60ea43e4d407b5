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
5b. A quiet round (no change planned or under way, no node suspect) evens
   out the nodes' totals, start-first and at most `max_moves` at a time
   (scheduler/balance.py): a node that joins or returns gets work even when
   every service is spread already.
6. Nothing new goes to a node that still has containers to remove: a node
   that comes back first loses its surplus, then gets work again.

Per service, `_reconcile_service` runs named steps (keepers, spread, one
action per slot, moves) over a `Spread` (scheduler/place.py): the counts per
node as the round plans them. A `replace` says itself whether it stops first
(`Action.stop_first`). docs/design.md, The reconcile flow, tells the whole round.
"""
import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Optional

from model import Action, Plan, PAUSED, READY, SUSPECT, UNKNOWN, DELETE
from scheduler import constraints, rollout
from scheduler.balance import balance
from scheduler.place import NOTHING, Room, Spread, spread_ok


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
    wall: float = 0.0                                 # seconds since the epoch (rollouts' watches)
    place_failures: dict = field(default_factory=dict)   # (service, slot) -> why its last start failed
    node_labels: dict = field(default_factory=dict)   # node -> its labels (placement constraints)
    place_nodes: dict = field(default_factory=dict)   # (service, slot) -> node of its last failed start
    room: Optional[Room] = None                       # free for reservations (shared); None: not weighed

    def __post_init__(self):
        self.eligible = sorted(n for n, s in self.node_status.items() if s == READY and n not in self.drained)
        self.everywhere = self.eligible               # eligible for a service without constraints

    def for_service(self, service):
        """The round as `service` sees it: a node that fails its constraints
        is drained for it (nothing new goes there, its containers move)."""
        if not service.constraints:
            return self
        unfit = constraints.unfit(service.constraints, {n: self.node_labels.get(n, {}) for n in self.node_status})
        view = dataclasses.replace(self, drained=self.drained | unfit)
        view.everywhere = self.eligible
        return view

    def fits(self, service, node):
        return constraints.satisfies(service.constraints, node, self.node_labels.get(node, {}))

    def has_room(self, service, node):
        return self.room is None or self.room.fits(node, service.spec.reservation)

    def room_in_place(self, service, node):
        """May a container of `service` on `node` be replaced there (its share counted already)?"""
        return self.room is None or self.room.within(node, service.spec.reservation)

    def take_room(self, service, node):
        if self.room is not None:
            self.room.take(node, service.spec.reservation)

    def short_of_room(self, service):
        """Does some eligible node lack room for a container of `service`?"""
        return not all(self.has_room(service, n) for n in self.eligible)

    def why_full(self, service, nodes, lead="no node has room"):
        return self.room.why_full(service.spec.reservation, nodes, lead)

    def ready(self, node):
        return self.node_status.get(node) == READY

    def waiting(self, service, slot):
        return self.backoff.get((service, slot), 0) > self.now


def reconcile(services, observed, node_status, now, backoff=None, max_moves=1, pending=None,
              drained=frozenset(), ready_since=None, removing_nodes=frozenset(), wall=0.0, place_failures=None,
              node_labels=None, place_nodes=None, capacity=None):
    """backoff: (service, slot) -> time before which no new try is made.
    pending: (service, slot) -> node, changes still under way for those slots.
    removing_nodes: nodes where removals are still under way.
    wall, place_failures: what rolling updates judge by (scheduler/rollout.py).
    node_labels: node -> labels, what placement constraints match.
    place_nodes: (service, slot) -> where its last start failed (a global
    service's node keeps that slot, and its back-off).
    capacity: node -> (cpus, memory bytes) its engine has, what
    reservations are weighed against (None: they are not)."""
    r = Round(node_status, now, backoff or {}, pending or {}, frozenset(drained), ready_since or {}, max_moves,
              wall, place_failures or {}, node_labels or {}, place_nodes or {})
    unknown = sorted(n for n, s in node_status.items() if s == UNKNOWN)
    if unknown:
        return Plan(tuple(Action("keep", s.name, reason=f"waiting for first probe of {', '.join(unknown)}")
                          for s in services))
    visible = [c for c in observed if node_status.get(c.node) in (READY, SUSPECT)]
    r.room = _room(capacity, services, visible, pending or {})
    totals = Counter(c.node for c in visible if r.ready(c.node))
    by_service = defaultdict(list)
    for c in visible:
        by_service[c.service].append(c)

    actions, verdicts = [], []
    owned = set()
    for service in sorted(services, key=lambda s: s.name):
        owned.add(service.name)
        mine = by_service.get(service.name, [])
        if service.state == DELETE:
            actions += [_stop(c, "service deleted") for c in mine if r.ready(c.node)]
            continue
        solve = _reconcile_global if service.is_global else _reconcile_service
        mine_actions, verdict = solve(service, mine, r.for_service(service), totals)
        actions += mine_actions
        if verdict is not None:
            verdicts.append((service.name, service.version, verdict))
    for name, containers in sorted(by_service.items()):
        if name not in owned:
            actions += [_stop(c, "no service owns it") for c in containers if r.ready(c.node)]
    if _quiet(actions, r, removing_nodes) and not any(s.rolling for s in services):
        # A global service is even by itself; one that reserves is placed by room, not by count.
        spread = [s for s in services if not s.is_global and s.spec.reservation == NOTHING]
        fits = {s.name: s for s in spread}
        actions += balance(spread, _settled(spread, visible, r), r.eligible, r.max_moves,
                           allowed=lambda name, node: r.fits(fits[name], node))
    return Plan(tuple(_surplus_first(actions, removing_nodes)), tuple(verdicts))


def _room(capacity, services, visible, pending):
    """What each node has free for reservations: its capacity less those of
    the containers on it and of the changes under way to it."""
    if capacity is None:
        return None
    by_name = {s.name: s for s in services}
    holding = [c for c in visible if c.service in by_name
               and (c.running or _restarts(by_name[c.service].spec.restart, c.exit_code))]
    arrived = {(c.service, c.slot, c.node) for c in holding if c.spec == by_name[c.service].spec.digest()}
    reserved = [(c.node, by_name[c.service].spec.reservation) for c in holding]
    reserved += [(node, by_name[service].spec.reservation) for (service, slot), node in pending.items()
                 if service in by_name and (service, slot, node) not in arrived]    # not counted twice
    return Room.of(capacity, reserved)


def _quiet(actions, r, removing_nodes):
    """No change planned or under way and no node suspect: the time to even
    out the cluster's totals (scheduler/balance.py)."""
    return (all(a.kind == "keep" for a in actions) and not r.pending and not removing_nodes
            and SUSPECT not in r.node_status.values())


def _settled(services, visible, r):
    """The running containers of the current spec that balancing may move:
    not backing off, on eligible nodes."""
    digests = {s.name: s.spec.digest() for s in services}
    return [c for c in visible if c.running and digests.get(c.service) == c.spec
            and c.node in r.eligible and not r.waiting(c.service, c.slot)]


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
    """The actions for one service (stops, one action per slot, then moves)
    and the verdict on its rollout (or None)."""
    digest = service.spec.digest()
    in_flight = {slot: node for (name, slot), node in r.pending.items() if name == service.name}
    keepers, stops = _keepers(service, mine, r, in_flight, digest)
    spread = _spread(service, keepers, in_flight, r, totals, digest)
    turn = _Turns(service, keepers, in_flight, r)
    slots, changing = _slot_actions(service, keepers, in_flight, r, spread, digest, turn)
    busy = set(in_flight) | changing | {slot for slot in keepers if r.waiting(service.name, slot)}
    actions = stops + slots + _moves(service, keepers, spread, r, busy, r.max_moves - len(in_flight), turn.held)
    under_way = len(in_flight) + sum(1 for a in actions if a.kind != "keep")
    return actions, rollout.verdict(service, turn.progress, under_way)


def _reconcile_global(service, mine, r, totals):
    """A global service: one container on every node eligible for it
    (ready, not drained, fitting its constraints), none elsewhere. A slot
    belongs to its node: a container is replaced where it runs (start-first
    cannot go there while it publishes host ports), an empty node gets the
    lowest slot number free; nothing moves. Rollouts and back-off count
    slots as for a replicated service."""
    digest = service.spec.digest()
    in_flight = {slot: node for (name, slot), node in r.pending.items() if name == service.name}
    keepers, stops = _node_keepers(service, mine, r, in_flight, digest)
    empty = _new_slots(service, mine, keepers, in_flight, r)
    turn = _Turns(service, keepers, in_flight, r, set(keepers) | set(in_flight) | set(empty.values()))
    actions = [Action("keep", service.name, slot, node, reason="change in progress")
               for slot, node in sorted(in_flight.items())]
    for slot, keeper in sorted(keepers.items()):
        if not r.ready(keeper.node):
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, "node suspect"))
        elif slot in turn.judged:
            actions.append(Action("keep", service.name, slot, keeper.node, keeper,
                                  "a failure of the rollout, being judged"))
        elif (why := _change_needed(service, keeper, digest)) is None:
            reason = "running" if keeper.running else f"{keeper.status}, restart={service.spec.restart}"
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, reason))
        elif why == SPEC_CHANGED and not turn.take():
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, turn.waiting()))
        elif r.waiting(service.name, slot):
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, "backing off after failures"))
        elif not r.room_in_place(service, keeper.node):
            actions.append(Action("keep", service.name, slot, keeper.node, keeper,
                                  r.why_full(service, [keeper.node], f"{keeper.node} has no room")))
        else:
            actions.append(_replace(service, slot, keeper.node, keeper, why))
    for node, slot in sorted(empty.items()):
        if slot in turn.judged:
            actions.append(Action("keep", service.name, slot, node, reason="a failure of the rollout, being judged"))
        elif r.waiting(service.name, slot):
            actions.append(Action("keep", service.name, slot, node, reason="backing off after failures"))
        else:
            actions.append(Action("place", service.name, slot, node, reason="node without one"))
    holding = {c.node for c in keepers.values()} | set(in_flight.values()) | set(empty)
    actions += [Action("keep", service.name, 0, node, reason=r.why_full(service, [node], f"{node} has no room"))
                for node in r.eligible if node not in holding]       # the nodes without room for it
    actions = stops + actions
    under_way = len(in_flight) + sum(1 for a in actions if a.kind != "keep")
    return actions, rollout.verdict(service, turn.progress, under_way)


def _node_keepers(service, mine, r, in_flight, digest):
    """-> ({slot: the container that stays}, stops): per node, the best
    container stays, unless the node takes none of this service (drained,
    or outside its constraints); the others are stopped. A slot number held
    on two nodes (given again while its node was down) stays with the better
    one (or with a change under way); the other container is stopped and
    its node gets a new slot."""
    by_node, stops = defaultdict(list), []
    for c in mine:
        flying = in_flight.get(c.slot)
        if flying is None:
            by_node[c.node].append(c)
        elif flying != c.node and r.ready(c.node):     # the slot's number, taken by a change under way
            stops.append(_stop(c, f"slot {c.slot} is being placed on {flying}"))
    best = []
    for node, containers in sorted(by_node.items()):
        containers.sort(key=lambda c: _rank(c, digest, r))
        if r.ready(node) and node not in r.eligible:
            why = f"node {node} drained" if r.fits(service, node) else f"node {node} outside the constraints"
            stops += [_stop(c, why) for c in containers]
            continue
        best.append(containers[0])
        stops += [_stop(c, "duplicate on node") for c in containers[1:] if r.ready(node)]
    keepers = {}
    for c in sorted(best, key=lambda c: _rank(c, digest, r)):
        if c.slot not in keepers:
            keepers[c.slot] = c
        elif r.ready(c.node):
            stops.append(_stop(c, f"slot {c.slot} is held on {keepers[c.slot].node}"))
    return keepers, stops


def _new_slots(service, mine, keepers, in_flight, r):
    """node -> the slot its new container takes, for every eligible node
    without one: the slot of its own last failed start if free (its back-off
    and the rollout's count stay with it), else the lowest number free."""
    taken = {c.node for c in keepers.values()} | set(in_flight.values())
    used = {c.slot for c in mine} | set(in_flight)
    empty = [node for node in r.eligible if node not in taken and r.has_room(service, node)]
    for node in empty:
        r.take_room(service, node)
    out = {}
    for (name, slot), node in sorted(r.place_nodes.items()):
        if name == service.name and node in empty and node not in out and slot not in used:
            out[node] = slot
            used.add(slot)
    free = (n for n in range(1, len(used) + len(empty) + 2) if n not in used)
    return dict(out, **{node: next(free) for node in empty if node not in out})


def _keepers(service, mine, r, in_flight, digest):
    """-> ({slot: the container that stays, for now}, stops): per slot without
    a change under way, the best container stays and the others are stopped,
    as are the containers of slots above replicas."""
    by_slot = defaultdict(list)
    for c in mine:
        by_slot[c.slot].append(c)
    keepers, stops = {}, []
    for slot, containers in sorted(by_slot.items()):
        if slot in in_flight:
            continue
        if not 1 <= slot <= service.replicas:
            stops += [_stop(c, "slot above replicas") for c in containers if r.ready(c.node)]
            continue
        containers.sort(key=lambda c: _rank(c, digest, r))
        keepers[slot] = containers[0]
        stops += [_stop(c, "duplicate for slot") for c in containers[1:] if r.ready(c.node)]
    return keepers, stops


def _holds(c, service, digest, r):
    """Does container c hold its place on its node? Settled containers
    (exited, and their policy keeps them down) do not."""
    return (c.running or _restarts(service.spec.restart, c.exit_code)
            or (c.spec != digest and c.node in r.eligible))     # to be replaced in place


def _spread(service, keepers, in_flight, r, totals, digest):
    """Counts as they will be after this round: keepers stay where they are,
    changes under way land where they go."""
    counts = Counter(c.node for c in keepers.values() if r.ready(c.node) and _holds(c, service, digest, r))
    counts.update(node for slot, node in in_flight.items() if 1 <= slot <= service.replicas)
    return Spread(r.eligible, counts, totals, bool(service.spec.ports), r.room, service.spec.reservation)


class _Turns:
    """Which slots of an older spec may be replaced this round (a rolling
    update's budget, scheduler/rollout.py), and the new containers whose
    failure the rollout judges this round (they are not restarted before)."""

    def __init__(self, service, keepers, in_flight, r, slots=None):
        failures = {slot: why for (name, slot), why in r.place_failures.items() if name == service.name}
        self.progress = rollout.progress(service, keepers, r.wall, failures, slots)
        self.left = rollout.budget(service, self.progress, len(in_flight), r.wall)
        self.judged = set(rollout.new_failures(service, self.progress))
        self.held = set()               # slots of an older spec waiting for their turn
        self.service = service

    def take(self):
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def waiting(self):
        if self.service.rollout is not None and self.service.rollout.state == PAUSED:
            return f"rollout paused: {self.service.rollout.reason}"
        return f"waiting for its turn (parallelism {self.service.rollout_config.parallelism})"


def _slot_actions(service, keepers, in_flight, r, spread, digest, turn):
    """One action per slot 1..replicas -> (actions, the slots that change or wait to)."""
    actions, changing = [], set()
    for slot in range(1, service.replicas + 1):
        keeper = keepers.get(slot)
        if slot in in_flight:
            actions.append(Action("keep", service.name, slot, in_flight[slot], reason="change in progress"))
        elif keeper is not None and not r.ready(keeper.node):
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, "node suspect"))
        elif slot in turn.judged:
            actions.append(Action("keep", service.name, slot, keeper.node if keeper else "", keeper,
                                  "a failure of the rollout, being judged"))
        elif (why := _change_needed(service, keeper, digest)) is None:
            reason = "running" if keeper.running else f"{keeper.status}, restart={service.spec.restart}"
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, reason))
        elif why == SPEC_CHANGED and not turn.take():
            turn.held.add(slot)
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, turn.waiting()))
        else:
            changing.add(slot)
            actions.append(_change(service, slot, keeper, why, r, spread, digest))
    return actions, changing


SPEC_CHANGED = "spec changed"


def _change_needed(service, keeper, digest):
    """Why the slot needs a new container, or None."""
    if keeper is None:
        return "slot empty"
    if not keeper.running and _restarts(service.spec.restart, keeper.exit_code):
        return f"container {keeper.status} (exit {keeper.exit_code})"
    if keeper.unhealthy:
        return "container unhealthy"
    if keeper.spec != digest:
        return SPEC_CHANGED
    return None


def _change(service, slot, keeper, why, r, spread, digest):
    """place or replace the slot's container, unless it backs off or no node fits."""
    if r.waiting(service.name, slot):
        return Action("keep", service.name, slot, keeper.node if keeper else "", keeper,
                      "backing off after failures")
    node = _target(service, keeper, r, spread, keeper is not None and _holds(keeper, service, digest, r))
    if node is None:
        return Action("keep", service.name, slot, reason=_why_unplaced(service, r))
    if keeper is None:
        return Action("place", service.name, slot, node, reason=why)
    return _replace(service, slot, node, keeper, why)


def unplaced(service, actions):
    """Why a slot of `service` has no node (constraints, no room: the reasons
    _why_unplaced, Room.why_full and constraints.why_not give), from a plan's
    actions; a slot it no longer has (after a scale-down) says nothing. Or None."""
    return next((a.reason for a in actions if a.service == service.name and a.kind == "keep"
                 and (a.slot == 0 or service.has_slot(a.slot))
                 and (a.reason.startswith(("no node", "no eligible node")) or " room for " in a.reason)), None)


def _why_unplaced(service, r):
    if r.eligible and r.short_of_room(service):
        return r.why_full(service, r.eligible)
    if service.constraints:
        return constraints.why_not(service.constraints, r.node_labels, r.everywhere)
    if not r.eligible:
        return "no eligible node (every node is down, suspect or drained)"
    return "no eligible node fits (a service with host ports runs one container per node)"


def _target(service, keeper, r, spread, held):
    """Where a new container goes: the keeper's node unless it is drained.
    A keeper that reaches here on an eligible node is restartable or of an
    older spec, so `_spread` counted it there already."""
    if keeper is not None and keeper.node in r.eligible and r.room_in_place(service, keeper.node):
        return keeper.node
    node = spread.choose()
    if node is not None:
        if held:
            spread.move(keeper.node, node)
        else:
            spread.add(node)
    return node


def _replace(service, slot, node, old, why):
    """Start-first, unless the service publishes host ports and the new
    container goes to the old one's node (the port is taken there until the
    old container is gone), or its rollout asks for stop-first. A move to
    another node starts first, so the service keeps running meanwhile."""
    stop_first = old.node == node and (bool(service.spec.ports) or (
        why == SPEC_CHANGED and service.rollout_config.order == "stop-first"))
    return Action("replace", service.name, slot, node, old, why, stop_first=stop_first)


def _moves(service, keepers, spread, r, busy, budget, held=frozenset()):
    """Start-first moves, at most `budget`: off drained nodes first, then
    fullest -> emptiest. Slots in `busy` stay where they are; `held` slots
    (an older spec waiting for the rollout's turn) leave drained nodes (a
    drain does not wait for a rollout, nor for a paused one) but are never
    moved only to even out the spread."""
    drains = _drain_moves(service, keepers, spread, r, busy, budget)
    moved = {a.slot for a in drains}
    return drains + _rebalance_moves(service, keepers, spread, r, busy | moved | set(held), budget - len(drains))


def _drain_moves(service, keepers, spread, r, busy, budget):
    """Keepers on drained (ready) nodes go where the spread says, slot order."""
    moves = []
    for slot, c in sorted(keepers.items()):
        if len(moves) >= budget:
            break
        if slot in busy or c.node not in r.drained or not r.ready(c.node):
            continue
        dst = spread.choose()
        if dst is None:
            if r.short_of_room(service):
                moves.append(Action("keep", service.name, slot, c.node, c,
                                    r.why_full(service, r.eligible, f"node {c.node} drained, but no node has room")))
            break
        spread.move(c.node, dst)
        moves.append(_replace(service, slot, dst, c, f"node {c.node} drained"))
    return moves


def _rebalance_moves(service, keepers, spread, r, busy, budget):
    """While the spread is uneven, the highest movable slot of the fullest
    node goes to the node the spread chooses among the others."""
    moves, busy = [], set(busy)
    while len(moves) < budget and not spread.even():
        src = spread.fullest()
        movable = sorted(s for s, c in keepers.items()
                         if c.node == src and s not in busy and c.running and r.ready(c.node))
        dst = spread.choose(exclude=src)
        if not movable or dst is None or spread.counts[dst] + 1 >= spread.counts[src]:
            break                    # none, or no better (the emptier nodes have no room for it)
        slot = movable[-1]
        busy.add(slot)
        spread.move(src, dst)
        moves.append(_replace(service, slot, dst, keepers[slot], f"rebalance from {src}"))
    return moves


def converged(service, observed, node_status, drained=frozenset(), node_labels=None):
    """True when every slot has exactly one running container of the current
    spec on a live, undrained node that fits the service's constraints,
    nothing extra runs and the spread is even."""
    drained = _not_taking(service, node_status, drained, node_labels)
    digest = service.spec.digest()
    mine = [c for c in observed if c.service == service.name and node_status.get(c.node) in (READY, SUSPECT)]
    if service.state == DELETE:
        return not mine
    if service.is_global:
        return _global_converged(service, mine, node_status, drained, digest)
    slots = Counter(c.slot for c in mine)
    if sorted(slots) != list(range(1, service.replicas + 1)) or any(v != 1 for v in slots.values()):
        return False
    # An exited container whose restart policy keeps it down is settled too.
    if not all((c.running or not _restarts(service.spec.restart, c.exit_code))
               and c.spec == digest and c.node not in drained for c in mine):
        return False
    eligible = sorted(n for n, s in node_status.items() if s == READY and n not in drained)
    # A service that reserves goes where there is room: even is not always possible.
    return service.spec.reservation != NOTHING or spread_ok(eligible, Counter(c.node for c in mine if c.running))


def _global_converged(service, mine, node_status, drained, digest):
    """One settled container of the current spec on every ready node that
    takes the service (at most one on a suspect one), none elsewhere, no
    slot number twice."""
    takes = set(global_nodes(node_status, drained))
    nodes, slots = Counter(c.node for c in mine), Counter(c.slot for c in mine)
    settled = all((c.running or not _restarts(service.spec.restart, c.exit_code)) and c.spec == digest for c in mine)
    return (settled and set(nodes) <= takes and max(list(nodes.values()) + list(slots.values()), default=1) == 1
            and all(nodes[n] == 1 for n in takes if node_status[n] == READY))


def global_nodes(node_status, drained):
    """The nodes a global service runs on: live (ready, or suspect: it keeps
    its container), not drained; `drained` includes those outside its constraints."""
    return sorted(n for n, s in node_status.items() if s in (READY, SUSPECT) and n not in drained)


def desired_count(service, node_status, drained=frozenset(), node_labels=None):
    """How many replicas the service wants now: its replicas, or for a
    global service the nodes that take it."""
    if not service.is_global:
        return service.replicas
    return len(global_nodes(node_status, _not_taking(service, node_status, drained, node_labels)))


def _not_taking(service, node_status, drained, node_labels):
    """The nodes that take nothing of `service`: drained, or outside its constraints."""
    if not service.constraints:
        return frozenset(drained)
    return frozenset(drained) | constraints.unfit(
        service.constraints, {n: (node_labels or {}).get(n, {}) for n in node_status})


def running_count(service, observed, node_status):
    digest = service.spec.digest()
    return len({c.slot for c in observed
                if c.service == service.name and c.running and c.spec == digest
                and node_status.get(c.node) in (READY, SUSPECT) and service.has_slot(c.slot)})
