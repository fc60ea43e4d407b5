"""The order of changes, as the engines saw it: start-first for rebalance,
spec updates and a node's return (never fewer running containers than
desired, sampled on every engine every 0.1 s), surplus removed from a
returning node before it gets new work, stop-first for a service with host
ports replaced on the same node, start-first when it moves to another node.

Orders come from the engines' own container events; counts from one plain
listing per engine per sample."""
import subprocess
import time
from types import SimpleNamespace

import pytest
import requests

from conftest import NODE_ADDRESSES, api, port, wait_for
from sampling import Sampler, engine_events, listing, running_per_node, running_services, running_slots
from test_heal import create

pytestmark = pytest.mark.usefixtures("clean")

EVERY = 0.1          # seconds between samples of the engines
MIN_SAMPLES = 3      # a check over fewer samples means nothing (a fast move takes 0.3-0.5 s)


def settled(engines, service, replicas, image="bicycle/demo:1", nodes=("node1", "node2", "node3")):
    """Every slot exactly once, running `image`, spread evenly over `nodes`,
    and no other labelled container of the service anywhere."""
    every = engines.containers(service, running_only=False)
    if any(c.status != "running" or c.attrs["Config"]["Image"] != image for cs in every.values() for c in cs):
        return False
    if any(cs for node, cs in every.items() if node not in nodes):
        return False
    counts = sorted(len(every[node]) for node in nodes)
    slots = sorted(int(c.labels["bicycle.slot"]) for cs in every.values() for c in cs)
    return slots == list(range(1, replicas + 1)) and counts[-1] - counts[0] <= 1


def short_samples(samples, replicas):
    """The samples in which some slot had no running container."""
    return [s for s in samples if any(running_slots(s).get(slot, 0) < 1 for slot in range(1, replicas + 1))]


def assert_every_slot_ran(watch, replicas):
    """At every sample each slot had a running container (over enough samples to mean something)."""
    assert len(watch.samples) >= MIN_SAMPLES, f"only {len(watch.samples)} samples"
    short = short_samples(watch.samples, replicas)
    assert not short, (f"{len(short)} of {len(watch.samples)} samples had a slot with nothing running, "
                       f"first: {running_slots(short[0])}")


def doubled(samples):
    """Did any sample see one slot run twice at once (a start-first move caught in the act)?"""
    return any(n >= 2 for s in samples for n in running_slots(s).values())


def removals(events):
    """container id -> (node, slot, time it stopped running or was removed)."""
    out = {}
    for e in events:
        if e.action in ("die", "destroy") and e.id not in out:
            out[e.id] = (e.node, e.slot, e.time)
    return out


def starts(events):
    """container id -> (node, slot, start time)."""
    return {e.id: (e.node, e.slot, e.time) for e in events if e.action == "start"}


def removed_before_replacement(events, ids=None):
    """The removed containers (of `ids`, default all) that stopped before any
    other container of their slot had started: a start-first move has none."""
    started = starts(events)
    late = []
    for cid, (node, slot, gone) in removals(events).items():
        if ids is not None and cid not in ids:
            continue
        if not any(s == slot and t < gone for other, (_, s, t) in started.items() if other != cid):
            late.append((slot, node, cid[:12]))
    return late


def eventually(predicate, timeout):
    """wait_for, but False instead of an error when the time is up."""
    try:
        return wait_for(predicate, timeout)
    except AssertionError:
        return False


def drain(node):
    r = api("POST", f"/nodes/{node}/drain")
    assert r.status_code == 200, r.text


def activate(node):
    r = api("POST", f"/nodes/{node}/activate")
    assert r.status_code == 200, r.text


def test_rebalance_onto_an_activated_node_is_start_first(engines):
    """6 replicas on node1 and node2 while node3 is drained; node3 activated:
    slots move onto it one at a time, each new container running before the
    old one goes, so every slot runs at every sample."""
    drain("node3")
    try:
        create("web", 6)
        assert engines.counts("web") == {"node1": 3, "node2": 3, "node3": 0}
        since = time.time_ns()
        with Sampler(lambda: listing(engines, "web"), every=EVERY) as watch:
            activate("node3")
            wait_for(lambda: settled(engines, "web", 6), 30)
    finally:
        activate("node3")
    assert_every_slot_ran(watch, 6)
    events = engine_events(engines, "web", since)
    moved = removals(events)
    assert len(moved) == 2 and {node for node, _, _ in moved.values()} <= {"node1", "node2"}, moved
    late = removed_before_replacement(events)
    assert not late, f"(slot, node, id) removed before a replacement of its slot started: {late}"
    assert doubled(watch.samples), "no sample saw a moving slot run twice: the moves were not sampled"


def test_an_activated_node_gets_a_share_of_twelve_one_replica_services(engines):
    """12 one-replica services while node3 is drained: 6/6/0. node3
    activated: every service is spread already (one replica each), the
    cluster balance moves four of them start-first: 4/4/4 on the engines, and
    every service ran at every sample."""
    names = [f"one{i:02d}" for i in range(12)]
    drain("node3")
    try:
        for name in names:
            create(name, 1)
        wait_for(lambda: running_per_node(engines) == {"node1": 6, "node2": 6, "node3": 0}, 30)
        since = time.time_ns()
        with Sampler(lambda: running_services(engines), every=EVERY) as watch:
            activate("node3")
            wait_for(lambda: running_per_node(engines) == {"node1": 4, "node2": 4, "node3": 4}
                     and running_services(engines) == {name: 1 for name in names}, 60)
    finally:
        activate("node3")
    assert len(watch.samples) >= MIN_SAMPLES, f"only {len(watch.samples)} samples"
    short = [s for s in watch.samples if any(s[name] < 1 for name in names)]
    assert not short, f"{len(short)} of {len(watch.samples)} samples had a service with nothing running"
    moved = [n for n in names if removals(engine_events(engines, n, since))]
    assert len(moved) == 4, moved
    assert any(max(s.values()) >= 2 for s in watch.samples), "no sample saw a moving service run twice"


def test_spec_update_is_start_first(engines):
    """A new image without host ports: each slot's new container runs before
    the old one is removed; at the end all run :2."""
    create("web", 3, update={"monitor": 1})
    since = time.time_ns()
    with Sampler(lambda: listing(engines, "web"), every=EVERY) as watch:
        r = api("PATCH", "/service/web", {"image": "bicycle/demo:2"})
        assert r.status_code == 200, r.text
        wait_for(lambda: settled(engines, "web", 3, image="bicycle/demo:2"), 20)
    assert_every_slot_ran(watch, 3)
    events = engine_events(engines, "web", since)
    assert len(removals(events)) == 3
    late = removed_before_replacement(events)
    assert not late, f"(slot, node, id) removed before a replacement of its slot started: {late}"
    assert doubled(watch.samples), "no sample saw an old and a new container of a slot at once"
    images = {image for cs in listing(engines, "web").values() for _, state, image in cs.values()}
    assert images == {"bicycle/demo:2"}


CUT = ["INPUT", "-d", NODE_ADDRESSES[1], "-p", "tcp", "--dport", "22", "-j", "DROP",
       "-m", "comment", "--comment", "bicycle-test-cut"]      # node2 unreachable over SSH


def without(samples, ids):
    """The samples without the containers `ids`."""
    return [{node: {cid: row for cid, row in cs.items() if cid not in ids} for node, cs in s.items()}
            for s in samples]


def test_returning_node_loses_its_surplus_first_then_gets_slots_back_start_first(engines):
    """node2 is cut off (its SSH port dropped) and its 2 slots are placed on
    node1 and node3 while its own containers keep running; when it answers
    again, those surplus containers are removed before any new container is
    created on it, then 2 slots move back start-first."""
    create("web", 6)
    old = {c.id for c in engines.containers("web")["node2"]}
    assert len(old) == 2
    subprocess.run(["iptables", "-I", *CUT], check=True)
    cut = True
    try:
        wait_for(lambda: running_slots(listing(engines, "web", {"node1", "node3"})) == {s: 1 for s in range(1, 7)},
                 30)
        since = time.time_ns()
        with Sampler(lambda: listing(engines, "web"), every=EVERY) as watch:
            subprocess.run(["iptables", "-D", *CUT], check=True)
            cut = False
            wait_for(lambda: settled(engines, "web", 6), 40)
    finally:
        if cut:
            subprocess.run(["iptables", "-D", *CUT], check=True)
    # node2's old containers ran all along: the slots must run without them.
    samples = without(watch.samples, old)
    assert_every_slot_ran(SimpleNamespace(samples=samples), 6)

    events = engine_events(engines, "web", since)
    on_node2 = [e for e in events if e.node == "node2"]
    gone = {e.id: e.time for e in on_node2 if e.action == "destroy" and e.id in old}
    created = [e.time for e in on_node2 if e.action == "create"]
    assert set(gone) == old, f"old containers of node2 not removed: {old - set(gone)}"
    assert len(created) == 2, on_node2
    assert max(gone.values()) < min(created), \
        f"a container was created on node2 before its surplus was removed: {on_node2}"
    moved_back = {cid for cid, (node, _, _) in removals(events).items() if node != "node2"}
    assert len(moved_back) == 2, removals(events)
    late = removed_before_replacement(events, moved_back)
    assert not late, f"(slot, node, id) moved back stop-first: {late}"
    assert doubled(samples), "no sample saw a slot moving back run twice: the moves were not sampled"


def site(replicas, published):
    return create("site", replicas, ports=[{"published": published, "target": 80}])


def serves(address, published, version):
    try:
        return f"bicycle demo v{version}" in requests.get(f"http://{address}:{published}/", timeout=2).text
    except requests.RequestException:
        return False


def test_host_port_service_is_replaced_stop_first_on_its_node(engines):
    """A service publishing a host port, updated in place: on each node the
    old container is removed before the new one is created, and no node ever
    runs two of its containers."""
    published = port(18180)
    site(2, published)
    old = {node: cs[0].id for node, cs in engines.containers("site").items() if cs}
    assert len(old) == 2
    since = time.time_ns()
    with Sampler(lambda: listing(engines, "site"), every=EVERY) as watch:
        r = api("PATCH", "/service/site?timeout=20", {"image": "bicycle/demo:2"})
        done = eventually(lambda: settled(engines, "site", 2, image="bicycle/demo:2", nodes=sorted(old)), 10)
    events = engine_events(engines, "site", since)
    for node, cid in old.items():
        mine = [e for e in events if e.node == node]
        gone = [e.time for e in mine if e.action == "destroy" and e.id == cid]
        created = [e.time for e in mine if e.action == "create"]
        assert gone, f"{node}: the old container was never removed: {mine}"
        assert created, f"{node}: no new container: {mine}"
        assert gone[0] < min(created), f"{node}: a new container was created before the old one was removed: {mine}"
        assert len(created) == 1, f"{node}: {len(created)} containers created: {mine}"
    assert r.status_code == 200 and r.json()["status"] == "running", r.text
    assert done, f"not settled on the engines: {listing(engines, 'site')}"
    assert len(watch.samples) >= MIN_SAMPLES, f"only {len(watch.samples)} samples"
    for sample in watch.samples:
        for node, cs in sample.items():
            assert sum(state == "running" for _, state, _ in cs.values()) <= 1, f"{node} ran two: {sample}"
    address = dict(zip(("node1", "node2", "node3"), NODE_ADDRESSES))
    assert all(serves(address[node], published, 2) for node in old)


def test_host_port_service_moving_to_another_node_starts_first(engines):
    """Draining a node moves its host-port container to the free node with no
    gap: the replacement starts there before the old one stops."""
    published = port(18181)
    site(2, published)
    assert engines.counts("site") == {"node1": 1, "node2": 1, "node3": 0}
    since = time.time_ns()
    try:
        with Sampler(lambda: listing(engines, "site"), every=EVERY) as watch:
            drain("node1")
            wait_for(lambda: settled(engines, "site", 2, nodes=("node2", "node3")), 20)
    finally:
        activate("node1")
    assert_every_slot_ran(watch, 2)
    events = engine_events(engines, "site", since)
    moved = removals(events)
    assert [node for node, _, _ in moved.values()] == ["node1"], moved
    assert [node for node, _, _ in starts(events).values()] == ["node3"], events
    late = removed_before_replacement(events)
    assert not late, f"(slot, node, id) stopped before its replacement started: {late}"
    assert serves(NODE_ADDRESSES[2], published, 1)
