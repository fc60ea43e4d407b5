"""What Bicycle says when the engines fail: the engine's own words, and node
errors told as node lines, never as a container's output."""
import os
import signal
import subprocess
import sys

import pytest

from conftest import API, NODE_BASE, ROOT, SANDBOX, api, wait_for
from sandbox import cluster

pytestmark = pytest.mark.usefixtures("clean")


def test_a_missing_image_shows_the_engine_s_words_everywhere():
    r = api("POST", "/service?wait=false", {"name": "ghost", "image": "bicycle/missing:1", "replicas": 1})
    assert r.status_code == 202, r.text

    def failed_with_a_reason():
        view = api("GET", "/service/ghost").json()
        return view if view.get("backoff") and view.get("error") else None

    view = wait_for(failed_with_a_reason, 60)
    assert "Unable to find image 'bicycle/missing:1'" in view["error"], view["error"]
    assert "docker run --help" not in view["error"]
    assert all("Unable to find image" in row["message"] for row in view["backoff"])
    failed = [e for e in api("GET", "/events?limit=200").json() if e["kind"] == "failed" and
              e.get("service") == "ghost"]
    assert failed and all("Unable to find image" in e["message"] and "--help" not in e["message"] for e in failed)


def test_logs_right_after_an_engine_died_say_so_as_a_node_line():
    r = api("POST", "/service", {"name": "talk", "image": "bicycle/demo:1", "replicas": 3,
                                 "command": ["sh", "-c", "echo hello from $HOSTNAME; sleep 3600"]})
    assert r.status_code == 201, r.text
    victim = next(c for c in api("GET", "/service/talk").json()["containers"])["node"]
    pid = next(row["dockerd_pid"] for row in cluster.status(SANDBOX) if row["name"] == victim)
    os.kill(pid, signal.SIGKILL)
    try:
        out = subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i",
                              os.path.join(SANDBOX, "inventory.yml"), "--api", API, "logs", "talk"],
                             capture_output=True, text=True, timeout=60).stdout
    finally:
        cluster.up(SANDBOX, nodes=3, base=NODE_BASE, api=API, log=lambda *a: None)
    lines = out.splitlines()
    assert any(line.startswith(f"# {victim}") for line in lines), out
    assert not any(f"@{victim} |" in line and "docker" in line.lower() for line in lines), out
    assert sum(1 for line in lines if "hello from" in line) >= 2, out       # the other nodes' lines


def test_a_write_to_a_master_still_starting_waits_for_its_election(master, engines):
    """Right after `up`, before its first look at the leases, a master used to
    answer 503 'no lease read yet' although it leads a moment later."""
    master.stop()
    master.start(role=None)                   # /health answers: it may still be `starting`
    r = api("POST", "/service?wait=false", {"name": "early", "image": "bicycle/demo:1", "replicas": 1})
    assert r.status_code == 202, r.text
    wait_for(lambda: api("GET", "/service/early").json()["status"] == "running", 60)
    assert sum(len(cs) for cs in engines.containers("early").values()) == 1
