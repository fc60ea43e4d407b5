"""`bicycle.py node doctor` against the real sandbox: a healthy node passes
every check; a stopped engine, an image no node has and a node whose PATH
lacks flock are failures with their fix, and the command exits 1. Checked
against what the engines say."""
import os
import signal

import pytest

from conftest import SANDBOX, api, wait_for
from sandbox import cluster
from test_cli_flows import cli, ok
from test_heal import pids, repair

pytestmark = pytest.mark.usefixtures("clean")


def rows(stdout):
    """(node, check) -> (result, rest of the line) of the doctor table."""
    out = {}
    for line in stdout.splitlines()[1:]:
        node, rest = line.split(None, 1)
        check = next(c for c in ("host key", "docker access", "~/.bicycle", "ssh", "engine", "flock", "disk",
                                 "clock", "images") if rest.startswith(c))
        result, _, detail = rest[len(check):].strip().partition(" ")
        out[node, check] = (result, detail.strip())
    return out


def test_healthy_nodes_pass_every_check(engines):
    table = rows(ok(cli("node", "doctor")))
    assert {node for node, _ in table} == {"node1", "node2", "node3"}
    assert len(table) == 27 and {result for result, _ in table.values()} == {"pass"}, table
    version = engines.clients["node2"].version()["Version"]
    assert table["node2", "engine"][1].startswith(f"Docker Engine {version}")


def test_a_stopped_engine_and_a_missing_image_fail_with_their_fix(engines):
    r = api("POST", "/service", {"name": "ghost", "image": "bicycle/absent:1", "replicas": 1},
            params={"wait": "false"})
    assert r.status_code in (201, 202), r.text
    assert not any(engines.clients["node1"].images.list(name="bicycle/absent"))
    _, dockerd = pids("node2")
    os.kill(dockerd, signal.SIGTERM)
    try:
        wait_for(lambda: pids("node2")[1] is None, 30)
        r = cli("node", "doctor", "node2")
        assert r.returncode == 1 and "1 node(s) need care: node2" in r.stderr, (r.stdout, r.stderr)
        table = rows(r.stdout)
        assert table["node2", "engine"][0] == "FAIL" and "start the engine" in table["node2", "engine"][1]
        assert table["node2", "ssh"][0] == "pass" and table["node2", "flock"][0] == "pass"
    finally:
        repair()
    r = cli("node", "doctor", "node1")
    assert r.returncode == 1
    result, detail = rows(r.stdout)["node1", "images"]
    assert result == "FAIL" and "missing: bicycle/absent:1" in detail, detail


def test_a_missing_flock_fails_with_its_fix(sandbox):
    bare = cluster.without("flock", os.path.join(SANDBOX, "bin-without-flock"))
    cluster.set_path(SANDBOX, 3, bare)
    try:
        r = wait_for(lambda: (lambda r: r if r.returncode == 1 else None)(cli("node", "doctor", "node3")), 30)
    finally:
        cluster.set_path(SANDBOX, 3, None)
    table = rows(r.stdout)
    assert table["node3", "flock"][0] == "FAIL" and "util-linux" in table["node3", "flock"][1], table
    assert {check for (node, check), (result, _) in table.items() if result == "FAIL"} == {"flock"}
    wait_for(lambda: cli("node", "doctor", "node3").returncode == 0, 30)
