"""scheduler.health: ready, suspect, down, unknown from what the prober
measured on its own clock. Silence counts from an unanswered request, and a
busy engine behind a live sshd is told from a node where nothing answers."""
import pytest
from hypothesis import given, settings, strategies as st

from model import READY, SUSPECT, DOWN, UNKNOWN, UNTRUSTED
from scheduler.health import OVERDUE, Limits, Probes, next_change, node_status, why

LIMITS = Limits(down_after=5.0, engine_timeout=30.0, probe_interval=1.0)
PROPS = settings(max_examples=300, deadline=None)


def status(now, **fields):
    return node_status(Probes(**fields), now, LIMITS)


@pytest.mark.parametrize("fields, now, expected", [
    # never answered yet
    ({}, 0.0, UNKNOWN),
    ({}, 1e6, UNKNOWN),                                             # nothing was asked: no silence
    ({"silent_since": 100.0, "engine_silent_since": 100.0}, 104.9, UNKNOWN),
    ({"silent_since": 100.0, "engine_silent_since": 100.0}, 105.0, DOWN),       # nothing answered
    ({"silent_since": 100.0, "engine_silent_since": 100.0, "failed": True}, 104.9, UNKNOWN),
    ({"engine_silent_since": 100.0}, 129.9, UNKNOWN),                # sshd answers, the engine not yet
    ({"engine_silent_since": 100.0}, 130.0, DOWN),
    # answered, nothing out
    ({"answered": 100.0}, 100.0, READY),
    ({"answered": 100.0}, 1e6, READY),                               # a stalled prober asks nothing
    # a request out, nothing answers
    ({"answered": 100.0, "silent_since": 101.0, "engine_silent_since": 101.0}, 101.0 + OVERDUE - 0.1, READY),
    ({"answered": 100.0, "silent_since": 101.0, "engine_silent_since": 101.0}, 101.0 + OVERDUE, SUSPECT),
    ({"answered": 100.0, "silent_since": 101.0, "engine_silent_since": 101.0}, 105.9, SUSPECT),
    ({"answered": 100.0, "silent_since": 101.0, "engine_silent_since": 101.0}, 106.0, DOWN),
    # the last listing failed without an answer (no connection)
    ({"answered": 100.0, "silent_since": 101.0, "engine_silent_since": 101.0, "failed": True}, 101.0, SUSPECT),
    ({"answered": 100.0, "silent_since": 101.0, "engine_silent_since": 101.0, "failed": True}, 106.0, DOWN),
    # sshd answers, the engine is slow: ready while busy, suspect after half of
    # engine_timeout, down once frozen for engine_timeout
    ({"answered": 100.0, "engine_silent_since": 101.0}, 106.0, READY),
    ({"answered": 100.0, "engine_silent_since": 101.0}, 115.9, READY),
    ({"answered": 100.0, "engine_silent_since": 101.0}, 116.0, SUSPECT),
    ({"answered": 100.0, "engine_silent_since": 101.0}, 130.9, SUSPECT),
    ({"answered": 100.0, "engine_silent_since": 101.0}, 131.0, DOWN),
    # sshd answers with the engine's error: a dead engine, down after down_after
    ({"answered": 100.0, "engine_silent_since": 101.0, "engine_error": True, "failed": True}, 101.5, SUSPECT),
    ({"answered": 100.0, "engine_silent_since": 101.0, "engine_error": True, "failed": True}, 106.0, DOWN),
    # untrusted at once
    ({"untrusted": True}, 0.0, UNTRUSTED),
    ({"answered": 100.0, "untrusted": True}, 100.0, UNTRUSTED),
])
def test_node_status(fields, now, expected):
    assert status(now, **fields) == expected


@pytest.mark.parametrize("fields, now, expected", [
    ({"answered": 100.0}, 1e6, ""),
    ({"answered": 100.0, "silent_since": 101.0, "engine_silent_since": 101.0}, 104.5, "no SSH answer for 3.5 s"),
    ({"answered": 100.0, "engine_silent_since": 101.0}, 117.0, "the engine's listing out for 16.0 s"),
    ({"answered": 100.0, "engine_silent_since": 101.0, "engine_error": True, "failed": True}, 103.0,
     "the engine fails, for 2.0 s"),
    ({"answered": 100.0, "failed": True}, 100.5, "the last listing failed"),
])
def test_why_names_what_made_the_node_not_ready(fields, now, expected):
    assert why(Probes(**fields), now, LIMITS) == expected


@given(st.builds(Probes, answered=st.none() | st.floats(0, 100), silent_since=st.none() | st.floats(0, 100),
                 engine_silent_since=st.none() | st.floats(0, 100), engine_error=st.booleans(),
                 failed=st.booleans()), st.floats(0, 200))
@PROPS
def test_a_suspect_or_down_node_always_says_why(p, now):
    if node_status(p, now, LIMITS) in (SUSPECT, DOWN):
        assert why(p, now, LIMITS)


def test_overdue_scales_with_probe_interval():
    probes = Probes(answered=0.0, silent_since=1.0)
    assert node_status(probes, 4.5, Limits(10.0, 30.0, 1.0)) == SUSPECT
    assert node_status(probes, 4.5, Limits(10.0, 30.0, 2.0)) == READY


def test_down_after_wins_over_suspect():
    assert status(2.0, answered=0.0, silent_since=0.0, failed=True) == SUSPECT
    assert node_status(Probes(answered=0.0, silent_since=0.0, failed=True), 2.0, Limits(2.0, 30.0, 1.0)) == DOWN


# -- properties -------------------------------------------------------------------------

times = st.integers(0, 400).map(lambda n: n / 2)          # halves of seconds: exact sums
maybe_times = st.none() | times


@st.composite
def probes(draw):
    return Probes(answered=draw(maybe_times), silent_since=draw(maybe_times),
                  engine_silent_since=draw(maybe_times), engine_error=draw(st.booleans()),
                  failed=draw(st.booleans()), untrusted=draw(st.booleans()))


@PROPS
@given(probes(), times)
def test_untrusted_wins_over_everything(p, now):
    assert (node_status(p, now, LIMITS) == UNTRUSTED) == p.untrusted


@PROPS
@given(probes(), times)
def test_time_alone_never_makes_a_node_down_or_suspect(p, now):
    """With no request unanswered, however long nobody asked (a stalled prober)."""
    quiet = Probes(answered=p.answered)
    assert node_status(quiet, now, LIMITS) == (UNKNOWN if p.answered is None else READY)


@PROPS
@given(probes(), times)
def test_a_node_that_answered_within_down_after_is_down_only_for_its_engine(p, now):
    """SSH answered after every request sent down_after ago or earlier: down
    only for an engine that errs for down_after or stays silent for engine_timeout."""
    if p.untrusted or (p.silent_since is not None and now - p.silent_since >= LIMITS.down_after):
        return
    engine_silent = 0.0 if p.engine_silent_since is None else now - p.engine_silent_since
    engine_lost = (p.engine_error and engine_silent >= LIMITS.down_after) or engine_silent >= LIMITS.engine_timeout
    assert (node_status(p, now, LIMITS) == DOWN) == engine_lost


@PROPS
@given(probes(), times)
def test_a_busy_engine_behind_a_live_sshd_is_not_down_before_engine_timeout(p, now):
    busy = Probes(answered=p.answered, engine_silent_since=p.engine_silent_since)
    if p.engine_silent_since is None or now - p.engine_silent_since < LIMITS.engine_timeout:
        assert node_status(busy, now, LIMITS) != DOWN


@PROPS
@given(probes(), times)
def test_nothing_answering_for_down_after_is_down(p, now):
    if not p.untrusted and p.silent_since is not None and now - p.silent_since >= LIMITS.down_after:
        assert node_status(p, now, LIMITS) == DOWN


SEVERITY = {READY: 0, UNKNOWN: 0, SUSPECT: 1, DOWN: 2, UNTRUSTED: 2}


@PROPS
@given(probes(), times, times)
def test_without_news_a_status_only_gets_worse(p, t1, t2):
    t1, t2 = sorted((t1, t2))
    s1, s2 = node_status(p, t1, LIMITS), node_status(p, t2, LIMITS)
    assert SEVERITY[s2] >= SEVERITY[s1]
    if s1 == DOWN:
        assert s2 == DOWN


@PROPS
@given(probes(), times)
def test_next_change_agrees_with_node_status(p, now):
    wait = next_change(p, now, LIMITS)
    current = node_status(p, now, LIMITS)
    if wait is None:
        assert node_status(p, now + 1e6, LIMITS) == current
        return
    assert wait > 0
    for t in (now, now + wait / 2, now + wait * 0.999):
        assert node_status(p, t, LIMITS) == current
    assert node_status(p, now + wait, LIMITS) != current
