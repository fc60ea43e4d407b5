"""Placement constraints (scheduler/constraints.py) and how the plan honours
them: placements only on nodes that fit, containers on a node that stops
fitting move away start-first, a service that fits nowhere says why, and
cluster balance never moves a container where its service may not run."""
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from model import READY, Container, Service, ServiceSpec
from scheduler import constraints
from scheduler.reconcile import converged, reconcile

NODES = {"n1": READY, "n2": READY, "n3": READY}
LABELS = {"n1": {"zone": "a", "disk": "ssd"}, "n2": {"zone": "a"}, "n3": {"zone": "b"}}
_ids = itertools.count()


def box(service, slot, node, spec):
    n = next(_ids)
    return Container(id=f"c{n:05d}", name=f"{service.name}.{slot}.{n:05x}", node=node, service=service.name,
                     slot=slot, spec=spec.digest(), image=spec.image, status="running",
                     started_at="2026-01-01T00:00:00Z")


def svc(name, replicas, *cons):
    return Service(name, ServiceSpec(image="demo:1"), replicas, constraints=tuple(cons))


def settle(services, observed=(), labels=LABELS, rounds=30):
    observed = list(observed)
    for _ in range(rounds):
        plan = reconcile(services, observed, NODES, 0.0, max_moves=2, node_labels=labels)
        if not plan.changes:
            return observed, plan
        by_id = {c.id: c for c in observed}
        for a in plan.changes:
            if a.kind in ("stop", "replace"):
                del by_id[a.container.id]
            if a.kind in ("place", "replace"):
                s = next(s for s in services if s.name == a.service)
                new = box(s, a.slot, a.node, s.spec)
                by_id[new.id] = new
        observed = list(by_id.values())
    raise AssertionError("no convergence")


@pytest.mark.parametrize("text, parsed", [
    ("node.labels.zone==a", ("zone", "==", "a")), ("node.labels.zone != b", ("zone", "!=", "b")),
    ("node.name==n1", ("name", "==", "n1")), ("node.labels.com.example/tier==front", ("com.example/tier", "==", "front")),
])
def test_parse(text, parsed):
    assert constraints.parse(text) == parsed


@pytest.mark.parametrize("text", ["zone==a", "node.labels.zone=a", "node.labels.==a", "node.name==", "node.ip==1",
                                  "node.labels.zone==a b", 3, None])
def test_parse_refuses(text):
    assert constraints.parse(text) is None


def test_placements_go_only_where_the_constraints_hold():
    web = svc("web", 4, "node.labels.zone==a")
    observed, _ = settle([web])
    assert sorted(c.node for c in observed) == ["n1", "n1", "n2", "n2"]
    assert converged(web, observed, NODES, node_labels=LABELS)
    assert not converged(web, observed, NODES, node_labels=dict(LABELS, n2={"zone": "b"}))


def test_a_node_that_stops_fitting_loses_its_containers_start_first():
    web = svc("web", 4, "node.labels.zone==a")
    observed, _ = settle([web])
    moved = dict(LABELS, n2={"zone": "b"}, n3={"zone": "a"})
    plan = reconcile([web], observed, NODES, 0.0, max_moves=2, node_labels=moved)
    assert {(a.kind, a.node, a.stop_first) for a in plan.changes} == {("replace", "n3", False)}
    observed, _ = settle([web], observed, labels=moved)
    assert sorted(c.node for c in observed) == ["n1", "n1", "n3", "n3"]


def test_a_service_that_fits_nowhere_says_which_constraint_rules_out_which_nodes():
    db = svc("db", 1, "node.labels.zone==a", "node.labels.disk==hdd")
    plan = reconcile([db], [], NODES, 0.0, node_labels=LABELS)
    [action] = plan.actions
    assert action.kind == "keep" and action.reason == (
        "no node satisfies the constraints: node.labels.zone==a rules out n3; "
        "node.labels.disk==hdd rules out n1, n2, n3")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["", "node.labels.zone==a", "node.name!=n1",
                                                               "node.labels.disk!=ssd"])), min_size=1, max_size=6))
def test_every_container_ends_on_a_node_that_fits_its_service(shapes):
    services = [svc(f"s{i}", replicas, *([c] if c else [])) for i, (replicas, c) in enumerate(shapes)]
    observed, _ = settle(services, rounds=60)
    for c in observed:
        s = next(s for s in services if s.name == c.service)
        assert constraints.satisfies(s.constraints, c.node, LABELS[c.node]), (c.service, c.node)
    assert all(converged(s, observed, NODES, node_labels=LABELS) for s in services)
