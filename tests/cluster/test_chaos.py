"""Chaos on the real sandbox: 5 nodes, 3 masters, a writer through whichever
master answers and a nemesis (SIGKILL, SIGSTOP and iptables on the leader,
killed nodes, a large state written while the leader dies); then every promise
of docs/failover.md is checked on the nodes' own files and engines
(sandbox/chaos.py). bench/chaos.py runs the same for longer."""
import os

from conftest import ROOT
from sandbox import chaos

DIR = os.path.join(ROOT, ".sandbox-chaos")
MASTERS = {f"m{i}": (f"127.0.0.{130 + i}", 7390 + i) for i in (1, 2, 3)}


def test_chaos_loses_no_acknowledged_write_and_fences_every_old_leader(tmp_path):
    run = chaos.Run(DIR, base=70, masters=MASTERS, ttl=3.0, log_dir=str(tmp_path))
    history = tmp_path / "history.jsonl"
    try:
        run.up()
        run.chaos(seconds=45)
        problems = run.check(min_acknowledged=15)
    finally:
        run.history.dump(history)
        run.down()
    counts = run.history.of("counts")[-1]
    print(f"chaos seed {run.seed}: {counts}; history in {history}")
    assert problems == [], f"{problems} (seed {run.seed}; history in {history}, master logs in {tmp_path})"
