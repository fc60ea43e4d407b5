"""The command line against the real master: tables, exit codes, one-line errors."""
import os
import subprocess
import sys

import pytest

from conftest import API, ROOT, SANDBOX

pytestmark = pytest.mark.usefixtures("clean")


def cli(*args, api=API, env=None):
    """bicycle.py with the sandbox's inventory; env: variables added to this process's environment."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"),
                           "-i", os.path.join(SANDBOX, "inventory.yml"), "--api", api, *args],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, **(env or {})))


def test_create_status_scale_rm(engines):
    r = cli("service", "create", "cli-web", "--image", "bicycle/demo:1", "--replicas", "4",
            "--env", "GREETING=hello world")
    assert r.returncode == 0, r.stderr
    assert "cli-web v1: running, 4/4 running" in r.stdout
    assert sum(engines.counts("cli-web").values()) == 4
    env = next(c for cs in engines.containers("cli-web").values() for c in cs).attrs["Config"]["Env"]
    assert "GREETING=hello world" in env

    r = cli("status")
    assert r.returncode == 0, r.stderr
    for word in ("leader: m1", "NODE", "node1", "ready", "SERVICE", "cli-web", "4/4", "CONTAINER", "UPTIME"):
        assert word in r.stdout

    r = cli("service", "scale", "cli-web", "1")
    assert r.returncode == 0 and sum(engines.counts("cli-web").values()) == 1
    r = cli("service", "rm", "cli-web")
    assert r.returncode == 0 and sum(engines.counts("cli-web").values()) == 0


def test_bad_input_is_one_line_and_nonzero():
    r = cli("service", "create", "bad;name", "--image", "bicycle/demo:1")
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "name" in r.stderr


def test_no_master_says_so_in_one_line():
    r = cli("status", api="127.0.0.1:1")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no master answers" in lines[0]


def test_logs_events_top_and_node_ls(engines):
    r = cli("service", "create", "cli-logs", "--image", "bicycle/demo:1", "--replicas", "2",
            "--cmd", "sh -c 'echo started-$(hostname); exec sleep 600'")
    assert r.returncode == 0, r.stderr
    ids = {c.id[:12] for cs in engines.containers("cli-logs").values() for c in cs}
    r = cli("logs", "cli-logs", "--tail", "all")
    assert r.returncode == 0, r.stderr
    assert {f"started-{i}" for i in ids} <= {line.split(" | ", 1)[1] for line in r.stdout.splitlines()}
    assert all(line.startswith("cli-logs.") and "@node" in line for line in r.stdout.splitlines())
    r = cli("events", "--limit", "20")
    assert r.returncode == 0 and "placed" in r.stdout and "cli-logs" in r.stdout
    r = cli("top", "cli-logs")
    assert r.returncode == 0 and "CPU %" in r.stdout and r.stdout.count("cli-logs.") == 2
    r = cli("node", "ls")
    assert r.returncode == 0 and "node1" in r.stdout and "active" in r.stdout
