"""Node health from what a node's prober measured (docs/design.md, Node health):
ready, suspect, down, unknown (never answered yet), and untrusted (the node
presented a host key that is not pinned).

Pure: every time is the prober's own monotonic clock, `now` is passed in.
Silence counts from the sending of a request that got no answer, never from
the last answer: a master that was slow to ask (a stalled thread, a busy
process) never makes a node down. Three silences are told apart:

- nothing answers: no SSH answer to anything sent since; down after `down_after`;
- SSH answers but the engine answers with an error (a dead engine behind a
  live sshd counts as lost): down after `down_after`;
- SSH answers but the engine's listing is slow (busy creating containers):
  ready while the engine is only busy, suspect once it has not answered for
  half of `engine_timeout`, down once it has not answered for
  `engine_timeout` (a frozen engine is lost too).
"""
from dataclasses import dataclass
from typing import Optional

from model import READY, SUSPECT, DOWN, UNKNOWN, UNTRUSTED

# A request out this many intervals without any SSH answer makes a node suspect.
OVERDUE = 3
# An engine silent (its sshd answering) for this share of engine_timeout makes
# a node suspect: a busy engine lists slowly (seconds) and is not suspect.
SLOW_ENGINE = 0.5


@dataclass(frozen=True)
class Probes:
    """One node's probe history, all times measured by its prober."""
    answered: Optional[float] = None              # the engine's last listing came back
    silent_since: Optional[float] = None          # sending of the first request since SSH last
    #                                               answered that got no answer (yet)
    engine_silent_since: Optional[float] = None   # sending of the first listing since the engine
    #                                               last answered that got none back (yet)
    engine_error: bool = False                    # the last listing came back over SSH with an engine error
    failed: bool = False                          # the last listing failed, whatever the reason
    untrusted: bool = False                       # the last attempt met a host key that is not pinned


@dataclass(frozen=True)
class Limits:
    down_after: float
    engine_timeout: float
    probe_interval: float

    @classmethod
    def of(cls, settings):
        return cls(settings.down_after, settings.engine_timeout, settings.probe_interval)


def _for(since, now):
    """How long a silence that started at `since` (None: no silence) lasts at `now`."""
    return 0.0 if since is None else max(0.0, now - since)


def node_status(p, now, limits):
    """Status of one node at `now` from its Probes `p`."""
    if p.untrusted:
        return UNTRUSTED                  # nothing is sent to it: down in all but name, at once
    silent = _for(p.silent_since, now)
    engine_silent = _for(p.engine_silent_since, now)
    if silent >= limits.down_after:
        return DOWN                       # nothing answers
    if p.engine_error and engine_silent >= limits.down_after:
        return DOWN                       # a dead engine behind a live sshd
    if engine_silent >= limits.engine_timeout:
        return DOWN                       # a frozen engine
    if p.answered is None:
        return UNKNOWN
    if p.failed or silent >= OVERDUE * limits.probe_interval or \
            engine_silent >= SLOW_ENGINE * limits.engine_timeout:
        return SUSPECT                    # a missed probe, an overdue answer, an engine that may be frozen
    return READY


def why(p, now, limits):
    """What makes the node's status at `now` other than ready, in a few
    words for its transition event ("" when ready, unknown or untrusted)."""
    silent = _for(p.silent_since, now)
    engine_silent = _for(p.engine_silent_since, now)
    if silent >= min(OVERDUE * limits.probe_interval, limits.down_after):
        return f"no SSH answer for {silent:.1f} s"
    if p.engine_error:
        return f"the engine fails, for {engine_silent:.1f} s"
    if engine_silent >= SLOW_ENGINE * limits.engine_timeout:
        return f"the engine's listing out for {engine_silent:.1f} s"
    if p.failed:
        return "the last listing failed"
    return ""


def next_change(p, now, limits):
    """Seconds from `now` until the status changes if no new answer or
    failure is recorded, or None when it never does."""
    current = node_status(p, now, limits)
    ends = []
    for since, limit in ((p.silent_since, limits.down_after),
                         (p.silent_since, OVERDUE * limits.probe_interval),
                         (p.engine_silent_since, limits.down_after),
                         (p.engine_silent_since, SLOW_ENGINE * limits.engine_timeout),
                         (p.engine_silent_since, limits.engine_timeout)):
        if since is not None and since + limit > now:
            ends.append(since + limit)
    for end in sorted(ends):
        if node_status(p, end, limits) != current:
            return end - now
    return None
