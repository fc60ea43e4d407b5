"""README claims about the command line and the API's waits that no other
file checks: an expired `?timeout`, `--no-wait`, `service update`, `node drain`
and `node activate`, `status --json`, `events -f`, `logs --since`, `sandbox
status` and `sandbox down`, and the per-master state file. What runs is
checked on the engines themselves."""
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
from datetime import datetime

import pytest

from conftest import API, MASTER_BASE, ROOT, SANDBOX, SLOT, MasterProcess, api, port, wait_for
from sandbox import cluster
from sandbox.common import RUN_ROOT

pytestmark = pytest.mark.usefixtures("clean")

INVENTORY = os.path.join(SANDBOX, "inventory.yml")
NODES = ("node1", "node2", "node3")
# A command that cannot finish because its work is held back must not hang
# the test until the master's own converge_timeout (60 s): a guard, not a measure.
HANG = 30


def cli(*args, api_address=API, timeout=HANG):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", INVENTORY,
                           "--api", api_address, *args], capture_output=True, text=True, timeout=timeout)


def ok(r):
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


@pytest.fixture
def all_active():
    """Nodes drained by a test take work again afterwards, whatever happened."""
    yield
    for node in NODES:
        api("POST", f"/nodes/{node}/activate")


def drain_all():
    for node in NODES:
        r = api("POST", f"/nodes/{node}/drain")
        assert r.status_code == 200, r.text


def ids(engines, service):
    return {c.id for cs in engines.containers(service, running_only=False).values() for c in cs}


def spread(engines, service):
    """(slot -> running count, sorted per-node counts), from one listing."""
    every = engines.containers(service)
    slots = {}
    for cs in every.values():
        for c in cs:
            slot = int(c.labels["bicycle.slot"])
            slots[slot] = slots.get(slot, 0) + 1
    return slots, sorted(len(cs) for cs in every.values())


# -- the API's bounded wait --------------------------------------------------------

def test_expired_wait_answers_202_with_the_stored_service(engines, all_active):
    """README: POST /service answers 201 once converged, waiting at most
    ?timeout=S; master/api/ answers 202 with the service's state when the
    wait ends first. Every node is drained, so nothing can converge."""
    drain_all()
    r = api("POST", "/service", {"name": "late", "image": "bicycle/demo:1", "replicas": 2},
            params={"timeout": "0.5"}, timeout=HANG)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["name"], body["version"], body["state"], body["status"]) == ("late", 1, "NEW", "converging")
    assert body["replicas"] == {"desired": 2, "running": 0} and body["containers"] == []
    assert body["spec"]["image"] == "bicycle/demo:1"
    assert not any(engines.containers(running_only=False).values())
    # Still stored: listed, shown, and it converges once nodes take work again.
    assert [s["name"] for s in api("GET", "/service").json()] == ["late"]
    shown = api("GET", "/service/late")
    assert shown.status_code == 200 and shown.json()["spec"] == body["spec"]
    for node in NODES:
        assert api("POST", f"/nodes/{node}/activate").status_code == 200
    wait_for(lambda: spread(engines, "late") == ({1: 1, 2: 1}, [0, 1, 1]), 30)
    wait_for(lambda: api("GET", "/service/late").json()["status"] == "running", 10)


# -- --no-wait ---------------------------------------------------------------------

UNPLACED = "service flows v{}: converging, 0/{} running (no eligible node (every node is down, suspect or drained))\n"


def test_no_wait_commands_answer_before_the_work_which_still_happens(engines, all_active):
    """create, scale, node drain and rm with --no-wait print the state at the
    time of the answer and exit 0; the work is then seen on the engines. The
    create and the scale answer while every node is drained, so a command that
    waited could not have answered before the nodes were activated."""
    drain_all()
    # The answer says why nothing runs once a round has planned the service (it may not have yet).
    assert ok(cli("service", "create", "flows", "--image", "bicycle/demo:1", "--replicas", "2",
                  "--no-wait")) in {"service flows v1: converging, 0/2 running\n", UNPLACED.format(1, 2)}
    assert ok(cli("service", "scale", "flows", "3", "--no-wait")) in {
        "service flows v2: converging, 0/3 running\n", UNPLACED.format(2, 3)}
    assert not any(engines.containers(running_only=False).values())
    for node in NODES:
        assert ok(cli("node", "activate", node)) == f"node {node} active\n"
    wait_for(lambda: spread(engines, "flows") == ({1: 1, 2: 1, 3: 1}, [1, 1, 1]), 30)
    wait_for(lambda: api("GET", "/service/flows").json()["status"] == "running", 10)

    # Start-first: the answer comes while node1 still holds its container.
    assert ok(cli("node", "drain", "node1", "--no-wait")) == \
        "node node1 drained (still moving containers, 1 containers left)\n"
    wait_for(lambda: not engines.containers("flows", running_only=False)["node1"]
             and spread(engines, "flows")[0] == {1: 1, 2: 1, 3: 1}, 30)

    assert ok(cli("service", "rm", "flows", "--no-wait")) == "service flows is being deleted\n"
    wait_for(lambda: not ids(engines, "flows"), 30)
    wait_for(lambda: api("GET", "/service/flows").status_code == 404, 10)


# -- update, drain, activate -------------------------------------------------------

def test_update_image_runs_demo_2_in_every_container(engines):
    ok(cli("service", "create", "upd", "--image", "bicycle/demo:1", "--replicas", "3", "--monitor", "1"))
    before = ids(engines, "upd")
    assert len(before) == 3
    assert ok(cli("service", "update", "upd", "--image", "bicycle/demo:2")).startswith(
        "service upd v2: running, 3/3 running\n")
    every = [c for cs in engines.containers("upd", running_only=False).values() for c in cs]
    assert sorted((int(c.labels["bicycle.slot"]), c.status, c.attrs["Config"]["Image"]) for c in every) == \
        [(slot, "running", "bicycle/demo:2") for slot in (1, 2, 3)]
    assert not before & {c.id for c in every}
    assert spread(engines, "upd")[1] == [1, 1, 1]


def test_drain_empties_the_node_and_activate_gives_work_back(engines, all_active):
    ok(cli("service", "create", "dr", "--image", "bicycle/demo:1", "--replicas", "3"))
    assert spread(engines, "dr") == ({1: 1, 2: 1, 3: 1}, [1, 1, 1])
    assert ok(cli("node", "drain", "node2")) == "node node2 drained (empty, 0 containers left)\n"
    assert engines.containers("dr", running_only=False)["node2"] == []
    assert spread(engines, "dr") == ({1: 1, 2: 1, 3: 1}, [0, 1, 2])
    assert "drain" in next(line for line in ok(cli("node", "ls")).splitlines() if line.startswith("node2"))
    # A drained node takes no new work: a scale-up goes to the others.
    ok(cli("service", "scale", "dr", "4"))
    assert engines.containers("dr", running_only=False)["node2"] == []
    assert ok(cli("node", "activate", "node2")) == "node node2 active\n"
    wait_for(lambda: spread(engines, "dr") == ({1: 1, 2: 1, 3: 1, 4: 1}, [1, 1, 2])
             and len(engines.containers("dr")["node2"]) >= 1, 30)


# -- status --json -----------------------------------------------------------------

def test_status_json_is_the_state_document(engines):
    api("POST", "/service", {"name": "js", "image": "bicycle/demo:1", "replicas": 3}).raise_for_status()
    # Until a node's next listing, a new container's times are the master's
    # estimate (when docker run returned): wait for the engines' own, which stay.
    created = {c.id[:12]: (c.attrs["Created"], c.attrs["State"]["StartedAt"])
               for cs in engines.containers("js").values() for c in cs}
    wait_for(lambda: {c["id"]: (c["created_at"], c["started_at"]) for c in api("GET", "/state").json()["containers"]}
             == created, 10)
    doc = json.loads(ok(cli("status", "--json")))
    state = api("GET", "/state").json()
    assert doc.keys() == state.keys()
    assert {k: doc["master"][k] for k in ("name", "pid", "api", "started_at", "role", "epoch")} == \
        {k: state["master"][k] for k in ("name", "pid", "api", "started_at", "role", "epoch")}
    assert doc["leader"] == state["leader"]

    def nodes(d):
        return [(n["name"], n["status"], n["availability"], n["containers"]) for n in d["nodes"]]

    def containers(d):
        return sorted((c["id"], c["name"], c["service"], c["slot"], c["node"], c["image"], c["status"],
                       c["created_at"], c["started_at"]) for c in d["containers"])

    assert nodes(doc) == nodes(state) == [(n, "ready", "active", 1) for n in NODES]
    assert doc["services"] == state["services"]
    assert [(s["name"], s["replicas"]) for s in doc["services"]] == [("js", {"desired": 3, "running": 3})]
    assert containers(doc) == containers(state)
    on_engines = sorted((c.id[:12], c.name, node) for node, cs in engines.containers("js").items() for c in cs)
    assert sorted((c["id"], c["name"], c["node"]) for c in doc["containers"]) == on_engines
    assert len(on_engines) == 3


# -- events -f ---------------------------------------------------------------------

def test_events_follow_prints_new_events_until_stopped():
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", INVENTORY, "--api", API,
                             "events", "-f", "--limit", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: lines, HANG)            # the most recent event: the command is past its first read
        r = api("POST", "/service", {"name": "evt", "image": "bicycle/demo:1", "replicas": 1},
                params={"wait": "false"})
        assert r.status_code == 202, r.text
        wait_for(lambda: any(" created " in line and "service evt v1: 1 x bicycle/demo:1" in line
                             for line in lines), HANG)
        assert api("DELETE", "/service/evt", params={"wait": "false"}).status_code == 202
        wait_for(lambda: any(" deleting " in line and "service evt marked for deletion" in line
                             for line in lines), HANG)
        assert proc.poll() is None, "events -f ended by itself"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
    assert proc.stderr.read() == ""


# -- logs --since ------------------------------------------------------------------

TICKER = ["sh", "-c", "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"]


def ticks(text):
    """[(time, n)] of `ticker.1@NODE | TIME tick-N` lines; every line must be one."""
    out = []
    for line in text.splitlines():
        head, _, rest = line.partition(" | ")
        stamp, _, word = rest.partition(" ")
        assert head.startswith("ticker.1@node") and word.startswith("tick-"), line
        out.append((datetime.fromisoformat(stamp.replace("Z", "+00:00")), int(word[5:])))
    return out


def test_logs_since_leaves_out_earlier_lines():
    api("POST", "/service", {"name": "ticker", "image": "bicycle/demo:1", "replicas": 1,
                             "command": TICKER}).raise_for_status()
    full = wait_for(lambda: (lambda t: t if len(t) >= 5 else None)(ticks(ok(cli("logs", "ticker", "--tail", "all",
                                                                               "-t")))), 30)
    assert [n for _, n in full] == list(range(len(full)))
    # T halfway between the engine's own times of tick-1 and tick-2.
    cut = full[1][0] + (full[2][0] - full[1][0]) / 2
    for since in (f"{cut.timestamp():.6f}", cut.strftime("%Y-%m-%dT%H:%M:%S.%fZ")):
        after = ticks(ok(cli("logs", "ticker", "--since", since, "--tail", "all", "-t")))
        assert [n for _, n in after] == list(range(2, 2 + len(after))), since
        assert len(after) >= len(full) - 2 and all(t > cut for t, _ in after)
    # Without timestamps too: the same filter, plain lines.
    plain = ok(cli("logs", "ticker", "--since", f"{cut.timestamp():.6f}", "--tail", "all")).splitlines()
    assert [line.split(" | ", 1)[1] for line in plain][:3] == ["tick-2", "tick-3", "tick-4"]


# -- sandbox status / down ---------------------------------------------------------

THROWAWAY = os.path.join(ROOT, f".sandbox-flows{SLOT}")
THROWAWAY_BASE = 245            # node 1 on 127.0.0.246: no other sandbox of the tests uses it


def sandbox_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "sandbox", *args],
                          capture_output=True, text=True, timeout=120)


def status_rows(text):
    return [line.split() for line in text.splitlines()[1:] if line.strip() and not set(line) <= {"-", " "}]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def listens(address):
    try:
        socket.create_connection((address, 22), timeout=2).close()
        return True
    except OSError:
        return False


def test_sandbox_status_and_down(engines):
    rows = {r["name"]: r for r in cluster.status(SANDBOX)}
    shown = status_rows(ok(sandbox_cli("status", "--dir", SANDBOX)))
    assert [(r[0], r[1], r[3], r[4], r[5], r[6]) for r in shown] == \
        [(n, rows[n]["address"], "running", f"({rows[n]['sshd_pid']})", "running", f"({rows[n]['dockerd_pid']})")
         for n in NODES]
    assert [int(r[7]) for r in shown] == [len(engines.containers(running_only=False)[n]) for n in NODES]

    if cluster.status(THROWAWAY):       # left by an interrupted run
        cluster.down(THROWAWAY, log=lambda *a: None)
    try:
        cluster.up(THROWAWAY, nodes=1, base=THROWAWAY_BASE, api="127.0.0.1:1", log=lambda *a: None)
        (row,) = cluster.status(THROWAWAY)
        address, sshd, dockerd = row["address"], row["sshd_pid"], row["dockerd_pid"]
        assert alive(sshd) and alive(dockerd) and listens(address)
        (shown,) = status_rows(ok(sandbox_cli("status", "--dir", THROWAWAY)))
        assert shown[:7] == ["node1", address, f"bicycle{THROWAWAY_BASE + 1}", "running", f"({sshd})",
                             "running", f"({dockerd})"]

        assert ok(sandbox_cli("down", "--dir", THROWAWAY)).splitlines()[-1] == "sandbox removed"
        assert not os.path.exists(THROWAWAY)
        assert not os.path.exists(os.path.join(RUN_ROOT, str(THROWAWAY_BASE + 1)))
        assert not alive(sshd) and not alive(dockerd) and not listens(address)
        with pytest.raises(KeyError):
            pwd.getpwnam(f"bicycle{THROWAWAY_BASE + 1}")
        link = subprocess.run(["ip", "link", "show", f"bicy{THROWAWAY_BASE + 1}"], capture_output=True)
        assert link.returncode != 0
        r = sandbox_cli("status", "--dir", THROWAWAY)
        assert r.returncode != 0 and "no sandbox in" in r.stderr
    finally:
        if os.path.exists(THROWAWAY):
            cluster.down(THROWAWAY, log=lambda *a: None)
    # The slot's own sandbox is untouched.
    assert [(r["sshd_pid"], r["dockerd_pid"]) for r in cluster.status(SANDBOX)] == \
        [(rows[n]["sshd_pid"], rows[n]["dockerd_pid"]) for n in NODES]


# -- a second master's own state file ----------------------------------------------

def test_second_master_keeps_state_m2_json_beside_the_inventory(master, engines, tmp_path):
    """README: with more than one master each keeps its own state file
    (state.m2.json beside state.json for master m2). m2 joins the session's
    master m1 as a standby, so m1 keeps leading."""
    m2_api = f"127.0.0.{MASTER_BASE + 2}:{port(7182)}"
    text = open(INVENTORY).read()
    m1 = f"  - name: m1\n    api: {API}\n"
    assert m1 in text and "state_file: state.json" in text
    inventory = os.path.join(SANDBOX, "inventory-m2.yml")
    mine = os.path.join(SANDBOX, "state.m2.json")
    for path in (mine, os.path.join(SANDBOX, "state.m1.json")):
        if os.path.exists(path):
            os.remove(path)
    with open(inventory, "w") as f:
        f.write(text.replace(m1, m1 + f"  - name: m2\n    api: {m2_api}\n"))
    m2 = MasterProcess(inventory, str(tmp_path / "m2.log"), name="m2", api=m2_api)
    try:
        m2.start(role="standby")
        # A write through m2 reaches m1 (307); m2 follows the replicated state into its own file.
        ok(cli("service", "create", "two", "--image", "bicycle/demo:1", api_address=m2_api))
        assert sum(engines.counts("two").values()) == 1

        def stored():
            try:
                with open(mine) as f:
                    return {s["name"] for s in json.load(f).get("services", {}).values()}
            except (OSError, ValueError):
                return None

        wait_for(lambda: stored() == {"two"}, 20)
        assert os.stat(mine).st_mode & 0o777 == 0o600
        assert not os.path.exists(os.path.join(SANDBOX, "state.m1.json"))
        with open(os.path.join(SANDBOX, "state.json")) as f:
            assert {s["name"] for s in json.load(f)["services"].values()} == {"two"}
        state = api("GET", "/state").json()
        assert state["master"]["name"] == "m1" and state["master"]["role"] == "leader"
        assert m2.role() == "standby"
    finally:
        m2.stop()
        for path in (inventory, mine):
            if os.path.exists(path):
                os.remove(path)
