"""scheduler.backoff.Backoffs: failed placements and crash loops per slot.

Times of the engines are docker-style strings; `wall` is passed in seconds
since the epoch accordingly, `now` is the (monotonic) time of the round.
"""
import itertools
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from model import Container, Service, ServiceSpec, DELETE, parse_time
from scheduler.backoff import Backoffs, Failure, CRASH_WINDOW, MAX_DELAY, FAILED_AFTER

BASE = datetime(2026, 11, 25, 14, 26, 25, 991648, tzinfo=timezone.utc)
WALL0 = parse_time("2026-11-25T14:26:25.991648597Z")
NOW = 500.0
WEB = Service("web", ServiceSpec(image="img:1"), replicas=2)
_ids = itertools.count()


def ts(offset):
    """Docker's way to write BASE + offset seconds: nanoseconds and a Z."""
    return (BASE + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "597Z"


def box(slot=1, status="exited", started=0.0, finished=None, exit_code=1, service="web", cid=None):
    n = next(_ids)
    return Container(id=cid or f"x{n:06d}", name=f"{service}.{slot}.{n:06x}", node="a", service=service,
                     slot=slot, spec="s", image="img", status=status,
                     started_at=ts(started) if started is not None else "",
                     finished_at=ts(finished) if finished is not None else "0001-01-01T00:00:00Z",
                     exit_code=exit_code)


def test_docker_times_are_read_to_the_microsecond():
    assert WALL0 == BASE.timestamp()
    assert parse_time(ts(2.5)) - WALL0 == pytest.approx(2.5)


# -- failed placements ----------------------------------------------------------------

def test_failed_placements_wait_1_2_4_up_to_30_seconds():
    b = Backoffs()
    delays = []
    for i in range(1, 9):
        f = b.place_failed(("web", 1), NOW, f"no such image ({i})")
        assert f == b.place[("web", 1)]
        assert f.count == i and f.message == f"no such image ({i})"
        delays.append(f.not_before - NOW)
    assert delays == [1, 2, 4, 8, 16, MAX_DELAY, MAX_DELAY, MAX_DELAY]
    assert MAX_DELAY == 30


def test_the_wait_counts_from_the_time_of_each_failure():
    b = Backoffs()
    b.place_failed(("web", 1), 100.0, "x")
    assert b.place_failed(("web", 1), 200.0, "x").not_before == 202.0
    assert b.until() == {("web", 1): 202.0}


def test_a_good_placement_clears_the_slot_and_the_next_failure_starts_over():
    b = Backoffs()
    for _ in range(4):
        b.place_failed(("web", 1), NOW, "x")
    b.place_failed(("web", 2), NOW, "x")
    b.place_ok(("web", 1))
    assert b.until() == {("web", 2): NOW + 1}
    b.place_ok(("web", 1))          # twice is fine
    assert b.place_failed(("web", 1), NOW, "x") == Failure(1, NOW + 1, "x")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([("web", 1), ("web", 2), ("db", 1)]), max_size=20))
def test_each_slot_counts_its_own_placement_failures(keys):
    b = Backoffs()
    for key in keys:
        b.place_failed(key, NOW, "x")
    for key in set(keys):
        n = keys.count(key)
        assert b.place[key].count == n
        assert b.until()[key] == NOW + min(MAX_DELAY, 2 ** (n - 1))
    assert set(b.until()) == set(keys)


# -- exits and crash loops ------------------------------------------------------------------

def test_quick_exits_count_as_crashes_with_waits_0_2_4_up_to_30():
    b = Backoffs()
    delays, messages = [], []
    for i in range(8):
        start = 100.0 * i
        dead = box(started=start, finished=start + 2.0)
        out = b.observe([WEB], [dead], NOW, WALL0 + start + 5)
        assert [(s, slot) for s, slot, _ in out] == [("web", 1)]
        messages.append(out[0][2])
        f = b.crash[("web", 1)]
        assert f.count == i + 1 and f.message == out[0][2]
        delays.append(f.not_before - NOW)
    assert delays == [0, 2, 4, 8, 16, MAX_DELAY, MAX_DELAY, MAX_DELAY]
    assert messages[0] == "exited with code 1 after 2.0s"
    assert messages[1] == "exited with code 1 after 2.0s, 2 crashes in a row"


def test_a_long_run_before_the_exit_resets_the_count_to_one():
    b = Backoffs()
    for i in range(3):
        b.observe([WEB], [box(started=10.0 * i, finished=10.0 * i + 1)], NOW, WALL0 + 100)
    assert b.crash[("web", 1)].count == 3
    out = b.observe([WEB], [box(started=200.0, finished=260.0, exit_code=137)], NOW, WALL0 + 300)
    assert out == [("web", 1, "exited with code 137 after 60.0s")]
    assert b.crash[("web", 1)] == Failure(1, NOW, "exited with code 137 after 60.0s")
    # The next quick exit is the second in a row again.
    b.observe([WEB], [box(started=400.0, finished=401.0)], NOW, WALL0 + 500)
    assert b.crash[("web", 1)].count == 2


@pytest.mark.parametrize("ran, counts", [(0.0, 2), (CRASH_WINDOW - 0.5, 2), (CRASH_WINDOW, 1), (CRASH_WINDOW + 1, 1)])
def test_the_crash_window_is_half_open(ran, counts):
    b = Backoffs()
    start = "2026-11-25T14:26:25.000000000Z"
    first = Container("x1", "web.1.1", "a", "web", 1, "s", "img", "exited", started_at=start,
                      finished_at="2026-11-25T14:26:26.000000000Z", exit_code=1)
    b.observe([WEB], [first], NOW, parse_time(start) + 5)
    end = datetime(2026, 11, 25, 14, 26, 25, tzinfo=timezone.utc) + timedelta(seconds=ran)
    second = Container("x2", "web.1.2", "a", "web", 1, "s", "img", "exited", started_at=start,
                       finished_at=end.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z", exit_code=1)
    b.observe([WEB], [second], NOW, parse_time(start) + 60)
    assert b.crash[("web", 1)].count == counts


def test_the_same_exited_container_is_counted_once():
    b = Backoffs()
    dead = box(started=0.0, finished=1.0)
    assert len(b.observe([WEB], [dead], NOW, WALL0 + 5)) == 1
    for later in (NOW + 1, NOW + 2, NOW + 3):
        assert b.observe([WEB], [dead], later, WALL0 + 10) == []
    assert b.crash[("web", 1)] == Failure(1, NOW, "exited with code 1 after 1.0s")
    assert not b.failing("web")


def test_an_exit_bicycle_causes_is_no_crash():
    """A container the master removes (start-first replacement, move) may be
    listed exited with 137 before it is gone: not counted, no back-off."""
    b = Backoffs()
    replaced = box(status="running", started=0.0, cid="old")
    b.observe([WEB], [replaced], NOW, WALL0 + 2)
    b.expect_exit("old")
    killed = box(started=0.0, finished=2.2, exit_code=137, cid="old")
    assert b.observe([WEB], [killed], NOW + 1, WALL0 + 3) == []
    assert b.crash == {} and not b.failing("web")
    assert b.observe([WEB], [box(started=0.0, finished=1.0, cid="other")], NOW + 2, WALL0 + 4) != []


def test_exits_of_several_slots_in_one_round():
    b = Backoffs()
    out = b.observe([WEB], [box(slot=1, started=0, finished=1), box(slot=2, started=0, finished=50, exit_code=0)],
                    NOW, WALL0 + 60)
    assert sorted(out) == [("web", 1, "exited with code 1 after 1.0s"), ("web", 2, "exited with code 0 after 50.0s")]


def test_an_exit_with_unknown_times_counts_once_without_a_crash():
    b = Backoffs()
    for i in range(3):
        out = b.observe([WEB], [box(started=None, finished=None)], NOW, WALL0)
        assert out == [("web", 1, "exited with code 1 after an unknown time")]
        assert b.crash[("web", 1)].count == 1


def test_what_observe_ignores():
    b = Backoffs()
    gone = Service("gone", ServiceSpec(image="img:1"), replicas=2, state=DELETE)
    ignored = [
        box(slot=3, started=0, finished=1),                    # above replicas
        box(slot=0, started=0, finished=1),                    # no slot 0
        box(service="other", started=0, finished=1),           # no such service
        box(service="gone", started=0, finished=1),            # being deleted
        box(status="created", started=None, finished=None),    # never started
        box(status="running", started=0, finished=None),       # runs
        box(status="restarting", started=0, finished=None),    # runs for Docker too
    ]
    assert b.observe([WEB, gone], ignored, NOW, WALL0 + 100) == []
    assert b.crash == {} and b.until() == {}


def test_a_replacement_that_runs_the_crash_window_clears_the_crash_record():
    b = Backoffs()
    for i in range(FAILED_AFTER):
        b.observe([WEB], [box(started=10.0 * i, finished=10.0 * i + 1)], NOW, WALL0 + 100)
    b.place_failed(("web", 1), NOW, "disk full")
    assert b.failing("web")
    alive = box(status="running", started=100.0, finished=None, exit_code=0)
    started = parse_time(alive.started_at)
    b.observe([WEB], [alive], NOW, started + CRASH_WINDOW - 0.001)
    assert b.crash[("web", 1)].count == FAILED_AFTER           # not yet
    b.observe([WEB], [alive], NOW, started + CRASH_WINDOW + 0.001)
    assert ("web", 1) not in b.crash
    assert ("web", 1) in b.place                               # placement failures are not exits
    assert b.until() == {("web", 1): NOW + 1}


def test_a_running_container_of_another_slot_clears_nothing():
    b = Backoffs()
    b.observe([WEB], [box(slot=1, started=0, finished=1)], NOW, WALL0 + 5)
    b.observe([WEB], [box(slot=2, status="running", started=0, finished=None, exit_code=0)], NOW, WALL0 + 500)
    assert ("web", 1) in b.crash


def test_seen_exits_are_forgotten_once_the_container_is_gone():
    b = Backoffs()
    dead = box(started=0, finished=1)
    b.observe([WEB], [dead], NOW, WALL0 + 5)
    b.observe([WEB], [], NOW, WALL0 + 5)
    assert b.seen_exits == set()
    # So an id seen again (it came back with its node) counts as a new exit.
    assert len(b.observe([WEB], [dead], NOW, WALL0 + 5)) == 1
    assert b.crash[("web", 1)].count == 2


# -- reading ------------------------------------------------------------------------------------

def test_failing_after_failed_after_failures_in_a_row():
    b = Backoffs()
    db = Service("db", ServiceSpec(image="img:1"), replicas=1)
    for i in range(FAILED_AFTER):
        assert not b.failing("web")
        b.observe([WEB, db], [box(started=10.0 * i, finished=10.0 * i + 1)], NOW, WALL0 + 100)
    assert b.failing("web")
    assert not b.failing("db")
    b2 = Backoffs()
    for _ in range(FAILED_AFTER - 1):
        b2.place_failed(("db", 1), NOW, "x")
    assert not b2.failing("db")
    b2.place_failed(("db", 1), NOW, "x")
    assert b2.failing("db") and not b2.failing("web")


def test_until_takes_the_later_of_both_tables():
    b = Backoffs()
    for _ in range(3):
        b.place_failed(("web", 1), NOW, "x")                 # NOW + 4
    for i in range(4):
        b.observe([WEB], [box(slot=1, started=10.0 * i, finished=10.0 * i + 1),
                          box(slot=2, started=10.0 * i, finished=10.0 * i + 1)], NOW, WALL0 + 100)  # NOW + 8
    assert b.until() == {("web", 1): NOW + 8, ("web", 2): NOW + 8}
    b.place_failed(("web", 2), NOW + 20, "x")                 # NOW + 21
    assert b.until() == {("web", 1): NOW + 8, ("web", 2): NOW + 21}


def test_forget_drops_one_service_from_both_tables():
    b = Backoffs()
    db = Service("db", ServiceSpec(image="img:1"), replicas=1)
    b.place_failed(("web", 1), NOW, "x")
    b.place_failed(("db", 1), NOW, "x")
    b.observe([WEB, db], [box(slot=2, started=0, finished=1), box(service="db", started=0, finished=1)],
              NOW, WALL0 + 5)
    b.forget("web")
    assert set(b.until()) == {("db", 1)}
    assert b.slots("web", NOW) == []
    assert [r["kind"] for r in b.slots("db", NOW)] == ["crash", "place"]
    b.forget("nothing")
    assert set(b.until()) == {("db", 1)}


def test_slots_lists_each_slot_and_kind_with_the_time_left():
    b = Backoffs()
    for _ in range(3):
        b.place_failed(("web", 2), NOW, "pull failed")         # NOW + 4
    b.observe([WEB], [box(slot=2, started=0, finished=3.0)], NOW, WALL0 + 5)
    b.observe([WEB], [box(slot=1, started=0, finished=1)], NOW, WALL0 + 5)
    b.place_failed(("db", 1), NOW, "other service")
    assert b.slots("web", NOW + 1.26) == [
        {"slot": 1, "kind": "crash", "failures": 1, "retry_in_s": 0.0, "message": "exited with code 1 after 1.0s"},
        {"slot": 2, "kind": "crash", "failures": 1, "retry_in_s": 0.0, "message": "exited with code 1 after 3.0s"},
        {"slot": 2, "kind": "place", "failures": 3, "retry_in_s": 2.7, "message": "pull failed"},
    ]
    assert [r["retry_in_s"] for r in b.slots("web", NOW + 100)] == [0.0, 0.0, 0.0]
    assert b.slots("nothing", NOW) == []


def test_a_global_service_forgets_the_failures_of_slots_it_no_longer_has():
    b = Backoffs()
    b.place_failed(("g", 1), NOW, "no such image", node="n1")
    b.place_failed(("g", 2), NOW, "no such image", node="n2")
    b.place_failed(("web", 1), NOW, "no such image")
    b.keep_only("g", {2})
    assert set(b.until()) == {("g", 2), ("web", 1)} and b.place_nodes() == {("g", 2): "n2"}
