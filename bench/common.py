"""What the benchmarks share: their own sandbox and master, direct engine calls."""
import os
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli.client import TokenSession  # noqa: E402
from master import auth  # noqa: E402
from sandbox import cluster  # noqa: E402

DIR = os.path.join(ROOT, ".sandbox-bench")
API = "127.0.0.1:7270"
BASE = f"http://{API}"
IMAGE = "bicycle/demo:1"


def admin_token():
    return auth.load(os.path.join(DIR, "tokens.json"))[auth.ADMIN]


http = TokenSession(admin_token)   # the first master start writes the token file


def sandbox_up():
    """Start the benchmark sandbox (127.0.0.41-43); returns (inventory, {node: socket})."""
    inventory = cluster.up(DIR, nodes=3, base=40, api=API, log=lambda *a: None)
    return inventory, cluster.engines(DIR)


def running_slots(clients, service):
    """slot -> running containers of `service`, read from each engine of
    `clients` (docker SDK clients), not from the master."""
    slots = {}
    for client in clients:
        for c in client.api.containers(filters={"label": f"bicycle.service={service}", "status": "running"}):
            slot = int(c["Labels"]["bicycle.slot"])
            slots[slot] = slots.get(slot, 0) + 1
    return slots


def sandbox_down():
    cluster.down(DIR, log=lambda *a: None)


def start_master(inventory):
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", inventory, "up"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = wait_ready(30)
    except BaseException:
        proc.terminate()
        raise
    if not ready:
        proc.terminate()
        raise SystemExit("bench: master did not become ready")
    return proc


def wait_ready(timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = http.get(f"{BASE}/state", timeout=1)
            if r.status_code == 401:
                raise SystemExit(f"bench: the master refuses the token of {DIR}/tokens.json "
                                 f"(is another master on {API}?)")
            if all(n["status"] == "ready" for n in r.json()["nodes"]):
                return True
        except (requests.RequestException, auth.TokenFileError):    # not up yet
            pass
        time.sleep(0.1)
    return False


def stop_master(proc):
    proc.terminate()
    proc.wait(timeout=30)


def docker(sock, *args):
    return subprocess.run(["docker", "-H", sock, *args], check=True, capture_output=True, text=True).stdout
