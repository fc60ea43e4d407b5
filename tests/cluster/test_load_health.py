"""Node health under load: API readers and busy engines never make a healthy
node look dead (docs/design.md, Node health).

- 60 one-replica services, three clients polling /state and GET /service as
  fast as they can, in steady state and then through a rolling update of
  every service: no node transition, nothing moved.
- one service of 80 replicas over 8 nodes (engines busy creating containers):
  converges with no node transition and no removal.

Each test has a sandbox and a master of its own (not the session `sandbox` /
`master` of conftest, which other runs use): `.sandbox-load` (3 nodes on
127.0.0.51-53, API 127.0.0.1:7175) and `.sandbox-eight` (8 nodes on
127.0.0.61-68, API 127.0.0.1:7176). What runs is read on the engines
directly. Nothing here asserts a timing: bounds on waits only keep a broken
run from hanging.
"""
import os
import threading
import time

import pytest
import requests

from conftest import LABEL, ROOT, Engines, MasterProcess, wait_for
from cli.client import TokenSession
from master import auth
from master.events import iso
from sandbox import cluster
from store.state import MAX_EVENTS, Store

IMAGE = "bicycle/demo:1"
UPDATED = "bicycle/demo:2"
POLL_SECONDS = 30
SERVICES = 60       # one replica each (100 made the CI run's longest file longer than the rest together)
POLLERS = 3
MIN_POLLS = 10          # per poller: the readers really loaded the master
MIN_SAMPLES = 5         # engine snapshots taken while the work went on


class Sandbox:
    """One sandbox, its master process and an admin client of its API."""

    def __init__(self, folder, nodes, base, api, tmp_path_factory):
        self.dir = os.path.join(ROOT, folder)
        self.nodes, self.base, self.api = nodes, base, api
        self.log_path = str(tmp_path_factory.mktemp(folder.strip(".")) / "master.log")
        self.master = None
        self.engines = None
        self.http = TokenSession(lambda: auth.load(os.path.join(self.dir, "tokens.json"))[auth.ADMIN])

    def up(self, events=0):
        """Sandbox and master up; the master's store starts with `events`
        events already logged (written before it starts: a full log without
        a thousand replicated writes)."""
        if os.path.exists(os.path.join(self.dir, "sandbox.json")):
            cluster.down(self.dir, log=lambda *a: None)       # a leftover of an interrupted run
        inventory = cluster.up(self.dir, nodes=self.nodes, base=self.base, api=self.api, log=lambda *a: None)
        self.engines = Engines(cluster.engines(self.dir))
        self.log_events(events)
        self.master = MasterProcess(inventory, self.log_path, api=self.api)
        self.master.start()
        wait_for(lambda: all(n["status"] == "ready" for n in self.get("/state").json()["nodes"]), 30)
        return self

    def log_events(self, count):
        """`count` events like an `activate` of node1 each, in the store file."""
        store = Store(os.path.join(self.dir, "state.json"))
        try:
            store.add_events([{"time": iso(time.time()), "kind": "activate", "message": "node node1 takes work again",
                               "node": "node1"} for _ in range(count)])
        finally:
            store.close()

    def down(self):
        try:
            if self.master is not None:
                self.master.stop()
        finally:
            cluster.down(self.dir, log=lambda *a: None)

    def request(self, method, path, body=None, timeout=90):
        return self.http.request(method, f"http://{self.api}{path}", json=body, timeout=timeout)

    def get(self, path):
        r = self.request("GET", path)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r

    def last_event_id(self):
        events = self.get("/events?limit=1").json()
        return events[-1]["id"] if events else 0

    def events_since(self, since):
        """Every event after `since` (paged: the API answers at most 1000 at once)."""
        out = []
        while True:
            batch = self.get(f"/events?since={since}&limit=1000").json()
            if not batch:
                return out
            out += batch
            since = batch[-1]["id"]

    def containers(self):
        """{id: (node, service)} of every Bicycle container on the engines, running
        or not. A sparse listing (no inspect per container): the test adds little load."""
        out = {}
        for node, client in self.engines.clients.items():
            for c in client.api.containers(all=True, filters={"label": LABEL}):
                out[c["Id"]] = (node, c["Labels"][LABEL])
        return out

    def running_count(self):
        return sum(1 for client in self.engines.clients.values()
                   for c in client.api.containers(filters={"label": LABEL, "status": "running"}))


@pytest.fixture(scope="module")
def load_sandbox(tmp_path_factory):
    sb = Sandbox(".sandbox-load", 3, 50, "127.0.0.1:7175", tmp_path_factory)
    try:
        yield sb.up(events=MAX_EVENTS)     # the event log at its bound, as on any master that ran a while
    finally:
        sb.down()


@pytest.fixture(scope="module")
def eight_sandbox(tmp_path_factory):
    sb = Sandbox(".sandbox-eight", 8, 60, "127.0.0.1:7176", tmp_path_factory)
    try:
        yield sb.up()
    finally:
        sb.down()


class Background(threading.Thread):
    """Runs `step` until stopped, counting the calls; the first exception
    ends it and is kept for the test to raise."""

    def __init__(self, name, step, stop, pause=0.0):
        super().__init__(name=name, daemon=True)
        self.step, self.stop, self.pause = step, stop, pause
        self.count = 0
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():
                self.step()
                self.count += 1
                if self.pause:
                    self.stop.wait(self.pause)
        except BaseException as e:        # noqa: B036 - any failure must reach the test
            self.error = e

    def finish(self):
        self.join(120)
        assert not self.is_alive(), f"{self.name} did not stop"
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error


def transitions(events):
    return [e["message"] for e in events if e["kind"] == "node"]


def acknowledged(sb, method, path, body):
    """A write, sent again while it answers 503: on a loaded machine a write
    may not reach a majority in time, and the API says to retry it (a
    retried create or update of the same body is the same change)."""
    for _ in range(5):
        r = sb.request(method, path, body)
        if r.status_code != 503:
            break
    assert r.status_code in (200, 202), r.text
    return r


def create_services(sb, count):
    for i in range(count):
        acknowledged(sb, "POST", "/service?wait=false", {"name": f"s{i:03d}", "image": IMAGE, "replicas": 1})


def all_running(sb, image):
    return all(s["status"] == "running" and s["spec"]["image"] == image for s in sb.get("/service").json())


def test_readers_polling_as_fast_as_they_can_never_move_a_container(load_sandbox):
    """60 one-replica services (SERVICES); three clients poll /state and GET /service
    without a pause, for POLL_SECONDS of steady state, then on through a
    rolling update of every service (the loop writes and replaces while they
    read). The readers never make a node look dead: no node transition, no
    container changes in the steady state, and the update replaces each
    container once, on its own node."""
    sb = load_sandbox
    assert len(sb.get(f"/events?limit={MAX_EVENTS}").json()) == MAX_EVENTS
    create_services(sb, SERVICES)
    wait_for(lambda: all_running(sb, IMAGE), 300, interval=1)
    wait_for(lambda: sb.running_count() == SERVICES, 60, interval=1)
    before = sb.containers()
    since = sb.last_event_id()
    stop = threading.Event()
    seen, lost = {}, []

    def poll():
        sb.get("/state")
        sb.get("/service")

    def sample():
        now = sb.containers()
        lost.extend(cid for cid in seen if cid not in now and cid not in lost)
        seen.update(now)

    pollers = [Background(f"poller-{i}", poll, stop) for i in range(POLLERS)]
    sampler = Background("engine-sampler", sample, stop, pause=1.0)
    for t in pollers + [sampler]:
        t.start()
    try:
        stop.wait(POLL_SECONDS)
        steady, steady_polls = sb.containers(), sum(p.count for p in pollers)
        for name in sorted({service for _, service in before.values()}):
            acknowledged(sb, "PATCH", f"/service/{name}?wait=false", {"image": UPDATED})
        wait_for(lambda: all_running(sb, UPDATED), 600, interval=1)
        wait_for(lambda: len(sb.containers()) == SERVICES == sb.running_count(), 60, interval=1)
        after = sb.containers()
    finally:
        stop.set()
        for t in pollers + [sampler]:
            t.finish()

    assert all(p.count >= MIN_POLLS for p in pollers), [p.count for p in pollers]
    assert steady_polls >= MIN_POLLS * POLLERS, steady_polls
    assert sampler.count >= MIN_SAMPLES, sampler.count
    events = sb.events_since(since)
    assert transitions(events) == []
    assert steady == before                             # nothing changed while they only read
    assert not set(after) & set(before)                 # every container replaced ...
    assert sorted(after.values()) == sorted(before.values())    # ... on the node its service was on
    assert set(lost) <= set(before)                      # and only the old ones ever went
    assert len([e for e in events if e["kind"] == "removed"]) == SERVICES
    assert len([e for e in events if e["kind"] == "placed"]) == SERVICES


def test_eighty_replicas_over_eight_busy_engines_converge_without_a_removal(eight_sandbox):
    sb = eight_sandbox
    since = sb.last_event_id()
    seen = {}                    # id -> node of every container ever listed
    lost = []                    # ids listed once and gone later

    def sample():
        now = sb.containers()
        lost.extend(cid for cid in seen if cid not in now and cid not in lost)
        seen.update(now)

    stop = threading.Event()
    sampler = Background("engine-sampler", sample, stop, pause=0.5)
    sampler.start()
    try:
        r = sb.request("POST", "/service?wait=false", {"name": "wide", "image": IMAGE, "replicas": 80})
        assert r.status_code == 202, r.text
        wait_for(lambda: sb.get("/service/wide").json()["status"] == "running", 300, interval=1)
        wait_for(lambda: sb.running_count() == 80, 60, interval=1)
        sample_count = sampler.count
        wait_for(lambda: sampler.count >= sample_count + 2, 60)     # a sample after the end too
    finally:
        stop.set()
        sampler.finish()

    assert sampler.count >= MIN_SAMPLES, sampler.count
    events = sb.events_since(since)
    assert transitions(events) == []
    assert [e["message"] for e in events if e["kind"] == "removed"] == []
    assert lost == [], f"{len(lost)} containers were removed, e.g. {lost[:3]}"
    assert len(sb.containers()) == 80
    assert len([e for e in events if e["kind"] == "placed"]) == 80
