#!/usr/bin/env python3
"""Benchmark: a rolling update of 12 replicas over 3 nodes from bicycle/demo:1
to demo:2, 3 slots at a time, start-first, monitor 0 (a: from the PATCH until
the engines themselves run demo:2 in every slot and demo:1 nowhere) against
the same work sent straight to the engines (b): in batches of 3, `docker run
-d` of the new containers, then `docker rm -f` of the old ones, each batch
after the last one finished. Bicycle's batches wait for a listing of each
new container (its health) before the next one: that gate is what a/b
measures. Prints medians and the ratio a/b last.

Usage: .venv/bin/python bench/rollout.py [--repeat 3]
It starts its own sandbox (127.0.0.41-43) and master (127.0.0.1:7270) and
removes them at the end.
"""
import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import docker as docker_sdk

from common import API, IMAGE, docker, http, sandbox_down, sandbox_up, start_master, stop_master

REPLICAS, BATCH = 12, 3
NEW = "bicycle/demo:2"


def images_by_slot(clients, service):
    """slot -> the images running it, over every engine."""
    out = {}
    for client in clients:
        for c in client.containers.list(filters={"label": f"bicycle.service={service}"}):
            out.setdefault(int(c.labels["bicycle.slot"]), []).append(c.attrs["Config"]["Image"])
    return out


def bicycle_run(clients):
    r = http.post(f"http://{API}/service", json={"name": "bench", "image": IMAGE, "replicas": REPLICAS},
                  timeout=120)
    if r.status_code != 201:
        raise SystemExit(f"bench: create refused or slow: {r.status_code} {r.text[:300]}")
    want = {s: [NEW] for s in range(1, REPLICAS + 1)}
    t = time.perf_counter()
    r = http.patch(f"http://{API}/service/bench?wait=false", timeout=120,
                   json={"image": NEW, "update": {"parallelism": BATCH, "monitor": 0, "order": "start-first"}})
    try:
        if r.status_code != 202:
            raise SystemExit(f"bench: update refused: {r.status_code} {r.text[:300]}")
        while images_by_slot(clients, "bench") != want:
            if time.perf_counter() - t > 180:
                raise SystemExit("bench: the engines never ran the new image in every slot")
            time.sleep(0.02)
        return time.perf_counter() - t
    finally:
        http.delete(f"http://{API}/service/bench", timeout=120).raise_for_status()


def direct_run(engines):
    socks = list(engines.values())
    where = [socks[i % len(socks)] for i in range(REPLICAS)]
    pool = ThreadPoolExecutor(BATCH * 2)
    old = list(pool.map(lambda s: (s, docker(s, "run", "-d", "--label", "bench.direct=1", IMAGE).strip()), where))
    t = time.perf_counter()
    new = []
    for i in range(0, REPLICAS, BATCH):
        batch = old[i:i + BATCH]
        new += list(pool.map(lambda o: (o[0], docker(o[0], "run", "-d", "--label", "bench.direct=1", NEW).strip()),
                             batch))
        list(pool.map(lambda o: docker(o[0], "rm", "-f", o[1]), batch))
    elapsed = time.perf_counter() - t
    list(pool.map(lambda n: docker(n[0], "rm", "-f", n[1]), new))
    pool.shutdown()
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    inventory, engines = sandbox_up()
    clients = [docker_sdk.DockerClient(base_url=s, timeout=30) for s in engines.values()]
    master = start_master(inventory)
    a, b = [], []
    try:
        direct_run(engines)          # warm-up, not counted
        for i in range(args.repeat):
            a.append(bicycle_run(clients))
            b.append(direct_run(engines))
            print(f"run {i + 1}: bicycle {a[-1]:.3f}s  direct {b[-1]:.3f}s", flush=True)
    finally:
        stop_master(master)
        sandbox_down()
    print(f"median rolling update (a) bicycle: {statistics.median(a):.3f}s")
    print(f"median direct batches (b) docker:  {statistics.median(b):.3f}s")
    print(f"ratio a/b: {statistics.median(a) / statistics.median(b):.2f}")


if __name__ == "__main__":
    main()
