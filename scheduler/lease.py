"""Lease rules (design.md, Lease, fencing and failover). Pure: times are the
caller's MONOTONIC readings; no timestamp ever crosses machines.

- Epochs are unique to their master: term * SPAN + index (1-based position
  in masters:), so no two candidates ever propose the same epoch.
- A master holding grants for E on a majority of ALL nodes leads epoch E.
- The leader renews every ttl/3; if no renewal round succeeded on a majority
  within 2*ttl/3 of the start of its last good round, it stops acting.
- A standby campaigns only when a majority of nodes answered its last poll
  AND showed no change of (epoch, counter) for ttl, by its own clock; or when
  a majority answered and no node was ever claimed, or the holder named on
  them is this master's own name (its previous incarnation, now gone).
"""
from dataclasses import dataclass
from typing import Optional

SPAN = 100


def majority(n_nodes):
    return n_nodes // 2 + 1


def next_epoch(highest_seen, index):
    """An epoch of master `index` in the term after the highest epoch seen."""
    term = highest_seen // SPAN + 1
    return term * SPAN + index


def epoch_master_index(epoch):
    return epoch % SPAN


def won(grants, n_nodes):
    return grants >= majority(n_nodes)


def must_step_down(last_good_round_start, now, ttl):
    """The leader stops acting when its last good renewal round is too old."""
    return last_good_round_start is None or now - last_good_round_start > 2 * ttl / 3


@dataclass
class Watch:
    """What a standby knows of one node's lease."""
    value: Optional[tuple] = None      # (node_epoch, lease) as last read
    changed_at: Optional[float] = None  # when value last changed (monotonic, ours)
    answered: bool = False              # did the last poll get an answer


def observe(watch, value, now):
    """Record one poll answer (value) or a failed poll (value None)."""
    if value is None:
        watch.answered = False
        return watch
    if watch.value != value or watch.changed_at is None:
        watch.value, watch.changed_at = value, now
    watch.answered = True
    return watch


def should_campaign(watches, now, ttl, me, n_nodes):
    """watches: node -> Watch, where Watch.value = (node_epoch, (lease_epoch, holder, counter) or None)."""
    answered = [w for w in watches.values() if w.answered]
    if len(answered) < majority(n_nodes):
        return False
    if all(w.value[0] == 0 for w in answered):
        return True                     # a new cluster: nobody ever led
    holders = [w.value[1][1] for w in answered if w.value[1] is not None]
    if len(holders) >= majority(n_nodes) and all(h == me for h in holders):
        return True                     # our own previous incarnation held it
    quiet = [w for w in answered if now - w.changed_at >= ttl]
    return len(quiet) >= majority(n_nodes)


def highest_replica(replicas):
    """replicas: list of ((epoch, version), text) -> the newest, or None."""
    present = [r for r in replicas if r[0] != (0, 0) and r[1].strip()]
    return max(present, key=lambda r: r[0]) if present else None
