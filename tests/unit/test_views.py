"""master.view: /state and GET /service from one read of the master's memory.
A real Store (memory), Observation and Loop (never started); no network.
Views must not read TinyDB and must not hold a lock a prober needs."""
import threading
from types import SimpleNamespace

import pytest

from model import Container, NodeInfo, ServiceSpec, READY, DOWN
from master.loop import Loop
from master.observe import LIST, Observation
from master.view import Views
from store.state import Store

from test_observe import SETTINGS, Clock
from test_store import count_reads

T0 = "2024-01-01T00:00:00Z"
BOUND = 20


def box(cid, service, node, slot=1, spec=None):
    return Container(id=cid, name=f"{service}.{slot}.{cid}", node=node, service=service, slot=slot,
                     spec=spec or ServiceSpec(image="img:1").digest(), image="img:1", status="running",
                     started_at=T0)


@pytest.fixture
def master():
    clock = Clock(0.0)
    store = Store(None)
    obs = Observation(["a", "b"], SETTINGS, clock=clock)
    loop = Loop(store, None, obs, dict(SETTINGS, rebalance_parallelism=1), clock=clock, wall=lambda: 1e9)
    m = SimpleNamespace(
        loop=loop, store=store, observation=obs, name="m1", api="127.0.0.1:7070", started_at=T0,
        started_wall=1e9 - 5, peers={}, leader=lambda: None,
        election=SimpleNamespace(role_name="leader", epoch=101, reason="", status=lambda: ("leader", 101)),
        inventory=SimpleNamespace(nodes=[NodeInfo("a", "10.0.0.1"), NodeInfo("b", "10.0.0.2")],
                                  masters=[{"name": "m1", "api": "127.0.0.1:7070"}]))
    m.clock = clock
    m.views = Views(m)
    return m


def answer(m, node, at, containers):
    m.clock.t = at
    m.observation.asked(node, LIST, at - 0.5)
    m.observation.probe_ok(node, at - 0.5, containers, "w")


def test_state_and_services_come_from_one_snapshot(master):
    m = master
    for name in ("web", "db"):
        m.store.create_service(name, ServiceSpec(image="img:1"), 2, T0)
    answer(m, "a", 1.0, [box("c1", "web", "a"), box("c3", "db", "a")])
    answer(m, "b", 1.0, [box("c2", "web", "b", slot=2)])
    state = m.views.state()
    assert [(n["name"], n["status"], n["containers"]) for n in state["nodes"]] == [("a", READY, 2), ("b", READY, 1)]
    assert [(s["name"], s["replicas"]["running"], s["status"]) for s in state["services"]] == \
        [("db", 1, "converging"), ("web", 2, "running")]
    assert sorted(c["id"] for c in state["containers"]) == ["c1", "c2", "c3"]
    assert [s["name"] for s in m.views.services()] == ["db", "web"]
    web = m.views.service(m.store.service("web"))
    assert [c["id"] for c in web["containers"]] == ["c1", "c2"] and web["created_at"] == T0


def test_a_down_node_shows_its_containers_as_unknown(master):
    m = master
    m.store.create_service("web", ServiceSpec(image="img:1"), 2, T0)
    answer(m, "a", 1.0, [box("c1", "web", "a")])
    answer(m, "b", 1.0, [box("c2", "web", "b", slot=2)])
    m.observation.asked("b", LIST, 2.0)                  # never answered
    m.clock.t = 8.0
    state = m.views.state()
    assert {n["name"]: n["status"] for n in state["nodes"]} == {"a": READY, "b": DOWN}
    assert {c["id"]: c["status"] for c in state["containers"]} == {"c1": "running", "c2": "unknown"}
    assert state["services"][0]["replicas"]["running"] == 1


def test_views_never_read_tinydb(master, monkeypatch):
    m = master
    for i in range(20):
        m.store.create_service(f"s{i:02d}", ServiceSpec(image="img:1"), 1, T0)
    m.store.add_events([{"time": T0, "kind": "placed", "message": str(i)} for i in range(200)])
    answer(m, "a", 1.0, [box(f"c{i}", f"s{i:02d}", "a") for i in range(20)])
    reads = count_reads(m.store, monkeypatch)
    m.views.state()
    m.views.services()
    m.views.nodes()
    m.views.service(m.store.service("s00"))
    assert reads == []


def test_a_prober_records_while_the_loops_lock_is_held(master):
    """The loop (or a view) holding the loop's lock never delays a prober."""
    m = master
    m.store.create_service("web", ServiceSpec(image="img:1"), 1, T0)
    recorded = threading.Event()
    with m.loop.lock:
        threading.Thread(target=lambda: (answer(m, "a", 1.0, [box("c1", "web", "a")]), recorded.set()),
                         daemon=True).start()
        assert recorded.wait(BOUND)
    assert m.views.service(m.store.service("web"))["replicas"]["running"] == 1
