#!/usr/bin/env python3
"""Benchmark: a standby's takeover after SIGKILL of the leader, next to the
floor the lease protocol allows, on a cluster that is not empty (20 services,
60 containers over 3 nodes, 3 masters).

takeover: from the kill until a standby has acknowledged a write (201) and
finished a reconcile round as the leader.
floor, measured in the same run: no standby may move before the leader's last
renewal on a majority of nodes plus lease_ttl (read from the nodes' own lease
files at the kill), then it needs one claim round and one replicated write
(each timed here, on the same nodes, just before the kill).

--ttl 2 runs the same with a 2 s lease while one busy process per core loads
the machine, then counts leader changes during --quiet seconds without any
fault (the goal is 0: a short lease that flaps under load is a bug).

Prints each run, then the medians, and takeover/floor last.

Usage: .venv/bin/python bench/failover.py [--repeat 5] [--ttl 6] [--quiet 300]
"""
import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time

import requests

from common import ROOT, IMAGE, http, sandbox_up, sandbox_down
from master.inventory import load
from remote import lease as cmd
from remote.transport import Fleet
from sandbox import cluster
from sandbox.common import load as load_sandbox

MASTERS = {f"m{i}": (f"127.0.0.{110 + i}", 7280 + i) for i in (1, 2, 3)}
SERVICES, REPLICAS = 20, 3


def url(name):
    a, p = MASTERS[name]
    return f"http://{a}:{p}"


def start(path, name):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", path, "up", "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def health(name):
    try:
        return requests.get(url(name) + "/health", timeout=0.5).json()
    except (requests.RequestException, ValueError):
        return None


def leader(exclude=None, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in MASTERS:
            h = health(name) if name != exclude else None
            if h and h["role"] == "leader":
                return name, h["epoch"]
        time.sleep(0.02)
    raise SystemExit("bench: no leader")


def populate(name):
    for i in range(SERVICES):
        r = http.post(url(name) + "/service?wait=false", json={"name": f"s{i}", "image": IMAGE,
                                                                "replicas": REPLICAS}, timeout=30)
        assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        services = http.get(url(name) + "/service", timeout=30).json()
        if all(s["status"] == "running" for s in services):
            return
        time.sleep(0.5)
    raise SystemExit("bench: the services did not converge")


def timed_write(name, i):
    """One replicated write (create, then remove, of an empty service) on the leader: seconds."""
    t0 = time.perf_counter()
    r = http.post(url(name) + "/service?wait=false", json={"name": f"w{i}", "image": IMAGE, "replicas": 0},
                  timeout=30)
    took = time.perf_counter() - t0
    http.delete(url(name) + f"/service/w{i}?wait=false", timeout=30)
    assert r.status_code in (201, 202), r.text
    return took


def timed_claim_round(fleet):
    """One claim round from here, in parallel on every node: CLAIM of an epoch
    every node refuses (it takes the lock, reads and answers like a grant, and
    changes nothing). Seconds until a majority answered."""
    results = fleet.fan_out(lambda n: fleet.connections[n].run(cmd.claim(1, "bench"), timeout=10))
    times = sorted(r.seconds for r in results.values() if not isinstance(r, Exception))
    majority = len(results) // 2 + 1
    assert len(times) >= majority, results
    return times[majority - 1]


def last_renewal(nodes):
    """Wall time of the leader's last renewal on a majority: the majority-th
    newest mtime of the nodes' lease files."""
    stamps = sorted((os.stat(os.path.join(n.home, ".bicycle", "lease")).st_mtime for n in nodes), reverse=True)
    return stamps[len(stamps) // 2]


def takeover(old, run):
    """From now (just after the kill) until a standby acknowledged a write and reconciled."""
    i = 0
    while True:
        for name in MASTERS:
            if name == old:
                continue
            i += 1
            try:
                r = http.post(url(name) + "/service?wait=false", allow_redirects=False, timeout=2,
                              json={"name": f"t{run}-{i}", "image": IMAGE, "replicas": 0})
            except requests.RequestException:
                continue
            if r.status_code in (201, 202):
                while True:
                    s = http.get(url(name) + "/state", timeout=2).json()
                    if s["master"]["rounds_led"] >= 1:
                        return name
                    time.sleep(0.01)
        time.sleep(0.01)


def busy(until):
    while time.time() < until:
        pass


def spurious_changes(seconds):
    """Leaders seen over `seconds` without any fault: the number of changes."""
    seen, changes = None, 0
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        now = next(((n, h["epoch"]) for n in MASTERS if (h := health(n)) and h["role"] == "leader"), None)
        if now is not None and now != seen:
            changes += seen is not None
            seen = now
        time.sleep(0.1)
    return changes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=6.0)
    parser.add_argument("--quiet", type=float, default=300, help="seconds without faults (with --ttl < 6)")
    args = parser.parse_args()
    loaded = args.ttl < 6
    inventory, _ = sandbox_up()
    path = cluster.ha_inventory(inventory, MASTERS, args.ttl)
    nodes = load_sandbox(os.path.dirname(inventory)).all_nodes()
    inv = load(path)
    fleet = Fleet(inv.nodes, inv.settings.known_hosts)
    fleet.fan_out(lambda n: fleet.connections[n].run(cmd.read(), timeout=10))     # connect once, before timing
    procs = {n: start(path, n) for n in MASTERS}
    load_procs = []
    ratios, takeovers, floors = [], [], []
    try:

        populate(leader()[0])
        if loaded:
            until = time.time() + args.repeat * 4 * args.ttl + args.quiet + 120
            load_procs = [multiprocessing.Process(target=busy, args=(until,), daemon=True)
                          for _ in range(os.cpu_count() or 1)]
            for p in load_procs:
                p.start()
        for i in range(args.repeat):
            old, _ = leader()
            write_s = timed_write(old, i)
            claim_s = timed_claim_round(fleet)
            time.sleep(args.ttl / 3 * (i % 3) / 2)        # kill at different points of the renewal period
            killed_at = time.time()
            os.kill(procs[old].pid, signal.SIGKILL)
            procs[old].wait()
            floor = max(0.0, last_renewal(nodes) + args.ttl - killed_at) + claim_s + write_s
            new = takeover(old, i)
            took = time.time() - killed_at
            ratios.append(took / floor)
            takeovers.append(took)
            floors.append(floor)
            print(f"run {i + 1}: {old} killed, {new} took a write and reconciled after {took:.2f}s; floor "
                  f"{floor:.2f}s (claim round {claim_s * 1000:.0f} ms, write {write_s * 1000:.0f} ms)", flush=True)
            procs[old] = start(path, old)
            time.sleep(2)
        changes = spurious_changes(args.quiet) if loaded else None
    finally:
        for p in load_procs:
            p.terminate()
        for p in procs.values():
            p.kill()
            p.wait()
        fleet.close()
        sandbox_down()
    print(f"lease_ttl {args.ttl}s{' under load (one busy process per core)' if loaded else ''}; "
          f"{SERVICES} services, {SERVICES * REPLICAS} containers")
    print(f"median takeover {statistics.median(takeovers):.2f}s, median floor {statistics.median(floors):.2f}s")
    if changes is not None:
        print(f"leader changes in {args.quiet:.0f}s without faults: {changes}")
    print(f"ratio takeover/floor: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
