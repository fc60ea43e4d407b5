"""master.view: /state and GET /service from one read of the master's memory.
A real Store (memory), Observation and Loop (never started); no network.
Views must not read TinyDB and must not hold a lock a prober needs; they
read each source once per answer and hold the loop's lock only to copy."""
import threading
from types import SimpleNamespace

import pytest

from model import Container, NodeInfo, ServiceSpec, READY, DOWN
from master.events import EventLog
from master.loop import Loop
from master import view
from master.observe import LIST, Observation
from master.view import ThisMaster, Views
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
    loop = Loop(store, None, obs, None, EventLog(store), SETTINGS,
                clock=clock, wall=lambda: 1e9)
    election = SimpleNamespace(reason="", status=lambda: ("leader", 101))
    inventory = SimpleNamespace(nodes=[NodeInfo("a", "10.0.0.1"), NodeInfo("b", "10.0.0.2")],
                                masters=[{"name": "m1", "api": "127.0.0.1:7070"}])
    views = Views(store, obs, loop, election, inventory, ThisMaster("m1", "127.0.0.1:7070", 1e9 - 5),
                  {}, lambda: None)
    return SimpleNamespace(loop=loop, store=store, observation=obs, clock=clock, views=views)


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


def test_each_answer_reads_every_source_once(master, monkeypatch):
    """One copy of the store's cache, one observation snapshot and one copy of
    the loop's bookkeeping per answer, however many services there are."""
    m = master
    for i in range(20):
        m.store.create_service(f"s{i:02d}", ServiceSpec(image="img:1"), 1, T0)
    answer(m, "a", 1.0, [box(f"c{i}", f"s{i:02d}", "a") for i in range(20)])
    calls = []
    for owner, name in ((m.store, "current"), (m.observation, "snapshot"), (m.loop, "bookkeeping")):
        monkeypatch.setattr(owner, name, lambda *a, _f=getattr(owner, name), _n=name: calls.append(_n) or _f(*a))
    for name in ("services", "service", "record", "nodes"):
        monkeypatch.setattr(m.store, name, lambda *_, _n=name: pytest.fail(f"a view read store.{_n}()"))
    for ask in (m.views.state, m.views.services, m.views.nodes):
        calls.clear()
        assert ask()
        assert sorted(calls) == ["bookkeeping", "current", "snapshot"]


def test_the_loops_lock_is_held_only_to_copy_its_bookkeeping(master, monkeypatch):
    """The status of a service is judged after the loop's lock is released."""
    m = master
    m.store.create_service("web", ServiceSpec(image="img:1"), 1, T0)
    answer(m, "a", 1.0, [box("c1", "web", "a")])
    free = []

    def lock_is_free():
        """Can another thread take the loop's (reentrant) lock right now?"""
        def take():
            got = m.loop.lock.acquire(blocking=False)
            free.append(got)
            if got:
                m.loop.lock.release()
        taker = threading.Thread(target=take)
        taker.start()
        taker.join()

    converged = view.converged
    monkeypatch.setattr(view, "converged", lambda *a: lock_is_free() or converged(*a))
    assert m.views.state()["services"][0]["status"] == "running"
    assert m.views.service(m.store.service("web"))["status"] == "running"
    assert free == [True, True]
