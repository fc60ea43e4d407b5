"""Crash safety: SIGKILL the master at random moments during a stream of
writes, many times. After every kill the state file loads, and every write
that was answered 2xx before the kill is in it; after the restart the master
serves all of them."""
import glob
import itertools
import json
import os
import random
import signal
import threading
import time

import pytest
import requests

from cli.client import TokenSession
from conftest import BASE, SANDBOX, api, token
from store.state import Store

ROUNDS = int(os.environ.get("BICYCLE_CRASH_ROUNDS", "30"))   # 118 s of a 10 min CI run at 40
NAMES = [f"crash{i}" for i in range(8)]
STATE = os.path.join(SANDBOX, "state.json")
TEMPORARY = os.path.join(SANDBOX, ".state.json.tmp-*")

pytestmark = pytest.mark.usefixtures("clean")


def writer(acked, seqs, stop):
    """PATCH the services in turn with a growing `seq` label (never reused);
    record the highest seq of each that was acknowledged, and how many.
    A new session each time: the last one's connection died with the master."""
    http = TokenSession(token)
    while not stop.is_set():
        seq = next(seqs)
        name = NAMES[seq % len(NAMES)]
        try:
            r = http.patch(f"{BASE}/service/{name}", json={"labels": {"seq": str(seq)}},
                           params={"wait": "false"}, timeout=10)
        except requests.RequestException:
            return                     # the master is gone
        if r.status_code in (200, 202):
            acked[name] = seq
            acked["count"] = acked.get("count", 0) + 1
        elif r.status_code >= 500 or r.status_code == 404:
            raise AssertionError(f"write answered {r.status_code}: {r.text[:200]}")


def stored_seqs(path):
    """{service: seq label} of a state file, read the way a master reads it."""
    with open(path, encoding="utf-8") as f:
        json.load(f)                   # whole and valid JSON
    store = Store(path)
    try:
        return {s.name: int(dict(s.spec.labels).get("seq", "0")) for s in store.services()}
    finally:
        store.close()


def test_kill_9_during_writes_never_loses_an_acknowledged_write(master):
    for name in NAMES:
        api("POST", "/service", {"name": name, "image": "bicycle/demo:1", "replicas": 0,
                                 "labels": {"seq": "0"}}).raise_for_status()
    acked, seqs = {}, itertools.count(1)
    rng = random.Random(int(os.environ.get("BICYCLE_CRASH_SEED", "6")))
    for round_ in range(ROUNDS):
        stop = threading.Event()
        errors = []
        thread = threading.Thread(target=lambda: _guard(writer, errors, acked, seqs, stop))
        thread.start()
        time.sleep(rng.uniform(0.02, 1.0))
        master.send(signal.SIGKILL)
        master.proc.wait(timeout=10)
        stop.set()
        thread.join(timeout=20)
        assert not errors, errors
        stored = stored_seqs(STATE)
        lost = {n: (seq, stored.get(n)) for n, seq in acked.items() if n != "count" and stored.get(n, -1) < seq}
        assert lost == {}, f"round {round_}: acknowledged writes missing from the state file: {lost}"
        leftovers = set(glob.glob(TEMPORARY))       # a write the kill cut short
        master.start()
        assert not leftovers & set(glob.glob(TEMPORARY)), "a restarted master keeps a crash's temporary file"
    served = {s["name"]: int(s["spec"]["labels"]["seq"]) for s in api("GET", "/service").json()}
    assert all(served[n] >= seq for n, seq in acked.items() if n != "count")
    assert acked["count"] > ROUNDS         # writes did happen between the kills


def _guard(fn, errors, *args):
    try:
        fn(*args)
    except Exception as e:       # an assertion inside the thread fails the test
        errors.append(e)
