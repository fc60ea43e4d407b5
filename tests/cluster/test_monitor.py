"""Logs, events, metrics (against the engines) and the dashboard (one page
load, watched over the DevTools protocol) against the real sandbox."""
import base64
import os
import queue
import signal
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from browser import RED, Browser, dashboard, row, status_colour
from conftest import API, BASE, NODE_BASE, ROOT, SANDBOX, api, http, wait_for
from sandbox import cluster

pytestmark = pytest.mark.usefixtures("clean")

TALKER = ["sh", "-c", 'echo "hello-$(hostname)"; i=0; while true; do i=$((i+1)); echo "tick-$i"; sleep 0.5; done']
OUT = os.path.join(ROOT, "tests", "out")


def talker(replicas=3):
    r = api("POST", "/service", {"name": "talker", "image": "bicycle/demo:1", "replicas": replicas,
                                 "command": TALKER})
    assert r.status_code == 201, r.text


def expected_hellos(engines):
    """prefix -> hello line, from what the engines run."""
    out = {}
    for node, cs in engines.containers("talker").items():
        for c in cs:
            out[f"talker.{c.labels['bicycle.slot']}@{node} |"] = f"hello-{c.id[:12]}"
    return out


def kill_node(name):
    row = next(r for r in cluster.status(SANDBOX) if r["name"] == name)
    os.kill(row["dockerd_pid"], signal.SIGKILL)
    os.kill(row["sshd_pid"], signal.SIGKILL)


def repair():
    cluster.up(SANDBOX, nodes=3, base=NODE_BASE, api=API, log=lambda *a: None)


def node_status(name):
    return next(n["status"] for n in api("GET", "/state").json()["nodes"] if n["name"] == name)


def test_logs_merge_every_container_with_its_prefix(engines):
    talker()
    hellos = expected_hellos(engines)
    assert len(hellos) == 3
    r = http.get(f"{BASE}/service/talker/logs", params={"tail": "all"}, timeout=30)
    assert r.status_code == 200
    lines = r.text.splitlines()
    for prefix, hello in hellos.items():
        assert f"{prefix} {hello}" in lines
    assert all(line.split(" |", 1)[0] + " |" in hellos for line in lines)
    # timestamps=1 puts the engine's time after the prefix, in order.
    stamped = http.get(f"{BASE}/service/talker/logs", params={"tail": "5", "timestamps": "1"}, timeout=30).text
    stamps = [line.split(" | ", 1)[1].split(" ", 1)[0] for line in stamped.splitlines()]
    assert stamps == sorted(stamps) and len(stamps) >= 6     # at least hello and one tick each
    # A node's logs: every Bicycle container on it.
    node = next(n for n, cs in engines.containers("talker").items() if cs)
    text = http.get(f"{BASE}/nodes/{node}/logs", params={"tail": "all"}, timeout=30).text
    assert all(f"@{node} |" in line for line in text.splitlines()) and "hello-" in text


def follow_lines(params, into, stop):
    with http.get(f"{BASE}/service/talker/logs", params=params, stream=True, timeout=(5, 30)) as r:
        for line in r.iter_lines(decode_unicode=True):
            into.put(line)
            if stop.is_set():
                return


def test_follow_delivers_new_lines_and_survives_a_replacement(engines):
    talker()
    lines, stop = queue.Queue(), threading.Event()
    reader = threading.Thread(target=follow_lines, args=({"follow": "1", "tail": "1"}, lines, stop), daemon=True)
    reader.start()
    try:
        seen = []

        def saw(predicate):
            while True:
                try:
                    line = lines.get(timeout=0.2)
                except queue.Empty:
                    return False
                seen.append(line)
                if predicate(line):
                    return True

        wait_for(lambda: saw(lambda line: "tick-" in line), 10)
        victim = next(c for cs in engines.containers("talker").values() for c in cs)
        victim.remove(force=True)
        wait_for(lambda: (lambda ids: len(ids) == 3 and victim.id not in ids)(
            [c.id for cs in engines.containers("talker").values() for c in cs]), 20)
        new_ids = {c.id[:12] for cs in engines.containers("talker").values() for c in cs} - {victim.id[:12]}
        wait_for(lambda: saw(lambda line: any(f"hello-{i}" in line for i in new_ids)), 20)
    finally:
        stop.set()


def test_logs_with_a_node_down_still_come_with_a_marker(engines):
    talker()
    kill_node("node2")
    try:
        wait_for(lambda: node_status("node2") == "down", 20)
        text = http.get(f"{BASE}/service/talker/logs", params={"tail": "all"}, timeout=30).text
        assert "# node2 unreachable" in text
        assert "hello-" in text
    finally:
        repair()
    wait_for(lambda: node_status("node2") == "ready", 20)


def test_events_record_a_node_going_down_and_coming_back_in_order(engines):
    since = max([e["id"] for e in api("GET", "/events?limit=1").json()] or [0])
    kill_node("node3")
    try:
        wait_for(lambda: node_status("node3") == "down", 20)
    finally:
        repair()
    wait_for(lambda: node_status("node3") == "ready", 20)
    def node3_messages():
        return [e["message"] for e in api("GET", f"/events?since={since}&limit=1000").json()
                if e.get("node") == "node3"]

    # The loop records a transition in its next round, at most a second after /state shows it.
    messages = wait_for(lambda: (lambda ms: ms if any("down -> ready" in m for m in ms) else None)(node3_messages()), 10)
    down = next(i for i, m in enumerate(messages) if m.endswith("-> down") or "-> down " in m)
    back = next(i for i, m in enumerate(messages) if "down -> ready" in m)
    assert down < back


def scrape():
    """sample name -> {label values: value} of one scrape."""
    out = {}
    for family in text_string_to_metric_families(http.get(f"{BASE}/metrics", timeout=10).text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sample.labels.values())] = sample.value
    return out


def test_metrics_match_the_engines(engines):
    """Gauges against what the engines run (not against /state: the same
    memory): running replicas follow a container killed on its engine, and
    every node whose engine answers is up."""
    r = api("POST", "/service", {"name": "talker", "image": "bicycle/demo:1", "replicas": 2,
                                 "command": TALKER, "restart": "never"})
    assert r.status_code == 201, r.text
    metrics = scrape()
    assert metrics["bicycle_service_replicas_desired"] == {("talker",): 2}
    assert metrics["bicycle_service_replicas_running"] == {("talker",): sum(engines.counts("talker").values())} \
        == {("talker",): 2}
    assert metrics["bicycle_node_up"] == {(node,): 1 for node, c in engines.clients.items() if c.ping()}
    assert metrics["bicycle_nodes"][("ready",)] == 3

    victim = next(c for cs in engines.containers("talker").values() for c in cs)
    victim.kill()           # on its engine, behind Bicycle's back; `never`: not replaced
    wait_for(lambda: scrape()["bicycle_service_replicas_running"] == {("talker",): 1}, 20)
    assert sum(engines.counts("talker").values()) == 1

    metrics = scrape()
    assert set(metrics["bicycle_ssh_command_seconds_count"]) == {(node,) for node in engines.clients}
    assert metrics["bicycle_reconcile_seconds_count"][()] > 0
    assert metrics["bicycle_api_requests_total"]

def test_dashboard_refreshes_in_place_shows_logs_and_colours_a_down_node(engines, tmp_path):
    """Loaded once: a scale, the logs of a service and a node going down all
    show in the same page (no reload: a mark set in the page stays)."""
    talker(3)
    with Browser(tmp_path / "profile") as browser:
        dashboard(browser)
        wait_for(lambda: (row(browser, "services", "service", "talker") or [None] * 4)[2:4] == ["3/3", "running"], 20)
        assert [row(browser, "nodes", "node", f"node{i}")[2] for i in (1, 2, 3)] == ["ready"] * 3
        browser.js("window.mark = 'the page loaded once'")

        api("PATCH", "/service/talker", {"replicas": 2}).raise_for_status()
        wait_for(lambda: row(browser, "services", "service", "talker")[2] == "2/2", 20)
        # The removed container leaves the table once the node's listing no longer has it.
        wait_for(lambda: browser.js("document.querySelectorAll('#containers tbody tr').length") == 2, 20)
        assert sum(engines.counts("talker").values()) == 2

        browser.js("""document.querySelector('#services tr[data-service="talker"] button').click()""")
        logs = wait_for(lambda: (lambda t: "tick-" in t and t)(browser.js("document.getElementById('logs').textContent")), 20)
        for prefix, hello in expected_hellos(engines).items():
            assert f"{prefix} {hello}" in logs

        kill_node("node1")
        try:
            wait_for(lambda: row(browser, "nodes", "node", "node1")[2] == "down", 20)
            assert status_colour(browser, "node1") == RED and status_colour(browser, "node2") != RED
            assert browser.js("window.mark") == "the page loaded once"
            os.makedirs(OUT, exist_ok=True)
            with open(os.path.join(OUT, "dashboard.png"), "wb") as f:
                f.write(base64.b64decode(browser.call("Page.captureScreenshot")["data"]))
        finally:
            repair()
    wait_for(lambda: node_status("node1") == "ready", 20)


def test_bad_log_queries_are_refused_in_json(engines):
    talker(1)
    for params in ({"since": "$(touch /tmp/pwned)"}, {"tail": "-1"}, {"tail": "many"}, {"follow": "perhaps"}):
        r = http.get(f"{BASE}/service/talker/logs", params=params, timeout=10)
        assert r.status_code == 400 and r.json()["message"], params
    assert http.get(f"{BASE}/service/nope/logs", timeout=10).status_code == 404
    assert http.get(f"{BASE}/nodes/nope/stats", timeout=10).status_code == 404
    stats = http.get(f"{BASE}/service/talker/stats", timeout=30).json()
    assert [row["service"] for row in stats["containers"]] == ["talker"]
    assert stats["containers"][0]["memory_bytes"] > 0
