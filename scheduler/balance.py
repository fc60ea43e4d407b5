"""Cluster balance: even totals across nodes, once every service is spread.

Per-service spread (scheduler/place.py) can leave a node with nothing: with
twelve one-replica services over three nodes, a fourth node that joins (or
one that comes back) gets no work, since every service is already even.
When a round is quiet (no change planned or under way, no node suspect), this
module moves running containers start-first from the fullest eligible node to
the emptiest, at most `budget` per round, until the nodes' totals differ by
at most one.

Only services that restart `always` move: a job (restart `on-failure` or
`never`) counts where it runs but is never stopped to even the totals out,
so jobs can leave the totals uneven. A move never breaks a service's own
spread: the service must have more containers on the source than on the
destination (so a service that publishes host ports, at most one per node,
only goes to a node without one); when totals differ by two or more and
every service restarts `always`, such a service exists.

Every move lowers the sum of the squared totals, so balancing ends and never
undoes itself.
"""
from collections import Counter, defaultdict

from model import Action, DELETE


def balance(services, containers, eligible, budget, allowed=lambda service, node: True):
    """-> [replace Action], at most `budget`, that even out the totals.

    services: the desired Service records; containers: those that run now,
    one per slot of a live service, on `eligible` nodes (ready, undrained)
    and of the current spec. Containers elsewhere are not counted.
    allowed(service name, node): may the service run there (constraints).
    """
    live = {s.name: s for s in services if s.state != DELETE}
    mine = [c for c in containers
            if c.node in eligible and c.service in live and 1 <= c.slot <= live[c.service].replicas]
    always = {name for name, s in live.items() if s.spec.restart == "always"}
    totals = Counter({n: 0 for n in eligible})
    totals.update(c.node for c in mine)
    counts = defaultdict(Counter)               # service -> node -> containers
    for c in mine:
        counts[c.service][c.node] += 1
    moves, moved = [], set()
    while len(moves) < budget:
        move = _one_move([c for c in mine if c.service in always], totals, counts, moved, allowed)
        if move is None:
            break
        c, dst = move
        moved.add(c.id)
        totals[c.node] -= 1
        totals[dst] += 1
        counts[c.service][c.node] -= 1
        counts[c.service][dst] += 1
        moves.append(Action("replace", c.service, c.slot, dst, c, f"cluster balance from {c.node}"))
    return moves


def _one_move(mine, totals, counts, moved, allowed):
    """(container, destination) for the most uneven pair of nodes that has a
    movable container, or None when the totals are even (or nothing moves)."""
    by_total = sorted(totals, key=lambda n: (totals[n], n))
    for src in reversed(by_total):
        for dst in by_total:
            if totals[src] - totals[dst] < 2:
                break
            c = _movable(mine, counts, moved, src, dst, allowed)
            if c is not None:
                return c, dst
    return None


def _movable(mine, counts, moved, src, dst, allowed):
    """The container on src whose service gains the most evenness by leaving
    for dst (then by name, highest slot), or None."""
    def fits(c):
        n = counts[c.service]
        return c.node == src and c.id not in moved and n[src] > n[dst] and allowed(c.service, dst)
    candidates = [c for c in mine if fits(c)]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (counts[c.service][src] - counts[c.service][dst], c.service, c.slot))
