"""Lease rules (docs/design.md, Lease, fencing and failover). Pure: times are the
caller's MONOTONIC readings; no timestamp ever crosses machines.

- Epochs are unique to their master: term * SPAN + index (1-based position
  in masters:), so no two candidates ever propose the same epoch.
- A master holding grants for E on a majority of ALL nodes leads epoch E.
- The leader renews every ttl/3; it stops acting when it has not renewed on
  a majority within 2*ttl/3 of the last time since which it has: each
  renewal counts from when it was sent, however late its answer came.
- A standby campaigns only when a majority of nodes answered its last poll
  AND showed no change of (epoch, counter) for ttl, by its own clock; or when
  a majority answered and no node was ever claimed, or the holder named on
  them is this master's own name (its previous incarnation, now gone).
"""
import json
from dataclasses import dataclass
from typing import Optional

from model import Stamp

SPAN = 100


def majority(n_nodes):
    return n_nodes // 2 + 1


def next_epoch(highest_seen, index):
    """An epoch of master `index` in the term after the highest epoch seen."""
    term = highest_seen // SPAN + 1
    return term * SPAN + index


def won(grants, n_nodes):
    return grants >= majority(n_nodes)


def renewed_since(renewals, n_nodes):
    """renewals: node -> when the newest renewal it accepted was sent (a grant
    at taking office counts). -> the latest time since which a majority of the `n_nodes` renewed,
    or None: each of them bumped its counter after that time, so no standby
    can see a majority quiet for ttl before that time + ttl."""
    times = sorted(renewals.values(), reverse=True)
    need = majority(n_nodes)
    return times[need - 1] if len(times) >= need else None


def must_step_down(last_good_round_start, now, ttl):
    """The leader stops acting when its last good renewal round is too old."""
    return last_good_round_start is None or now - last_good_round_start > 2 * ttl / 3


@dataclass
class Watch:
    """What a standby knows of one node's lease."""
    value: Optional[tuple] = None      # (node_epoch, Lease or None) as last read
    changed_at: Optional[float] = None  # when value last changed (monotonic, ours)
    answered: bool = False              # did the last poll get an answer
    seen_at: Optional[float] = None     # when the newest read that still saw `value` was sent


def observe(watch, value, now, sent=None):
    """Record one poll answer (value) or a failed poll (value None). `now`
    is when the answer came, `sent` when its read was sent (default now): a
    late answer says nothing of the time after its read, so the lease counts
    as quiet only up to `sent` (should_campaign)."""
    if value is None:
        watch.answered = False
        return watch
    if watch.value != value or watch.changed_at is None:
        watch.value, watch.changed_at = value, now
    watch.seen_at = now if sent is None else sent
    watch.answered = True
    return watch


def should_campaign(watches, now, ttl, me, n_nodes, shortcuts=True):
    """watches: node -> Watch, where Watch.value = (node_epoch, Lease or None).
    shortcuts=False: only a lease quiet for ttl counts (after this master
    failed to take office, its own name on the nodes is no reason to hurry)."""
    answered = [w for w in watches.values() if w.answered]
    if len(answered) < majority(n_nodes):
        return False
    if shortcuts and all(w.value[0] == 0 for w in answered):
        return True                     # a new cluster: nobody ever led
    holders = [w.value[1].holder for w in answered if w.value[1] is not None]
    if shortcuts and len(holders) >= majority(n_nodes) and all(h == me for h in holders):
        return True                     # our own previous incarnation held it
    # Quiet from the first sight of the value up to the sending of the newest
    # read that still saw it: a slow read never stretches the quiet.
    quiet = [w for w in answered if (now if w.seen_at is None else min(now, w.seen_at)) - w.changed_at >= ttl]
    return len(quiet) >= majority(n_nodes)


def leader_named(watches, n_nodes):
    """(holder, epoch) of the lease named on a majority of all nodes, or None."""
    named = [(w.value[1].holder, w.value[1].epoch) for w in watches.values()
             if w.answered and w.value[1] is not None]
    for lease in set(named):
        if named.count(lease) >= majority(n_nodes):
            return lease
    return None


def best_replica(replicas):
    """replicas: {node: Replica}, as read with the claims (or by a standby).

    -> ((node, Stamp, document) of the newest replica that reads as a state
    document, ranked by the document's own stamp, or None; [(node, Replica,
    reason)] for the copies newer than it that did not read). A torn or
    garbled copy is skipped, never fatal: one bad file on one node must not
    stop every later election."""
    readable, bad = [], []
    for node, replica in sorted(replicas.items()):
        if not replica.present:
            continue
        try:
            doc = read_document(replica)
        except ValueError as e:
            bad.append((node, replica, str(e)))
            continue
        readable.append((node, Stamp(doc["epoch"], doc["version"]), doc))
    best = max(readable, key=lambda r: r[1]) if readable else None
    return best, [b for b in bad if best is None or b[1].stamp > best[1]]


def read_document(replica):
    """The state document of a replica; ValueError when it is not one.

    The node installs state.json before state.ver, so after a crash between
    the two the document may be newer than its version file says (its input
    was checked whole before it was installed): it counts at its own stamp.
    A document older than its version file is not the copy the file names."""
    doc = json.loads(replica.text)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), list):
        raise ValueError("not a state document")
    epoch, version = doc.get("epoch"), doc.get("version")
    if not isinstance(epoch, int) or not isinstance(version, int) or Stamp(epoch, version) < replica.stamp:
        raise ValueError(f"the document says ({epoch}, {version}), its version file "
                         f"({replica.stamp.epoch}, {replica.stamp.version})")
    return doc
