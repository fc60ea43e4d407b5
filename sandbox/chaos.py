"""Chaos for the standby masters: a writer, a nemesis, a leader sampler, and
checks made at the end on the nodes themselves (their state.json, their audit
and their engines), not only through the API.

tests/cluster/test_chaos.py runs it briefly; bench/chaos.py runs it for
--minutes N. Five sandbox nodes, three masters. The faults: SIGKILL the leader;
SIGSTOP it for 2 x ttl while it has commands in flight; cut it off from a
majority of nodes with iptables (by its source address); kill a node's sshd and
dockerd and bring them back; a large state written while the leader is killed
in the middle of the writes.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import docker
import requests

from cli.client import TokenSession
from master import auth
from sandbox import cluster
from sandbox.common import load as load_sandbox, wait_for as wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "bicycle/demo:1"
NAMES = [f"c{i}" for i in range(8)]
FAULTS = ("kill", "pause", "cut", "node", "big")
PAUSE_TRIES = 4
SUCCESSOR_WAIT = 60      # s: a paused leader wakes once another leads (or after this)
REFUSAL_WAIT = 5         # s: for the woken leader's held commands to reach the nodes
CHAIN = "INPUT"
COMMENT = "bicycle-chaos"


class History:
    """Everything that happened, in order, with the run's own clock."""

    def __init__(self):
        self.started = time.monotonic()
        self.started_wall = time.time()          # to set beside the masters' event times
        self.lock = threading.Lock()
        self.items = []

    def add(self, kind, **fields):
        with self.lock:
            self.items.append(dict(fields, t=round(time.monotonic() - self.started, 3), kind=kind))

    def of(self, kind):
        with self.lock:
            return [i for i in self.items if i["kind"] == kind]

    def dump(self, path):
        with open(path, "w") as f:
            f.write(json.dumps({"kind": "start", "t": 0, "wall": self.started_wall}) + "\n")
            for item in self.items:
                f.write(json.dumps(item, sort_keys=True) + "\n")


class Masters:
    """The master processes of one HA inventory."""

    def __init__(self, inventory, addresses, log_dir):
        self.inventory, self.addresses, self.log_dir = inventory, addresses, log_dir
        self.procs = {}
        self.paused = set()
        self.token = lambda: auth.load(os.path.join(os.path.dirname(inventory), "tokens.json"))[auth.ADMIN]

    def start(self, name):
        log = open(os.path.join(self.log_dir, f"{name}.log"), "ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", self.inventory, "up", "--name", name],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def alive(self, name):
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def signal(self, name, sig):
        self.procs[name].send_signal(sig)
        if sig == signal.SIGSTOP:
            self.paused.add(name)
        elif sig == signal.SIGCONT:
            self.paused.discard(name)
        elif sig == signal.SIGKILL:
            self.procs[name].wait(10)

    def url(self, name):
        address, port = self.addresses[name]
        return f"http://{address}:{port}"

    def health(self, name, session=None):
        try:
            return (session or requests).get(self.url(name) + "/health", timeout=0.5).json()
        except (requests.RequestException, ValueError):
            return None

    def leader(self):
        """(name, epoch) of the one master that says it leads, or None."""
        said = [(n, h["epoch"]) for n in self.addresses
                if n not in self.paused and self.alive(n) and (h := self.health(n)) and h.get("role") == "leader"]
        return said[0] if len(said) == 1 else None

    def wait_leader(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.leader()
            if found:
                return found
            time.sleep(0.05)
        return None

    def stop_all(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                if name in self.paused:
                    p.send_signal(signal.SIGCONT)
                p.kill()
                p.wait(10)


class Client:
    """Writes through whichever master answers; a standby's 307 is followed."""

    def __init__(self, masters, rng):
        self.masters, self.rng = masters, rng
        self.http = TokenSession(masters.token)

    def call(self, method, path, body=None, via=None):
        """-> an HTTP status, "unknown" (sent, no answer) or "unsent"."""
        names = [via] if via else self.rng.sample(list(self.masters.addresses), len(self.masters.addresses))
        for name in names:
            if not self.masters.alive(name) or name in self.masters.paused:
                continue
            try:
                return self.http.request(method, self.masters.url(name) + path, json=body, timeout=15).status_code
            except requests.ConnectTimeout:
                continue                 # nothing was sent: try the next master
            except requests.ConnectionError as e:
                if "NewConnectionError" in repr(e) or "Connection refused" in str(e):
                    continue
                return "unknown"         # sent, and the answer was lost
            except requests.RequestException:
                return "unknown"
        return "unsent"


class Writer(threading.Thread):
    """Creates, scales and deletes services, and records what each write got."""

    def __init__(self, client, history, rng, stopping):
        super().__init__(name="chaos-writer", daemon=True)
        self.client, self.history, self.rng, self.stopping = client, history, rng, stopping

    def run(self):
        present = set()          # names it believes exist: mostly writes that can succeed
        while not self.stopping.is_set():
            name = self.rng.choice(NAMES)
            op = self.rng.choice(("scale", "scale", "delete")) if name in present else "create"
            status = write(self.client, self.history, op, name, self.rng.randint(0, 3))
            if status == 404 or (op == "delete" and status in (200, 202)):
                present.discard(name)
            elif status in (200, 201, 202, 409):
                present.add(name)
            self.stopping.wait(self.rng.uniform(0.05, 0.2))


def write(client, history, op, name, replicas, via=None, env=None):
    """One write, recorded with its outcome: its value is the replicas it sets
    (None for a removal)."""
    if op == "create":
        body = {"name": name, "image": IMAGE, "replicas": replicas, **({"env": env} if env else {})}
        status = client.call("POST", "/service?wait=false", body, via)
    elif op == "scale":
        status = client.call("PATCH", f"/service/{name}?wait=false", {"replicas": replicas}, via)
    else:
        status, replicas = client.call("DELETE", f"/service/{name}?wait=false", None, via), None
    history.add("write", op=op, name=name, value=replicas, status=status)
    return status


class Sampler(threading.Thread):
    """Asks every master for its role and epoch, all the time."""

    def __init__(self, masters, history, stopping):
        super().__init__(name="chaos-sampler", daemon=True)
        self.masters, self.history, self.stopping = masters, history, stopping
        self.http = requests.Session()
        self.leaders = {}          # epoch -> masters that said they lead it
        self.samples = 0

    def run(self):
        while not self.stopping.wait(0.1):
            for name in self.masters.addresses:
                h = self.masters.health(name, self.http)
                if h is None:
                    continue
                self.samples += 1
                if h.get("role") == "leader":
                    self.leaders.setdefault(h["epoch"], set()).add(name)


class Nemesis:
    """Faults, each healed before the next: every kind at least once, then at random."""

    def __init__(self, run):
        self.run = run
        self.pause_service_replicas = 1

    def fault(self, kind):
        r = self.run
        r.history.add("fault", what=kind)
        getattr(self, kind)()
        r.history.add("healed", what=kind)

    def kill(self):
        r = self.run
        leader = r.masters.wait_leader(4 * r.ttl)
        if leader is None:
            return
        r.masters.signal(leader[0], signal.SIGKILL)
        r.history.add("killed", master=leader[0], epoch=leader[1])
        time.sleep(r.rng.uniform(1, 3))
        r.masters.start(leader[0])

    def pause(self):
        """Pause the leader while its loop holds commands (fenced_send_delay
        before each) until another master leads a later epoch: when it wakes
        the commands go, and the nodes that granted the new epoch must refuse
        them. On a loaded machine the pause may come after they went: it is
        tried again (at most PAUSE_TRIES) until a node's audit shows one refused."""
        r = self.run
        for _ in range(PAUSE_TRIES):
            leader = r.masters.wait_leader(4 * r.ttl)
            if leader is None:
                return
            if self._pause_once(*leader):
                return

    def _pause_once(self, name, epoch):
        """-> whether a node refused a command of the paused term."""
        r = self.run
        self.pause_service_replicas = 5 if self.pause_service_replicas == 1 else 1
        status = write(r.client, r.history, "create" if not r.history.of("paused") else "scale", "pz",
                       self.pause_service_replicas, via=name)
        if status not in (200, 201, 202):
            write(r.client, r.history, "scale", "pz", self.pause_service_replicas, via=name)
        self._wait_in_flight(name, "pz", timeout=3.0)
        r.masters.signal(name, signal.SIGSTOP)
        r.history.add("paused", master=name, epoch=epoch)
        time.sleep(2 * r.ttl)
        deadline = time.monotonic() + SUCCESSOR_WAIT
        while (found := r.masters.leader()) is None or found[1] <= epoch:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        r.masters.signal(name, signal.SIGCONT)
        refused = wait_until(lambda: r.refused_actions().get(epoch, 0), REFUSAL_WAIT)
        r.history.add("pause-ends", master=name, successor=found and list(found), refused=refused)
        return refused > 0

    def _wait_in_flight(self, name, service, timeout):
        """Until master `name`'s plan for `service` has a change to make (whose
        fenced commands then wait send_delay before they go), at most `timeout` s."""
        r = self.run
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                plan = r.client.http.get(f"{r.masters.url(name)}/service/{service}", timeout=1).json().get("plan") or []
            except (requests.RequestException, ValueError):
                plan = []
            if any(a.get("kind") != "keep" or a.get("reason") == "change in progress" for a in plan):
                return
            time.sleep(0.02)

    def cut(self):
        r = self.run
        leader = r.masters.wait_leader(4 * r.ttl)
        if leader is None:
            return
        source = r.masters.addresses[leader[0]][0]
        targets = r.rng.sample(r.node_addresses, r.majority)
        for address in targets:
            iptables("-I", source, address)
        r.history.add("cut", master=leader[0], epoch=leader[1], nodes=targets)
        try:
            time.sleep(2 * r.ttl + 1)
        finally:
            for address in targets:
                iptables("-D", source, address)

    def node(self):
        r = self.run
        row = r.rng.choice(cluster.status(r.directory))
        for pid in (row["dockerd_pid"], row["sshd_pid"]):
            if pid:
                os.kill(pid, signal.SIGKILL)
        r.history.add("node-killed", node=row["name"])
        time.sleep(r.rng.uniform(2, 5))
        r.repair()

    def big(self):
        """A state of many large services, written through the leader, which
        is killed in the middle of the writes."""
        r = self.run
        leader = r.masters.wait_leader(4 * r.ttl)
        if leader is None:
            return
        env = {f"K{i}": "x" * 200 for i in range(8)}
        start = len(r.history.of("big-write"))
        writers = [threading.Thread(target=self._bulk, args=(leader[0], start + k, env)) for k in range(4)]
        for w in writers:
            w.start()
        time.sleep(r.rng.uniform(0.5, 1.5))
        r.masters.signal(leader[0], signal.SIGKILL)
        r.history.add("killed", master=leader[0], epoch=leader[1], during="big")
        for w in writers:
            w.join(120)
        r.masters.start(leader[0])

    def _bulk(self, via, k, env):
        r = self.run
        for i in range(15):
            name = f"big{k}-{i}"
            write(r.client_for_bulk(), r.history, "create", name, 0, via=via if r.masters.alive(via) else None,
                  env=env)
            r.history.add("big-write", name=name)


def wait_until(predicate, timeout, interval=0.1):
    """predicate()'s first true value, or its last value after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def iptables(action, source, node_address):
    subprocess.run(["iptables", action, CHAIN, "-s", source, "-d", node_address, "-p", "tcp", "--dport", "22",
                    "-j", "DROP", "-m", "comment", "--comment", COMMENT], check=True)


def clear_iptables():
    """Remove every rule this harness may have left (a crashed run)."""
    rules = subprocess.run(["iptables", "-S", CHAIN], capture_output=True, text=True).stdout.splitlines()
    for rule in rules:
        if COMMENT in rule and rule.startswith("-A "):
            subprocess.run(["iptables", "-D", *rule.split()[1:]], check=False)


class Run:
    """One chaos run over its own sandbox and masters."""

    def __init__(self, directory, base, masters, ttl, log_dir, seed=None, send_delay=0.5, nodes=5):
        self.directory, self.base, self.n_nodes, self.ttl = directory, base, nodes, ttl
        self.addresses = masters
        self.log_dir = log_dir
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.rng = random.Random(self.seed)
        self.history = History()
        self.send_delay = send_delay
        self.majority = nodes // 2 + 1
        self.api = f"127.0.0.1:{min(p for _, p in masters.values()) - 1}"
        self.masters = None

    # -- set up and tear down -----------------------------------------------
    def up(self):
        clear_iptables()
        self.inventory = cluster.up(self.directory, nodes=self.n_nodes, base=self.base, api=self.api,
                                    log=lambda *a: None)
        sb = load_sandbox(self.directory)
        self.nodes = sb.all_nodes()
        self.node_addresses = [n.address for n in self.nodes]
        path = cluster.ha_inventory(self.inventory, self.addresses, self.ttl, name="inventory-chaos.yml",
                                    settings={"fenced_send_delay": self.send_delay})
        self.masters = Masters(path, self.addresses, self.log_dir)
        for name in self.addresses:
            self.masters.start(name)
        self.client = Client(self.masters, self.rng)
        self.engines = {name: docker.DockerClient(base_url=url, timeout=30)
                        for name, url in cluster.engines(self.directory).items()}
        if self.masters.wait_leader(60) is None:
            raise RuntimeError(f"no leader after the start; see {self.log_dir}")
        self._remove_everything()

    def repair(self):
        cluster.up(self.directory, nodes=self.n_nodes, base=self.base, api=self.api, log=lambda *a: None)

    def down(self):
        clear_iptables()
        if self.masters is not None:
            self._keep_master_metrics()
            self.masters.stop_all()
            self._keep_master_states()
        cluster.down(self.directory, log=lambda *a: None)

    def _keep_master_metrics(self):
        """Each live master's /metrics (its SSH command durations on this machine)."""
        http = TokenSession(self.masters.token)
        for name in self.addresses:
            if self.masters.alive(name) and name not in self.masters.paused:
                try:
                    text = http.get(self.masters.url(name) + "/metrics", timeout=5).text
                except requests.RequestException:
                    continue
                with open(os.path.join(self.log_dir, f"{name}.metrics"), "w") as f:
                    f.write(text)

    def _keep_master_states(self):
        """Each master's own store (its event log: the elections' timeline)
        beside the history, before the sandbox goes."""
        for name in self.addresses:
            path = os.path.join(self.directory, f"state-ha.{name}.json")
            if os.path.exists(path):
                shutil.copy(path, os.path.join(self.log_dir, f"{name}.state.json"))

    def client_for_bulk(self):
        return Client(self.masters, random.Random(self.rng.random()))

    def _remove_everything(self):
        """A sandbox kept from an earlier run may hold services."""
        http = TokenSession(self.masters.token)
        leader = self.masters.wait_leader(60)
        for svc in http.get(self.masters.url(leader[0]) + "/service", timeout=30).json():
            http.delete(self.masters.url(leader[0]) + f"/service/{svc['name']}?wait=false", timeout=30)
        wait(lambda: not http.get(self.masters.url(leader[0]) + "/service", timeout=30).json(), 120)

    # -- the run -----------------------------------------------------------------
    def chaos(self, seconds):
        """Writer, sampler and nemesis for `seconds` (and until every fault
        kind happened once); then every fault is healed."""
        stopping = threading.Event()
        self.writer = Writer(self.client, self.history, random.Random(self.rng.random()), stopping)
        self.sampler = Sampler(self.masters, self.history, stopping)
        self.writer.start()
        self.sampler.start()
        nemesis = Nemesis(self)
        schedule = list(FAULTS)
        self.rng.shuffle(schedule)
        ends = time.monotonic() + seconds
        try:
            while schedule or time.monotonic() < ends:
                kind = schedule.pop(0) if schedule else self.rng.choice(FAULTS)
                nemesis.fault(kind)
                time.sleep(self.rng.uniform(1, 3))
        finally:
            stopping.set()
            self.writer.join(30)
            self.heal()

    def heal(self):
        clear_iptables()
        for name in list(self.masters.paused):
            self.masters.signal(name, signal.SIGCONT)
        self.repair()
        for name in self.addresses:
            if not self.masters.alive(name):
                self.masters.start(name)
        healed = time.monotonic()
        found = self.masters.wait_leader(120)
        self.history.add("healed-all", leader=found and found[0],
                         leader_after_s=round(time.monotonic() - healed, 2) if found else None)
        return found

    # -- what is checked -------------------------------------------------------
    def check(self, min_acknowledged):
        """-> a list of problems, empty when every promise held."""
        problems = []
        writes = self.history.of("write")
        acked = [w for w in writes if w["status"] in (200, 201, 202)]
        self.history.add("counts", writes=len(writes), acknowledged=len(acked),
                         unknown=sum(1 for w in writes if w["status"] in ("unknown", 503)),
                         samples=self.sampler.samples)
        if len(acked) < min_acknowledged:
            problems.append(f"only {len(acked)} writes were acknowledged (at least {min_acknowledged} needed)")
        bad = sorted({str(w["status"]) for w in writes if isinstance(w["status"], int) and w["status"] >= 500
                      and w["status"] != 503})
        if bad:
            problems.append(f"5xx answers other than 503: {bad}")
        two = {e: sorted(m) for e, m in self.sampler.leaders.items() if len(m) > 1}
        if two:
            problems.append(f"two masters said they lead one epoch: {two}")
        if self.sampler.samples < 50:
            problems.append(f"only {self.sampler.samples} role samples were taken")
        desired = self._settled_desired()
        problems += self._check_model(desired)
        problems += self._check_replicas(desired)
        problems += self._check_engines(desired)
        problems += self._check_audits()
        return problems

    def _settled_desired(self):
        """The leader's services once no deletion is pending and everything converged."""
        http = TokenSession(self.masters.token)

        def settled():
            leader = self.masters.leader()
            if leader is None:
                return None
            try:
                services = http.get(self.masters.url(leader[0]) + "/service", timeout=30).json()
            except (requests.RequestException, ValueError):
                return None
            if any(s["state"] == "DELETE" or s["status"] != "running" for s in services):
                return None
            return [{s["name"]: s["replicas"]["desired"] for s in services}]

        desired = wait(settled, 180)[0]
        self.history.add("desired", services=desired)
        return desired

    def _candidates(self):
        """name -> the values the final state may have: the last acknowledged
        write's, and those of the writes of unknown outcome after it."""
        out = {}
        for w in self.history.of("write"):
            if w["status"] in (200, 201, 202):
                out[w["name"]] = {w["value"]}
            elif w["status"] in ("unknown", 503):
                out.setdefault(w["name"], {None}).add(w["value"])
        return out

    def _check_model(self, desired):
        problems = []
        for name, values in sorted(self._candidates().items()):
            if desired.get(name) not in values:
                problems.append(f"service {name}: the leader has {desired.get(name)}, the writes allow {values}")
        return problems

    def _check_replicas(self, desired):
        """Every acknowledged final value is in a majority of the nodes' own state.json."""
        copies = []
        for node in self.nodes:
            try:
                with open(os.path.join(node.home, ".bicycle", "state.json")) as f:
                    doc = json.load(f)
                copies.append({s["name"]: s["replicas"] for s in doc["services"] if s["state"] != "DELETE"})
            except (OSError, ValueError, KeyError) as e:
                copies.append(None)
                self.history.add("replica-unreadable", node=node.name, error=str(e))
        problems = []
        for name, values in sorted(self._candidates().items()):
            if len(values) != 1:
                continue                     # an unknown outcome came last: no single value to find
            (value,) = values
            holding = sum(1 for c in copies if c is not None and c.get(name) == value)
            if holding < self.majority:
                problems.append(f"service {name}: {value} is in {holding} of {len(copies)} nodes' state.json")
        return problems

    def _check_engines(self, desired):
        """The engines run exactly the desired replicas: every slot once, nothing else."""
        slots = {}
        for node, client in self.engines.items():
            for c in client.containers.list(all=True, filters={"label": "bicycle.service"}):
                key = (c.labels["bicycle.service"], int(c.labels["bicycle.slot"]))
                slots.setdefault(key, []).append((node, c.status))
        problems = []
        for name, replicas in sorted(desired.items()):
            for slot in range(1, replicas + 1):
                held = slots.pop((name, slot), [])
                if len(held) != 1 or held[0][1] != "running":
                    problems.append(f"{name}.{slot} runs as {held}")
        for (name, slot), held in sorted(slots.items()):
            problems.append(f"{name}.{slot} should not run but does: {held}")
        return problems

    def audits(self):
        """node -> the lines of its audit file (claims and fenced actions)."""
        out = {}
        for node in self.nodes:
            try:
                with open(os.path.join(node.home, ".bicycle", "audit")) as f:
                    out[node.name] = f.read().splitlines()
            except OSError:
                out[node.name] = []
        return out

    def refused_actions(self):
        """epoch -> how many of its actions (not copies) the nodes refused."""
        refused = {}
        for lines in self.audits().values():
            for words in map(str.split, lines):
                if words[:1] == ["refused"] and words[1].isdigit() and words[-1] in ("run", "remove"):
                    refused[int(words[1])] = refused.get(int(words[1]), 0) + 1
        return refused

    def _check_audits(self):
        """On every node no action was accepted under an epoch lower than one
        it granted before; and a paused leader's held commands were refused
        (at least once: the nemesis pauses again until it sees one)."""
        problems = []
        for node, lines in self.audits().items():
            granted = 0
            for words in map(str.split, lines):
                if words[:1] == ["claim"] and words[-1] == "granted":
                    granted = max(granted, int(words[1]))
                elif words[:1] == ["accepted"] and int(words[1]) < granted:
                    problems.append(f"{node} accepted an action of epoch {words[1]} after granting {granted}")
        paused = sorted({p["epoch"] for p in self.history.of("paused")})
        refused = self.refused_actions()
        self.history.add("refused-paused", paused=paused, refused={e: refused.get(e, 0) for e in paused})
        if not any(refused.get(e) for e in paused):
            problems.append(f"no command of the paused leaders (epochs {paused}) was refused")
        return problems
