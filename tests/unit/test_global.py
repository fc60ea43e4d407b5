"""Global services (mode: global): one replica on every eligible node.

The property runs random clusters through reconcile and the simulator of
test_reconcile.py until nothing changes, then checks on what is left: one
container of the current spec on every ready node that takes the service,
none on the others, no slot number twice, and nothing touched on suspect or
down nodes.
"""
import dataclasses
from collections import Counter

import pytest
from hypothesis import given, strategies as st

from master.validate import Invalid, service_request
from model import DOWN, GLOBAL, READY, SUSPECT, UPDATING, Rollout, Service, ServiceSpec, UpdateConfig
from scheduler.reconcile import converged, desired_count, reconcile, running_count
from store.state import Store
from test_reconcile import NOW, PROPS, STATUSES, apply, container, run_to_convergence

SPEC = ServiceSpec(image="img:2")
NODES = 5


def glob(constraints=(), update=UpdateConfig(), spec=SPEC):
    return Service(name="g", spec=spec, replicas=0, mode=GLOBAL, constraints=tuple(constraints), update=update)


def settle(services, observed, status, drained=frozenset(), labels=None, check=None):
    return run_to_convergence(services, observed, status, check, drained=drained, node_labels=labels)


@st.composite
def global_clusters(draw):
    """(service, observed, status, drained, labels)."""
    names = [f"n{i}" for i in range(draw(st.integers(1, 6)))]
    status = {n: draw(st.sampled_from([READY, READY, READY, SUSPECT, DOWN])) for n in names}
    drained = frozenset(draw(st.sets(st.sampled_from(names))))
    labels = {n: {"zone": draw(st.sampled_from(["a", "b"]))} for n in names}
    constraints = draw(st.sampled_from([(), ("node.labels.zone==a",)]))
    service = glob(constraints)
    one = st.tuples(st.integers(1, 8), st.sampled_from(names), st.booleans(), st.sampled_from(STATUSES))
    observed = [container("g", slot, node, spec=SPEC.digest() if current else "0ld", status=word,
                          exit_code=0 if word == "running" else 1)
                for slot, node, current, word in draw(st.lists(one, max_size=12))]
    return service, observed, status, drained, labels


@PROPS
@given(global_clusters())
def test_a_global_service_ends_with_one_current_container_on_every_node_that_takes_it(cluster):
    service, observed, status, drained, labels = cluster
    untouchable = {c for c in observed if status[c.node] != READY}

    def check(plan, seen):
        for a in plan.changes:
            assert status[a.node] == READY, f"acts on a {status[a.node]} node: {a}"
            if a.kind in ("place", "replace"):
                assert a.node not in drained and (not service.constraints or labels[a.node]["zone"] == "a")
        assert {c for c in seen if status[c.node] != READY} == untouchable

    final, _ = settle([service], observed, status, drained, labels, check)
    takes = [n for n, s in status.items() if s == READY and n not in drained
             and (not service.constraints or labels[n]["zone"] == "a")]
    live = [c for c in final if status[c.node] == READY]
    assert Counter(c.node for c in live) == Counter(takes)
    assert all(c.spec == SPEC.digest() for c in live)
    slots = [c.slot for c in live]
    assert len(slots) == len(set(slots)), f"a slot twice: {sorted(slots)}"
    if not any(status[c.node] == SUSPECT for c in observed):
        assert converged(service, final, status, drained, labels)


def test_every_node_gets_one_and_a_drained_node_loses_only_its_own():
    status = {f"n{i}": READY for i in range(1, 4)}
    final, _ = settle([glob()], [], status)
    assert sorted((c.node, c.slot) for c in final) == [("n1", 1), ("n2", 2), ("n3", 3)]
    plan = reconcile([glob()], final, status, NOW, drained={"n2"})
    assert [(a.kind, a.node, a.reason) for a in plan.changes] == [("stop", "n2", "node n2 drained")]
    after = apply(plan, final, [glob()])
    plan = reconcile([glob()], after, status, NOW)           # activated again: the lowest free slot
    assert [(a.kind, a.node, a.slot) for a in plan.changes] == [("place", "n2", 2)]


def test_a_node_that_goes_down_moves_nothing_and_a_new_one_gets_a_container():
    status = {"n1": READY, "n2": READY, "n3": READY}
    final, _ = settle([glob()], [], status)
    plan = reconcile([glob()], final, dict(status, n2=DOWN), NOW)
    assert list(plan.changes) == []
    plan = reconcile([glob()], final, dict(status, n4=READY), NOW)
    assert [(a.kind, a.node, a.slot) for a in plan.changes] == [("place", "n4", 4)]


def test_a_slot_given_again_while_its_node_was_down_moves_to_a_new_number():
    status = {"n1": READY, "n2": READY}
    back = container("g", 1, "n2", spec=SPEC.digest(), started_at="2024-01-01T00:00:09Z")
    observed = [container("g", 1, "n1", spec=SPEC.digest()), back]
    plan = reconcile([glob()], observed, status, NOW, ready_since={"n1": 1.0, "n2": 2.0})
    assert [(a.kind, a.node, a.reason) for a in plan.changes] == [("stop", "n2", "slot 1 is held on n1")]
    plan = reconcile([glob()], apply(plan, observed, [glob()]), status, NOW)
    assert [(a.kind, a.node, a.slot) for a in plan.changes] == [("place", "n2", 2)]


def test_a_node_whose_start_failed_keeps_its_slot_and_its_back_off():
    """n9 failed to start slot 2; then n0 (earlier by name) is activated: n9
    tries slot 2 again (its back-off holds), n0 takes the next free one."""
    status = {"n0": READY, "n1": READY, "n9": READY}
    observed = [container("g", 1, "n1", spec=SPEC.digest())]
    plan = reconcile([glob()], observed, status, NOW, backoff={("g", 2): NOW + 4}, place_nodes={("g", 2): "n9"})
    assert sorted((a.kind, a.node, a.slot) for a in plan.actions if a.node != "n1") == \
        [("keep", "n9", 2), ("place", "n0", 3)]


def test_a_slot_number_under_way_elsewhere_is_stopped_where_it_came_back():
    status = {"n1": READY, "n2": READY}
    back = container("g", 1, "n2", spec=SPEC.digest())
    plan = reconcile([glob()], [back], status, NOW, pending={("g", 1): "n1"})
    assert [(a.kind, a.node, a.reason) for a in plan.changes] == [("stop", "n2", "slot 1 is being placed on n1")]


def test_a_node_outside_the_constraints_loses_its_container():
    status = {"n1": READY, "n2": READY}
    labels = {"n1": {"zone": "a"}, "n2": {"zone": "b"}}
    observed = [container("g", 1, "n1", spec=SPEC.digest()), container("g", 2, "n2", spec=SPEC.digest())]
    plan = reconcile([glob(["node.labels.zone==a"])], observed, status, NOW, node_labels=labels)
    assert [(a.kind, a.node, a.reason) for a in plan.changes] == [("stop", "n2", "node n2 outside the constraints")]


def test_a_change_of_spec_rolls_node_by_node_in_place():
    status = {f"n{i}": READY for i in range(1, 4)}
    old = [container("g", i, f"n{i}", spec="0ld") for i in range(1, 4)]
    rolling = dataclasses.replace(glob(update=UpdateConfig(parallelism=1)), rollout=Rollout(UPDATING))
    plan = reconcile([rolling], old, status, NOW)
    assert [(a.kind, a.node, a.slot) for a in plan.changes] == [("replace", "n1", 1)]
    assert [a.reason for a in plan.actions if a.kind == "keep"] == ["waiting for its turn (parallelism 1)"] * 2


def test_the_desired_and_running_counts_of_a_global_service():
    status = {"n1": READY, "n2": SUSPECT, "n3": DOWN, "n4": READY}
    observed = [container("g", 1, "n1", spec=SPEC.digest()), container("g", 7, "n2", spec=SPEC.digest())]
    assert desired_count(glob(), status, drained={"n4"}) == 2      # n1 and the suspect n2
    assert running_count(glob(), observed, status) == 2


# -- the API's side ----------------------------------------------------------------

def test_a_global_create_has_no_replicas_and_keeps_its_mode():
    request = service_request({"name": "g", "image": "img:2", "mode": "global"}, NODES)
    assert (request.mode, request.replicas) == (GLOBAL, 0)


@pytest.mark.parametrize("body, base, field", [
    ({"name": "g", "image": "img:2", "mode": "global", "replicas": 3}, None, "replicas"),
    ({"name": "g", "image": "img:2", "mode": "everywhere"}, None, "mode"),
    ({"mode": "global"}, {"mode": "replicated"}, "mode"),
    ({"replicas": 2}, {"mode": "global"}, "replicas"),
])
def test_a_mode_is_set_at_creation_only_and_global_takes_no_replicas(body, base, field):
    if base is not None:
        base = dict(base, spec={"image": "img:2"}, replicas=0, update={}, rollback={}, constraints=[])
    with pytest.raises(Invalid) as e:
        service_request(body, NODES, base=base)
    assert [err["field"] for err in e.value.errors] == [field]


def test_the_store_keeps_the_mode_only_of_global_services():
    store = Store(None)
    store.create_service("g", SPEC, 0, "2026-01-01T00:00:00Z", mode=GLOBAL)
    store.create_service("r", SPEC, 2, "2026-01-01T00:00:00Z")
    assert store.service("g").is_global and not store.service("r").is_global
    docs = {d["name"]: d for d in store.snapshot()["services"]}
    assert docs["g"]["mode"] == GLOBAL and "mode" not in docs["r"]
