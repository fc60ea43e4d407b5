"""Fixtures for tests against a real sandbox: 3 nodes on 127.0.0.21-23,
each with its own sshd and dockerd, and a real master process.

Test files run in parallel (pytest-xdist, one file per worker at a time):
worker N has a sandbox of its own, on addresses and ports of its own (SLOT).

What runs is checked on the engines themselves (each node's Docker socket),
not only through Bicycle's answers.
"""
import os
import signal
import subprocess
import sys
import time

import docker
import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from cli.client import TokenSession  # noqa: E402
from master import auth  # noqa: E402
from sandbox import cluster  # noqa: E402
from sandbox.common import wait_for  # noqa: E402,F401 (the tests' one way to wait)

# 0-2: pytest-xdist's workers; BICYCLE_TEST_SLOT (3-5) gives a run by hand a sandbox of its own.
SLOT = int(os.environ.get("BICYCLE_TEST_SLOT") or os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)


def port(number):
    """A TCP port of this worker: `number` is the port worker 0 uses."""
    return number + 400 * SLOT


NODE_BASE = (20, 30, 90, 160, 170, 180)[SLOT]    # nodes on 127.0.0.(NODE_BASE + i); 40-89 belong to others
NODE_ADDRESSES = [f"127.0.0.{NODE_BASE + i}" for i in (1, 2, 3)]
MASTER_BASE = (100, 150, 200, 210, 220, 230)[SLOT]   # extra masters of a test on 127.0.0.(MASTER_BASE + i)
SANDBOX = os.path.join(ROOT, ".sandbox-test" + (str(SLOT) if SLOT else ""))
API = f"127.0.0.1:{port(7170)}"
BASE = f"http://{API}"
LABEL = "bicycle.service"


class Engines:
    """Direct access to every node's Docker engine, bypassing Bicycle."""

    def __init__(self, sockets):
        self.clients = {name: docker.DockerClient(base_url=url, timeout=30) for name, url in sockets.items()}

    def containers(self, service=None, running_only=True, skip_dead=False):
        """{node: [container]} of Bicycle-labelled containers; with skip_dead,
        nodes whose engine does not answer are left out."""
        label = f"{LABEL}={service}" if service else LABEL
        out = {}
        for name, client in self.clients.items():
            try:
                listed = _list(client, label)
            except (docker.errors.DockerException, requests.RequestException):
                if not skip_dead:
                    raise
                continue
            out[name] = [c for c in listed if not running_only or c.status == "running"]
        return out

    def counts(self, service=None):
        return {name: len(cs) for name, cs in self.containers(service).items()}

    def slots(self, service, skip_dead=False):
        """slot -> number of running containers filling it, over all nodes."""
        out = {}
        for cs in self.containers(service, skip_dead=skip_dead).values():
            for c in cs:
                slot = int(c.labels["bicycle.slot"])
                out[slot] = out.get(slot, 0) + 1
        return out


def _list(client, label):
    """The SDK lists, then inspects each container: one removed in between
    (the engine is busy with Bicycle's work) is left out, not an error."""
    return client.containers.list(all=True, filters={"label": label}, ignore_removed=True)


@pytest.fixture(scope="session")
def sandbox():
    path = cluster.up(SANDBOX, nodes=3, base=NODE_BASE, api=API, log=lambda *a: None)
    yield path
    if not os.environ.get("BICYCLE_KEEP_SANDBOX"):
        cluster.down(SANDBOX, log=lambda *a: None)


@pytest.fixture(scope="session")
def engines(sandbox):
    return Engines(cluster.engines(SANDBOX))


class MasterProcess:
    def __init__(self, inventory, log_path, name=None, api=API):
        self.inventory, self.log_path, self.name, self.api = inventory, log_path, name, api
        self.proc = None

    def start(self, timeout=30, role="leader"):
        """Start the process; wait until it answers /health (in `role`, if given)."""
        log = open(self.log_path, "ab")
        argv = [sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", self.inventory, "up"]
        self.proc = subprocess.Popen(argv + (["--name", self.name] if self.name else []),
                                     stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"master exited {self.proc.returncode}; see {self.log_path}")
            if self.role() is not None and role in (None, self.role()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"master did not answer /health as {role}; see {self.log_path}")

    def role(self):
        try:
            return requests.get(f"http://{self.api}/health", timeout=1).json()["role"]
        except (requests.RequestException, ValueError, KeyError):
            return None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def send(self, sig):
        self.proc.send_signal(sig)


@pytest.fixture(scope="session")
def master(sandbox, engines, tmp_path_factory):
    m = MasterProcess(sandbox, str(tmp_path_factory.mktemp("master") / "master.log"))
    m.start()
    wait_for(lambda: all(n["status"] == "ready" for n in api("GET", "/state").json()["nodes"]), 20)
    remove_all(engines)         # a sandbox kept from an earlier run may hold services
    yield m
    m.stop()


def remove_all(engines):
    for svc in api("GET", "/service").json():
        api("DELETE", f"/service/{svc['name']}")
    wait_for(lambda: not any(engines.containers(running_only=False).values()), 30)
    wait_for(lambda: api("GET", "/service").json() == [], 30)


@pytest.fixture
def clean(master, engines):
    """Every test starts and ends with no service and no labelled container."""
    yield
    remove_all(engines)


def token(kind=auth.ADMIN, directory=SANDBOX):
    """A token of the sandbox's token file (the first master start writes it)."""
    return auth.load(os.path.join(directory, "tokens.json"))[kind]


http = TokenSession(token)      # the admin token, kept across a standby's 307


def api(method, path, body=None, **kw):
    return http.request(method, BASE + path, json=body, timeout=kw.pop("timeout", 90), **kw)

