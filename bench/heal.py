#!/usr/bin/env python3
"""Benchmark: a node of 3 holding R slots is killed (its sshd and dockerd, SIGKILL).

Two figures from one run, each against what it can be compared with:
  detection: from the kill to the node's `down` event, minus down_after; it
    should stay within one probe_interval (the prober measures silence from
    its first unanswered request);
  re-placement: from the `down` event until every slot runs on the surviving
    engines (sampled on the engines), against the same R `docker run -d` sent
    straight to the survivors with the same per-node concurrency.
Prints each run, the medians, and the re-placement ratio last.

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

from common import BASE, DIR, IMAGE, docker, http, running_slots, sandbox_up, sandbox_down, start_master, stop_master, wait_ready
from master.inventory import load
from model import parse_time
from sandbox import cluster

REPLICAS, PER_NODE, VICTIM = 12, 4, "node2"


def down_event(after_id):
    """Wall time of the victim's `down` event after event `after_id`, or None."""
    for e in http.get(f"{BASE}/events", params={"since": after_id, "limit": 1000}, timeout=5).json():
        if e["kind"] == "node" and e.get("node") == VICTIM and e["message"].split(" (")[0].endswith("-> down"):
            return parse_time(e["time"])
    return None


def last_event_id():
    events = http.get(f"{BASE}/events", params={"limit": 1}, timeout=5).json()
    return events[-1]["id"] if events else 0


def bicycle_run(clients, survivors):
    r = http.post(f"{BASE}/service", json={"name": "heal", "image": IMAGE, "replicas": REPLICAS}, timeout=120)
    r.raise_for_status()
    lost = sum(1 for c in clients[VICTIM].api.containers(filters={"label": "bicycle.service=heal"}))
    row = next(r for r in cluster.status(DIR) if r["name"] == VICTIM)
    since = last_event_id()
    killed = time.time()
    os.kill(row["dockerd_pid"], signal.SIGKILL)
    os.kill(row["sshd_pid"], signal.SIGKILL)
    while running_slots([clients[n] for n in survivors], "heal") != {s: 1 for s in range(1, REPLICAS + 1)}:
        if time.time() - killed > 120:
            raise SystemExit("bench: slots did not move within 120 s")
        time.sleep(0.02)
    healed = time.time()
    down = down_event(since)
    if down is None:
        raise SystemExit("bench: no down event for the killed node")
    detected, replaced = down - killed, healed - down
    # Bring the node back, let Bicycle rebalance, then remove the service.
    cluster.up(DIR, nodes=3, base=40, api=BASE.split("//")[1], log=lambda *a: None)
    wait_ready(60)
    http.delete(f"{BASE}/service/heal", timeout=120).raise_for_status()
    return lost, detected, replaced


def direct_run(sockets, survivors, lost):
    targets = [sockets[survivors[i % len(survivors)]] for i in range(lost)]
    pools = {s: ThreadPoolExecutor(PER_NODE) for s in set(targets)}
    t = time.perf_counter()
    futures = [pools[s].submit(docker, s, "run", "-d", "--label", "bench.direct=1", IMAGE) for s in targets]
    ids = [(s, f.result().strip()) for s, f in zip(targets, futures)]
    elapsed = time.perf_counter() - t
    for s in set(targets):
        docker(s, "rm", "-f", *[i for sock, i in ids if sock == s])
        pools[s].shutdown()
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    inventory, sockets = sandbox_up()
    clients = {n: docker_sdk.DockerClient(base_url=s, timeout=30) for n, s in sockets.items()}
    survivors = [n for n in sockets if n != VICTIM]
    settings = load(inventory).settings
    master = start_master(inventory)
    late, a, b = [], [], []
    try:
        for i in range(args.repeat):
            lost, detected, replaced = bicycle_run(clients, survivors)
            direct = direct_run(sockets, survivors, lost)
            late.append(detected - settings.down_after)
            a.append(replaced)
            b.append(direct)
            print(f"run {i + 1}: {lost} slots lost; down event {detected:.2f}s after the kill "
                  f"({late[-1]:+.2f}s past down_after); re-placed {replaced:.2f}s after it, "
                  f"direct docker run {direct:.2f}s", flush=True)
    finally:
        stop_master(master)
        sandbox_down()
    print(f"median detection past down_after ({settings.down_after}s): {statistics.median(late):+.2f}s "
          f"(probe_interval {settings.probe_interval}s)")
    print(f"median re-placement (a) down event -> every slot runs on the survivors: {statistics.median(a):.2f}s")
    print(f"median (b) the same docker run sent straight to the survivors: {statistics.median(b):.2f}s")
    print(f"ratio re-placement a/b: {statistics.median(a) / statistics.median(b):.2f}")


if __name__ == "__main__":
    main()
