"""The master process: wires inventory, store, fleet, probers, loop and API.

`Master(inventory).serve()` runs until SIGTERM/SIGINT, then stops the loop,
the probers and the HTTP server, and closes the SSH connections.
"""
import ipaddress
import os
import signal
import sys
import threading
import time

import requests
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from master import auth
from master.api import Desired, Leadership, Monitor, Waits, make_app
from master.election import Election
from master.events import EventLog, iso
from master.logs import Logs
from master.metrics import Metrics
from master.loop import Loop
from master.observe import Observation, Prober
from master.doctor import Doctor
from master.membership import Membership
from master.node_changes import NodeChanges
from master.vault import Vault
from master.view import ThisMaster, Views
from model import DELETE
from remote.transport import Fleet
from store.state import Store


class Master:
    def __init__(self, inventory, name=None, clock=time.monotonic, wall=time.time):
        me = inventory.master(name)
        self.inventory, self.name, self.api = inventory, me["name"], me["api"]
        self.settings = s = inventory.settings
        started_wall = wall()
        self.tokens = auth.load_or_create(s.api.tokens)
        self.vault = Vault.open_or_create(s.secrets_key)
        self.store = Store(state_file(s.state_file, self.name, len(inventory.masters)))
        self.metrics = Metrics(lambda: self.views.state())
        self.fleet = Fleet(inventory.nodes, s.known_hosts, s.connect_timeout,
                           s.command_timeout, int(s.per_node_parallelism), source=me.get("source"),
                           send_delay=float(s.fenced_send_delay),
                           on_command=lambda node, seconds: self.metrics.ssh.labels(node).observe(seconds))
        self.observation = Observation([n.name for n in inventory.nodes], s, clock=clock)
        self.events = EventLog(self.store, wall)
        wake = threading.Event()            # the loop's: set to start a round soon
        self.election = Election(self.name, me["index"], self.fleet, self.store, s, self.events.record, clock,
                                 on_lead=wake.set, on_adopted=lambda doc: self.membership.adopted(doc))
        self.loop = Loop(self.store, self.fleet, self.observation, self.election, self.events, s,
                         clock=clock, wall=wall, vault=self.vault, woken=wake,
                         on_round=self.metrics.reconcile.observe,
                         node_labels=lambda: {n.name: dict(n.labels) for n in self.membership.nodes()})
        self.peers = {}                     # other masters as last seen over HTTP
        self.membership = Membership(inventory, self.fleet, self.observation, self.election, self.events.record,
                                     self._prober, me=self.name)
        self.views = Views(self.store, self.observation, self.loop, self.election, inventory,
                           ThisMaster(self.name, self.api, started_wall), self.peers, self.leader,
                           members=self.membership.nodes)
        self.logs = Logs(self.fleet, self.observation, clock)
        desired = Desired(self.store, self.vault, self.membership.names, self.election.change,
                          self.events.record, self.loop.wake, self.now_iso)
        self.app = make_app(
            self.tokens, self.metrics.requests, views=self.views, desired=desired,
            leadership=Leadership(self.name, self.election, self.leader, inventory.url),
            waits=Waits(s.converge_timeout, self.wait_settled, self.wait_empty),
            monitor=Monitor(self.logs, self.observation.containers, self.loop.stopping, self.metrics.render),
            doctor=Doctor(self.fleet, self.store, wall).examine,
            changes=NodeChanges(self.membership, self.election, self.store, desired.drain, self.wait_empty, s,
                                self.events.record, wall))
        self.server = None

    def _prober(self, name, stop):
        """A started prober of node `name`; `stop` ends it (the node left)."""
        prober = Prober(name, self.fleet, self.observation, stop, self.now_iso)
        prober.start()
        return prober

    def now_iso(self):
        return iso(self.loop.wall())

    def wait_settled(self, name, version, timeout):
        """Block until the service's `version` converged, failed or (when
        deleting) is gone; False on timeout."""
        return self._wait_until(lambda: self._settled(name, version), timeout)

    def _settled(self, name, version):
        service = self.store.service(name)
        if service is None or service.version > version:
            return True
        if service.state == DELETE:
            return False
        return self.views.settled(service)

    def wait_empty(self, node, timeout):
        """Block until a listing of `node` sent after this call, and after the
        last action there ended, shows no Bicycle container, with no placement
        on it under way (a docker run that failed late may have left one);
        False on timeout. A node that cannot be listed never counts as empty."""
        since = self.loop.clock()
        return self._wait_until(lambda: not self.loop.placing_on(node) and self.observation.empty(
            node, max(since, self.loop.last_action_end(node))), timeout)

    def _wait_until(self, done, timeout):
        """Check `done()` on every change of the observation or the loop (and
        twice a second anyway) until it is true; False on timeout. No lock is
        held while waiting."""
        deadline = self.loop.clock() + timeout
        while True:
            mark = self.observation.changed.mark()
            if done():
                return True
            left = deadline - self.loop.clock()
            if left <= 0:
                return False
            self.observation.changed.wait(mark, min(left, 0.5))

    def leader(self):
        """(name, api, epoch) of the leader as this master sees it, or None."""
        seen = self.election.leader_seen
        if seen is None:
            return None
        api = next((m["api"] for m in self.inventory.masters if m["name"] == seen[0]), None)
        return seen[0], api, seen[1]

    def watch_peers(self):
        others = [m for m in self.inventory.masters if m["name"] != self.name]
        while others and not self.loop.stopping.wait(2.0):
            for m in others:
                try:
                    health = requests.get(self.inventory.url(m["api"]) + "/health", timeout=0.5,
                                          verify=self.inventory.verify).json()
                    self.peers[m["name"]] = {"reachable": True, "role": health.get("role"),
                                             "epoch": health.get("epoch")}
                except (requests.RequestException, ValueError):
                    self.peers[m["name"]] = {"reachable": False, "role": None, "epoch": None}

    def start(self):
        stored = self.store.members()
        if stored is not None:              # changed through the API before this master last stopped
            self.membership.apply(stored, self.store.stamp(), write_file=False)
        self.membership.start()
        self.election.start()
        threading.Thread(target=self.watch_peers, name="peers", daemon=True).start()
        self.loop.start()
        self.events.record("master", f"master {self.name} started")

    def stop(self):
        self.election.stop()
        self.loop.stop()
        self.membership.stop()
        if self.server is not None:
            self.server.stop()
        self.loop.join(timeout=5)
        self.events.flush()
        self.fleet.close()
        self.store.close()

    def serve(self):
        host, port = self.api.rsplit(":", 1)
        self.server = wsgi.Server((host.strip("[]"), int(port)), self.app, numthreads=16,
                                  server_name="bicycle")
        tls = self.settings.api.tls
        if tls:
            self.server.ssl_adapter = BuiltinSSLAdapter(tls.certificate, tls.key)
        elif not is_loopback(host):
            print(f"bicycle: warning: the API on {self.api} is not on a loopback address and has no TLS: "
                  f"tokens and secrets cross the network in clear (set settings.api.tls)",
                  file=sys.stderr, flush=True)
        stop = threading.Event()

        def on_signal(signum, frame):
            stop.set()
            threading.Thread(target=self.server.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            self.server.prepare()
            print(f"bicycle master {self.name} listening on {self.inventory.url(self.api)}", flush=True)
            self.server.serve()
        finally:
            self.stop()


def state_file(path, master, masters):
    """With several masters in one inventory each keeps its own file."""
    if masters <= 1:
        return path
    root, ext = os.path.splitext(path)
    return f"{root}.{master}{ext or '.json'}"


def is_loopback(host):
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
