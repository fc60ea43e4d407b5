"""scheduler.reconcile: desired + observed + node health -> Plan.

Properties run the plan through a tiny pure simulator of the cluster
(place adds a container, stop removes one, replace does both) until the plan
has no changes, then check the rules of docs/design.md on what is left.
"""
import itertools
from collections import Counter

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from model import (Action, Container, Port, Service, ServiceSpec, READY, SUSPECT, DOWN, UNKNOWN,
                   NEW, RUNNING, DELETE, RESTART_POLICIES)
from scheduler.place import choose_node, spread_ok
from scheduler.reconcile import reconcile, converged

NOW = 1000.0
MAX_ROUNDS = 50
STATUSES = ["running", "running", "exited", "created", "restarting"]
STARTED = ["", "2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z"]
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- a tiny cluster simulator ------------------------------------------------

_ids = itertools.count()


def container(service, slot, node, spec="old", status="running", exit_code=0, started_at="2024-01-01T00:00:00Z"):
    n = next(_ids)
    return Container(id=f"c{n:06d}", name=f"{service}.{slot}.{n:06x}", node=node, service=service, slot=slot,
                     spec=spec, image="img", status=status, started_at=started_at, exit_code=exit_code)


def svc(name, replicas, image="img:1", ports=(), restart="always", state=NEW):
    return Service(name=name, spec=ServiceSpec(image=image, ports=tuple(ports), restart=restart),
                   replicas=replicas, state=state)


def apply(plan, observed, services):
    """The end state of a cluster after every change of `plan` succeeded."""
    specs = {s.name: s.spec for s in services}
    by_id = {c.id: c for c in observed}
    for a in plan.changes:
        if a.kind in ("stop", "replace"):
            del by_id[a.container.id]
        if a.kind in ("place", "replace"):
            n = next(_ids)
            new = container(a.service, a.slot, a.node, spec=specs[a.service].digest(),
                            started_at=f"2030-01-01T00:00:00.{n:09d}Z")
            by_id[new.id] = new
    return list(by_id.values())


def run_to_convergence(services, observed, status, check_round=None, **round_args):
    """Reconcile and apply until nothing changes; returns (observed, last plan).
    round_args: more of reconcile's arguments (drained, node_labels, ...)."""
    for _ in range(MAX_ROUNDS):
        plan = reconcile(services, observed, status, NOW, max_moves=1, **round_args)
        if check_round:
            check_round(plan, observed)
        if not plan.changes:
            return observed, plan
        observed = apply(plan, observed, services)
    pytest.fail(f"no convergence in {MAX_ROUNDS} rounds; last plan: {plan.changes}")


def on(observed, status, states):
    return [c for c in observed if status.get(c.node) in states]


def ready_counts(service_name, observed, status):
    return Counter(c.node for c in observed if c.service == service_name and status[c.node] == READY)


# -- random clusters ---------------------------------------------------------

@st.composite
def clusters(draw, clean=False):
    """(services, observed, status).

    clean=True: nothing on suspect nodes, restart=always, and services that
    publish ports have no more replicas than ready nodes, so every service
    can reach `converged()`.
    """
    ready = [f"r{i}" for i in range(draw(st.integers(1, 6)))]
    suspect = [f"s{i}" for i in range(draw(st.integers(0, 2)))]
    down = [f"d{i}" for i in range(draw(st.integers(0, 2)))]
    status = {**{n: READY for n in ready}, **{n: SUSPECT for n in suspect}, **{n: DOWN for n in down}}
    nodes = ready + suspect + down

    services = []
    for i in range(draw(st.integers(0, 5))):
        ports = (Port(8000 + i, 80),) if draw(st.integers(0, 3)) == 0 else ()
        replicas = draw(st.integers(0, len(ready) if (clean and ports) else 20))
        restart = "always" if clean else draw(st.sampled_from(RESTART_POLICIES))
        state = draw(st.sampled_from([NEW, NEW, RUNNING, DELETE]))
        image = draw(st.sampled_from(["img:1", "img:2"]))
        services.append(svc(f"svc{i}", replicas, image=image, ports=ports, restart=restart, state=state))

    names = [s.name for s in services] + ["orphan"]
    digests = {s.name: s.spec.digest() for s in services}
    hosts = [n for n in nodes if not (clean and status[n] == SUSPECT)]
    # Biased towards low slots and the first node, so that spreads start uneven.
    one = st.tuples(st.sampled_from(names), st.integers(1, 6) | st.integers(0, 22),
                    st.just(hosts[0]) | st.sampled_from(hosts), st.booleans(),
                    st.sampled_from(STATUSES), st.sampled_from([0, 1, 137]), st.sampled_from(STARTED))
    size = draw(st.integers(0, 30))
    observed = []
    for name, slot, node, current, word, code, started in draw(st.lists(one, min_size=size, max_size=size)):
        observed.append(container(
            name, slot, node, spec=digests[name] if current and name in digests else "0ld0ld0ld0ld",
            status=word, exit_code=0 if word == "running" else code, started_at=started))
    # Some services start piled up on one node (as after a node came back), in good health.
    for s in services:
        piled = draw(st.integers(0, s.replicas))
        node = draw(st.sampled_from(hosts))
        observed += [container(s.name, slot, node, spec=s.spec.digest()) for slot in range(1, piled + 1)]
    # A service that publishes ports cannot run two containers on one node.
    with_ports = {s.name for s in services if s.spec.ports}
    seen, realistic = set(), []
    for c in observed:
        if c.service in with_ports and (c.service, c.node) in seen:
            continue
        seen.add((c.service, c.node))
        realistic.append(c)
    return services, realistic, status


def round_checks(services, status, initial_untouchable):
    """Rules every single plan must keep, whatever the cluster."""
    by_name = {s.name: s for s in services}

    def check(plan, observed):
        held_on_suspect = {(c.service, c.slot) for c in observed if status[c.node] == SUSPECT}
        for a in plan.changes:
            if a.container is not None:
                assert status[a.container.node] == READY, f"acts on a {status[a.container.node]} node: {a}"
                assert a.container in observed
            if a.kind in ("place", "replace"):
                assert status[a.node] == READY, f"targets a {status[a.node]} node: {a}"
                assert 1 <= a.slot <= by_name[a.service].replicas
                assert by_name[a.service].state != DELETE
            if a.kind == "place":
                assert (a.service, a.slot) not in held_on_suspect, f"places a slot held on a suspect node: {a}"
        # Nothing on suspect or down nodes ever changes.
        assert {c for c in observed if status[c.node] != READY} == initial_untouchable
    return check


# -- properties ----------------------------------------------------------------

@PROPS
@given(clusters())
def test_random_clusters_converge_to_the_desired_spread(cluster):
    services, observed, status = cluster
    untouchable = {c for c in observed if status[c.node] != READY}
    final, last_plan = run_to_convergence(services, observed, status,
                                          round_checks(services, status, untouchable))
    assert not reconcile(services, final, status, NOW, max_moves=1).changes

    ready_nodes = [n for n, s in status.items() if s == READY]
    live = on(final, status, (READY,))
    assert {c for c in final if status[c.node] != READY} == untouchable
    desired = {s.name: s for s in services if s.state != DELETE}
    # Nothing on ready nodes for deleted or unknown services, nor for slots above replicas.
    for c in live:
        assert c.service in desired, f"left over: {c}"
        assert 1 <= c.slot <= desired[c.service].replicas, f"slot above replicas: {c}"
    for s in desired.values():
        # The spread is about running containers: exited ones that their
        # restart policy keeps down stay where they stopped.
        counts = Counter(c.node for c in final
                         if c.service == s.name and status[c.node] == READY and c.running)
        assert spread_ok(ready_nodes, counts), f"{s.name}: {dict(counts)} over {ready_nodes}"
        held_on_suspect = {c.slot for c in final if c.service == s.name and status[c.node] == SUSPECT}
        for slot in range(1, s.replicas + 1):
            holders = [c for c in live if c.service == s.name and c.slot == slot]
            if slot in held_on_suspect:
                assert len(holders) <= 1
            elif holders:
                assert len(holders) == 1, f"{s.name}.{slot}: {holders}"
            else:
                # Only a service publishing ports may leave a slot empty: every ready node has one.
                assert s.spec.ports and set(counts) == set(ready_nodes), f"{s.name}.{slot} empty"
                assert any(a.kind == "keep" and a.slot == slot and a.reason.startswith("no eligible node")
                           for a in last_plan.actions if a.service == s.name)
        # Whatever runs on a ready node runs the current spec.
        assert all(c.spec == s.spec.digest() for c in live if c.service == s.name)


@PROPS
@given(clusters(clean=True))
def test_clean_clusters_end_converged(cluster):
    services, observed, status = cluster
    final, _ = run_to_convergence(services, observed, status)
    for s in services:
        assert converged(s, final, status), s
    for s in services:
        if s.state == DELETE:
            continue
        mine = [c for c in final if c.service == s.name and status[c.node] != DOWN]
        assert sorted(c.slot for c in mine) == list(range(1, s.replicas + 1))


@PROPS
@given(clusters(), st.data())
def test_nothing_is_planned_while_a_node_is_unknown(cluster, data):
    services, observed, status = cluster
    unknown = data.draw(st.lists(st.sampled_from(sorted(status)), min_size=1, unique=True))
    status = {n: (UNKNOWN if n in unknown else s) for n, s in status.items()}
    plan = reconcile(services, observed, status, NOW)
    assert plan.changes == []
    assert not plan
    assert sorted(a.service for a in plan.actions) == sorted(s.name for s in services)
    assert all("first probe" in a.reason for a in plan.actions)


@PROPS
@given(clusters())
def test_down_nodes_are_ignored_and_their_slots_placed_elsewhere(cluster):
    services, observed, status = cluster
    plan = reconcile(services, observed, status, NOW)
    placed = {(a.service, a.slot) for a in plan.of("place")}
    on_live = {(c.service, c.slot) for c in observed if status[c.node] in (READY, SUSPECT)}
    for c in observed:
        if status[c.node] != DOWN:
            continue
        assert all(a.container != c for a in plan.actions)
        s = next((s for s in services if s.name == c.service), None)
        if s is None or s.state == DELETE or not 1 <= c.slot <= s.replicas or s.spec.ports:
            continue
        if (c.service, c.slot) not in on_live:
            held = {a.slot for a in plan.actions if a.kind == "keep" and a.service == c.service
                    and a.reason.startswith("waiting for removals on")}
            assert (c.service, c.slot) in placed or c.slot in held, f"slot of {c} on a down node not placed"


@PROPS
@given(clusters())
def test_deleted_services_stop_everything_on_ready_nodes(cluster):
    services, observed, status = cluster
    plan = reconcile(services, observed, status, NOW)
    for s in services:
        if s.state != DELETE:
            continue
        mine = [a for a in plan.actions if a.service == s.name]
        expected = {c.id for c in observed if c.service == s.name and status[c.node] == READY}
        assert {a.container.id for a in mine if a.kind == "stop"} == expected
        assert all(a.kind == "stop" for a in mine)


@PROPS
@given(clusters(), st.data())
def test_backing_off_slots_are_not_placed(cluster, data):
    services, observed, status = cluster
    slots = [(s.name, n) for s in services for n in range(1, s.replicas + 1)]
    backoff = {k: data.draw(st.sampled_from([NOW - 1, NOW, NOW + 0.5, NOW + 30]))
               for k in data.draw(st.lists(st.sampled_from(slots), unique=True)) } if slots else {}
    plan = reconcile(services, observed, status, NOW, backoff=backoff)
    waiting = {k for k, t in backoff.items() if t > NOW}
    for a in plan.of("place"):
        assert (a.service, a.slot) not in waiting
    # An empty slot that waits says so.
    held = {(c.service, c.slot) for c in observed if status[c.node] in (READY, SUSPECT)}
    for key in waiting - held:
        s = next(s for s in services if s.name == key[0])
        if s.state == DELETE:
            continue
        assert any(a.kind == "keep" and (a.service, a.slot) == key and "backing off" in a.reason
                   for a in plan.actions), key
    # A slot waiting for its retry is not replaced or moved either.
    assert not [a for a in plan.of("replace") if (a.service, a.slot) in waiting]


@PROPS
@given(clusters(), st.data())
def test_pending_slots_are_not_touched(cluster, data):
    services, observed, status = cluster
    live = [s for s in services if s.state != DELETE]
    slots = [(s.name, n) for s in live for n in range(1, s.replicas + 3)]
    ready = sorted(n for n, s in status.items() if s == READY)
    pending = {k: data.draw(st.sampled_from(ready))
               for k in data.draw(st.lists(st.sampled_from(slots), unique=True))} if slots else {}
    plan = reconcile(services, observed, status, NOW, pending=pending)
    for a in plan.changes:
        if any(s.name == a.service for s in live):
            assert (a.service, a.slot) not in pending, a
    for (name, slot), node in pending.items():
        s = next(s for s in live if s.name == name)
        if slot <= s.replicas:
            assert Action("keep", name, slot, node, reason="change in progress") in plan.actions


@PROPS
@given(clusters())
def test_services_with_ports_never_share_a_node(cluster):
    services, observed, status = cluster
    with_ports = [s for s in services if s.spec.ports]

    def one_per_node(plan, observed):
        after = apply(plan, observed, services)
        for s in with_ports:
            # Only a running container holds its host port.
            per_node = Counter(c.node for c in after if c.service == s.name and c.running)
            assert max(per_node.values(), default=0) <= 1, f"{s.name} after {plan.changes}: {per_node}"
    run_to_convergence(services, observed, status, one_per_node)


# -- examples ------------------------------------------------------------------

NODES3 = {"a": READY, "b": READY, "c": READY}


def test_seven_replicas_over_three_empty_nodes_spread_3_2_2():
    plan = reconcile([svc("web", 7)], [], NODES3, NOW)
    assert [a.kind for a in plan.actions] == ["place"] * 7
    assert [a.slot for a in plan.actions] == list(range(1, 8))
    assert Counter(a.node for a in plan.actions) == {"a": 3, "b": 2, "c": 2}


def test_scale_ten_to_two_leaves_one_one_zero():
    ten = svc("web", 10)
    observed, _ = run_to_convergence([ten], [], NODES3)
    assert sorted(ready_counts("web", observed, NODES3).values()) == [3, 3, 4]
    two = svc("web", 2)
    plan = reconcile([two], observed, NODES3, NOW)
    assert sorted(a.slot for a in plan.of("stop")) == list(range(3, 11))
    final, _ = run_to_convergence([two], observed, NODES3)
    assert sorted(c.slot for c in final) == [1, 2]
    assert sorted(ready_counts("web", final, NODES3).get(n, 0) for n in NODES3) == [0, 1, 1]
    assert converged(two, final, NODES3)


def test_scale_down_that_leaves_both_slots_on_one_node_moves_one():
    web = svc("web", 2)
    digest = web.spec.digest()
    observed = [container("web", 1, "a", digest), container("web", 2, "a", digest),
                container("web", 3, "b", digest), container("web", 4, "c", digest)]
    plan = reconcile([web], observed, NODES3, NOW)
    assert sorted(a.slot for a in plan.of("stop")) == [3, 4]
    # Nothing new goes to b or c while they still have containers to lose.
    assert plan.of("replace") == []
    assert "waiting for removals on b" in [a.reason for a in plan.actions if a.slot == 2]
    plan = reconcile([web], observed[:2], NODES3, NOW)
    move = plan.of("replace")
    assert len(move) == 1 and move[0].slot == 2 and move[0].node in ("b", "c")
    assert move[0].container.node == "a" and move[0].reason == "rebalance from a"


def test_old_spec_is_replaced_on_the_same_node():
    web = svc("web", 1, image="img:2")
    old = container("web", 1, "b", spec=svc("web", 1, image="img:1").spec.digest())
    plan = reconcile([web], [old], NODES3, NOW)
    assert plan.changes == [Action("replace", "web", 1, "b", old, "spec changed")]


def test_host_ports_stop_first_only_when_the_replacement_goes_to_the_same_node():
    site, plain = svc("site", 1, image="img:2", ports=[Port(8080, 80)]), svc("web", 1, image="img:2")
    old_spec = svc("x", 1, image="img:1").spec.digest()
    for service, in_place_stops_first in ((site, True), (plain, False)):
        old = container(service.name, 1, "a", spec=old_spec)
        # A new spec: replaced on its node, where the old container holds the port.
        [update] = reconcile([service], [old], NODES3, NOW).changes
        assert (update.kind, update.node, update.container) == ("replace", "a", old)
        assert update.stop_first is in_place_stops_first
        # Its node drained: the replacement goes to another node and starts first.
        [move] = reconcile([service], [old], NODES3, NOW, drained={"a"}).changes
        assert move.kind == "replace" and move.node != "a" and move.container == old
        assert move.stop_first is False
        current = container(service.name, 1, "a", spec=service.spec.digest())
        [move] = reconcile([service], [current], NODES3, NOW, drained={"a"}).changes
        assert move.reason == "node a drained" and move.stop_first is False
    # Nothing is replaced by a place or a stop.
    [place] = reconcile([site], [], NODES3, NOW).changes
    assert place.kind == "place" and place.stop_first is False
    old = container("site", 1, "a", spec=site.spec.digest())
    [stop] = reconcile([svc("site", 1, image="img:2", ports=[Port(8080, 80)], state=DELETE)], [old], NODES3, NOW).changes
    assert stop.kind == "stop" and stop.stop_first is False


def test_ties_go_to_the_node_with_fewer_containers_overall():
    other = svc("other", 3)
    d = other.spec.digest()
    observed = [container("other", 1, "a", d), container("other", 2, "a", d), container("other", 3, "c", d)]
    plan = reconcile([svc("web", 1), other], observed, NODES3, NOW)
    assert [(a.kind, a.node) for a in plan.actions if a.service == "web"] == [("place", "b")]


def test_choose_node_prefers_fewer_of_the_service_then_fewer_overall_then_name():
    assert choose_node(["a", "b", "c"], {"a": 1}, {"b": 5, "c": 5}) == "b"
    assert choose_node(["a", "b", "c"], {}, {"a": 2, "b": 1, "c": 1}) == "b"
    assert choose_node(["a", "b"], {"a": 1, "b": 1}, {}, one_per_node=True) is None


def test_duplicates_keep_the_running_one_and_stop_the_rest():
    web = svc("web", 1)
    d = web.spec.digest()
    dead = container("web", 1, "a", d, status="exited", exit_code=1)
    alive = container("web", 1, "b", d)
    plan = reconcile([web], [dead, alive], NODES3, NOW)
    assert plan.changes == [Action("stop", "web", 1, "a", dead, "duplicate for slot")]


@pytest.mark.parametrize("restart, exit_code, kind", [
    ("always", 0, "replace"), ("always", 1, "replace"),
    ("on-failure", 1, "replace"), ("on-failure", 0, "keep"),
    ("never", 1, "keep"), ("never", 0, "keep"),
])
def test_a_stopped_container_follows_its_restart_policy(restart, exit_code, kind):
    web = svc("web", 1, restart=restart)
    dead = container("web", 1, "a", web.spec.digest(), status="exited", exit_code=exit_code)
    plan = reconcile([web], [dead], {"a": READY}, NOW)
    assert [(a.kind, a.container) for a in plan.actions] == [(kind, dead)]


def test_a_suspect_node_keeps_its_slot_and_its_container():
    web = svc("web", 2, image="img:2")
    stale = container("web", 1, "s", spec="0ld0ld0ld0ld", status="exited", exit_code=1)
    plan = reconcile([web], [stale], {"a": READY, "s": SUSPECT}, NOW)
    assert Action("keep", "web", 1, "s", stale, "node suspect") in plan.actions
    assert [(a.kind, a.slot, a.node) for a in plan.changes] == [("place", 2, "a")]


def test_a_returning_node_has_its_surplus_removed_first():
    web = svc("web", 2)
    d = web.spec.digest()
    was_down = [container("web", 1, "a", d, started_at="2024-01-01T00:00:01Z")]
    replaced = [container("web", 1, "b", d, started_at="2024-01-01T00:00:05Z"), container("web", 2, "c", d)]
    plan = reconcile([web], was_down + replaced, {"a": DOWN, "b": READY, "c": READY}, NOW)
    assert plan.changes == []
    plan = reconcile([web], was_down + replaced, NODES3, NOW)
    assert [(a.kind, a.container) for a in plan.changes] == [("stop", replaced[0])]


def test_a_backing_off_dead_container_is_kept():
    web = svc("web", 1)
    dead = container("web", 1, "a", web.spec.digest(), status="exited", exit_code=1)
    plan = reconcile([web], [dead], NODES3, NOW, backoff={("web", 1): NOW + 5})
    assert plan.changes == []
    assert plan.actions[0].reason == "backing off after failures"
    later = reconcile([web], [dead], NODES3, NOW + 5, backoff={("web", 1): NOW + 5})
    assert [a.kind for a in later.changes] == ["replace"]


def test_a_spec_change_waits_for_the_slots_backoff():
    new = svc("web", 1, image="img:2")
    old = container("web", 1, "a", spec=svc("web", 1, image="img:1").spec.digest())
    plan = reconcile([new], [old], NODES3, NOW, backoff={("web", 1): NOW + 5})
    assert plan.changes == []


def test_a_rebalance_move_waits_for_the_slots_backoff():
    web = svc("web", 2)
    d = web.spec.digest()
    observed = [container("web", 1, "a", d), container("web", 2, "a", d)]
    plan = reconcile([web], observed, {"a": READY, "b": READY}, NOW, backoff={("web", 2): NOW + 5})
    assert all(a.slot != 2 for a in plan.changes), plan.changes


def test_max_moves_bounds_rebalancing_per_round():
    web = svc("web", 6)
    d = web.spec.digest()
    observed = [container("web", i, "a", d) for i in range(1, 7)]
    assert len(reconcile([web], observed, NODES3, NOW, max_moves=1).of("replace")) == 1
    assert len(reconcile([web], observed, NODES3, NOW, max_moves=3).of("replace")) == 3
    assert len(reconcile([web], observed, NODES3, NOW, max_moves=10).of("replace")) == 4


def test_changes_under_way_use_up_the_move_budget():
    web = svc("web", 3)
    d = web.spec.digest()
    observed = [container("web", 1, "a", d), container("web", 2, "a", d)]
    plan = reconcile([web], observed, NODES3, NOW, max_moves=1, pending={("web", 3): "a"})
    assert plan.changes == []
    plan = reconcile([web], observed, NODES3, NOW, max_moves=2, pending={("web", 3): "a"})
    assert [(a.kind, a.slot, a.node) for a in plan.changes] == [("replace", 2, "b")]


def test_labelled_containers_no_service_owns_are_stopped():
    stray = container("gone", 1, "a")
    elsewhere = container("gone", 2, "s")
    plan = reconcile([], [stray, elsewhere], {"a": READY, "s": SUSPECT}, NOW)
    assert plan.changes == [Action("stop", "gone", 1, "a", stray, "no service owns it")]


def test_converged_is_false_until_every_slot_runs_once():
    web = svc("web", 2)
    d = web.spec.digest()
    one = [container("web", 1, "a", d)]
    assert not converged(web, one, NODES3)
    two = one + [container("web", 2, "b", d)]
    assert converged(web, two, NODES3)
    assert not converged(web, two + [container("web", 2, "c", d)], NODES3)
    assert not converged(web, one + [container("web", 2, "b", "0ld0ld0ld0ld")], NODES3)
    assert not converged(web, one + [container("web", 2, "b", d, status="exited")], NODES3)
    assert converged(web, two + [container("web", 2, "c", d)], {**NODES3, "c": DOWN})
