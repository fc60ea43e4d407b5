"""Node lifecycle against the real sandbox: a 4th node started with
`sandbox up --nodes 4` joins a running master through `node add`, takes its
share (12 one-replica services and a 12-replica service: 3/3/3/3 on the
engines), is relabelled (only its labels line changes), leaves again through `node rm` (drained start-first: never fewer
running than desired) and the inventory file changes by exactly its entry
each way. A wrong fingerprint is refused with nothing written and nothing
run on the node.

The module runs its own master on a copy of the sandbox's 3-node inventory
(own state file, own known_hosts); the session's master pauses meanwhile,
and the sandbox is put back to 3 nodes at the end."""
import difflib
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import API, NODE_BASE, ROOT, SANDBOX, Engines, MasterProcess, api, remove_all, wait_for
from sampling import Sampler, running_per_node, running_services
from sandbox import cluster
from test_heal import create

NODE4 = f"127.0.0.{NODE_BASE + 4}"
EVERY = 0.1
# The "install" of the engine on a node whose PATH lacks docker: a link in ~/bin, which that PATH has first.
BOOTSTRAP = """  bootstrap: 'mkdir -p "$HOME/bin" && ln -sf /usr/bin/docker "$HOME/bin/docker"'\n"""


@pytest.fixture(scope="module")
def members(sandbox, master, tmp_path_factory):
    """(inventory path, its text as written, engines of the 4 nodes)."""
    master.stop()
    path = os.path.join(SANDBOX, "members.yml")
    text = open(sandbox).read().replace("state_file: state.json", "state_file: members-state.json") \
        .replace("known_hosts: known_hosts", "known_hosts: members-known_hosts") + BOOTSTRAP
    with open(path, "w") as f:
        f.write(text)
    shutil.copy(os.path.join(SANDBOX, "known_hosts"), os.path.join(SANDBOX, "members-known_hosts"))
    for old in ("members-state.json",):
        if os.path.exists(os.path.join(SANDBOX, old)):
            os.remove(os.path.join(SANDBOX, old))
    own = MasterProcess(path, str(tmp_path_factory.mktemp("members") / "master.log"))
    own.start()
    cluster.up(SANDBOX, nodes=4, base=NODE_BASE, api=API, log=lambda *a: None)
    engines = Engines(cluster.engines(SANDBOX))
    try:
        yield path, text, engines
    finally:
        own.stop()
        cluster.up(SANDBOX, nodes=3, base=NODE_BASE, api=API, log=lambda *a: None)
        master.start()
        remove_all(Engines(cluster.engines(SANDBOX)))


def cli(path, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", path, "--api", API, *args],
                          capture_output=True, text=True, timeout=120)


def node4_home():
    return cluster.load(SANDBOX).node(4).home


def changes(before, after):
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return [(tag, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in
            difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if tag != "equal"]


def added_lines(before, after):
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    ops = [op for op in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if op[0] != "equal"]
    assert len(ops) == 1 and ops[0][0] == "insert", ops
    return b[ops[0][3]:ops[0][4]]


def add_args(*extra):
    return ("node", "add", "node4", "--host", NODE4, "--user", f"bicycle{NODE_BASE + 4}", "--key", "id_ed25519",
            *extra)


def test_a_wrong_fingerprint_is_refused_and_nothing_is_written_or_run(members):
    path, text, _ = members
    known = open(os.path.join(SANDBOX, "members-known_hosts")).read()
    r = cli(path, *add_args("--fingerprint", "SHA256:" + "A" * 43))
    assert r.returncode == 1 and "not SHA256:" + "A" * 43 in r.stderr and "nothing pinned" in r.stderr, r.stderr
    assert open(path).read() == text
    assert open(os.path.join(SANDBOX, "members-known_hosts")).read() == known
    assert not os.path.exists(os.path.join(node4_home(), ".bicycle"))
    assert [n["name"] for n in api("GET", "/nodes").json()] == ["node1", "node2", "node3"]


def test_an_added_node_gets_its_share_then_leaves_start_first(members):
    path, text, engines = members
    names = [f"one{i:02d}" for i in range(12)]
    for name in names:
        create(name, 1)
    assert sorted(running_per_node(engines).values()) == [0, 4, 4, 4]

    r = cli(path, *add_args("--trust", "--label", "zone=b"))
    assert r.returncode == 0, r.stderr
    entry = added_lines(text, open(path).read())
    assert entry == ["  - name: node4\n", f"    host: {NODE4}\n", "    port: 22\n",
                     f"    user: bicycle{NODE_BASE + 4}\n", "    key: id_ed25519\n", "    labels: {zone: b}\n"]
    assert NODE4 in open(os.path.join(SANDBOX, "members-known_hosts")).read()
    wait_for(lambda: running_per_node(engines) == {f"node{i}": 3 for i in (1, 2, 3, 4)}
             and running_services(engines) == {n: 1 for n in names}, 60)

    create("web", 12)
    assert {n: len(cs) for n, cs in engines.containers("web").items()} == {f"node{i}": 3 for i in (1, 2, 3, 4)}

    with_entry = open(path).read()
    r = cli(path, "node", "label", "node4", "zone-", "disk=ssd")
    assert r.returncode == 0 and "disk=ssd" in r.stdout, r.stderr
    assert changes(with_entry, open(path).read()) == [("replace", ["    labels: {zone: b}\n"],
                                                       ["    labels: {disk: ssd}\n"])]
    assert next(n for n in api("GET", "/nodes").json() if n["name"] == "node4")["labels"] == {"disk": "ssd"}

    with Sampler(lambda: running_services(engines), every=EVERY) as watch:
        r = cli(path, "node", "rm", "node4")
        assert r.returncode == 0, r.stderr
    assert len(watch.samples) >= 3, len(watch.samples)
    short = [s for s in watch.samples if s["web"] < 12 or any(s[n] < 1 for n in names)]
    assert not short, f"{len(short)} of {len(watch.samples)} samples ran fewer than desired: {short[0]}"
    assert open(path).read() == text
    assert running_per_node(engines)["node4"] == 0
    assert [n["name"] for n in api("GET", "/nodes").json()] == ["node1", "node2", "node3"]
    wait_for(lambda: sorted(running_per_node(engines).values()) == [0, 8, 8, 8], 60)


def only_on_members(path, engines):
    """A fresh image on node1, pushed to node2 and node3 (not node4) with
    `image push` -> (tag, id)."""
    tag = f"bicycle/members:{uuid.uuid4().hex[:8]}"
    container = engines.clients["node1"].containers.create("bicycle/demo:1")
    try:
        image = container.commit(*tag.split(":"), changes=[f"LABEL bicycle.test.members={tag}"])
    finally:
        container.remove()
    env = dict(os.environ, DOCKER_HOST=cluster.engines(SANDBOX)["node1"])
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", path, "image", "push", tag],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert [n for n, c in engines.clients.items() if c.images.list(name=tag.split(":")[0])] == \
        ["node1", "node2", "node3"]
    return tag, image.id


def test_a_node_without_docker_is_bootstrapped_gets_the_images_and_joins(members):
    path, text, engines = members
    remove_all(engines)
    home = node4_home()
    bare = cluster.without("docker", os.path.join(SANDBOX, "bin-without-docker"))
    tag, image_id = only_on_members(path, engines)
    r = api("POST", "/service", {"name": "never", "image": tag, "replicas": 3, "pull": "never"})
    assert r.status_code == 201, r.text
    cluster.set_path(SANDBOX, 4, f"{home}/bin:{bare}")
    try:
        r = cli(path, *add_args("--trust"))
        assert r.returncode == 0, r.stderr
        assert os.readlink(os.path.join(home, "bin", "docker")) == "/usr/bin/docker"
        said = [e["message"] for e in api("GET", "/events", params={"limit": 200}).json() if e["kind"] == "bootstrap"]
        assert len(said) == 3 and f"{tag} copied from node1" in said[2], said
        assert engines.clients["node4"].images.get(tag).id == image_id
        wait_for(lambda: next(n for n in api("GET", "/nodes").json() if n["name"] == "node4")["status"] == "ready",
                 30)
        assert api("PATCH", "/service/never", {"replicas": 4}).status_code == 200
        assert {n: len(cs) for n, cs in engines.containers("never").items()} == {f"node{i}": 1 for i in (1, 2, 3, 4)}
    finally:
        api("DELETE", "/service/never")
        r = cli(path, "node", "rm", "node4")
        cluster.set_path(SANDBOX, 4, None)
        shutil.rmtree(os.path.join(home, "bin"), ignore_errors=True)
    assert r.returncode == 0, r.stderr
    assert open(path).read() == text
