#!/usr/bin/env python3
"""Chaos, longer than the test: 5 sandbox nodes, 3 masters, a writer and a
nemesis for --minutes N (sandbox/chaos.py), then every promise checked on the
nodes themselves. Prints the counts, how long the cluster took to have a
leader again once every fault was healed (against 2 x lease_ttl), and exits 1
when a promise did not hold.

Usage: .venv/bin/python bench/chaos.py [--minutes 5] [--ttl 3] [--seed N]
"""
import argparse
import os
import sys
import tempfile

from common import ROOT
from sandbox import chaos

DIR = os.path.join(ROOT, ".sandbox-bench-chaos")
MASTERS = {f"m{i}": (f"127.0.0.{140 + i}", 7490 + i) for i in (1, 2, 3)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    logs = tempfile.mkdtemp(prefix="bicycle-chaos-")
    run = chaos.Run(DIR, base=80, masters=MASTERS, ttl=args.ttl, log_dir=logs, seed=args.seed)
    try:
        run.up()
        run.chaos(seconds=args.minutes * 60)
        problems = run.check(min_acknowledged=int(20 * args.minutes))
    finally:
        run.history.dump(os.path.join(logs, "history.jsonl"))
        run.down()
    faults = [f["what"] for f in run.history.of("fault")]
    counts = run.history.of("counts")[-1]
    after = run.history.of("healed-all")[-1]["leader_after_s"]
    print(f"seed {run.seed}; faults: " + ", ".join(f"{k} x{faults.count(k)}" for k in chaos.FAULTS))
    print(f"writes {counts['writes']}, acknowledged {counts['acknowledged']}, unknown outcome {counts['unknown']}; "
          f"role samples {counts['samples']}; refused commands of paused leaders "
          f"{run.history.of('refused-paused')[-1]['count']}")
    print(f"history and master logs in {logs}")
    for p in problems:
        print(f"PROBLEM: {p}")
    print(f"leader after the last fault healed: {after}s; ratio to 2 x lease_ttl: "
          f"{after / (2 * args.ttl):.2f}" if after is not None else "no leader after the faults healed")
    sys.exit(1 if problems or after is None else 0)


if __name__ == "__main__":
    main()
