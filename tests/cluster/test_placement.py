"""Placement constraints, global services and resource limits against the
engines: limits reach the engine's HostConfig; a service constrained to a
label runs only on the nodes that carry it; relabelling the nodes (through
the API, as `node label` does) moves its containers start-first to the nodes
that fit now; a service that fits nowhere runs nothing and says why; a
global service runs one container on every node, leaves a drained node
(the others' containers untouched) and comes back when it is activated;
reservations place replicas only where the engine has room."""
import pytest

from conftest import api, wait_for
from sampling import Sampler, listing
from test_heal import create

pytestmark = pytest.mark.usefixtures("clean")
NODES = ("node1", "node2", "node3")


@pytest.fixture
def labelled():
    def label(**zones):
        for node in NODES:
            r = api("PATCH", f"/nodes/{node}", {"labels": {"zone": zones[node]} if node in zones else {}})
            assert r.status_code == 200, r.text
    yield label
    label()                                   # the sandbox's nodes as they were: no labels


def nodes_of(engines, service):
    return sorted(c_node for c_node, cs in engines.containers(service).items() for _ in cs)


def test_a_constrained_service_follows_the_labels_and_one_that_fits_nowhere_says_why(engines, labelled):
    labelled(node1="a", node2="a", node3="b")
    create("db", 4, constraints=["node.labels.zone==a"])
    assert nodes_of(engines, "db") == ["node1", "node1", "node2", "node2"]
    with Sampler(lambda: listing(engines, "db"), every=0.2) as watch:
        labelled(node1="a", node2="b", node3="a")
        wait_for(lambda: nodes_of(engines, "db") == ["node1", "node1", "node3", "node3"], 60)
    running = [sum(1 for cs in s.values() for _, state, _ in cs.values() if state == "running") for s in watch.samples]
    assert len(running) >= 5 and min(running) >= 4, running
    r = api("POST", "/service", {"name": "nowhere", "image": "bicycle/demo:1", "replicas": 1,
                                 "constraints": ["node.labels.zone==a", "node.labels.disk==hdd"]},
            params={"wait": "false"})
    assert r.status_code == 202, r.text
    wait_for(lambda: any("node.labels.disk==hdd rules out node1, node2, node3" in (a["reason"] or "")
                         for a in api("GET", "/service/nowhere").json()["plan"]), 20)
    assert nodes_of(engines, "nowhere") == []
    bad = api("POST", "/service", {"name": "bad", "image": "bicycle/demo:1", "replicas": 1,
                                   "constraints": ["zone==a"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "constraints.0"


def test_resource_limits_reach_the_engine(engines):
    create("capped", 2, resources={"limits": {"cpus": "0.5", "memory": "64m"}})
    hosts = [c.attrs["HostConfig"] for cs in engines.containers("capped").values() for c in cs]
    assert [(h["NanoCpus"], h["Memory"]) for h in hosts] == [(500_000_000, 64 << 20)] * 2


def test_reservations_place_only_where_the_engine_has_room_and_say_when_none_has(engines):
    """Every sandbox engine reports this machine's CPUs: a reservation of
    60% of them fits once per node, so the 4th replica stays unplaced and
    says why; scaled to 3 the service runs; a second reserving service fits
    nowhere while the first runs, and one that reserves nothing still runs."""
    cpus = min(float(client.info()["NCPU"]) for client in engines.clients.values())
    need = round(cpus * 0.6, 2)
    big = {"name": "big", "image": "bicycle/demo:1", "replicas": 4, "resources": {"reservations": {"cpus": need}}}
    assert api("POST", "/service", big, params={"wait": "false"}).status_code == 202

    def error(name):
        return api("GET", f"/service/{name}").json().get("error") or ""
    wait_for(lambda: f"no node has room for {need:g} CPUs" in error("big"), 30)
    wait_for(lambda: nodes_of(engines, "big") == list(NODES), 30)
    assert "node1 has " in error("big") and api("GET", "/service/big").json()["status"] == "converging"
    r = api("PATCH", "/service/big", {"replicas": 3})
    assert r.status_code == 200 and r.json()["status"] == "running" and not r.json().get("error"), r.text
    assert nodes_of(engines, "big") == list(NODES)
    more = dict(big, name="more", replicas=1)
    assert api("POST", "/service", more, params={"wait": "false"}).status_code == 202
    create("light", 3)
    wait_for(lambda: "no node has room" in error("more"), 30)
    assert nodes_of(engines, "more") == [] and nodes_of(engines, "light") == list(NODES)


@pytest.fixture
def all_active():
    yield
    for node in NODES:
        api("POST", f"/nodes/{node}/activate")


def test_a_global_service_runs_once_on_every_node_and_follows_a_drain(engines, all_active):
    r = api("POST", "/service", {"name": "agent", "image": "bicycle/demo:1", "mode": "global"})
    assert r.status_code == 201, r.text
    assert (r.json()["mode"], r.json()["replicas"]) == ("global", {"desired": 3, "running": 3})
    first = {node: [c.id for c in cs] for node, cs in engines.containers("agent").items()}
    assert sorted(nodes_of(engines, "agent")) == list(NODES) and all(len(ids) == 1 for ids in first.values())
    assert api("POST", "/nodes/node2/drain").status_code == 200
    wait_for(lambda: nodes_of(engines, "agent") == ["node1", "node3"], 60)
    assert {node: [c.id for c in cs] for node, cs in engines.containers("agent").items() if cs} == \
        {n: first[n] for n in ("node1", "node3")}
    assert api("GET", "/service/agent").json()["replicas"]["desired"] == 2
    assert api("POST", "/nodes/node2/activate").status_code == 200
    wait_for(lambda: nodes_of(engines, "agent") == list(NODES), 60)
    scale = api("PATCH", "/service/agent", {"replicas": 5})
    assert scale.status_code == 422 and scale.json()["errors"][0]["field"] == "replicas", scale.text
    assert nodes_of(engines, "agent") == list(NODES)
