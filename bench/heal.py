#!/usr/bin/env python3
"""Benchmark: a node of 3 holding R slots is killed (its sshd and dockerd, SIGKILL).

In the same run it measures
  detection: from the kill until /state says the node is down;
  (a) from the kill until all the service's slots run on the surviving engines;
  (b) down_after plus the time the same R `docker run -d` take when sent
      straight to the surviving engines (same per-node concurrency);
and prints medians over the runs and the ratio a/b last.

Usage: .venv/bin/python bench/heal.py [--repeat 3]
It starts its own sandbox (127.0.0.41-43) and master, and removes them at the end.
"""
import argparse
import os
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import docker as docker_sdk

from common import BASE, DIR, IMAGE, docker, http, sandbox_up, sandbox_down, start_master, stop_master, wait_ready
from master.inventory import load
from sandbox import cluster

REPLICAS, PER_NODE, VICTIM = 12, 4, "node2"


def running_slots(clients, nodes):
    slots = {}
    for node in nodes:
        for c in clients[node].api.containers(filters={"label": "bicycle.service=heal", "status": "running"}):
            slot = int(c["Labels"]["bicycle.slot"])
            slots[slot] = slots.get(slot, 0) + 1
    return slots


def node_status(name):
    return next(n["status"] for n in http.get(f"{BASE}/state", timeout=5).json()["nodes"] if n["name"] == name)


def bicycle_run(clients, survivors):
    r = http.post(f"{BASE}/service", json={"name": "heal", "image": IMAGE, "replicas": REPLICAS}, timeout=120)
    r.raise_for_status()
    lost = sum(1 for c in clients[VICTIM].api.containers(filters={"label": "bicycle.service=heal"}))
    row = next(r for r in cluster.status(DIR) if r["name"] == VICTIM)
    t0 = time.perf_counter()
    os.kill(row["dockerd_pid"], signal.SIGKILL)
    os.kill(row["sshd_pid"], signal.SIGKILL)
    detected = None
    while True:
        now = time.perf_counter() - t0
        if detected is None and node_status(VICTIM) == "down":
            detected = now
        if running_slots(clients, survivors) == {s: 1 for s in range(1, REPLICAS + 1)}:
            healed = now
            break
        if now > 120:
            raise SystemExit("bench: slots did not move within 120 s")
        time.sleep(0.02)
    if detected is None:
        detected = healed
    # Bring the node back, let Bicycle rebalance, then remove the service.
    cluster.up(DIR, nodes=3, base=40, api=BASE.split("//")[1], log=lambda *a: None)
    wait_ready(60)
    http.delete(f"{BASE}/service/heal", timeout=120).raise_for_status()
    return lost, detected, healed


def direct_run(sockets, survivors, lost, down_after):
    targets = [sockets[survivors[i % len(survivors)]] for i in range(lost)]
    pools = {s: ThreadPoolExecutor(PER_NODE) for s in set(targets)}
    t = time.perf_counter()
    futures = [pools[s].submit(docker, s, "run", "-d", "--label", "bench.direct=1", IMAGE) for s in targets]
    ids = [(s, f.result().strip()) for s, f in zip(targets, futures)]
    elapsed = time.perf_counter() - t
    for s in set(targets):
        docker(s, "rm", "-f", *[i for sock, i in ids if sock == s])
        pools[s].shutdown()
    return down_after + elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    inventory, sockets = sandbox_up()
    down_after = load(inventory).settings["down_after"]
    clients = {n: docker_sdk.DockerClient(base_url=s, timeout=30) for n, s in sockets.items()}
    survivors = [n for n in sockets if n != VICTIM]
    master = start_master(inventory)
    detections, a, b = [], [], []
    try:
        for i in range(args.repeat):
            lost, detected, healed = bicycle_run(clients, survivors)
            direct = direct_run(sockets, survivors, lost, down_after)
            detections.append(detected)
            a.append(healed)
            b.append(direct)
            print(f"run {i + 1}: {lost} slots lost; detected {detected:.2f}s, bicycle healed {healed:.2f}s, "
                  f"direct {direct:.2f}s (down_after {down_after}s + runs)", flush=True)
    finally:
        stop_master(master)
        sandbox_down()
    print(f"median detection: {statistics.median(detections):.2f}s (down_after {down_after}s)")
    print(f"median (a) kill -> all slots run elsewhere: {statistics.median(a):.2f}s")
    print(f"median (b) down_after + direct docker run: {statistics.median(b):.2f}s")
    print(f"ratio a/b: {statistics.median(a) / statistics.median(b):.2f}")


if __name__ == "__main__":
    main()
