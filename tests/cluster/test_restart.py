"""Restart policies and engine hiccups on the real sandbox: `on-failure` and
`never` on real exits, a `failed` service and its recovery, a node whose
engine freezes or refuses for a moment (it keeps its slots), and a frozen
engine while a service is created (the other nodes do not wait for it).
Every outcome is checked on the engines themselves."""
import contextlib
import os
import signal
import stat
import time

import docker
import pytest
import requests

from conftest import SANDBOX, api, wait_for
from sampling import Sampler, engine_events, listing, running_slots
from sandbox import cluster
from test_heal import create, healed, node_status, pids

pytestmark = pytest.mark.usefixtures("clean")

EXIT_0 = "sh -c 'sleep 1; exit 0'"
EXIT_3 = "sh -c 'sleep 1; exit 3'"
OTHERS = {"node1", "node3"}


def post(name, command, restart, replicas=1):
    r = api("POST", "/service?wait=false", {"name": name, "image": "bicycle/demo:1", "replicas": replicas,
                                            "command": command, "restart": restart})
    assert r.status_code == 202, r.text


def view(name):
    return api("GET", f"/service/{name}").json()


def actions(events, action):
    return [e for e in events if e.action == action]


def kept_exited(name, restart):
    """The master's view of `name` once it saw its one container exited and
    its last plan kept it so (the decision made with the exit observed)."""
    v = view(name)
    seen = [c["status"] for c in v["containers"]]
    kept = [a for a in v["plan"] if a["kind"] == "keep" and a["reason"] == f"exited, restart={restart}"]
    return seen == ["exited"] and len(kept) == 1 and v


def waited(predicate, timeout, explain):
    """wait_for(predicate, timeout), failing with what explain() says was seen instead."""
    try:
        return wait_for(predicate, timeout)
    except AssertionError:
        raise AssertionError(explain()) from None


def wait_kept_exited(engines, name, restart, since):
    return waited(lambda: kept_exited(name, restart), 30,
                  lambda: f"{name}: the master did not keep one exited container: {view(name)}; "
                          f"on the engines: {engine_events(engines, name, since)}")


def test_on_failure_replaces_a_failed_container_only(engines):
    """`restart: on-failure`: a container that exits 0 stays exited and gets
    no successor, while one that exits 3 is replaced (twice here: at once,
    then after the back-off), all read from the engines' own events."""
    since = time.time_ns()
    post("fine", EXIT_0, "on-failure")
    post("fails", EXIT_3, "on-failure")
    wait_kept_exited(engines, "fine", "on-failure", since)
    # The failing one meanwhile gets a second and a third container: the
    # master acts on exits; the exit 0 was seen and kept, not missed.
    wait_for(lambda: len(actions(engine_events(engines, "fails", since), "create")) >= 3, 30)
    fails = engine_events(engines, "fails", since)
    assert [e.exit_code for e in actions(fails, "die")][:2] == ["3", "3"], fails
    assert len({e.slot for e in fails}) == 1

    fine = engine_events(engines, "fine", since)
    assert [(e.action, e.exit_code) for e in fine if e.action in ("create", "start", "die")] == \
        [("create", None), ("start", None), ("die", "0")], fine
    on_engines = listing(engines, "fine")
    assert sorted(state for cs in on_engines.values() for _, state, _ in cs.values()) == ["exited"], on_engines
    assert view("fine")["status"] != "failed"


def test_never_keeps_exits_fails_on_an_error_and_recovers(engines):
    """`restart: never`: exited containers are never replaced; the service
    whose container exited 3 is `failed` (the one that exited 0 is not);
    after a PATCH to a command that keeps running, its replacement runs on the
    engine and the service is `running` again."""
    since = time.time_ns()
    post("once", EXIT_3, "never")
    post("done", EXIT_0, "never")
    wait_kept_exited(engines, "once", "never", since)
    wait_for(lambda: view("once")["status"] == "failed", 10)
    assert view("once")["replicas"] == {"desired": 1, "running": 0}
    done = wait_kept_exited(engines, "done", "never", since)
    assert done["status"] != "failed"
    # Every node listed again since, and the plan still keeps both: one container each.
    seen = max(n["last_seen"] for n in api("GET", "/nodes").json())
    wait_for(lambda: all(n["last_seen"] > seen for n in api("GET", "/nodes").json()), 10)
    assert kept_exited("once", "never") and kept_exited("done", "never")
    for name, code in (("once", "3"), ("done", "0")):
        events = engine_events(engines, name, since)
        assert [(e.action, e.exit_code) for e in events if e.action in ("create", "die")] == \
            [("create", None), ("die", code)], (name, events)
    assert view("once")["status"] == "failed"

    # Recovery: a good command replaces the exited container.
    r = api("PATCH", "/service/once", {"command": []})
    assert r.status_code == 200, r.text
    wait_for(lambda: view("once")["status"] == "running", 30)
    on_engines = listing(engines, "once")
    rows = [row for cs in on_engines.values() for row in cs.values()]
    assert [(slot, state) for slot, state, _ in rows] == [(1, "running")], on_engines
    events = engine_events(engines, "once", since)
    assert len(actions(events, "create")) == 2 and len(actions(events, "destroy")) == 1, events
    assert view("once")["replicas"] == {"desired": 1, "running": 1}


# -- engines that freeze or refuse for a moment ------------------------------

def engine_answers(node, timeout=0.5):
    """Whether `node`'s engine answers a ping within `timeout` (a fresh
    client: a frozen engine leaves its request hanging)."""
    client = docker.DockerClient(base_url=cluster.engines(SANDBOX)[node], version="1.41", timeout=timeout)
    try:
        return client.ping()
    except requests.exceptions.Timeout:
        return False
    finally:
        client.close()


def stopped(pid):
    """Every thread of `pid` is stopped (state T): the signal has landed."""
    states = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError):       # a thread that just ended
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                states.add(f.read().rsplit(")", 1)[1].split()[0])
    return "T" in states and states <= {"T", "Z", "X"}


@contextlib.contextmanager
def frozen_engine(node):
    """`node`'s dockerd stopped (SIGSTOP) for the block; always resumed."""
    _, dockerd = pids(node)
    assert dockerd, f"{node} has no dockerd"
    os.kill(dockerd, signal.SIGSTOP)
    try:
        wait_for(lambda: stopped(dockerd), 5, interval=0.01)
        yield
    finally:
        os.kill(dockerd, signal.SIGCONT)


@contextlib.contextmanager
def refusing_engine(node):
    """`node`'s engine socket closed to the node user (root only) for the
    block: its listings fail with the engine's error; always reopened."""
    path = cluster.engines(SANDBOX)[node].removeprefix("unix://")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    os.chmod(path, 0o600)
    try:
        yield
    finally:
        os.chmod(path, mode)


def last_seen(node):
    return next(n["last_seen"] for n in api("GET", "/nodes").json() if n["name"] == node)


def running_ids(engines, service):
    return {node: sorted(c.id for c in cs) for node, cs in engines.containers(service).items()}


def assert_kept(engines, before, since, statuses):
    """Nothing moved: no container created on the other nodes, the same
    containers run, and node2 was never down (at least a few samples)."""
    assert len(statuses) >= 5, statuses
    assert "down" not in statuses, statuses
    assert actions(engine_events(engines, "web", since, nodes=OTHERS), "create") == []
    assert running_ids(engines, "web") == before


def test_frozen_engine_for_two_seconds_moves_nothing(engines):
    """node2's dockerd stopped while the master probes every node twice more
    (probe_interval 1 s, well under engine_timeout 30 s which makes a frozen
    engine down): node2 may be suspect, never down, and no container of
    its slot is created anywhere else."""
    create("web", 3)
    before = running_ids(engines, "web")
    since = time.time_ns()
    with Sampler(lambda: node_status("node2"), every=0.1) as statuses:
        with frozen_engine("node2"):
            assert engine_answers("node2") is False, "the engine still answers: not stopped"
            stuck = last_seen("node2")
            first = last_seen("node1")
            wait_for(lambda: last_seen("node1") > first and last_seen("node3") > first, 10)
            second = max(last_seen("node1"), last_seen("node3"))
            wait_for(lambda: last_seen("node1") > second and last_seen("node3") > second, 10)
            assert last_seen("node2") == stuck, "node2 answered a listing while its engine was stopped"
            assert engine_answers("node2") is False
        wait_for(lambda: last_seen("node2") > stuck and node_status("node2") == "ready", 20)
    assert_kept(engines, before, since, statuses.samples)


def test_suspect_node_keeps_its_slots(engines):
    """node2's engine refuses the node user: its listing fails and node2 is
    `suspect` (down only after down_after, 5 s); the master's plan keeps
    node2's slot there, nothing is created elsewhere, and node2 is ready
    again once its engine answers."""
    create("web", 3)
    before = running_ids(engines, "web")
    slot = next(int(c.labels["bicycle.slot"]) for c in engines.containers("web")["node2"])
    since = time.time_ns()
    with Sampler(lambda: node_status("node2"), every=0.1) as statuses:
        with refusing_engine("node2"):
            waited(lambda: any(a["slot"] == slot and a["reason"] == "node suspect" for a in view("web")["plan"]), 4,
                   lambda: f"no plan kept slot {slot} on the suspect node2: {view('web')['plan']}, "
                           f"node2 {node_status('node2')}")
        wait_for(lambda: node_status("node2") == "ready", 10)
    assert "suspect" in statuses.samples
    assert_kept(engines, before, since, statuses.samples)


def under_way(service, node, count):
    """The steps of the master's last plan for `service` on `node`, when they
    are `count` changes still under way (sent, not answered yet)."""
    steps = [a for a in view(service)["plan"] if a["node"] == node]
    in_progress = [a for a in steps if a["kind"] == "keep" and a["reason"] == "change in progress"]
    return len(steps) == len(in_progress) == count and steps


def test_slow_node_never_stalls_the_others(engines):
    """A service of 6 created while node2's dockerd is stopped: the 4
    containers of node1 and node3 run on their engines at a sample taken
    while node2's engine is still stopped (it does not answer a ping after
    the sample), and node2's 2 slots are then still under way in the master;
    after node2 resumes, they run there and everything converges."""
    since = time.time_ns()
    with frozen_engine("node2"):
        assert engine_answers("node2") is False, "the engine still answers: not stopped"
        r = api("POST", "/service?wait=false", {"name": "web", "image": "bicycle/demo:1", "replicas": 6})
        assert r.status_code == 202, r.text

        def others_run():
            sample = listing(engines, "web", OTHERS)
            return running_slots(sample) if len(running_slots(sample)) == 4 else None

        slots = waited(others_run, 15, lambda: f"node1 and node3 wait: {listing(engines, 'web', OTHERS)}")
        # Meanwhile the master's plan has node2's two slots sent and not answered yet.
        stalled = waited(lambda: under_way("web", "node2", 2), 10, lambda: f"plan: {view('web')['plan']}")
        assert engine_answers("node2") is False, "node2's engine answered before the sample was checked"
    assert set(slots.values()) == {1}, slots
    assert {a["slot"] for a in stalled} | set(slots) == set(range(1, 7))

    wait_for(lambda: healed(engines, "web", 6), 30)
    assert sorted(engines.counts("web").values()) == [2, 2, 2]
    node2 = actions(engine_events(engines, "web", since, nodes={"node2"}), "start")
    assert sorted(e.slot for e in node2) == sorted(a["slot"] for a in stalled)
