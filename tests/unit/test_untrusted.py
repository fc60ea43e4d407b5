"""The `untrusted` node status (a host key that is not pinned): health,
observation and reconcile treat such a node as down, at once."""
import itertools
import threading
from dataclasses import replace

from hypothesis import given, settings, strategies as st, HealthCheck

from model import (Container, Port, Service, ServiceSpec, READY, SUSPECT, DOWN, UNKNOWN, UNTRUSTED, UNREACHABLE)
from master.observe import Observation
from scheduler.health import Limits, Probes, node_status
from scheduler.reconcile import reconcile, converged, running_count

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

times = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=0.01, max_value=1e4, allow_nan=False, allow_infinity=False)


# -- scheduler.health.node_status -------------------------------------------------------

LIMITS = Limits(down_after=5.0, engine_timeout=30.0, probe_interval=1.0)


@st.composite
def probes(draw):
    return Probes(answered=draw(st.none() | times),
                  silent_since=draw(st.none() | times), engine_silent_since=draw(st.none() | times),
                  engine_error=draw(st.booleans()), failed=draw(st.booleans()))


@PROPS
@given(p=probes(), now=times, down_after=positive, engine_timeout=positive, probe_interval=positive)
def test_untrusted_wins_over_everything(p, now, down_after, engine_timeout, probe_interval):
    limits = Limits(down_after, engine_timeout, probe_interval)
    assert node_status(replace(p, untrusted=True), now, limits) == UNTRUSTED


@PROPS
@given(p=probes(), now=times, down_after=positive, engine_timeout=positive, probe_interval=positive)
def test_trusted_keeps_the_usual_answers(p, now, down_after, engine_timeout, probe_interval):
    assert node_status(p, now, Limits(down_after, engine_timeout, probe_interval)) in (READY, SUSPECT, DOWN, UNKNOWN)


def test_trusted_answers_are_the_usual_ones():
    # a few fixed points, so the property above cannot pass on a constant
    assert node_status(Probes(), 1, LIMITS) == UNKNOWN
    assert node_status(Probes(silent_since=0, failed=True), 5, LIMITS) == DOWN
    assert node_status(Probes(answered=10), 10.5, LIMITS) == READY
    assert node_status(Probes(answered=10, silent_since=10, failed=True), 10.5, LIMITS) == SUSPECT
    assert node_status(Probes(answered=10, silent_since=10), 15, LIMITS) == DOWN
    assert node_status(Probes(answered=10, untrusted=True), 10.5, LIMITS) == UNTRUSTED


def test_untrusted_is_unreachable():
    assert UNTRUSTED in UNREACHABLE and DOWN in UNREACHABLE and READY not in UNREACHABLE


# -- master.observe.Observation -----------------------------------------------------------

from test_observe import SETTINGS, Clock  # noqa: E402  (the same fake clock and settings)


def fresh(nodes=("a", "b")):
    clock = Clock(0.0)
    return Observation(list(nodes), SETTINGS, clock=clock), clock


def test_untrusted_at_once_before_any_answer():
    obs, clock = fresh()
    assert obs.statuses(0.0) == {"a": UNKNOWN, "b": UNKNOWN}
    obs.probe_failed("a", "a: host key not trusted", untrusted=True)
    assert obs.statuses(0.0) == {"a": UNTRUSTED, "b": UNKNOWN}     # no down_after wait
    assert obs.nodes["a"].error == "a: host key not trusted"


def test_untrusted_at_once_after_a_good_answer():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [], "w")
    obs.probe_ok("b", 0.5, [], "w")
    clock.t = 1.5
    obs.probe_failed("a", "boom", untrusted=True)
    assert obs.statuses(1.5) == {"a": UNTRUSTED, "b": READY}         # not suspect, not waiting for down
    assert obs.statuses(1000.0)["a"] == UNTRUSTED


def test_a_plain_failure_is_not_untrusted():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [], "w")
    obs.probe_failed("a", "timeout")
    assert obs.statuses(1.5)["a"] == SUSPECT
    assert obs.statuses(6.0)["a"] == DOWN


def test_a_good_answer_clears_untrusted():
    obs, clock = fresh()
    obs.probe_failed("a", "key", untrusted=True)
    clock.t = 2.0
    obs.probe_ok("a", 1.5, [], "w")
    assert obs.statuses(2.0)["a"] == READY
    assert obs.nodes["a"].error == ""
    assert not obs.nodes["a"].untrusted


def test_generation_moves_on_the_change_to_untrusted_after_a_plain_failure():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [], "w")
    obs.probe_failed("a", "timeout")
    g = obs.generation
    obs.probe_failed("a", "timeout")
    assert obs.generation == g                     # the same failure again changes nothing
    obs.probe_failed("a", "key", untrusted=True)
    assert obs.generation == g + 1                 # already failed, but now untrusted
    assert obs.statuses(1.0)["a"] == UNTRUSTED
    obs.probe_failed("a", "key", untrusted=True)
    assert obs.generation == g + 1                 # still untrusted: nothing new
    obs.probe_failed("a", "timeout", untrusted=False)
    assert obs.generation == g + 2                 # pinned now, but unreachable: a change again
    assert obs.statuses(1.0)["a"] == SUSPECT
    clock.t = 2.0
    obs.probe_ok("a", 1.5, [], "w")
    assert obs.generation == g + 3
    assert obs.statuses(2.0)["a"] == READY


def test_generation_moves_when_untrusted_follows_an_answer():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [], "w")
    g = obs.generation
    obs.probe_failed("a", "key", untrusted=True)
    assert obs.generation == g + 1


def test_the_change_to_untrusted_wakes_a_waiter():
    obs, clock = fresh()
    clock.t = 1.0
    obs.probe_ok("a", 0.5, [], "w")
    obs.probe_failed("a", "timeout")
    mark = obs.changed.mark()
    seen = []

    def wait():
        seen.append(obs.changed.wait(mark, timeout=5))
    t = threading.Thread(target=wait)
    t.start()
    obs.probe_failed("a", "key", untrusted=True)
    t.join(5)
    assert seen == [True]


# -- scheduler.reconcile ---------------------------------------------------------------------

NOW = 1000.0
_ids = itertools.count()


def svc(name="web", replicas=3, restart="always", ports=()):
    return Service(name=name, spec=ServiceSpec(image="img:1", restart=restart, ports=tuple(ports)),
                   replicas=replicas)


def box(service, slot, node, spec, status="running", exit_code=0):
    n = next(_ids)
    return Container(id=f"c{n:06d}", name=f"{service.name}.{slot}.{n:06x}", node=node, service=service.name,
                     slot=slot, spec=spec, image="img:1", status=status, started_at="2024-01-01T00:00:00Z",
                     exit_code=exit_code)


def no_action_touches(plan, node):
    for a in plan.changes:
        assert a.node != node, a
        assert a.container is None or a.container.node != node, a


def test_the_slot_on_an_untrusted_node_is_placed_on_a_ready_node():
    web = svc()
    digest = web.spec.digest()
    observed = [box(web, 1, "a", digest), box(web, 2, "b", digest), box(web, 3, "c", digest)]
    status = {"a": READY, "b": READY, "c": UNTRUSTED}
    plan = reconcile([web], observed, status, NOW)
    places = plan.of("place")
    assert [(a.slot, a.service) for a in places] == [(3, "web")]
    assert places[0].node in ("a", "b")
    assert plan.of("stop") == [] and plan.of("replace") == []
    no_action_touches(plan, "c")
    assert not any(a.node == "c" for a in plan.actions)      # not even a keep holds slot 3 there


def test_untrusted_plans_exactly_like_down():
    web = svc()
    digest = web.spec.digest()
    observed = [box(web, 1, "a", digest), box(web, 2, "b", digest), box(web, 3, "c", digest)]
    untrusted = reconcile([web], observed, {"a": READY, "b": READY, "c": UNTRUSTED}, NOW)
    down = reconcile([web], observed, {"a": READY, "b": READY, "c": DOWN}, NOW)
    suspect = reconcile([web], observed, {"a": READY, "b": READY, "c": SUSPECT}, NOW)
    assert untrusted == down
    assert untrusted != suspect          # a suspect node still holds its slot: the comparison can fail


def test_an_untrusted_node_gets_no_new_work():
    web = svc(replicas=4)
    plan = reconcile([web], [], {"a": READY, "b": UNTRUSTED, "c": READY}, NOW)
    assert sorted(a.slot for a in plan.of("place")) == [1, 2, 3, 4]
    assert {a.node for a in plan.of("place")} == {"a", "c"}


def test_an_untrusted_node_alone_leaves_nothing_to_place_on():
    web = svc(replicas=2)
    plan = reconcile([web], [], {"a": UNTRUSTED}, NOW)
    assert plan.changes == []
    assert all(a.reason.startswith("no eligible node") for a in plan.actions)


def test_untrusted_is_not_waited_for_like_unknown():
    web = svc(replicas=1)
    plan = reconcile([web], [], {"a": READY, "b": UNTRUSTED}, NOW)
    assert [a.node for a in plan.of("place")] == ["a"]


def test_converged_and_running_count_ignore_an_untrusted_node():
    web = svc(replicas=2)
    digest = web.spec.digest()
    observed = [box(web, 1, "a", digest), box(web, 2, "b", digest)]
    assert converged(web, observed, {"a": READY, "b": READY})
    assert not converged(web, observed, {"a": READY, "b": UNTRUSTED})
    assert running_count(web, observed, {"a": READY, "b": UNTRUSTED}) == 1
    assert running_count(web, observed, {"a": READY, "b": READY}) == 2


NODES = ["a", "b", "c", "d"]
node_health = st.sampled_from([READY, READY, SUSPECT, DOWN, UNTRUSTED])


@st.composite
def clusters(draw):
    status = {n: draw(node_health) for n in NODES}
    services = [svc("web", draw(st.integers(0, 5))),
                svc("api", draw(st.integers(0, 4)), ports=draw(st.sampled_from([(), (Port(8080, 80),)])))]
    observed = []
    for s in services:
        digest = s.spec.digest()
        for _ in range(draw(st.integers(0, 7))):
            observed.append(box(s, draw(st.integers(1, 6)), draw(st.sampled_from(NODES)),
                                draw(st.sampled_from([digest, "old"])),
                                draw(st.sampled_from(["running", "running", "exited"])),
                                draw(st.sampled_from([0, 1]))))
    drained = frozenset(draw(st.sets(st.sampled_from(NODES), max_size=2)))
    return services, observed, status, drained


@PROPS
@given(clusters())
def test_no_change_ever_targets_an_untrusted_node(cluster):
    services, observed, status, drained = cluster
    plan = reconcile(services, observed, status, NOW, drained=drained)
    for node, s in status.items():
        if s == UNTRUSTED:
            no_action_touches(plan, node)


@PROPS
@given(clusters())
def test_untrusted_is_down_in_all_but_name(cluster):
    services, observed, status, drained = cluster
    as_down = {n: (DOWN if s == UNTRUSTED else s) for n, s in status.items()}
    assert reconcile(services, observed, status, NOW, drained=drained) == \
        reconcile(services, observed, as_down, NOW, drained=drained)
