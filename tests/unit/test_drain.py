"""scheduler.reconcile: drained nodes, returning nodes, start-first moves.

Reuses the cluster simulator and strategies of test_reconcile.py. Two ways
to apply a plan:

- `apply` (test_reconcile): every change of a round succeeds at once;
- `Cluster` below: like master/loop.py, changes run in the background over
  several steps (a `replace` first adds the new container, then removes the
  old one, or the other way round when the plan says `stop_first`), their slots stay
  `pending` and the containers they remove stay hidden from reconcile
  (`removing_nodes`) until they finish.
"""
from collections import Counter

import pytest
from hypothesis import given, strategies as st

from model import Action, Port, READY, SUSPECT, DOWN, DELETE
from scheduler.place import spread_ok
from scheduler.reconcile import reconcile, converged

from test_reconcile import NOW, PROPS, apply, clusters, container, svc

MAX_ROUNDS = 60
MAX_TICKS = 400


def run(services, observed, status, drained=frozenset(), ready_since=None, max_moves=1, check=None):
    """Reconcile and apply atomically until nothing changes; returns the end state."""
    for _ in range(MAX_ROUNDS):
        plan = reconcile(services, observed, status, NOW, max_moves=max_moves,
                         drained=drained, ready_since=ready_since)
        if check:
            check(plan, observed)
        if not plan.changes:
            return observed
        observed = apply(plan, observed, services)
    pytest.fail(f"no convergence in {MAX_ROUNDS} rounds; last plan: {plan.changes}")


def is_move(a):
    return a.kind == "replace" and (a.reason.startswith(("rebalance from ", "cluster balance from "))
                                    or (a.reason.startswith("node ") and a.reason.endswith(" drained")))


def running_slots(service, containers, status):
    return {c.slot for c in containers if c.service == service.name and c.running
            and status[c.node] in (READY, SUSPECT) and 1 <= c.slot <= service.replicas}


def assert_settled(services, final, status, drained):
    """The end state the design asks for, drained nodes included."""
    eligible = sorted(n for n, s in status.items() if s == READY and n not in drained)
    for s in services:
        assert converged(s, final, status, drained), s
        if s.state == DELETE:
            continue
        mine = [c for c in final if c.service == s.name and status[c.node] in (READY, SUSPECT)]
        assert not [c for c in mine if c.node in drained], f"{s.name} left on a drained node"
        assert sorted(c.slot for c in mine) == list(range(1, s.replicas + 1)), f"{s.name}: one per slot"
        counts = Counter(c.node for c in mine)
        assert spread_ok(eligible, counts), f"{s.name}: {dict(counts)} over {eligible}"
    if SUSPECT not in status.values():       # balancing waits while a node is suspect
        assert_totals_even(services, final, eligible)


def assert_totals_even(services, final, eligible):
    live = {s.name for s in services if s.state != DELETE}
    totals = Counter({n: 0 for n in eligible})
    totals.update(c.node for c in final if c.service in live and c.running and c.node in eligible)
    assert max(totals.values(), default=0) - min(totals.values(), default=0) <= 1, \
        f"the nodes' totals are uneven: {dict(totals)}"


# -- a cluster whose changes take time -------------------------------------------

class Cluster:
    """Plans like master/loop.py step() and applies changes step by step."""

    def __init__(self, services, observed, status, drained, ready_since, max_moves):
        self.services, self.status = services, status
        self.drained, self.ready_since, self.max_moves = drained, ready_since, max_moves
        self.containers = {c.id: c for c in observed}
        self.pending = {}          # (service, slot) -> node
        self.removing = set()      # container ids
        self.ops = []              # [action, steps left]

    def everything(self):
        return list(self.containers.values())

    def plan(self):
        everything = self.everything()
        observed = [c for c in everything if c.id not in self.removing]
        removing_nodes = {c.node for c in everything if c.id in self.removing}
        plan = reconcile(self.services, observed, self.status, NOW, max_moves=self.max_moves,
                         pending=dict(self.pending), drained=self.drained,
                         ready_since=self.ready_since, removing_nodes=removing_nodes)
        return plan, observed, removing_nodes

    def start(self, plan):
        for a in plan.changes:
            if a.kind in ("place", "replace"):
                self.pending[(a.service, a.slot)] = a.node
            if a.container is not None and a.kind in ("stop", "replace"):
                self.removing.add(a.container.id)
            steps = {"place": ["add"], "stop": ["remove"], "replace": ["add", "remove"]}[a.kind]
            if a.stop_first:
                steps = ["remove", "add"]      # host ports, same node: like master/loop.py
            self.ops.append([a, steps])

    def advance(self, i):
        """One step of the i-th change under way (start-first: add, then remove;
        stop-first when the action says so)."""
        a, steps = self.ops[i]
        step = steps.pop(0)
        if step == "add":
            spec = next(s.spec for s in self.services if s.name == a.service)
            new = container(a.service, a.slot, a.node, spec=spec.digest(), started_at="2030-01-01T00:00:00Z")
            self.containers[new.id] = new
        else:
            del self.containers[a.container.id]
        if not steps:
            del self.ops[i]
            if a.kind != "stop":
                self.pending.pop((a.service, a.slot), None)
            if a.container is not None:
                self.removing.discard(a.container.id)


@st.composite
def filled_clusters(draw):
    """Every slot of every service runs once with the current spec, spread at
    random (often piled up), some nodes drained, some duplicates left over
    from a node that came back. Returns (services, observed, status, drained,
    ready_since, max_moves)."""
    nodes = [f"n{i}" for i in range(draw(st.integers(2, 5)))]
    status = {n: READY for n in nodes}
    drained = frozenset(draw(st.sets(st.sampled_from(nodes), max_size=len(nodes) - 1)))
    eligible = [n for n in nodes if n not in drained]
    ready_since = {n: draw(st.sampled_from([0.0, 10.0, 50.0])) for n in nodes}
    services, observed = [], []
    for i in range(draw(st.integers(1, 3))):
        ports = (Port(8000 + i, 80),) if draw(st.integers(0, 3)) == 0 else ()
        s = svc(f"svc{i}", draw(st.integers(1, len(eligible) if ports else 8)), ports=ports)
        services.append(s)
        if ports:
            hosts = draw(st.permutations(nodes))[:s.replicas]
        else:
            hosts = [draw(st.just(nodes[0]) | st.sampled_from(nodes)) for _ in range(s.replicas)]
        observed += [container(s.name, slot, node, spec=s.spec.digest())
                     for slot, node in enumerate(hosts, 1)]
        for slot in draw(st.lists(st.integers(1, s.replicas), max_size=3)):
            node = draw(st.sampled_from(nodes))
            taken = {c.node for c in observed if c.service == s.name}
            if not ports or node not in taken:
                observed.append(container(s.name, slot, node, spec=s.spec.digest()))
    return services, observed, status, drained, ready_since, draw(st.integers(1, 3))


def drainable(draw, services, status):
    """Drained nodes that leave room for every service that publishes ports."""
    ready = sorted(n for n, s in status.items() if s == READY)
    need = max([1] + [s.replicas for s in services if s.spec.ports and s.state != DELETE])
    room = len(ready) - need
    drained = draw(st.sets(st.sampled_from(ready), max_size=room)) if room > 0 else set()
    others = [n for n, s in status.items() if s != READY]
    extra = draw(st.sets(st.sampled_from(others))) if others else set()
    return frozenset(drained | extra)


# -- properties ---------------------------------------------------------------------

@PROPS
@given(clusters(clean=True), st.data())
def test_drained_nodes_end_empty_and_the_rest_evenly_spread(cluster, data):
    services, observed, status = cluster
    drained = drainable(data.draw, services, status)
    max_moves = data.draw(st.integers(1, 3))

    def check(plan, observed):
        for a in plan.changes:
            if a.kind in ("place", "replace"):
                assert a.node not in drained, f"work sent to drained {a.node}: {a}"
    final = run(services, observed, status, drained, max_moves=max_moves, check=check)
    assert_settled(services, final, status, drained)


@PROPS
@given(filled_clusters(), st.data())
def test_draining_and_rebalancing_are_start_first(cluster, data):
    services, observed, status, drained, ready_since, max_moves = cluster
    sim = Cluster(services, observed, status, drained, ready_since, max_moves)
    floor = {s.name: len(running_slots(s, observed, status)) for s in services}
    assert all(floor[s.name] == s.replicas for s in services)
    with_ports = [s for s in services if s.spec.ports]

    def check_now():
        everything = sim.everything()
        for s in services:
            assert len(running_slots(s, everything, status)) >= floor[s.name], \
                f"{s.name} lost a running slot: {sorted(running_slots(s, everything, status))}"
        for s in with_ports:
            per_node = Counter(c.node for c in everything if c.service == s.name)
            assert max(per_node.values()) <= 1, f"{s.name} publishes ports twice on one node: {per_node}"

    for _ in range(MAX_TICKS):
        plan, seen, removing_nodes = sim.plan()
        for s in services:
            under_way = sum(1 for name, _ in sim.pending if name == s.name)
            moves = [a for a in plan.changes if a.service == s.name and is_move(a)]
            assert len(moves) <= max(0, max_moves - under_way), (s.name, under_way, moves)
            assert under_way + len(moves) <= max_moves
        for a in plan.changes:
            assert a.kind != "place", f"a filled cluster needs no place: {a}"
            assert a.kind == "stop" or is_move(a), a
            if a.kind == "replace":
                assert a.node not in drained and a.node not in removing_nodes, a
        if not plan.changes and not sim.ops:
            break
        sim.start(plan)
        # Changes under way finish in any order, some of them this tick.
        if sim.ops:
            chosen = data.draw(st.sets(st.integers(0, len(sim.ops) - 1), min_size=1))
            for i in sorted(chosen, reverse=True):
                sim.advance(i)
                check_now()
    else:
        pytest.fail(f"no convergence in {MAX_TICKS} ticks; pending {sim.pending}")
    assert_settled(services, sim.everything(), status, drained)


@PROPS
@given(clusters(), st.data())
def test_nothing_new_goes_where_containers_are_still_to_be_removed(cluster, data):
    services, observed, status = cluster
    nodes = sorted(status)
    removing = frozenset(data.draw(st.sets(st.sampled_from(nodes))))
    drained = frozenset(data.draw(st.sets(st.sampled_from(nodes))))
    ready_since = {n: data.draw(st.sampled_from([0.0, 5.0, 9.0])) for n in nodes}
    free = reconcile(services, observed, status, NOW, drained=drained, ready_since=ready_since)
    held = reconcile(services, observed, status, NOW, drained=drained, ready_since=ready_since,
                     removing_nodes=removing)
    clearing = {a.node for a in free.of("stop")} | removing
    assert {a.node for a in held.of("stop")} | removing == clearing
    assert len(free.actions) == len(held.actions)
    for before, after in zip(free.actions, held.actions):
        if before.kind in ("place", "replace") and before.node in clearing:
            assert after == Action("keep", before.service, before.slot, before.node, before.container,
                                   f"waiting for removals on {before.node}")
        else:
            assert after == before
    for a in held.actions:
        if a.kind in ("place", "replace"):
            assert a.node not in clearing
            assert a.node not in drained
        if a.kind == "keep" and a.reason.startswith("waiting for removals on"):
            assert a.node in clearing


@PROPS
@given(st.integers(2, 5), st.data())
def test_a_returning_node_loses_its_surplus_before_it_gets_work(n, data):
    nodes = [f"n{i}" for i in range(n)]
    back = data.draw(st.sampled_from(nodes))
    services = []
    for i, ports in enumerate(data.draw(st.lists(st.integers(0, 2), min_size=1, max_size=3))):
        ports = (Port(8000 + i, 80),) if ports == 0 else ()
        services.append(svc(f"svc{i}", data.draw(st.integers(1, n if ports else 9)), ports=ports))
    everywhere = {x: READY for x in nodes}
    before = run(services, [], everywhere)
    # `back` goes down: its slots are placed on the others.
    without = {**everywhere, back: DOWN}
    during = run(services, before, without, ready_since={x: 0.0 for x in nodes if x != back})
    # It answers again, ready since later than every other node, with its old containers.
    ready_since = {**{x: 0.0 for x in nodes}, back: 100.0}
    removing = frozenset(data.draw(st.sets(st.sampled_from(nodes))))
    plan = reconcile(services, during, everywhere, NOW, max_moves=data.draw(st.integers(1, 3)),
                     ready_since=ready_since, removing_nodes=removing)
    elsewhere = {(c.service, c.slot) for c in during if c.node != back}
    on_back = [c for c in during if c.node == back]
    expected = {c.id for c in on_back if (c.service, c.slot) in elsewhere}
    assert {a.container.id for a in plan.of("stop")} == expected
    stopping = {a.node for a in plan.of("stop")}
    for a in plan.actions:
        if a.kind in ("place", "replace"):
            assert a.node not in stopping | removing, a
    # Once the surplus is gone the spread is restored over every node.
    final = run(services, during, everywhere, ready_since=ready_since)
    assert_settled(services, final, everywhere, frozenset())


# -- examples ---------------------------------------------------------------------------

NODES3 = {"a": READY, "b": READY, "c": READY}


def test_the_container_on_the_returning_node_is_the_one_stopped():
    web = svc("web", 2)
    d = web.spec.digest()
    was_down = container("web", 1, "a", d, started_at="2024-01-01T00:00:01Z")
    replaced = container("web", 1, "b", d, started_at="2024-01-01T00:00:05Z")
    two = container("web", 2, "c", d)
    plan = reconcile([web], [was_down, replaced, two], NODES3, NOW, ready_since={"a": 100.0, "b": 0.0, "c": 0.0})
    assert plan.changes == [Action("stop", "web", 1, "a", was_down, "duplicate for slot")]


def test_a_returning_node_gets_no_move_while_it_has_a_stop():
    web = svc("web", 4)
    d = web.spec.digest()
    # a came back with slot 1; b and c hold everything, b has three.
    old = container("web", 1, "a", d)
    observed = [old, container("web", 1, "b", d), container("web", 2, "b", d),
                container("web", 3, "b", d), container("web", 4, "c", d)]
    plan = reconcile([web], observed, NODES3, NOW, max_moves=2, ready_since={"a": 100.0, "b": 0.0, "c": 0.0})
    assert [(a.kind, a.container) for a in plan.changes] == [("stop", old)]
    waiting = [a for a in plan.actions if a.reason == "waiting for removals on a"]
    assert waiting and all(a.kind == "keep" and a.node == "a" for a in waiting)
    # Next round, with the stop still under way: a is still held back.
    rest = observed[1:]
    plan = reconcile([web], rest, NODES3, NOW, max_moves=2, ready_since={"a": 100.0, "b": 0.0, "c": 0.0},
                     removing_nodes={"a"})
    assert plan.changes == []
    # Once it is gone, a gets work again.
    plan = reconcile([web], rest, NODES3, NOW, max_moves=2, ready_since={"a": 100.0, "b": 0.0, "c": 0.0})
    assert [(a.kind, a.node, a.container.node) for a in plan.changes] == [("replace", "a", "b")]


def test_a_duplicate_on_a_drained_node_loses_against_one_on_an_active_node():
    web = svc("web", 1)
    d = web.spec.digest()
    # The drained copy would win every other tie: older node, started first.
    on_drained = container("web", 1, "a", d, started_at="2024-01-01T00:00:01Z")
    on_active = container("web", 1, "b", d, started_at="2024-01-01T00:00:09Z")
    for observed in ([on_drained, on_active], [on_active, on_drained]):
        plan = reconcile([web], observed, NODES3, NOW, drained={"a"}, ready_since={"a": 0.0, "b": 50.0, "c": 50.0})
        assert plan.changes == [Action("stop", "web", 1, "a", on_drained, "duplicate for slot")]
    assert converged(web, [on_active], NODES3, drained={"a"})
    assert not converged(web, [on_drained], NODES3, drained={"a"})


def test_an_exited_container_on_a_drained_node_is_replaced_on_an_eligible_node():
    web = svc("web", 2)
    d = web.spec.digest()
    dead = container("web", 1, "a", d, status="exited", exit_code=1)
    other = container("web", 2, "b", d)
    plan = reconcile([web], [dead, other], NODES3, NOW, drained={"a"})
    assert plan.changes == [Action("replace", "web", 1, "c", dead, "container exited (exit 1)")]
    # Even when the drained node is the emptiest one.
    plan = reconcile([web], [dead, other], {"a": READY, "b": READY}, NOW, drained={"a"})
    assert [(a.kind, a.node, a.container) for a in plan.changes] == [("replace", "b", dead)]


def test_a_drained_node_is_emptied_one_move_at_a_time():
    web = svc("web", 3)
    d = web.spec.digest()
    observed = [container("web", i, "a", d) for i in (1, 2, 3)]
    plan = reconcile([web], observed, NODES3, NOW, drained={"a"}, max_moves=1)
    assert [(a.kind, a.slot, a.node, a.reason) for a in plan.changes] == [("replace", 1, "b", "node a drained")]
    plan = reconcile([web], observed, NODES3, NOW, drained={"a"}, max_moves=1, pending={("web", 1): "b"})
    assert plan.changes == []
    plan = reconcile([web], observed, NODES3, NOW, drained={"a"}, max_moves=5)
    assert sorted((a.slot, a.node) for a in plan.changes) == [(1, "b"), (2, "c"), (3, "b")]


def test_every_node_drained_moves_nothing():
    web = svc("web", 2)
    d = web.spec.digest()
    observed = [container("web", 1, "a", d), container("web", 2, "b", d)]
    plan = reconcile([web], observed, {"a": READY, "b": READY}, NOW, drained={"a", "b"})
    assert plan.changes == []
    assert not converged(web, observed, {"a": READY, "b": READY}, drained={"a", "b"})
