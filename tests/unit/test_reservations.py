"""Reservations: placement sets aside what a service reserves on each node
and never plans more than a node's engine has; a service that fits nowhere
says so. The property runs random clusters through reconcile and the
simulator of test_reconcile.py until nothing changes, checking every round."""
from collections import Counter

from hypothesis import given, strategies as st

from scheduler.reconcile import unplaced
from model import GLOBAL, READY, Service, ServiceSpec
from scheduler.place import Room
from scheduler.reconcile import reconcile
from test_reconcile import NOW, PROPS, container, run_to_convergence

GIB = 1 << 30


def reserving(name, replicas, cpus=0.0, memory=0, mode="replicated"):
    spec = ServiceSpec(image=f"{name}:1", reserve_cpus=cpus, reserve_memory=memory)
    return Service(name=name, spec=spec, replicas=replicas, mode=mode)


def used(observed, services):
    """node -> (cpus, memory) reserved by the containers on it."""
    need = {s.name: s.spec.reservation for s in services}
    out = {}
    for c in observed:
        cpus, memory = out.get(c.node, (0.0, 0))
        out[c.node] = (cpus + need[c.service][0], memory + need[c.service][1])
    return out


@st.composite
def clusters(draw):
    nodes = [f"n{i}" for i in range(draw(st.integers(1, 5)))]
    capacity = {n: (float(draw(st.integers(1, 8))), draw(st.integers(1, 8)) * GIB) for n in nodes}
    services = [reserving(f"s{i}", draw(st.integers(0, 6)), draw(st.sampled_from([0.0, 0.5, 1.0, 2.5])),
                          draw(st.sampled_from([0, GIB // 2, 2 * GIB])),
                          draw(st.sampled_from(["replicated", "replicated", GLOBAL])))
                for i in range(draw(st.integers(1, 4)))]
    return capacity, services


@PROPS
@given(clusters())
def test_no_round_plans_more_than_a_node_has(cluster):
    capacity, services = cluster
    status = {n: READY for n in capacity}

    def check(plan, observed):
        after = Counter()
        for a in plan.changes:
            if a.kind == "place":
                after[a.node] += 1
        reserved = used(observed, services)
        for a in plan.changes:
            if a.kind == "place":
                need = next(s for s in services if s.name == a.service).spec.reservation
                cpus, memory = reserved.get(a.node, (0.0, 0))
                reserved[a.node] = (cpus + need[0], memory + need[1])
        for node, (cpus, memory) in reserved.items():
            assert cpus <= capacity[node][0] + 1e-9 and memory <= capacity[node][1], (node, reserved, capacity)
        for a in plan.changes:             # a replacement in place, too, only where the node holds it
            if a.kind == "replace" and a.node == a.container.node:
                need = next(s for s in services if s.name == a.service).spec.reservation
                assert reserved.get(a.node, (0.0, 0))[0] <= capacity[a.node][0] + 1e-9 or need == (0.0, 0)
    observed, plan = run_to_convergence(services, [], status, check, capacity=capacity)
    for s in services:                   # whatever is left unplaced says why
        placed = sum(1 for c in observed if c.service == s.name)
        wanted = len(capacity) if s.mode == GLOBAL else s.replicas
        if placed < wanted:
            assert " room for " in (unplaced(s, plan.actions) or ""), plan.actions


def test_a_service_goes_where_there_is_room_and_says_when_there_is_none():
    capacity = {"n1": (2.0, 4 * GIB), "n2": (2.0, 4 * GIB)}
    status = {"n1": READY, "n2": READY}
    busy = reserving("busy", 1, cpus=1.5)
    web = reserving("web", 3, cpus=1.0, memory=GIB)
    observed = [container("busy", 1, "n1", spec=busy.spec.digest())]
    plan = reconcile([busy, web], observed, status, NOW, capacity=capacity)
    places = sorted(a.node for a in plan.changes if a.service == "web")
    assert places == ["n2", "n2"]                            # n1 has 0.5 CPUs left
    why = unplaced(web, plan.actions)
    assert why == "no node has room for 1 CPUs and 1024 MiB reserved: n1 has 0.5 CPUs and 4096 MiB free; " \
                  "n2 has 0 CPUs and 2048 MiB free"


def test_a_node_of_unknown_capacity_takes_no_reservation_but_takes_the_rest():
    status = {"n1": READY, "n2": READY}
    plan = reconcile([reserving("r", 2, cpus=0.5), reserving("free", 2)], [], status, NOW,
                     capacity={"n1": (4.0, 8 * GIB)})
    assert sorted(a.node for a in plan.changes if a.service == "r") == ["n1", "n1"]
    assert sorted(a.node for a in plan.changes if a.service == "free") == ["n1", "n2"]
    assert reconcile([reserving("r", 2, cpus=0.5)], [], status, NOW).changes          # no capacity: not weighed


def test_a_global_service_skips_a_node_without_room_and_says_so():
    status = {"n1": READY, "n2": READY}
    g = reserving("g", 0, memory=2 * GIB, mode=GLOBAL)
    plan = reconcile([g], [], status, NOW, capacity={"n1": (1.0, 4 * GIB), "n2": (1.0, 1 * GIB)})
    assert [a.node for a in plan.changes] == ["n1"]
    assert unplaced(g, plan.actions).startswith("n2 has no room for 0 CPUs and 2048 MiB reserved: n2 has 1 CPUs")


def test_room_counts_what_is_under_way_and_refuses_an_unknown_node():
    room = Room.of({"n1": (2.0, GIB)}, [("n1", (1.0, 0)), ("n9", (1.0, 0)), ("n9", (1.0, 0))])
    assert room.fits("n1", (1.0, GIB)) and not room.fits("n1", (1.5, 0)) and not room.fits("n9", (0.1, 0))
    assert room.fits("n9", (0.0, 0))                          # nothing reserved: anywhere
    room.take("n1", (1.0, GIB))
    assert not room.fits("n1", (0.01, 0))


def test_a_placement_under_way_holds_its_room():
    status = {"n1": READY, "n2": READY}
    web = reserving("web", 3, cpus=1.0)
    observed = [container("web", 3, "n1", spec=web.spec.digest())]
    plan = reconcile([web], observed, status, NOW, pending={("web", 1): "n2"},
                     capacity={"n1": (2.0, GIB), "n2": (1.0, GIB)})
    assert [(a.slot, a.node) for a in plan.changes] == [(2, "n1")]      # n2's one CPU goes to slot 1


def test_a_raised_reservation_moves_a_replacement_where_there_is_room_or_says_why():
    """web: 2 x 0.5 CPUs on n1 (2 CPUs); raised to 1.5, one replacement may
    stay on n1 and the other goes to n2 (3 CPUs); n1 is never overcommitted."""
    status = {"n1": READY, "n2": READY}
    capacity = {"n1": (2.0, GIB), "n2": (3.0, GIB)}
    old = reserving("web", 2, cpus=0.5)
    observed = [container("web", s, "n1", spec=old.spec.digest()) for s in (1, 2)]
    new = reserving("web", 2, cpus=1.5)
    observed, plan = run_to_convergence([new], observed, status, capacity=capacity)
    assert sorted(c.node for c in observed) == ["n1", "n2"]
    tight = {"n1": (2.0, GIB), "n2": (1.0, GIB)}
    stuck = reconcile([new], [container("web", s, "n1", spec=old.spec.digest()) for s in (1, 2)], status, NOW,
                      capacity=tight)
    assert not [a for a in stuck.changes if a.node == "n1" and a.kind in ("place", "replace")]
    assert "no node has room for 1.5 CPUs" in unplaced(new, stuck.actions)


def test_an_exited_container_that_stays_down_holds_no_room():
    status = {"n1": READY}
    job = Service(name="job", spec=ServiceSpec(image="job:1", restart="never", reserve_cpus=2.0), replicas=1)
    done = container("job", 1, "n1", spec=job.spec.digest(), status="exited", exit_code=0)
    plan = reconcile([job, reserving("web", 1, cpus=1.0)], [done], status, NOW, capacity={"n1": (2.0, GIB)})
    assert [(a.service, a.node) for a in plan.changes] == [("web", "n1")]


def test_a_drain_that_finds_no_room_says_so_and_a_best_uneven_spread_is_converged():
    from scheduler.reconcile import converged
    web = reserving("web", 1, cpus=2.0)
    c = container("web", 1, "n1", spec=web.spec.digest())
    plan = reconcile([web], [c], {"n1": READY, "n2": READY}, NOW, drained={"n1"},
                     capacity={"n1": (2.0, GIB), "n2": (1.0, GIB)})
    assert not plan.changes and unplaced(web, plan.actions).startswith("node n1 drained, but no node has room")
    four = reserving("web", 4, cpus=1.0)
    spread = [container("web", s, n, spec=four.spec.digest()) for s, n in ((1, "n1"), (2, "n1"), (3, "n1"), (4, "n2"))]
    assert converged(four, spread, {"n1": READY, "n2": READY})
    assert not reconcile([four], spread, {"n1": READY, "n2": READY}, NOW,
                         capacity={"n1": (4.0, GIB), "n2": (1.0, GIB)}).changes
