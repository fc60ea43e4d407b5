#!/usr/bin/env python3
"""Benchmark: time from SIGKILL of the leader until a standby serves /state as
leader and has finished one reconcile round, divided by lease_ttl (the floor
a lease-based takeover cannot beat by much). Three masters, three nodes.
Prints each run, the median takeover and the ratio last.

Usage: .venv/bin/python bench/failover.py [--repeat 5]
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

import requests

from common import ROOT, http, sandbox_up, sandbox_down
from master import auth
from sandbox import cluster

TTL = 6.0
MASTERS = {f"m{i}": (f"127.0.0.{110 + i}", 7280 + i) for i in (1, 2, 3)}


def start(path, name):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", path, "up", "--name", name],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def state(name):
    a, p = MASTERS[name]
    try:
        return http.get(f"http://{a}:{p}/state", timeout=0.5).json()
    except (requests.RequestException, ValueError, auth.TokenFileError):
        return None


def leader(exclude=None, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in MASTERS:
            if name == exclude:
                continue
            s = state(name)
            if s and s["master"]["role"] == "leader" and s["master"]["rounds_led"] >= 1:
                return name
        time.sleep(0.02)
    raise SystemExit("bench: no leader")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    inventory, _ = sandbox_up()
    path = cluster.ha_inventory(inventory, MASTERS, TTL)
    procs = {n: start(path, n) for n in MASTERS}
    ratios = []
    try:
        for i in range(args.repeat):
            old = leader()
            time.sleep(TTL / 3 * (i % 3) / 2)      # kill at different points of the renewal period
            t0 = time.perf_counter()
            os.kill(procs[old].pid, signal.SIGKILL)
            procs[old].wait()
            new = leader(exclude=old)
            took = time.perf_counter() - t0
            ratios.append(took / TTL)
            print(f"run {i + 1}: {old} killed, {new} leads and reconciled after {took:.2f}s "
                  f"({took / TTL:.2f} x lease_ttl)", flush=True)
            procs[old] = start(path, old)
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        sandbox_down()
    print(f"lease_ttl: {TTL}s; median takeover {statistics.median(ratios) * TTL:.2f}s")
    print(f"ratio takeover/lease_ttl: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
