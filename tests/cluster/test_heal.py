"""Self-healing on the real sandbox: lost nodes, their return, killed replicas,
crash loops, drain. Every outcome is checked on the engines themselves."""
import os
import signal
import subprocess
import time

import pytest

from conftest import API, NODE_ADDRESSES, NODE_BASE, SANDBOX, api, wait_for
from sampling import Sampler, engine_events, listing, running_slots
from master.inventory import load
from remote.transport import NodeConnection
from sandbox import cluster

pytestmark = pytest.mark.usefixtures("clean")

NODE2_ADDRESS = NODE_ADDRESSES[1]


def create(name, replicas, **extra):
    r = api("POST", "/service", dict(name=name, image="bicycle/demo:1", replicas=replicas, **extra))
    assert r.status_code == 201, r.text
    return r.json()


def pids(node):
    row = next(r for r in cluster.status(SANDBOX) if r["name"] == node)
    return row["sshd_pid"], row["dockerd_pid"]


def repair():
    cluster.up(SANDBOX, nodes=3, base=NODE_BASE, api=API, log=lambda *a: None)


def node_status(name):
    return next(n["status"] for n in api("GET", "/state").json()["nodes"] if n["name"] == name)


def running_on(engines, service, nodes):
    """slot -> count of running containers on `nodes` (engines that answer)."""
    out = {}
    for node, cs in engines.containers(service, skip_dead=True).items():
        if node in nodes:
            for c in cs:
                slot = int(c.labels["bicycle.slot"])
                out[slot] = out.get(slot, 0) + 1
    return out


def healed(engines, service, replicas):
    """Every slot exactly once, running, spread 2/2/2-style over all 3 nodes,
    and no leftover (exited) labelled container anywhere."""
    every = engines.containers(service, running_only=False)    # one snapshot for every check
    if any(c.status != "running" for cs in every.values() for c in cs):
        return False
    counts = sorted(len(cs) for cs in every.values())
    slots = sorted(int(c.labels["bicycle.slot"]) for cs in every.values() for c in cs)
    return slots == list(range(1, replicas + 1)) and counts[-1] - counts[0] <= 1


def lost_node_cycle(engines, lose, restore):
    create("web", 6)
    assert engines.counts("web")["node2"] == 2
    lose()
    try:
        # All six slots run once on node1 and node3, evenly.
        wait_for(lambda: running_on(engines, "web", {"node1", "node3"}) == {s: 1 for s in range(1, 7)}, 30)
        assert sorted(len(cs) for n, cs in engines.containers("web", skip_dead=True).items() if n != "node2") == [3, 3]
        assert node_status("node2") == "down"
        lost = [c for c in api("GET", "/state").json()["containers"] if c["node"] == "node2"]
        assert lost and all(c["status"] == "unknown" and c["last_status"] == "running" for c in lost)
    finally:
        restore()
    wait_for(lambda: node_status("node2") == "ready", 20)
    wait_for(lambda: healed(engines, "web", 6), 30)
    assert sorted(engines.counts("web").values()) == [2, 2, 2]
    wait_for(lambda: api("GET", "/service/web").json()["status"] == "running", 10)


def test_killed_node_moves_its_slots_and_gets_them_back(engines):
    sshd, dockerd = pids("node2")

    def lose():
        os.kill(dockerd, signal.SIGKILL)
        os.kill(sshd, signal.SIGKILL)

    lost_node_cycle(engines, lose, repair)


def test_cut_off_node_moves_its_slots_and_gets_them_back(engines):
    rule = ["INPUT", "-d", NODE2_ADDRESS, "-p", "tcp", "--dport", "22", "-j", "DROP",
            "-m", "comment", "--comment", "bicycle-test-cut"]

    def lose():
        subprocess.run(["iptables", "-I", *rule], check=True)

    def restore():
        subprocess.run(["iptables", "-D", *rule], check=True)

    lost_node_cycle(engines, lose, restore)


def test_dead_engine_behind_live_sshd_is_down(sandbox, engines):
    create("web", 3)
    _, dockerd = pids("node2")
    os.kill(dockerd, signal.SIGTERM)
    try:
        wait_for(lambda: node_status("node2") == "down", 20)
        inventory = load(sandbox)
        conn = NodeConnection(inventory.nodes[1], inventory.settings.known_hosts)
        try:
            assert conn.run(["echo", "ssh answers"]).stdout == "ssh answers\n"
        finally:
            conn.close()
        wait_for(lambda: running_on(engines, "web", {"node1", "node3"}) == {1: 1, 2: 1, 3: 1}, 20)
    finally:
        wait_for(lambda: pids("node2")[1] is None, 30)
        repair()
    wait_for(lambda: healed(engines, "web", 3), 40)


def test_killed_replica_is_replaced(engines):
    create("web", 3)
    victim = next(c for cs in engines.containers("web").values() for c in cs)
    victim.kill()
    wait_for(lambda: engines.slots("web") == {1: 1, 2: 1, 3: 1}
             and victim.id not in {c.id for cs in engines.containers("web", running_only=False).values()
                                   for c in cs}, 20)
    assert sorted(engines.counts("web").values()) == [1, 1, 1]


CRASH = ["sh", "-c", "echo boom; exit 3"]


def lives(events):
    """[(start, die or None, exit code or None)] of every container, in start order."""
    runs = {}
    for e in events:
        if e.action == "start":
            runs[e.id] = [e.time, None, None]
        elif e.action == "die" and e.id in runs:
            runs[e.id][1:] = [e.time, e.exit_code]
    return sorted(tuple(r) for r in runs.values())


def crash_rows(view):
    return [b for b in view.get("backoff", []) if b["kind"] == "crash"]


def test_crash_loop_backs_off_fails_and_recovers(engines):
    """A container that dies at once is replaced at once the first time, then
    after waits that grow (2, 4 ... s), one container at a time (read from the
    engines' start and die events); the third crash in a row, not an earlier
    or a later one, makes the service `failed` with the exit in its back-off
    list; after an update to a command that keeps running, the service is
    `failed` until the replacement has run 10 s, then `running` without
    back-off."""
    since = time.time_ns()
    r = api("POST", "/service?wait=false", {"name": "crashy", "image": "bicycle/demo:1", "replicas": 1,
                                            "command": CRASH})
    assert r.status_code == 202
    views = []

    def failed():
        views.append(api("GET", "/service/crashy").json())
        return views[-1]["status"] == "failed" and views[-1]

    svc = wait_for(failed, 40)
    assert [row["failures"] for row in crash_rows(svc)] == [3], svc
    assert "exited with code 3" in crash_rows(svc)[0]["message"]
    assert sum(e.action == "die" for e in engine_events(engines, "crashy", since)) == 3
    assert any(a["reason"] == "backing off after failures" for v in views for a in v["plan"]), \
        "no view showed the slot waiting"

    # A good command: the replacement waits out the back-off, then runs.
    r = api("PATCH", "/service/crashy", {"command": []})
    assert r.status_code == 200, r.text
    assert api("GET", "/service/crashy").json()["status"] == "failed", "failed until a replacement ran 10 s"
    wait_for(lambda: (lambda v: v["status"] == "running" and "backoff" not in v)(
        api("GET", "/service/crashy").json()), 30)

    runs = lives(engine_events(engines, "crashy", since))
    assert [code for _, _, code in runs] == ["3", "3", "3", None], runs   # the last one still runs
    for (_, died, _), (started, _, _) in zip(runs, runs[1:]):
        assert started > died, "two containers of one slot at once"
    waits = [after[0] - before[1] for before, after in zip(runs, runs[1:])]
    # The back-off's floors after the 2nd and 3rd crash in a row (2 s, 4 s): a
    # slow machine only lengthens a wait, so these hold however loaded it is
    # (a strict "each longer than the last" failed when a wait ran late).
    assert waits[1] >= 2.0 and waits[2] >= 4.0, f"waits shorter than the back-off: {waits}"
    assert waits[1] >= 2 and waits[2] >= 4, f"retried before the back-off ended: {waits}"


def test_drain_moves_everything_away_without_losing_replicas(engines):
    """Draining moves every container start-first (every slot runs at every
    sample of the engines); the drained node then takes no new work until
    it is activated."""
    create("web", 6)
    with Sampler(lambda: len(running_slots(listing(engines, "web"))), every=0.05) as low:
        r = api("POST", "/nodes/node3/drain")
        assert r.status_code == 200, r.text
        assert r.json()["availability"] == "drain"
    assert min(low.samples) == 6, "fewer running replicas than desired during the drain"
    assert engines.containers(running_only=False)["node3"] == []
    wait_for(lambda: healed_on(engines, "web", 6, {"node1", "node2"}), 20)

    # A drained node takes no new work, and keeps that across a restart of the master.
    assert api("PATCH", "/service/web", {"replicas": 8}).status_code == 200
    assert engines.counts("web")["node3"] == 0
    r = api("POST", "/nodes/node3/activate")
    assert r.status_code == 200 and r.json()["availability"] == "active"
    wait_for(lambda: healed(engines, "web", 8), 30)


def healed_on(engines, service, replicas, nodes):
    return running_on(engines, service, nodes) == {s: 1 for s in range(1, replicas + 1)}


def test_drain_survives_a_master_restart(master, engines):
    try:
        assert api("POST", "/nodes/node1/drain").status_code == 200
        master.stop()
        master.start()
        wait_for(lambda: all(n["status"] == "ready" for n in api("GET", "/state").json()["nodes"]), 20)
        node1 = next(n for n in api("GET", "/nodes").json() if n["name"] == "node1")
        assert node1["availability"] == "drain"
        create("web", 4)
        assert engines.counts("web")["node1"] == 0
    finally:
        api("POST", "/nodes/node1/activate")


def test_unlabelled_containers_are_never_touched(engines):
    client = engines.clients["node1"]
    stranger = client.containers.run("bicycle/demo:1", detach=True, name="not-bicycles")
    try:
        create("web", 3)
        api("DELETE", "/service/web")
        stranger.reload()
        assert stranger.status == "running"
    finally:
        stranger.remove(force=True)


def test_orphan_labelled_containers_are_removed(engines):
    client = engines.clients["node2"]
    orphan = client.containers.run("bicycle/demo:1", detach=True, name="ghost.1.abcdef",
                                   labels={"bicycle.service": "ghost", "bicycle.slot": "1"})
    wait_for(lambda: not engines.containers("ghost", running_only=False)["node2"], 20)
    assert orphan.id not in {c.id for c in client.containers.list(all=True)}
