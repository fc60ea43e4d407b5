"""Node health from probe history: ready, suspect, down (design.md, Node health),
and untrusted: the node presented a host key that is not pinned.

Pure: the loop passes the monotonic times it measured and `now`.
"""
from model import READY, SUSPECT, DOWN, UNKNOWN, UNTRUSTED

# A probe this many intervals overdue counts as missed even before it fails.
OVERDUE = 3


def node_status(last_ok, last_failed, watched_since, now, down_after, probe_interval, untrusted=False):
    """Status of one node.

    last_ok: time of the last answered probe, or None if it never answered.
    last_failed: True when the most recent probe failed.
    watched_since: when this master started probing the node.
    untrusted: the most recent probe met a host key that is not pinned; the
    node is untrusted at once (nothing is sent to it), down in all but name.
    """
    if untrusted:
        return UNTRUSTED
    if last_ok is None:
        return DOWN if now - watched_since >= down_after else UNKNOWN
    silent = now - last_ok
    if silent >= down_after:
        return DOWN
    if last_failed or silent > OVERDUE * probe_interval:
        return SUSPECT
    return READY
