"""Spread: choose the node for a new container.

For every service the counts of its containers on eligible nodes differ by at
most one; ties go to the node with fewer containers overall, then by name.
A service that publishes host ports runs at most one container per node.
A service that reserves resources goes only where they are free (Room).
"""
from collections import Counter
from dataclasses import dataclass


def choose_node(eligible, service_counts, total_counts, one_per_node=False):
    """Return the best node name from `eligible`, or None when none fits.

    service_counts / total_counts: dict node -> count, not mutated here.
    """
    candidates = [n for n in eligible
                  if not (one_per_node and service_counts.get(n, 0) > 0)]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (service_counts.get(n, 0), total_counts.get(n, 0), n))


def spread_ok(eligible, service_counts):
    """True when the service's counts over eligible nodes differ by at most one."""
    if not eligible:
        return True
    counts = [service_counts.get(n, 0) for n in eligible]
    return max(counts) - min(counts) <= 1


NOTHING = (0.0, 0)


@dataclass
class Room:
    """What each node has left for reservations (node -> (cpus, memory bytes)),
    as a reconcile round plans: the engine's capacity less the reservations
    of the containers there, less what the round placed already. A node of
    unknown capacity takes no reservation."""
    free: dict

    @classmethod
    def of(cls, capacity, reserved):
        """capacity: node -> (cpus, memory); reserved: [(node, (cpus, memory))]."""
        room = cls({n: tuple(c) for n, c in capacity.items()})
        for node, need in reserved:
            room.take(node, need)
        return room

    def fits(self, node, need):
        return need == NOTHING or self._has(node, need)

    def within(self, node, need):
        """Does the node hold what is reserved on it now (a container of
        `need`, counted there already, may be replaced in place)?"""
        return need == NOTHING or self._has(node, NOTHING)

    def _has(self, node, amount):
        free = self.free.get(node)
        return free is not None and free[0] + 1e-9 >= amount[0] and free[1] >= amount[1]

    def take(self, node, need):
        if need != NOTHING and node in self.free:
            self.free[node] = _less(self.free[node], need)

    def why_full(self, need, nodes, lead="no node has room"):
        """The reason no node in `nodes` takes `need`, after `lead`."""
        def show(amount):
            return f"{max(amount[0], 0.0):g} CPUs and {max(amount[1], 0) / (1 << 20):.0f} MiB"
        free = "; ".join(f"{n} has {show(self.free[n])} free" if n in self.free else f"{n}'s capacity is unknown yet"
                         for n in sorted(nodes))
        return f"{lead} for {show(need)} reserved: {free}"


def _less(free, need):
    return free[0] - need[0], free[1] - need[1]


@dataclass
class Spread:
    """One service's containers per node as a reconcile round plans them
    (`counts`), and every service's (`totals`: one Counter shared by all the
    services of the round, so later services see earlier placements). Each
    planned placement or move updates both."""
    eligible: list                 # ready, undrained nodes
    counts: Counter
    totals: Counter
    one_per_node: bool = False     # the service publishes host ports
    room: Room = None              # shared by the round's services; None: reservations not weighed
    need: tuple = NOTHING          # what one container of the service reserves

    def choose(self, exclude=None):
        """The node for a new container (not `exclude`, with room), or None."""
        nodes = [n for n in self.eligible if n != exclude and (self.room is None or self.room.fits(n, self.need))]
        return choose_node(nodes, self.counts, self.totals, self.one_per_node)

    def add(self, node):
        self.counts[node] += 1
        self.totals[node] += 1
        if self.room is not None:
            self.room.take(node, self.need)

    def move(self, src, dst):
        """A container of the service leaves src for dst (src's total stays:
        the old container runs until the new one does)."""
        self.counts[src] -= 1
        self.add(dst)

    def even(self):
        return spread_ok(self.eligible, self.counts)

    def fullest(self):
        """The eligible node to move from: most of the service, then fewest overall."""
        return max(self.eligible, key=lambda n: (self.counts[n], -self.totals[n], n))
