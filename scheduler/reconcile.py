"""Reconcile: desired services + observed containers + node health -> Plan.

Pure. The loop applies the plan elsewhere (master/loop.py). Rules, in order:

1. While any node is `unknown` (not yet probed once) nothing is planned: its
   containers may fill slots we cannot see yet, and placing them again would
   duplicate them (a restarted master adopts what runs).
2. Containers on `down` nodes count for nothing; those on `suspect` nodes
   still hold their slot but cannot be acted upon.
3. Per service and slot 1..replicas: no container -> place; several -> keep
   the best, stop the rest; a stopped one -> replace (unless its restart
   policy says no); an older spec -> replace on the same node.
4. Slots above replicas, services being deleted and labelled containers no
   service owns are stopped.
5. Then the spread is restored with at most `max_moves` start-first moves per
   service per round.
"""
from collections import Counter, defaultdict

from model import Action, Plan, READY, SUSPECT, DOWN, UNKNOWN, DELETE
from scheduler.place import choose_node, spread_ok


def reconcile(services, observed, node_status, now, backoff=None, max_moves=1, pending=None):
    """backoff: (service, slot) -> time before which no new try is made.
    pending: (service, slot) -> node, actions still running for those slots."""
    backoff = backoff or {}
    pending = pending or {}
    unknown = sorted(n for n, s in node_status.items() if s == UNKNOWN)
    if unknown:
        return Plan(tuple(Action("keep", s.name, reason=f"waiting for first probe of {', '.join(unknown)}")
                          for s in services))
    eligible = sorted(n for n, s in node_status.items() if s == READY)
    visible = [c for c in observed if node_status.get(c.node) in (READY, SUSPECT)]
    totals = Counter(c.node for c in visible if node_status[c.node] == READY)
    by_service = defaultdict(list)
    for c in visible:
        by_service[c.service].append(c)

    actions = []
    owned = set()
    for service in sorted(services, key=lambda s: s.name):
        owned.add(service.name)
        mine = by_service.get(service.name, [])
        if service.state == DELETE:
            actions += [_stop(c, "service deleted") for c in mine if node_status[c.node] == READY]
            continue
        in_flight = {slot: node for (name, slot), node in pending.items() if name == service.name}
        actions += _reconcile_service(service, mine, node_status, eligible, totals, now, backoff,
                                      max_moves, in_flight)
    for name, containers in sorted(by_service.items()):
        if name not in owned:
            actions += [_stop(c, "no service owns it") for c in containers if node_status[c.node] == READY]
    return Plan(tuple(actions))


def _stop(c, reason):
    return Action("stop", c.service, c.slot, c.node, c, reason)


def _rank(c, digest, node_status):
    """Sort key: the container to keep for a slot comes first."""
    return (node_status[c.node] != READY, not c.running, c.spec != digest, c.started_at or "~", c.id)


def _reconcile_service(service, mine, node_status, eligible, totals, now, backoff, max_moves, in_flight):
    digest = service.spec.digest()
    one_per_node = bool(service.spec.ports)
    by_slot = defaultdict(list)
    for c in mine:
        by_slot[c.slot].append(c)

    actions = []
    keepers = {}          # slot -> container that stays (for now)
    for slot, containers in sorted(by_slot.items()):
        if slot in in_flight:
            continue
        if not 1 <= slot <= service.replicas:
            actions += [_stop(c, "slot above replicas") for c in containers if node_status[c.node] == READY]
            continue
        containers.sort(key=lambda c: _rank(c, digest, node_status))
        keepers[slot] = containers[0]
        actions += [_stop(c, "duplicate for slot") for c in containers[1:] if node_status[c.node] == READY]

    # Counts as they will be after this round: keepers stay where they are.
    counts = Counter(c.node for c in keepers.values() if node_status[c.node] == READY)
    counts.update(node for slot, node in in_flight.items() if 1 <= slot <= service.replicas)
    busy = set(in_flight)  # slots that already have a change under way or this round
    for slot in range(1, service.replicas + 1):
        if slot in in_flight:
            actions.append(Action("keep", service.name, slot, in_flight[slot], reason="change in progress"))
            continue
        keeper = keepers.get(slot)
        waiting = backoff.get((service.name, slot), 0) > now
        if keeper is None:
            if waiting:
                actions.append(Action("keep", service.name, slot, reason="backing off after failures"))
                continue
            node = choose_node(eligible, counts, totals, one_per_node)
            if node is None:
                actions.append(Action("keep", service.name, slot, reason="no eligible node"))
                continue
            counts[node] += 1
            totals[node] += 1
            busy.add(slot)
            actions.append(Action("place", service.name, slot, node, reason="slot empty"))
            continue
        if node_status[keeper.node] != READY:
            actions.append(Action("keep", service.name, slot, keeper.node, keeper, "node suspect"))
            continue
        if not keeper.running and _restarts(service.spec.restart, keeper.exit_code):
            busy.add(slot)
            if waiting:
                actions.append(Action("keep", service.name, slot, keeper.node, keeper, "backing off after failures"))
            else:
                actions.append(Action("replace", service.name, slot, keeper.node, keeper, f"container {keeper.status}"))
            continue
        if keeper.spec != digest:
            busy.add(slot)
            if waiting:
                actions.append(Action("keep", service.name, slot, keeper.node, keeper, "backing off after failures"))
            else:
                actions.append(Action("replace", service.name, slot, keeper.node, keeper, "spec changed"))
            continue
        reason = "running" if keeper.running else f"{keeper.status}, restart={service.spec.restart}"
        actions.append(Action("keep", service.name, slot, keeper.node, keeper, reason))

    # Moves still under way count against this round's budget; slots backing off do not move.
    busy |= {slot for slot in keepers if backoff.get((service.name, slot), 0) > now}
    budget = max_moves - len(in_flight)
    actions += _rebalance(service, keepers, counts, totals, eligible, busy, one_per_node, budget, node_status)
    return actions


def _restarts(policy, exit_code):
    return policy == "always" or (policy == "on-failure" and exit_code != 0)


def _rebalance(service, keepers, counts, totals, eligible, busy, one_per_node, max_moves, node_status):
    """Start-first moves from the fullest to the emptiest eligible node."""
    moves = []
    while len(moves) < max_moves and not spread_ok(eligible, counts):
        src = max(eligible, key=lambda n: (counts[n], -totals[n], n))
        movable = sorted(s for s, c in keepers.items()
                         if c.node == src and s not in busy and c.running and node_status[c.node] == READY)
        dst = choose_node([n for n in eligible if n != src], counts, totals, one_per_node)
        if not movable or dst is None:
            break
        slot = movable[-1]
        busy.add(slot)
        counts[src] -= 1
        counts[dst] += 1
        totals[dst] += 1
        moves.append(Action("replace", service.name, slot, dst, keepers[slot], f"rebalance from {src}"))
    return moves


def converged(service, observed, node_status):
    """True when every slot has exactly one running container of the current
    spec on a live node, nothing extra runs and the spread is even."""
    digest = service.spec.digest()
    mine = [c for c in observed if c.service == service.name and node_status.get(c.node) != DOWN]
    if service.state == DELETE:
        return not mine
    slots = Counter(c.slot for c in mine)
    if sorted(slots) != list(range(1, service.replicas + 1)) or any(v != 1 for v in slots.values()):
        return False
    if not all(c.running and c.spec == digest for c in mine):
        return False
    eligible = sorted(n for n, s in node_status.items() if s == READY)
    return spread_ok(eligible, Counter(c.node for c in mine))


def running_count(service, observed, node_status):
    digest = service.spec.digest()
    return len({c.slot for c in observed
                if c.service == service.name and c.running and c.spec == digest
                and node_status.get(c.node) != DOWN and 1 <= c.slot <= service.replicas})
