"""master.observe: how probe answers and silences become node health, how
answers merge with the master's own optimistic changes, and that recording
never waits for the loop's lock. The clock is a number the test sets; a few
tests run threads only to show who waits for whom (their bounds are deadlock
bounds, not timings)."""
import dataclasses
import threading
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from model import Container, READY, SUSPECT, DOWN, UNKNOWN, Settings
from master.observe import LIST, PING, Observation, Prober
from remote.transport import RemoteError, Result
from remote import commands

SETTINGS = Settings(down_after=5, probe_interval=1, engine_timeout=30)
BOUND = 20          # seconds: only a deadlock or a lost wake-up ever reaches it


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def box(cid, node="a", status="running", slot=1):
    return Container(id=cid, name=f"web.{slot}.{cid}", node=node, service="web", slot=slot, spec="s",
                     image="img", status=status)


def fresh(nodes=("a", "b"), t=0.0):
    clock = Clock(t)
    return Observation(list(nodes), SETTINGS, clock=clock), clock


def ids(obs, node=None):
    return sorted(c.id for c in obs.containers() if node is None or c.node == node)


def listed(obs, clock, node, sent, at, containers=()):
    """A listing sent at `sent` that the engine answered at `at`."""
    obs.asked(node, LIST, sent)
    clock.t = at
    obs.probe_ok(node, sent, list(containers), "w")


def pinged(obs, clock, node, sent, at):
    obs.asked(node, PING, sent)
    clock.t = at
    obs.ping_ok(node, sent, at)


# -- health through the observation ------------------------------------------------------

def test_an_engine_that_answers_actions_while_its_listing_is_slow_is_busy_not_silent():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.0, 0.5)
    obs.asked("a", LIST, 1.0)                            # a listing that takes long
    for t in (5.0, 12.0, 20.0, 28.0):                    # docker runs answered meanwhile
        pinged(obs, clock, "a", t - 0.5, t)
        obs.engine_acted("a", t)
        assert obs.statuses(t + 14.0) == {"a": READY}    # 15 s (half of engine_timeout) never passes
    timeout = SETTINGS.engine_timeout
    pinged(obs, clock, "a", 40.0, 40.5)
    assert obs.statuses(28.0 + timeout / 2) == {"a": SUSPECT}   # silent since its last answer
    assert obs.statuses(28.0 + timeout) == {"a": DOWN}          # and frozen after engine_timeout


def test_without_actions_a_slow_listing_counts_from_its_sending():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.0, 0.5)
    obs.asked("a", LIST, 1.0)
    pinged(obs, clock, "a", 10.0, 10.5)
    assert obs.statuses(1.0 + SETTINGS.engine_timeout / 2) == {"a": SUSPECT}

def test_a_node_never_asked_stays_unknown():
    obs, clock = fresh()
    assert obs.statuses(0.0) == {"a": UNKNOWN, "b": UNKNOWN}
    assert obs.statuses(1e6) == {"a": UNKNOWN, "b": UNKNOWN}       # no request, no silence
    assert obs.next_change(0.0) is None


def test_a_first_listing_without_answer_is_down_after_down_after():
    obs, clock = fresh(("a",))
    obs.asked("a", LIST, 2.0)
    assert obs.statuses(6.9) == {"a": UNKNOWN}
    assert obs.next_change(2.0) == 5
    assert obs.statuses(7.0) == {"a": DOWN}


def test_a_stalled_prober_never_makes_a_node_down():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.5, 1.0)
    assert obs.statuses(1000.0) == {"a": READY}        # nothing was sent since: nothing went unanswered
    assert obs.next_change(1000.0) is None


def test_a_busy_engine_behind_a_live_sshd_is_suspect_then_down_at_engine_timeout():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.5, 1.0)
    obs.asked("a", LIST, 2.0)                           # a listing that does not come back
    for t in range(3, 40):
        pinged(obs, clock, "a", float(t), t + 0.1)      # sshd answers every check
        expected = READY if t + 0.1 < 17.0 else SUSPECT if t + 0.1 < 32.0 else DOWN
        assert obs.statuses(t + 0.1) == {"a": expected}, t
    assert obs.statuses(31.9) == {"a": SUSPECT}
    assert obs.statuses(32.0) == {"a": DOWN}


def test_nothing_answering_while_a_listing_is_out_is_down_after_down_after():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.5, 1.0)
    obs.asked("a", LIST, 2.0)
    obs.asked("a", PING, 3.0)                           # no answer to either
    assert obs.statuses(4.9) == {"a": READY}
    assert obs.statuses(5.0) == {"a": SUSPECT}          # overdue: OVERDUE intervals without any answer
    assert obs.next_change(5.0) == 2
    assert obs.statuses(7.0) == {"a": DOWN}             # down_after since the listing went out


def test_silence_counts_from_the_first_request_after_the_last_answer():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.5, 1.0)
    obs.asked("a", LIST, 2.0)                           # out for good
    pinged(obs, clock, "a", 3.0, 3.1)
    pinged(obs, clock, "a", 4.0, 4.1)
    obs.asked("a", PING, 5.0)
    clock.t = 5.2
    obs.ping_failed("a", 5.0, RemoteError("a: cannot connect"))
    assert obs.statuses(9.9) == {"a": SUSPECT}
    assert obs.nodes["a"].error == "a: cannot connect"
    assert obs.statuses(10.0) == {"a": DOWN}            # 5 s after the first unanswered check


def test_a_dead_engine_behind_a_live_sshd_is_down_after_down_after():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.5, 1.0)
    for sent in (2.0, 3.0, 4.0, 5.0, 6.0):
        obs.asked("a", LIST, sent)
        clock.t = sent + 0.1
        obs.probe_failed("a", "Cannot connect to the Docker daemon", started=sent, answered=sent + 0.1)
    assert obs.statuses(6.9) == {"a": SUSPECT}
    assert obs.nodes["a"].error == "Cannot connect to the Docker daemon"
    assert obs.statuses(7.0) == {"a": DOWN}             # the engine failed since the listing of 2


def test_a_failed_listing_without_answer_is_suspect_then_down():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 1.0, 2.0)
    clock.t = 3.0
    obs.probe_failed("a", OSError("no route"))          # sent now, nothing answered
    assert obs.statuses(3.0) == {"a": SUSPECT}
    assert obs.next_change(3.0) == 5
    assert obs.statuses(8.0) == {"a": DOWN}


def test_an_answer_recorded_late_still_counts_when_it_came():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.5, 1.0)
    obs.asked("a", LIST, 2.0)
    clock.t = 9.0                                       # recorded at 9, answered at 2.5
    obs.probe_ok("a", 2.0, [], "w", answered=2.5)
    assert obs.statuses(9.0) == {"a": READY}


def test_an_answer_ends_every_silence():
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.5, 1.0)
    obs.asked("a", PING, 2.0)
    clock.t = 2.5
    obs.ping_failed("a", 2.0, "timeout")
    obs.probe_failed("a", "timeout", started=3.0)
    assert obs.statuses(6.0) == {"a": SUSPECT}
    listed(obs, clock, "a", 6.5, 7.0)
    assert obs.statuses(7.0) == {"a": READY} and obs.nodes["a"].error == ""
    assert obs.statuses(100.0) == {"a": READY}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 58), st.integers(0, 9)), min_size=1, max_size=6))
def test_a_node_whose_sshd_answers_every_check_is_never_down_before_engine_timeout(listings):
    """Listings of any length under engine_timeout (in halves of seconds),
    checks every probe_interval while one is out, each answered within it
    (in tenths): the node is never down, nor unknown after its first answer."""
    obs, clock = fresh(("a",))
    listed(obs, clock, "a", 0.0, 0.1)
    t = 1.0
    for halves, tenths in listings:
        sent, back = t, t + halves / 2
        obs.asked("a", LIST, sent)
        check = sent + 1
        while check < back:
            obs.asked("a", PING, check)
            assert obs.statuses(check + tenths / 10)["a"] in (READY, SUSPECT)
            obs.ping_ok("a", check, check + tenths / 10)
            check += 1
        assert obs.statuses(back)["a"] in (READY, SUSPECT)
        clock.t = back
        obs.probe_ok("a", sent, [], "w")
        assert obs.statuses(back) == {"a": READY}
        t = back + 1


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 60), st.integers(0, 9), st.integers(1, 40))
def test_a_node_that_stops_answering_is_down_within_down_after_and_an_interval(lost_at, phase, listing_halves):
    """The prober lists every second (a listing takes `listing_halves` halves
    of a second while the node answers) and checks SSH each second a listing
    is out. From `lost_at` (+ phase tenths) nothing answers: the node is down
    at most down_after + probe_interval later, and not before silence began."""
    obs, clock = fresh(("a",))
    lost = lost_at + phase / 10
    t, down_at = 0.0, None
    while down_at is None:
        sent = t
        obs.asked("a", LIST, sent)
        back = sent + listing_halves / 2
        check = sent + 1
        while check < back or (back >= lost and check < lost + 20):
            obs.asked("a", PING, check)
            if check + 0.05 < lost:
                obs.ping_ok("a", check, check + 0.05)
            else:
                for probe in (check, check + 0.5):
                    if obs.statuses(probe)["a"] == DOWN and down_at is None:
                        down_at = probe
                obs.ping_failed("a", check, "timeout")
            check += 1
        if back < lost:
            clock.t = back
            obs.probe_ok("a", sent, [], "w")
            t = max(back, sent + 1)
        elif down_at is None:
            down_at = lost + 20
    assert down_at >= lost
    assert down_at <= lost + SETTINGS.down_after + SETTINGS.probe_interval + 0.5


# -- snapshot -------------------------------------------------------------------------------

def test_a_snapshot_copies_statuses_containers_and_node_facts_together():
    obs, clock = fresh()
    listed(obs, clock, "a", 0.5, 1.0, [box("c1")])
    clock.t = 1.5
    obs.probe_failed("b", "b: no route")
    seen = obs.snapshot(1.5)
    assert seen.statuses == {"a": READY, "b": UNKNOWN}
    assert [c.id for c in seen.containers] == ["c1"]
    assert seen.last_seen == {"a": "w", "b": None}
    assert seen.errors == {"a": "", "b": "b: no route"}
    seen.containers.clear()
    assert ids(obs) == ["c1"]                           # a copy


# -- locks and wake-ups -------------------------------------------------------------------

def test_recording_never_waits_for_the_loops_lock():
    obs, clock = fresh(("a",))
    loop_lock = obs.condition()
    recorded = threading.Event()

    def probe():
        listed(obs, clock, "a", 0.5, 1.0, [box("c1")])
        obs.asked("a", PING, 2.0)
        obs.ping_failed("a", 2.0, "timeout")
        obs.probe_failed("a", "timeout", started=3.0)
        recorded.set()
    with loop_lock:                                     # the loop (or a reader) holds its lock meanwhile
        threading.Thread(target=probe, daemon=True).start()
        assert recorded.wait(BOUND)
        assert obs.statuses(3.0) == {"a": SUSPECT} and ids(obs) == ["c1"]


def test_a_change_wakes_a_waiter_and_so_does_the_loop():
    obs, clock = fresh(("a",))
    loop_lock = obs.condition()
    for change in (lambda: listed(obs, clock, "a", 0.5, 1.0, [box("c1")]),
                   lambda: obs.probe_failed("a", "timeout", started=2.0),
                   lambda: obs.add(box("c2")),
                   lambda: _notify(loop_lock)):
        mark = obs.changed.mark()
        woken = []
        waiter = threading.Thread(target=lambda: woken.append(obs.changed.wait(mark, BOUND)), daemon=True)
        waiter.start()
        change()
        waiter.join(BOUND)
        assert woken == [True]


def _notify(condition):
    with condition:
        condition.notify_all()


def test_a_waiter_holds_no_lock_that_recording_needs():
    obs, clock = fresh(("a",))
    mark = obs.changed.mark()
    waiter = threading.Thread(target=lambda: obs.changed.wait(mark, BOUND), daemon=True)
    waiter.start()
    with obs.condition():                               # a waiter's check may hold the loop's lock
        listed(obs, clock, "a", 0.5, 1.0)               # still records, and wakes it
    waiter.join(BOUND)
    assert not waiter.is_alive()


def test_an_unchanged_answer_wakes_nobody():
    obs, clock = fresh()
    listed(obs, clock, "a", 0.5, 1.0, [box("c1")])
    before, mark = obs.generation, obs.changed.mark()
    listed(obs, clock, "a", 1.5, 2.0, [box("c1")])
    pinged(obs, clock, "a", 3.0, 3.1)
    assert obs.generation == before and obs.changed.mark() == mark
    listed(obs, clock, "a", 1.5, 2.0, [box("c1", status="exited")])
    assert obs.generation == before + 1 and obs.changed.mark() == mark + 1


# -- the prober, with a fake connection --------------------------------------------------

class FakeConnection:
    """Answers a ping at once; a listing waits for `release` once `hold` is set."""

    def __init__(self):
        self.hold, self.release = threading.Event(), threading.Event()
        self.pings = 0
        self.pinged = threading.Condition()

    def ping(self, timeout):
        with self.pinged:
            self.pings += 1
            self.pinged.notify_all()
        return 0.0

    def run(self, argv, timeout=None, stdin=None):
        if argv == commands.capacity():
            return Result(0, "2 4000000000\n", "", 0.0)
        if self.hold.is_set() and not self.release.wait(timeout):
            raise RemoteError("a: no answer in time")
        return Result(0, "[]", "", 0.0)


def test_the_prober_checks_sshd_while_a_listing_is_out():
    settings_ = dataclasses.replace(SETTINGS, probe_interval=0.05)
    obs = Observation(["a"], settings_)
    conn = FakeConnection()
    stopping = threading.Event()
    prober = Prober("a", SimpleNamespace(connections={"a": conn}), obs, stopping, lambda: "w")
    prober.start()
    try:
        assert _wait(lambda: obs.statuses(obs.clock()) == {"a": READY})
        conn.hold.set()                                 # from now on a listing hangs
        with conn.pinged:
            assert conn.pinged.wait_for(lambda: conn.pings >= 5, BOUND)
        assert obs.nodes["a"].out.get(LIST) is not None
        assert obs.statuses(obs.clock())["a"] != DOWN
        conn.release.set()
        assert _wait(lambda: LIST not in obs.nodes["a"].out or obs.nodes["a"].engine_answered is not None)
        assert _wait(lambda: obs.statuses(obs.clock()) == {"a": READY})
    finally:
        stopping.set()
        conn.release.set()
        prober.join(BOUND)
    assert not prober.is_alive()


def test_the_prober_reads_the_engines_capacity_once_it_lists():
    obs = Observation(["a"], dataclasses.replace(SETTINGS, probe_interval=0.05))
    stopping = threading.Event()
    prober = Prober("a", SimpleNamespace(connections={"a": FakeConnection()}), obs, stopping, lambda: "w")
    prober.start()
    try:
        assert _wait(lambda: obs.snapshot(obs.clock()).capacity == {"a": (2.0, 4000000000)})
    finally:
        stopping.set()
        prober.join(BOUND)


def test_a_listing_asked_for_comes_before_the_interval():
    settings_ = dataclasses.replace(SETTINGS, probe_interval=1000.0)    # never, within the test
    obs = Observation(["a"], settings_)
    listings = []

    class Counting(FakeConnection):
        def run(self, argv, timeout=None, stdin=None):
            if argv == commands.list_containers():
                listings.append(argv)
            return super().run(argv, timeout, stdin)
    stopping = threading.Event()
    prober = Prober("a", SimpleNamespace(connections={"a": Counting()}), obs, stopping, lambda: "w")
    prober.start()
    try:
        assert _wait(lambda: len(listings) == 1)
        obs.list_soon("a")                              # an action on node a ended
        assert _wait(lambda: len(listings) == 2)
    finally:
        stopping.set()
        obs.remove_node("a")                            # wakes the prober, which sees it is stopped
        prober.join(BOUND)
    assert not prober.is_alive()


def _wait(predicate):
    done = threading.Event()
    for _ in range(BOUND * 20):
        if predicate():
            return True
        done.wait(0.05)
    return False


# -- probe_ok and optimistic changes --------------------------------------------------------

def test_the_first_answer_makes_a_node_ready_and_lists_its_containers():
    obs, clock = fresh()
    assert obs.statuses(0.0) == {"a": UNKNOWN, "b": UNKNOWN}
    before = obs.generation
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [box("c1"), box("c2", slot=2)], "2026-11-25T14:26:25Z")
    assert obs.generation > before
    assert obs.statuses(1.0) == {"a": READY, "b": UNKNOWN}
    assert ids(obs) == ["c1", "c2"]
    assert obs.nodes["a"].last_seen == "2026-11-25T14:26:25Z"


def test_an_add_made_after_the_probe_started_survives_the_answer():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [box("old")], "w")
    clock.t = 10.0
    obs.add(box("new"))                           # our own docker run finished at 10
    assert ids(obs) == ["new", "old"]
    clock.t = 11.0
    obs.probe_ok("a", 9.0, [box("old")], "w")     # listed at 9..11: may predate the run
    assert ids(obs) == ["new", "old"]
    clock.t = 13.0
    obs.probe_ok("a", 12.0, [box("old")], "w")    # started after the add: it knows better
    assert ids(obs) == ["old"]
    assert obs.nodes["a"].added == {}


def test_a_listed_added_container_is_not_doubled():
    obs, clock = fresh()
    clock.t = 10.0
    obs.add(box("new"))
    clock.t = 11.0
    obs.probe_ok("a", 9.0, [box("new"), box("old")], "w")
    assert ids(obs) == ["new", "old"]


def test_a_remove_made_after_the_probe_started_is_not_undone_by_it():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [box("gone"), box("stays")], "w")
    clock.t = 10.0
    obs.remove(box("gone"))                       # our own docker rm finished at 10
    assert ids(obs) == ["stays"]
    clock.t = 11.0
    obs.probe_ok("a", 9.0, [box("gone"), box("stays")], "w")   # a stale listing
    assert ids(obs) == ["stays"]
    assert "gone" in obs.nodes["a"].removed       # still needed for slower probes
    clock.t = 12.0
    obs.probe_ok("a", 8.0, [box("gone"), box("stays")], "w")   # an even older one
    assert ids(obs) == ["stays"]
    clock.t = 13.0
    obs.probe_ok("a", 12.0, [box("stays")], "w")
    assert obs.nodes["a"].removed == {}


def test_a_container_listed_by_a_probe_started_after_its_removal_is_real():
    obs, clock = fresh()
    clock.t = 10.0
    obs.remove(box("back"))
    clock.t = 13.0
    obs.probe_ok("a", 12.0, [box("back")], "w")
    assert ids(obs) == ["back"]


def test_an_add_then_remove_leaves_nothing_behind():
    obs, clock = fresh()
    clock.t = 10.0
    obs.add(box("brief"))
    clock.t = 11.0
    obs.remove(box("brief"))
    assert ids(obs) == [] and obs.nodes["a"].added == {}
    clock.t = 12.0
    obs.probe_ok("a", 10.5, [box("brief")], "w")
    assert ids(obs) == []


def test_answers_of_one_node_leave_the_other_alone():
    obs, clock = fresh()
    clock.t = 10.0
    obs.add(box("on-b", node="b"))
    clock.t = 12.0
    obs.probe_ok("a", 11.0, [box("on-a")], "w")
    assert ids(obs, "a") == ["on-a"] and ids(obs, "b") == ["on-b"]
    assert obs.nodes["b"].added


def test_a_failed_probe_is_suspect_until_the_next_answer():
    obs, clock = fresh(("a",))
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [], "w")
    before = obs.generation
    obs.probe_failed("a", OSError("boom"))
    obs.probe_failed("a", OSError("again"))
    assert obs.generation == before + 1           # one wake-up per failure spell
    assert obs.nodes["a"].error == "boom"
    assert obs.statuses(1.5) == {"a": SUSPECT}
    clock.t = 2.0
    obs.probe_ok("a", 1.5, [], "w")
    assert obs.generation == before + 2
    assert obs.statuses(2.0) == {"a": READY} and obs.nodes["a"].error == ""


def test_a_node_counts_as_empty_only_after_a_listing_sent_since_shows_nothing():
    obs, clock = fresh()
    assert not obs.empty("a", 5.0)                # never listed: not known to be empty
    clock.t = 6.0
    obs.probe_ok("a", 4.0, [], "w")               # sent before the drain: proves nothing
    assert not obs.empty("a", 5.0)
    clock.t = 8.0
    obs.probe_ok("a", 7.0, [box("late")], "w")
    assert not obs.empty("a", 5.0)
    obs.remove(box("late"))
    assert obs.empty("a", 5.0)
    clock.t = 9.0
    obs.probe_ok("a", 6.5, [box("late")], "w")    # an older listing coming back late
    assert obs.empty("a", 5.0)
    assert not obs.empty("gone", 0.0)             # not a member
