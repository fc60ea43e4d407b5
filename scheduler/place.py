"""Spread: choose the node for a new container.

For every service the counts of its containers on eligible nodes differ by at
most one; ties go to the node with fewer containers overall, then by name.
A service that publishes host ports runs at most one container per node.
"""


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
