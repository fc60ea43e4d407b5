"""The leader's side of a membership change: add, relabel or remove a node.

Adding: the node's host key is pinned only if it matches the fingerprint
given (or trust on first use was asked); then the node must pass the
doctor's checks that joining needs (engine, docker access, flock,
~/.bicycle; a node without docker runs settings.bootstrap first) and hold no
lease of a newer epoch; the images the services use that it lacks are
copied to it from a member (no registry needed). Only then is the new member
list committed: written here and on a majority of the members as they were
(Election.change), and put in force (Membership.apply). Removing drains the
node first (its replicas move start-first) unless forced. One change at a
time; each is an event.
"""
import time

from master.doctor import images_in_use
from master.membership import Membership
from master.replication import NotLeader
from model import NodeInfo
from remote import commands, hostkeys, images, lease as lease_cmd, parse
from remote.transport import NodeConnection, RemoteError
from scheduler import doctor
from store.state import Conflict, Missing

NEEDED = ("engine", "docker access", "flock", "~/.bicycle")     # the doctor's checks a joining node must pass
BOOTSTRAP_TIMEOUT = 900.0                                        # an engine install over a slow mirror


class NodeRefused(Exception):
    """A node that cannot join: the reason, and what was seen (fingerprint, checks)."""

    def __init__(self, message, **seen):
        super().__init__(message)
        self.seen = seen


class NodeChanges:
    def __init__(self, membership: Membership, election, store, drain, emptied, settings, events, wall=time.time):
        """drain(node): commit the node's drain; emptied(node, timeout): wait
        until it has no container (False on timeout)."""
        self.members, self.election, self.store = membership, election, store
        self.drain, self.emptied, self.settings, self.events, self.wall = drain, emptied, settings, events, wall

    def add(self, entry, fingerprint=None, trust=False):
        """entry: a validated node (name, host, port, user, key, labels) -> its NodeInfo."""
        with self.members.changing:
            info = self._new(entry)
            seen = self._pin(info, fingerprint, trust)
            self._check(info)
            records = self.members.current() + [self.members.record(info, seen.text)]
            self._commit(records, f"node {info.name} added ({info.user}@{info.address}, {seen.fingerprint})",
                         node=info.name, drained=False)
            return info

    def relabel(self, name, labels):
        with self.members.changing:
            records = [dict(r, labels=dict(labels)) if r["name"] == name else r for r in self._member(name)]
            self._commit(records, f"node {name} labels: {labels or '{}'}", node=name)

    def remove(self, name, force=False, timeout=60.0):
        """Drain `name` (unless forced) until it is empty, then forget it."""
        with self.members.changing:
            records = [r for r in self._member(name) if r["name"] != name]
            if not records:
                raise Conflict(f"{name} is the only node; a cluster needs one")
            if not force:
                self.drain(name)
                if not self.emptied(name, timeout):
                    raise Conflict(f"node {name} still runs containers after {timeout:.0f}s of draining; "
                                   f"it stays drained: try again, or remove it with force")
            self._commit(records, f"node {name} removed" + (" (forced, not drained)" if force else ""), node=name,
                         drained=True)

    # -- steps -------------------------------------------------------------------
    def _member(self, name):
        records = self.members.current()
        if name not in {r["name"] for r in records}:
            raise Missing(f"no node named {name!r}")
        return records

    def _new(self, entry):
        for r in self.members.current():
            if r["name"] == entry["name"]:
                raise Conflict(f"node {entry['name']!r} already exists")
            if (r["host"], r["port"], r["user"]) == (entry["host"], entry.get("port", 22), entry.get("user", "root")):
                raise Conflict(f"{entry.get('user', 'root')}@{entry['host']}:{entry.get('port', 22)} "
                               f"is node {r['name']} already")
        return self.members.info(dict({"port": 22, "user": "root", "key": None, "labels": {}}, **entry))

    def _pin(self, info, fingerprint, trust):
        known_hosts = self.settings.known_hosts
        try:
            seen = hostkeys.trust(known_hosts, info, fingerprint, accept=trust, timeout=self.settings.connect_timeout)
        except hostkeys.TrustError as e:
            presented = e.presented.fingerprint if e.presented else None
            raise NodeRefused(str(e), fingerprint=presented) from None
        if not seen.pinned:
            raise NodeRefused(f"{info.name} presents {seen.kind} key {seen.fingerprint}: compare it with the node's "
                              f"own (ssh-keygen -lf on the node), then add it with that fingerprint, or trust it "
                              f"on first use", fingerprint=seen.fingerprint)
        return seen

    def _check(self, info: NodeInfo):
        """The doctor's checks a joining node needs, and no lease of a newer epoch."""
        conn = NodeConnection(info, self.settings.known_hosts, self.settings.connect_timeout)
        try:
            sent = self.wall()
            in_use = images_in_use(self.store)
            facts = parse.doctor(conn.run(commands.doctor(in_use), timeout=30).stdout)
            if not facts.get("docker_path"):
                self._bootstrap(conn, info)
                conn.close()                 # a new session: a docker group joined takes effect there
                conn = NodeConnection(info, self.settings.known_hosts, self.settings.connect_timeout)
                sent = self.wall()
                facts = parse.doctor(conn.run(commands.doctor(in_use), timeout=30).stdout)
            checks = [c for c in doctor.examine(facts, [], sent, self.wall()) if c.check in NEEDED]
            failed = [c for c in checks if not c.ok]
            if failed:
                raise NodeRefused(f"{info.name} cannot join: " + "; ".join(f"{c.check}: {c.detail} ({c.hint})"
                                                                           for c in failed),
                                  checks=doctor.report(info.name, checks)["checks"])
            read = parse.lease(conn.run(lease_cmd.read(), timeout=10).stdout)
            self._load_images(conn, info, facts["images_missing"])
        except RemoteError as e:
            raise NodeRefused(f"{info.name} cannot join: {e}") from None
        finally:
            conn.close()
        epoch = self.election.current_epoch()
        ours = read.lease is not None and read.lease.holder == self.members.me
        if read.node_epoch and (read.node_epoch > epoch or (read.node_epoch == epoch and not ours)):
            raise NodeRefused(f"{info.name} granted epoch {read.node_epoch} to "
                              f"{read.lease.holder if read.lease else 'another master'} (this cluster is at "
                              f"{epoch}): a node of another cluster; clear ~/.bicycle on it first")

    def _load_images(self, conn, info, missing):
        """Copy the services' images the node lacks from a member that has
        them (no registry needed); one that cannot be copied is an event, and
        the engine pulls it later if the service's pull policy lets it."""
        for image in missing:
            result = None
            for source in list(self.members.fleet.connections.values()):
                result = images.copy(image, source, conn)
                if not result.error:
                    break
            if result is None or result.error:
                self.events("bootstrap", f"{info.name}: {image} not copied from any member: "
                                         f"{result.error if result else 'no member'}", node=info.name)
            else:
                self.events("bootstrap", f"{info.name}: {image} copied from {source.node.name} "
                                         f"({result.sent} bytes in {result.seconds:.1f}s)", node=info.name)

    def _bootstrap(self, conn, info):
        """Install the engine on a node without `docker` (settings.bootstrap)."""
        self.events("bootstrap", f"{info.name} has no docker command: running settings.bootstrap", node=info.name)
        result = conn.run(["sh", "-c", self.settings.bootstrap], timeout=BOOTSTRAP_TIMEOUT)
        if not result.ok:
            words = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise NodeRefused(f"{info.name} has no docker and settings.bootstrap failed (exit {result.exit}: "
                              f"{' / '.join(words) or 'no output'}): install the engine there by hand, or set "
                              f"settings.bootstrap to a command that can")
        self.events("bootstrap", f"{info.name}: settings.bootstrap done", node=info.name)

    def _commit(self, records, message, node, drained=None):
        """The new list, committed to a majority of the members as they are,
        then in force here; the new members get the state right away.
        `drained` (True/False) sets the node's availability in the same
        change: a node added starts active (one removed after its drain and
        added again takes work), a node removed is drained (even when forced)
        so that no round places on it before it is forgotten.

        A commit that fails leaves the list written here but not known to be
        on a majority: this master stops leading that term, and the next
        leader (this one again, or another) counts with the list it finds."""
        def change():
            self.store.set_members(records)
            if drained is not None:
                self.store.set_drained(node, drained)
            return self.store.stamp()
        epoch = self.election.current_epoch()
        try:
            stamp = self.election.change_members(change, epoch)
        except NotLeader as e:
            self.election.give_up(epoch, f"the change of members could not be committed: {e}")
            raise
        self.members.apply(records, stamp)
        self.events("members", message, node=node)
        try:
            self.election.replicate()
        except NotLeader as e:
            self.events("error", f"the state did not reach the new members yet: {e}")
