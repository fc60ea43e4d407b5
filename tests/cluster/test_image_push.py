"""`bicycle.py image push` against the real sandbox: a fresh image on node1's
engine (the "local" engine here, through DOCKER_HOST) is loaded into node2
and node3 over SSH; node1, which has it, is skipped; a `pull: never` service
then runs on every node; a second push loads nothing (the engines' own
`load` events show it); `pull: never` on a node without the image fails
with a message naming the node. Checked on the engines themselves."""
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, SANDBOX, api, wait_for
from sandbox import cluster
from test_cli_flows import INVENTORY, ok

pytestmark = pytest.mark.usefixtures("clean")


def push(*args, docker_host):
    env = dict(os.environ, DOCKER_HOST=docker_host)
    return subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", INVENTORY, "image", "push",
                           *args], capture_output=True, text=True, timeout=120, env=env)


def loads(engines, since):
    """node -> number of image `load` events its engine saw since `since` (seconds)."""
    return {node: len(list(client.events(since=since, until=time.time() + 0.2, decode=True,
                                         filters={"type": "image", "event": "load"})))
            for node, client in engines.clients.items()}


@pytest.fixture
def fresh(engines):
    """A new image on node1's engine only (a commit of the demo image with a
    label of its own), removed from every engine afterwards."""
    tag = f"bicycle/pushed:{uuid.uuid4().hex[:8]}"
    source = engines.clients["node1"]
    container = source.containers.create("bicycle/demo:1")
    try:
        image = container.commit(*tag.split(":"), changes=[f"LABEL bicycle.test.push={tag}"])
    finally:
        container.remove()
    yield tag, image.id
    api("DELETE", f"/service/never")
    wait_for(lambda: not any(engines.containers("never", running_only=False).values()), 30)
    for client in engines.clients.values():
        try:
            client.images.remove(tag, force=True)
        except Exception:
            pass


def test_push_loads_where_missing_then_a_pull_never_service_runs_everywhere(engines, fresh):
    tag, image_id = fresh
    sockets = cluster.engines(SANDBOX)
    assert [n for n, c in engines.clients.items() if c.images.list(name=tag.split(":")[0])] == ["node1"]
    since = time.time()
    out = ok(push(tag, docker_host=sockets["node1"]))
    assert "node1: already has it, nothing sent" in out, out
    for node in ("node2", "node3"):
        assert f"{node}: sent " in out, out
        assert engines.clients[node].images.get(tag).id == image_id
    assert loads(engines, since) == {"node1": 0, "node2": 1, "node3": 1}

    r = api("POST", "/service", {"name": "never", "image": tag, "replicas": 3, "pull": "never"})
    assert r.status_code == 201, r.text
    running = engines.containers("never")
    assert {node: len(cs) for node, cs in running.items()} == {"node1": 1, "node2": 1, "node3": 1}
    assert {c.image.id for cs in running.values() for c in cs} == {image_id}

    again = time.time()
    out = ok(push(tag, docker_host=sockets["node1"]))
    assert out.count("already has it, nothing sent") == 3, out
    assert loads(engines, again) == {"node1": 0, "node2": 0, "node3": 0}


def test_pull_never_without_the_image_names_the_node(engines, fresh):
    tag, _ = fresh
    r = api("POST", "/service", {"name": "never", "image": tag, "replicas": 3, "pull": "never"},
            params={"wait": "false"})
    assert r.status_code in (201, 202), r.text

    def said():
        rows = api("GET", "/service/never").json().get("backoff") or []
        return {row["slot"]: row["message"] for row in rows}
    wait_for(lambda: len(said()) == 2, 30)
    messages = " ".join(said().values())
    assert "is not on node2" in messages and "is not on node3" in messages, messages
    assert "bicycle.py image push" in messages
    # node1's placement runs beside the two that fail at once: it may land after them.
    expected = {"node1": 1, "node2": 0, "node3": 0}
    wait_for(lambda: {node: len(cs) for node, cs in engines.containers("never").items()} == expected, 30)
    assert {node: len(cs) for node, cs in engines.containers("never").items()} == expected


def test_push_of_an_image_the_local_engine_lacks_is_one_line_and_exit_1():
    r = push("bicycle/nowhere:1", docker_host=cluster.engines(SANDBOX)["node1"])
    assert r.returncode == 1 and r.stderr.strip() == \
        "bicycle: no image bicycle/nowhere:1 in the local engine: build or pull it here first", r.stderr
