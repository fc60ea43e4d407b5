"""master.observe.Observation: when a node may turn down, and how probe
answers merge with the master's own optimistic changes. No threads, no
network: the clock is a number the test sets."""
from hypothesis import given, settings, strategies as st

from model import Container, READY, SUSPECT, DOWN, UNKNOWN
from master.observe import Observation

SETTINGS = {"down_after": 5, "probe_interval": 1}


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


# -- next_change ---------------------------------------------------------------------

def test_next_change_counts_from_the_start_of_watching_until_a_first_answer():
    obs, clock = fresh()
    assert obs.next_change(0.0) == 5
    assert obs.next_change(2.0) == 3
    assert obs.next_change(4.5) == 0.5
    assert obs.next_change(5.0) is None       # both are down now: nothing left to wait for
    assert obs.next_change(9.0) is None


def test_next_change_is_the_earliest_node_to_reach_down_after():
    obs, clock = fresh(("a", "b", "c"))
    clock.t = 3.0
    obs.probe_ok("a", 2.5, [], "w")           # a answered at 3
    clock.t = 4.0
    obs.probe_ok("b", 3.5, [], "w")           # b answered at 4; c never did
    assert obs.next_change(4.0) == 1          # c: 0 + 5
    assert obs.next_change(5.0) == 3          # c is past; a: 3 + 5
    assert obs.next_change(8.5) == 0.5       # a is past too; b: 4 + 5
    assert obs.next_change(9.0) is None
    clock.t = 9.0
    obs.probe_ok("c", 8.0, [], "w")
    assert obs.next_change(9.0) == 5


def test_a_failed_probe_does_not_move_the_deadline():
    obs, clock = fresh(("a",))
    clock.t = 2.0
    obs.probe_ok("a", 1.0, [], "w")
    clock.t = 3.0
    obs.probe_failed("a", OSError("no route"))
    assert obs.statuses(3.0) == {"a": SUSPECT}
    assert obs.next_change(3.0) == 4


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=1, max_size=5), st.integers(0, 60))
def test_next_change_agrees_with_statuses(answers, now_half):
    """Halves of seconds keep the float arithmetic exact."""
    nodes = [f"n{i}" for i in range(len(answers))]
    obs, clock = fresh(nodes)
    for node, at in zip(nodes, answers):
        if at is not None:
            clock.t = at / 2
            obs.probe_ok(node, clock.t, [], "w")
    now = now_half / 2
    wait = obs.next_change(now)
    down_now = {n for n, s in obs.statuses(now).items() if s == DOWN}
    if wait is None:
        assert down_now == set(nodes)
        return
    assert wait > 0
    # Nothing turns down before now + wait; something does at now + wait.
    for t in (now, now + wait / 2, now + wait * 0.999):
        assert {n for n, s in obs.statuses(t).items() if s == DOWN} == down_now
    assert {n for n, s in obs.statuses(now + wait).items() if s == DOWN} > down_now


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


def test_an_unchanged_answer_wakes_nobody():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [box("c1")], "w")
    before = obs.generation
    clock.t = 2.0
    obs.probe_ok("a", 1.5, [box("c1")], "w")
    assert obs.generation == before
    obs.probe_ok("a", 1.5, [box("c1", status="exited")], "w")
    assert obs.generation == before + 1


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
