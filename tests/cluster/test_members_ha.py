"""Node membership with three masters on the real sandbox: a node added
through the leader's API is in every master's list (the standbys follow the
replicated change) and in their shared inventory file; the leader is killed
and the new leader has the node and places work on it; the node is removed
through the new leader and every live master forgets it. Checked on the
engines and on each master's own /nodes."""
import os
import shutil
import signal
import threading

import pytest

from conftest import API, NODE_BASE, SANDBOX, Engines, remove_all, wait_for
from master.inventory import load
from sandbox import cluster
from test_failover import MASTERS, TTL, Cluster

NODE4 = f"127.0.0.{NODE_BASE + 4}"
NAME = "inventory-members-ha.yml"
NODE4_BODY = {"name": "node4", "host": NODE4, "user": f"bicycle{NODE_BASE + 4}", "key": "id_ed25519", "trust": True}
# An add to a node without docker stays under way for 4 s: time to kill its leader.
SLOW_BOOTSTRAP = 'sleep 4; mkdir -p "$HOME/bin" && ln -sf /usr/bin/docker "$HOME/bin/docker"'


@pytest.fixture(scope="module")
def ha4(sandbox, master, tmp_path_factory):
    """Three masters over the sandbox's 3 nodes, a 4th node started but not a
    member; the session's master pauses meanwhile; back to 3 nodes after."""
    master.stop()
    for m in MASTERS:
        stale = os.path.join(SANDBOX, f"state-ha.{m}.json")
        if os.path.exists(stale):
            os.remove(stale)
    path = cluster.ha_inventory(sandbox, MASTERS, TTL, name=NAME, settings={"bootstrap": f"'{SLOW_BOOTSTRAP}'"})
    cluster.up(SANDBOX, nodes=4, base=NODE_BASE, api=API, log=lambda *a: None)
    masters = Cluster.started(path, tmp_path_factory.mktemp("members-ha"))
    try:
        yield masters, path, Engines(cluster.engines(SANDBOX))
    finally:
        masters.kill()
        cluster.up(SANDBOX, nodes=3, base=NODE_BASE, api=API, log=lambda *a: None)
        master.start()
        remove_all(Engines(cluster.engines(SANDBOX)))


def members_of(ha, name):
    return [n["name"] for n in ha.call("GET", "/nodes", via=name).json()]


def test_an_added_node_survives_the_leaders_death_and_leaves_through_the_next(ha4):
    ha, path, engines = ha4
    leader = ha.leader()
    r = ha.call("POST", "/nodes", NODE4_BODY, via=leader)
    assert r.status_code == 201, r.text
    four = ["node1", "node2", "node3", "node4"]
    for name in ha.procs:
        wait_for(lambda: members_of(ha, name) == four, 30)
    assert [n.name for n in load(path).nodes] == four

    ha.procs[leader].stop(signal.SIGKILL)
    successor = ha.leader(timeout=60, other_than=leader)
    assert members_of(ha, successor) == four
    wait_for(lambda: next(n for n in ha.call("GET", "/nodes", via=successor).json()
                          if n["name"] == "node4")["status"] == "ready", 30)
    r = ha.call("POST", "/service", {"name": "web", "image": "bicycle/demo:1", "replicas": 4}, via=successor)
    assert r.status_code == 201, r.text
    assert {n: len(cs) for n, cs in engines.containers("web").items()} == {n: 1 for n in four}

    r = ha.call("DELETE", "/nodes/node4", via=successor)
    assert r.status_code == 200, r.text
    for name, proc in ha.procs.items():
        if proc.alive():
            wait_for(lambda: members_of(ha, name) == four[:3], 30)
    assert [n.name for n in load(path).nodes] == four[:3]
    assert sorted(len(cs) for cs in engines.containers("web").values()) == [0, 1, 1, 2]
    assert engines.containers("web")["node4"] == []


def in_background(fn):
    """fn() on a thread -> (thread, {"answer": its result or the exception})."""
    out = {}

    def run():
        try:
            out["answer"] = fn()
        except Exception as e:
            out["answer"] = e
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def removal_under_way(ha, leader, tries=3):
    """DELETE node4 through the leader in the background until it says it
    drained the node -> (the request's thread, that leader). A write that
    found no majority in time on a loaded machine answers 503 (or the
    leadership moved): then it is asked again, of the leader then."""
    answers = []
    for _ in range(tries):
        removing, out = in_background(lambda: ha.call("DELETE", "/nodes/node4", via=leader))
        wait_for(lambda: said(ha, leader, "node node4 drained") or not removing.is_alive(), 30)
        if said(ha, leader, "node node4 drained"):
            return removing, leader
        answer = out.get("answer")
        answers.append(getattr(answer, "status_code", answer))
        assert getattr(answer, "status_code", None) in (307, 503), answers    # not acknowledged: may be retried
        leader = ha.leader(timeout=30)
    raise AssertionError(f"the removal never started its drain: {answers}")


def answer_of(out):
    answer = out.get("answer")
    return f"{answer.status_code} {answer.text}" if hasattr(answer, "status_code") else repr(answer)


def said(ha, name, text):
    try:
        return any(text in e["message"] for e in ha.call("GET", "/events", via=name, params={"limit": 100}).json())
    except Exception:
        return False


def test_a_leader_killed_during_an_add_or_a_remove_leaves_no_half_change(ha4):
    """The add is killed with its leader while node4 is being bootstrapped
    (before anything is committed): no master has node4, the file is as it
    was, and the same add through the next leader completes. The remove is
    killed with its leader during the drain: the next leader has node4,
    drained, and the same remove through it completes."""
    ha, path, engines = ha4
    for proc in ha.procs.values():
        if not proc.alive():
            proc.start(role=None)
    three, four = ["node1", "node2", "node3"], ["node1", "node2", "node3", "node4"]
    if members_of(ha, ha.leader()) == four:
        assert ha.call("DELETE", "/nodes/node4", via=ha.leader()).status_code == 200
    for name in ha.procs:
        wait_for(lambda: members_of(ha, name) == three, 30)
    assert [n.name for n in load(path).nodes] == three
    before = open(path).read()
    home = cluster.load(SANDBOX).node(4).home
    shutil.rmtree(os.path.join(home, "bin"), ignore_errors=True)
    cluster.set_path(SANDBOX, 4, f"{home}/bin:" + cluster.without("docker", os.path.join(SANDBOX, "bin-nodocker")))
    try:
        first = ha.leader()
        adding, out = in_background(lambda: ha.call("POST", "/nodes", NODE4_BODY, via=first))
        wait_for(lambda: said(ha, first, "running settings.bootstrap") or not adding.is_alive(), 30)
        assert adding.is_alive(), answer_of(out)                  # the add must still be bootstrapping
        ha.procs[first].stop(signal.SIGKILL)
        adding.join(30)
        assert isinstance(out["answer"], Exception), out          # never acknowledged
        second = ha.leader(timeout=60, other_than=first)
        for name, proc in ha.procs.items():
            if proc.alive():
                assert members_of(ha, name) == three, name
        assert open(path).read() == before
        assert ha.call("POST", "/nodes", NODE4_BODY, via=second).status_code == 201
        ha.procs[first].start(role=None)
        for name in ha.procs:
            wait_for(lambda: members_of(ha, name) == four, 30)

        r = ha.call("POST", "/service", {"name": "eight", "image": "bicycle/demo:1", "replicas": 8}, via=second)
        assert r.status_code == 201, r.text
        removing, second = removal_under_way(ha, second)
        ha.procs[second].stop(signal.SIGKILL)
        removing.join(30)
        third = ha.leader(timeout=60, other_than=second)
        node4 = next(n for n in ha.call("GET", "/nodes", via=third).json() if n["name"] == "node4")
        assert node4["availability"] == "drain", node4
        assert ha.call("DELETE", "/nodes/node4", via=third).status_code == 200
        for name, proc in ha.procs.items():
            if proc.alive():
                wait_for(lambda: members_of(ha, name) == three, 30)
        assert open(path).read() == before
        assert engines.containers("eight")["node4"] == []
        assert sum(len(cs) for cs in engines.containers("eight").values()) == 8
    finally:
        cluster.set_path(SANDBOX, 4, None)
