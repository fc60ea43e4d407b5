"""scheduler.balance: even totals across nodes once every service is spread.

Examples from the issue (a fourth node gets a share of twelve one-replica
services), the rules a move keeps (start-first, never a second host-port
container on a node, a service's own spread), and a property: from any
spread cluster, rounds of reconcile end with totals that differ by at most
one, each move lowering the sum of the squared totals.
"""
from collections import Counter

from hypothesis import given, strategies as st

from model import Port, READY, SUSPECT
from scheduler.balance import balance
from scheduler.place import spread_ok
from scheduler.reconcile import reconcile

from test_reconcile import NOW, PROPS, apply, container, svc
from test_drain import assert_totals_even

NODES4 = {f"n{i}": READY for i in range(1, 5)}


def current(services, layout):
    """layout: [(service, slot, node)] -> running containers of the current spec."""
    specs = {s.name: s.spec.digest() for s in services}
    return [container(name, slot, node, spec=specs[name]) for name, slot, node in layout]


def totals(observed, nodes):
    t = Counter({n: 0 for n in nodes})
    t.update(c.node for c in observed)
    return t


def settle(services, observed, status, max_moves=1, check=lambda plan, observed: None):
    for _ in range(200):
        plan = reconcile(services, observed, status, NOW, max_moves=max_moves)
        check(plan, observed)
        if not plan.changes:
            return observed
        observed = apply(plan, observed, services)
    raise AssertionError(f"no end: {plan.changes}")


def test_a_fourth_node_gets_a_share_of_twelve_one_replica_services():
    services = [svc(f"s{i:02d}", 1) for i in range(12)]
    observed = current(services, [(f"s{i:02d}", 1, f"n{i % 3 + 1}") for i in range(12)])
    end = settle(services, observed, NODES4)
    assert sorted(totals(end, NODES4).values()) == [3, 3, 3, 3]


def test_moves_are_start_first_replaces_bounded_by_max_moves_and_wait_for_quiet():
    services = [svc(f"s{i:02d}", 1) for i in range(12)]
    observed = current(services, [(f"s{i:02d}", 1, f"n{i % 3 + 1}") for i in range(12)])
    plan = reconcile(services, observed, NODES4, NOW, max_moves=2)
    assert [(a.kind, a.node, a.stop_first) for a in plan.changes] == [("replace", "n4", False)] * 2
    assert all(a.reason.startswith("cluster balance from ") for a in plan.changes)
    under_way = {(plan.changes[0].service, 1): "n4"}
    assert not reconcile(services, observed, NODES4, NOW, max_moves=2, pending=under_way).changes
    assert not reconcile(services, observed, dict(NODES4, n3=SUSPECT), NOW, max_moves=2).changes


def test_a_host_port_service_never_gets_a_second_container_on_a_node():
    web = svc("web", 2, ports=(Port(8080, 80),))
    other = [svc(f"s{i}", 1) for i in range(4)]
    services = [web] + other
    layout = [("web", 1, "n1"), ("web", 2, "n2")] + [(f"s{i}", 1, "n1" if i < 2 else "n2") for i in range(4)]
    status = {n: READY for n in ("n1", "n2", "n3")}
    end = settle(services, current(services, layout), status)
    assert max(Counter(c.node for c in end if c.service == "web").values()) == 1
    assert sorted(totals(end, status).values()) == [2, 2, 2]


def test_balance_moves_nothing_when_totals_are_even_or_nothing_fits():
    services = [svc("a", 3)]
    even = current(services, [("a", 1, "n1"), ("a", 2, "n2"), ("a", 3, "n3")])
    assert balance(services, even, ["n1", "n2", "n3"], budget=5) == []
    ports = [svc("p", 1, ports=(Port(9000, 80),)), svc("q", 1, ports=(Port(9001, 80),))]
    stuck = current(ports, [("p", 1, "n1"), ("q", 1, "n1")])
    assert [a.node for a in balance(ports, stuck, ["n1", "n2"], budget=5)] == ["n2"]


@st.composite
def spread_clusters(draw):
    """Nodes, services, and a layout where every service is spread evenly
    (as per-service reconcile leaves it) but the totals may not be."""
    nodes = [f"n{i}" for i in range(draw(st.integers(2, 5)))]
    services, layout = [], []
    for i in range(draw(st.integers(1, 8))):
        ports = (Port(9000 + i, 80),) if draw(st.booleans()) else ()
        replicas = draw(st.integers(0, len(nodes) if ports else 3 * len(nodes)))
        services.append(svc(f"s{i}", replicas, ports=ports))
        start = draw(st.integers(0, len(nodes) - 1))
        layout += [(f"s{i}", slot, nodes[(start + slot) % len(nodes)]) for slot in range(1, replicas + 1)]
    return nodes, services, current(services, layout)


@PROPS
@given(spread_clusters(), st.integers(1, 3))
def test_balancing_ends_even_keeps_each_spread_and_always_lowers_the_squares(cluster, max_moves):
    nodes, services, observed = cluster
    status = {n: READY for n in nodes}

    def check(plan, observed):
        if not plan.changes:
            return
        assert len(plan.changes) <= max_moves
        after = apply(plan, observed, services)
        assert sum(v * v for v in totals(after, nodes).values()) < sum(v * v for v in totals(observed, nodes).values())
        for s in services:
            counts = Counter(c.node for c in after if c.service == s.name)
            assert spread_ok(nodes, counts), (s.name, dict(counts))
            if s.spec.ports:
                assert max(counts.values(), default=0) <= 1

    end = settle(services, observed, status, max_moves, check)
    assert_totals_even(services, end, nodes)


def test_jobs_count_where_they_run_but_never_move():
    """A container of a service that restarts on-failure or never is a job:
    stopping it to even the totals would kill its work."""
    services = [svc("job", 1, restart="on-failure"), svc("once", 1, restart="never"), svc("web", 2)]
    observed = current(services, [("job", 1, "n1"), ("once", 1, "n1"), ("web", 1, "n2"), ("web", 2, "n3")])
    assert not reconcile(services, observed, NODES4, NOW, max_moves=3).changes
    observed += current(services, [("web", 3, "n1")])
    services[2] = svc("web", 3)
    moves = reconcile(services, observed, NODES4, NOW, max_moves=3).changes
    assert [(a.service, a.slot, a.node) for a in moves] == [("web", 3, "n4")]
