"""A lease renewal while fenced actions run, against an idle renewal.

Renewals must never wait for running actions (README, "Renewals never
wait"): an action holds the node's lock shared and a renewal takes it shared
too. Both figures come from the same run of the real node scripts
(remote/lease.py) under /bin/sh and flock in a temporary HOME, as sshd would
run them (no network: the scripts' own cost). Printed: the median renewal
idle, the median renewal with --actions long actions holding the lock, and
their ratio last (1.0 means the actions cost a renewal nothing).

    .venv/bin/python bench/renew.py [--rounds 200] [--actions 4]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from remote import lease, parse  # noqa: E402


def run(home, argv, wait=True):
    assert argv[:2] == ["sh", "-c"]
    env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = subprocess.Popen(["/bin/sh", *argv[1:]], env=env, cwd=home, stdout=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=30)
    return out


def renewals(home, rounds):
    """Seconds of each of `rounds` renewals, one after the other."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = parse.renew(run(home, lease.renew(7, "m1")))
        times.append(time.perf_counter() - started)
        assert answer.renewed, answer
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--actions", type=int, default=4, help="long fenced actions holding the lock meanwhile")
    ap.add_argument("--quick", action="store_true", help="50 rounds")
    args = ap.parse_args()
    rounds = 50 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="bicycle-renew-") as home:
        assert parse.claim(run(home, lease.claim(7, "m1"))).granted
        renewals(home, 5)                                   # warm the page cache
        idle = statistics.median(renewals(home, rounds))
        release = os.path.join(home, "release")
        wait = f'while [ ! -e "{release}" ]; do sleep 0.01; done'
        actions = [run(home, lease.fenced(7, "run", ["sh", "-c", wait]), wait=False) for _ in range(args.actions)]
        try:
            deadline = time.monotonic() + 10
            while open(os.path.join(home, ".bicycle", "audit")).read().count("accepted 7 7 run") < args.actions:
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the actions did not start")
                time.sleep(0.01)
            busy = statistics.median(renewals(home, rounds))
            still_running = all(a.poll() is None for a in actions)
        finally:
            open(release, "w").close()
            for a in actions:
                a.wait(30)
    if not still_running:
        raise SystemExit("bench: an action ended before the renewals did")
    print(f"renewal, idle:                          {idle * 1000:.2f} ms (median of {rounds})")
    print(f"renewal, {args.actions} actions holding the lock:    {busy * 1000:.2f} ms (median of {rounds})")
    print(f"ratio (busy / idle): {busy / idle:.2f}")


if __name__ == "__main__":
    main()
