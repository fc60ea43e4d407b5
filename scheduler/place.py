"""Spread: choose the node for a new container.

For every service the counts of its containers on eligible nodes differ by at
most one; ties go to the node with fewer containers overall, then by name.
A service that publishes host ports runs at most one container per node.
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

    def choose(self, exclude=None):
        """The node for a new container (not `exclude`), or None."""
        nodes = self.eligible if exclude is None else [n for n in self.eligible if n != exclude]
        return choose_node(nodes, self.counts, self.totals, self.one_per_node)

    def add(self, node):
        self.counts[node] += 1
        self.totals[node] += 1

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
