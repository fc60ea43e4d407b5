#!/usr/bin/env python3
"""Benchmark: POST /service of 12 replicas over 3 nodes until every slot runs
on the engines themselves (a: sampled on the engines, not read from the
master) against the same 12 `docker run -d` sent straight to the three engines
with the same per-node concurrency (b). Prints medians, /state latency during
the deploys, and the ratio a/b last.

Usage: .venv/bin/python bench/converge.py [--repeat 5]
It starts its own sandbox (127.0.0.41-43) and master (127.0.0.1:7270) and
removes them at the end.
"""
import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor


import docker as docker_sdk

from common import API, IMAGE, docker, http, running_slots, sandbox_up, sandbox_down, start_master, stop_master

REPLICAS, PER_NODE = 12, 4


def sample_state(stop, latencies):
    while not stop.is_set():
        t = time.perf_counter()
        http.get(f"http://{API}/state", timeout=10)
        latencies.append(time.perf_counter() - t)
        time.sleep(0.02)


def bicycle_run(clients, latencies):
    stop = threading.Event()
    sampler = threading.Thread(target=sample_state, args=(stop, latencies))
    sampler.start()
    want = {s: 1 for s in range(1, REPLICAS + 1)}
    t = time.perf_counter()
    r = http.post(f"http://{API}/service?wait=false", json={"name": "bench", "image": IMAGE, "replicas": REPLICAS},
                  timeout=120)
    try:
        if r.status_code != 202:
            raise SystemExit(f"bench: create refused: {r.status_code} {r.text[:300]}")
        while running_slots(clients, "bench") != want:
            if time.perf_counter() - t > 120:
                raise SystemExit("bench: the engines never ran every slot")
            time.sleep(0.01)
        elapsed = time.perf_counter() - t
    finally:
        stop.set()
        sampler.join()
    http.delete(f"http://{API}/service/bench", timeout=120).raise_for_status()
    return elapsed


def direct_run(engines):
    socks = list(engines.values())
    per_node = [socks[i % len(socks)] for i in range(REPLICAS)]
    pools = {s: ThreadPoolExecutor(PER_NODE) for s in socks}
    t = time.perf_counter()
    futures = [pools[s].submit(docker, s, "run", "-d", "--label", "bench.direct=1", IMAGE) for s in per_node]
    ids = [(s, f.result().strip()) for s, f in zip(per_node, futures)]
    elapsed = time.perf_counter() - t
    for s in socks:
        mine = [i for sock, i in ids if sock == s]
        docker(s, "rm", "-f", *mine)
        pools[s].shutdown()
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    inventory, engines = sandbox_up()
    clients = [docker_sdk.DockerClient(base_url=s, timeout=30) for s in engines.values()]
    master = start_master(inventory)
    a, b, latencies = [], [], []
    try:
        direct_run(engines)          # warm-up, not counted
        for i in range(args.repeat):
            a.append(bicycle_run(clients, latencies))
            b.append(direct_run(engines))
            print(f"run {i + 1}: bicycle {a[-1]:.3f}s  direct {b[-1]:.3f}s", flush=True)
    finally:
        stop_master(master)
        sandbox_down()
    lat = sorted(latencies)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"/state latency during deploys: p50 {statistics.median(lat) * 1000:.1f} ms, "
          f"p99 {p99 * 1000:.1f} ms ({len(lat)} samples)")
    print(f"median converge (a) bicycle: {statistics.median(a):.3f}s")
    print(f"median direct    (b) docker: {statistics.median(b):.3f}s")
    print(f"ratio a/b: {statistics.median(a) / statistics.median(b):.2f}")


if __name__ == "__main__":
    main()
