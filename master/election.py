"""Leadership: the quorum lease on the nodes and the terms it gives.

A master is a standby or the leader. A standby polls every node's lease
POLLS_PER_TTL times per ttl and campaigns when scheduler.lease says so; the
leader renews every ttl/3 and stops acting as soon as it cannot show a
majority within 2*ttl/3. Everything a leader does belongs to one epoch:

- an action or a write names its epoch; it is dropped, never run, once that
  epoch is over here, and the nodes refuse it once they granted a newer one;
- a refusal (or a claim answered with a higher epoch) ends only the epoch it
  was about, never a newer term of the same master;
- a local write and the adoption of a replica never interleave (term_lock):
  a write made in epoch E is acknowledged only when a copy written under E
  reaches a majority (master/replication.py).

Lease traffic (reads, claims, renewals) has its own pool and bounded rounds,
so neither busy nodes, nor replication, nor a connect to an unreachable node
can hold a renewal up. docs/failover.md gives the protocol and its safety
argument.
"""
import json
import random
import threading
import time
from contextlib import contextmanager

from master.replication import NotLeader, Replicator, digest, newest_readable
from model import ClaimAnswer, LeaseRead, RenewAnswer, Stamp
from remote import lease as cmd, parse
from remote.transport import RemoteError, Rounds
from scheduler import lease as rules

__all__ = ["Election", "NotLeader", "LEADER", "STANDBY"]

LEADER, STANDBY = "leader", "standby"
# Standbys read the leases 10 times per ttl: a read costs ~15 ms per node, and
# the finer clock shortens a takeover by up to ttl/10.
POLLS_PER_TTL = 10


class Unusable(RemoteError):
    """A node that cannot take part now (its epoch file is unreadable)."""


class Election(threading.Thread):
    def __init__(self, me, index, fleet, store, settings, events, clock=time.monotonic, rand=random.random,
                 on_lead=lambda: None, on_adopted=lambda doc: None):
        super().__init__(name="election", daemon=True)
        self.me, self.index, self.fleet, self.store = me, index, fleet, store
        self.ttl = float(settings.lease_ttl)
        self.events = events                  # callable(kind, message, **fields)
        self.on_lead = on_lead                # called when this master starts leading
        self.on_adopted = on_adopted          # called with each replica adopted (its membership may differ),
                                              # and with the store's member list when taking office
        self.clock, self.rand = clock, rand
        self.nodes = list(fleet.connections)
        self.rounds = Rounds(2 * len(self.nodes) + 2, "lease")
        self.replicator = Replicator(self.nodes, self._snapshot, self._send_replica)
        self.lock = threading.RLock()         # role, epoch, claimed, watches
        self.term_lock = threading.RLock()    # local writes and adoptions, one at a time
        self.stopping = threading.Event()
        self.role, self.epoch = STANDBY, None
        self.claimed = {}                     # node -> the epoch we hold a grant of there
        self.last_good = None                 # since when a majority has renewed (rules.renewed_since)
        self.renewals = {}                    # node -> when its newest accepted renewal of our epoch was sent
        self.watches = {n: rules.Watch() for n in self.nodes}
        self.leader_seen = None               # (holder, epoch) named on a majority of nodes
        self.highest_seen = 0
        self.reason = "starting: no lease read yet"
        self.polled = False                   # has one poll round finished
        self.reported = set()                 # unreadable replicas already told as events
        self.office_failures = 0              # campaigns won in a row whose taking of office failed
        self.quiet_until = None               # no campaign before this, after such a failure

    # -- what others ask -----------------------------------------------------
    @property
    def role_name(self):
        """leader, standby, or starting (before the first look at the leases)."""
        if self.is_leader():
            return LEADER
        return STANDBY if self.polled else "starting"

    def status(self):
        """(role name, epoch or None), read together."""
        with self.lock:
            role = self.role_name
            return role, self.epoch if role == LEADER else None

    @property
    def write_timeout(self):
        return max(1.0, self.ttl / 3)

    def is_leader(self):
        try:
            self.current_epoch()
            return True
        except NotLeader:
            return False

    def current_epoch(self):
        """This master's epoch, if it may act now: it leads, and its last good
        renewal round is recent enough (2*ttl/3). Raises NotLeader otherwise."""
        with self.lock:
            if self.role == LEADER and rules.must_step_down(self.last_good, self.clock(), self.ttl):
                self._step_down("no renewal on a majority within 2/3 of the lease")
            if self.role != LEADER:
                raise NotLeader(self.reason)
            return self.epoch

    def settle(self, timeout):
        """Wait at most `timeout` s for the election to settle: True once this
        master leads, False as soon as another master is named leader (or at
        the end). A write that comes while a master is still starting, or
        while a term is changing hands, waits here instead of failing."""
        deadline = time.monotonic() + timeout
        while not self.is_leader():
            seen = self.leader_seen
            if (seen is not None and seen[0] != self.me) or time.monotonic() >= deadline:
                return False
            if self.stopping.wait(0.05):
                return False
        return True

    def check(self, epoch):
        """Raise NotLeader unless `epoch` is the epoch this master acts in now."""
        if self.current_epoch() != epoch:
            raise NotLeader(f"epoch {epoch} is over (now {self.epoch})")

    @contextmanager
    def term(self, epoch=None):
        """Hold the current term (no adoption, no new term meanwhile); yields its epoch."""
        with self.term_lock:
            current = self.current_epoch()
            if epoch is not None and current != epoch:
                raise NotLeader(f"epoch {epoch} is over (now {current})")
            yield current

    def local_change(self, fn, epoch=None):
        """fn() changes the store within the current term -> (epoch, version, fn's result)."""
        with self.term(epoch) as current:
            result = fn()
            return current, self.store.stamp()[1], result

    def commit(self, epoch, version):
        """Wait until a majority holds (epoch, version); NotLeader when it cannot."""
        return self.replicator.commit(epoch, version, self.write_timeout)

    def change(self, fn, epoch=None):
        """A write: fn() on the store, acknowledged once a majority holds it under
        the epoch it was made in. Raises NotLeader (outcome unknown) otherwise."""
        current, version, result = self.local_change(fn, epoch)
        self.commit(current, version)
        return result

    def replicate(self, epoch=None):
        """Bring a majority up to the store as it is now."""
        return self.change(lambda: None, epoch)

    def change_members(self, fn, epoch):
        """A write of a new member list: only once the state as it is (at
        least the term's first commit) is on a majority under `epoch`, so
        that two masters never count with two different lists nobody
        committed (docs/failover.md, Membership changes, rule 2)."""
        self.replicate(epoch)
        return self.change(fn, epoch)

    def set_nodes(self, names):
        """The membership changed (master/membership.py): lease rounds,
        majorities and replication count `names` from now on."""
        with self.lock:
            self.nodes = list(names)
            self.watches = {n: self.watches.get(n) or rules.Watch() for n in self.nodes}
            self.claimed = {n: e for n, e in self.claimed.items() if n in self.nodes}
        self.rounds.grow(2 * len(self.nodes) + 2)
        self.replicator.set_nodes(self.nodes)

    def ensure_claimed(self, node, epoch):
        """Claim `node` for `epoch` before the first action there."""
        with self.lock:
            self.check(epoch)
            if self.claimed.get(node) == epoch:
                return
        answer = parse.claim(self._call(node, cmd.claim(epoch, self.me)).stdout)
        with self.lock:
            if answer.granted or answer.node_epoch == epoch:
                if self.role == LEADER and self.epoch == epoch:
                    self.claimed[node] = epoch
                self.check(epoch)
                return
            if answer.node_epoch is None:
                raise Unusable(f"{node}: its epoch file is unreadable; it takes no part until repaired "
                               f"(docs/operations.md)")
            self._deposed(node, answer.node_epoch, epoch)
        raise NotLeader(f"node {node} is at epoch {answer.node_epoch}")

    def refused(self, node, epoch, stderr):
        """A node refused an action or a copy of `epoch`: a newer epoch exists there.
        Ends `epoch` if it is still ours; refusals of an older term are dropped."""
        with self.lock:
            current = self.role == LEADER and self.epoch == epoch
            if current:
                self._step_down(f"fenced by node {node}")
        if current:
            self.events("fenced", f"node {node} refused an action of epoch {epoch}: {stderr.strip()}", node=node)

    def give_up(self, epoch, reason):
        """End `epoch` if this master still leads it: a change it wrote could
        not be committed, and whoever leads next decides whether it stands."""
        with self.lock:
            if self.role == LEADER and self.epoch == epoch:
                self._step_down(reason)

    # -- the thread ------------------------------------------------------------
    def stop(self):
        self.stopping.set()

    def run(self):
        while not self.stopping.is_set():
            started = self.clock()
            try:
                if self.role == LEADER:
                    self._renew_round(started)
                    period = self.ttl / 3
                else:
                    self._poll_round(started)
                    period = self.ttl / POLLS_PER_TTL
            except Exception as e:          # the election must outlive any bad round
                self.events("error", f"election round failed: {type(e).__name__}: {e}")
                period = self.ttl / POLLS_PER_TTL
            self.stopping.wait(max(0.0, started + period - self.clock()))
        self.rounds.close()
        self.replicator.close()

    def _call(self, node, argv, stdin=None):
        return self.fleet.connections[node].run(argv, timeout=max(1.0, self.ttl / 3), stdin=stdin)

    # -- leader ----------------------------------------------------------------
    def _renew_round(self, started):
        """Renew on every node. Each answer counts when it comes, even after
        the round stopped waiting (the node's counter moved when the renewal
        arrived, after it was sent): a slow machine delays answers, and a
        leader ends its term only when it has really not renewed for 2*ttl/3."""
        epoch = self.epoch

        def renew(node):
            if self.claimed.get(node) != epoch:
                self.ensure_claimed(node, epoch)     # counts from its next renewal: a node that held
                return RenewAnswer(True, 0)           # the epoch already did not move its counter now
            sent = self.clock()
            answer = parse.renew(self._call(node, cmd.renew(epoch, self.me)).stdout)
            self._renewed(node, epoch, sent, answer)
            return answer

        results = self.rounds.run("renew", renew, self.nodes, self.ttl / 4)
        with self.lock:
            if self.role == LEADER and self.epoch == epoch and \
                    rules.must_step_down(self.last_good, self.clock(), self.ttl):
                ok = sum(1 for n, r in results.items() if n in self.nodes and isinstance(r, RenewAnswer) and r.renewed)
                self._step_down(f"renewed on {ok} of {len(self.nodes)} nodes, no majority")

    def _renewed(self, node, epoch, sent, answer):
        """One renewal's answer, whenever it comes: a higher epoch ends
        `epoch`; a renewal moves last_good when a majority renewed since."""
        with self.lock:
            if self.role != LEADER or self.epoch != epoch:
                return
            if not answer.renewed and answer.value is not None and answer.value > epoch:
                self._deposed(node, answer.value, epoch)
            elif answer.renewed:
                self.renewals[node] = max(sent, self.renewals.get(node, sent))
                since = rules.renewed_since({n: self.renewals[n] for n in self.nodes if n in self.renewals},
                                            len(self.nodes))
                if since is not None and (self.last_good is None or since > self.last_good):
                    self.last_good = since

    def _deposed(self, node, node_epoch, epoch):
        """`node` granted `node_epoch`, above `epoch`: that term is over."""
        self.highest_seen = max(self.highest_seen, node_epoch)
        if self.role == LEADER and self.epoch == epoch:
            self._step_down(f"node {node} granted epoch {node_epoch}")

    def _step_down(self, reason):
        if self.role == LEADER:
            self.events("leader", f"master {self.me} stops leading epoch {self.epoch}: {reason}")
            self.replicator.end(self.epoch)
        self.role, self.epoch, self.claimed, self.last_good, self.renewals = STANDBY, None, {}, None, {}
        self.reason = f"not the leader: {reason}"
        # What it read before it led is stale: no node counts as answering, or
        # as quiet, until it answers again (a late read names no old leader).
        self.watches = {n: rules.Watch() for n in self.nodes}

    def _snapshot(self, epoch):
        """The store as the leader of `epoch` holds it now, for the replicator."""
        with self.term(epoch):
            doc = self.store.snapshot()
        return doc["version"], json.dumps(doc, sort_keys=True).encode()

    def _send_replica(self, node, epoch, version, data):
        try:
            self.ensure_claimed(node, epoch)
        except Unusable:
            return False
        result = self._call(node, cmd.replicate(epoch, version, len(data), digest(data)), stdin=data)
        if result.exit == cmd.FENCED_EXIT:
            self.refused(node, epoch, result.stderr)
            return False
        return result.ok

    # -- standby -----------------------------------------------------------------
    def _poll_round(self, started):
        """Read every node's lease; campaign if scheduler.lease says so. Each
        answer is noted when it comes, even after the round stopped waiting:
        on a loaded machine a node slower than the round would otherwise
        never count as answering, and no standby would ever campaign."""
        results = self.rounds.run("read", self._read_lease, self.nodes, self.ttl / POLLS_PER_TTL)
        with self.lock:
            now = self.clock()
            self.leader_seen = rules.leader_named(self.watches, len(self.nodes)) or self.leader_seen
            self.polled = True
            campaign = self._lease_quiet(self.watches, now) and (self.quiet_until is None or now >= self.quiet_until)
            self._explain()
        if not campaign:
            self._follow({n: r.stamp for n, r in results.items() if isinstance(r, LeaseRead)})
        elif self._quiet_on_fresh_reads():
            self._campaign(started)

    def _lease_quiet(self, watches, now):
        """scheduler.lease.should_campaign over `watches` (self.lock held);
        after a failed taking of office only a lease quiet for ttl counts."""
        return rules.should_campaign(watches, now, self.ttl, self.me, len(self.nodes),
                                     shortcuts=self.office_failures == 0)

    def _quiet_on_fresh_reads(self):
        """Read the leases again just before claiming, and campaign only if a
        majority still looks quiet on reads sent now. A slow node's last
        answer is old news: another standby may have claimed since, and two
        standbys claiming in turn depose each other (the first one's first
        writes answer 503)."""
        asked = self.clock()

        def quiet():
            with self.lock:
                fresh = {n: w for n, w in self.watches.items() if w.seen_at is not None and w.seen_at >= asked}
                return self._lease_quiet(fresh, self.clock())
        self.rounds.run_until("recheck", self._read_lease, self.nodes, max(1.0, self.ttl / 3), quiet)
        return quiet()

    def _read_lease(self, node):
        """One node's lease, noted in its watch when the answer (or the
        failure) comes, by this master's clock then, with when it was sent."""
        with self.lock:
            sent, watches = self.clock(), self.watches
        try:
            read = parse.lease(self._call(node, cmd.read()).stdout)
        except Exception:
            self._observed(node, None, sent, watches)
            raise
        self._observed(node, read, sent, watches)
        return read

    def _observed(self, node, read, sent, watches):
        """`watches`: those the read was sent for; a master that stepped down
        since has new ones, which a read from before must not fill."""
        with self.lock:
            if watches is not self.watches or node not in self.watches:     # stepped down, or it left
                return
            rules.observe(self.watches[node], None if read is None else (read.node_epoch, read.lease), self.clock(),
                          sent)
            if read is not None and read.node_epoch:
                self.highest_seen = max(self.highest_seen, read.node_epoch)

    def _explain(self):
        answered = sum(1 for w in self.watches.values() if w.answered)
        if answered < rules.majority(len(self.nodes)):
            self.reason = f"no majority of nodes answers ({answered} of {len(self.nodes)})"
        elif self.leader_seen:
            self.reason = f"standby: {self.leader_seen[0]} leads epoch {self.leader_seen[1]}"

    def _follow(self, stamps):
        """Keep a standby's own copy of the desired state fresh: read the newer
        replicas, newest first, until one reads."""
        replicas = {}
        for node in sorted((n for n, s in stamps.items() if s > Stamp(*self.store.stamp())),
                           key=stamps.get, reverse=True):
            try:
                replicas[node] = parse.replica(self._call(node, cmd.read_state()).stdout)
            except (RemoteError, parse.ParseError):
                continue
            if rules.best_replica({node: replicas[node]})[0] is not None:
                break
        if replicas:
            self._adopt(replicas)

    def _adopt(self, replicas):
        """Adopt the newest readable of `replicas` if it is newer than the store."""
        doc = newest_readable(replicas, self._event_once)
        with self.term_lock:
            if doc is not None and Stamp(doc["epoch"], doc["version"]) > Stamp(*self.store.stamp()):
                self.store.adopt(doc)
                self.on_adopted(doc)

    def _event_once(self, kind, message, **fields):
        if message not in self.reported:
            self.reported.add(message)
            self.events(kind, message, **fields)

    def _campaign(self, started):
        """Claim the next epoch on every node, each only if still at the
        epoch this master last read there (the view it judged quiet)."""
        epoch = rules.next_epoch(self.highest_seen, self.index)
        with self.lock:
            seen = {n: w.value[0] for n, w in self.watches.items() if w.answered and w.value[0] is not None}
        results = self.rounds.run("claim", lambda n: parse.claim(self._call(n, cmd.claim(epoch, self.me,
                                                                                        seen.get(n))).stdout),
                                  self.nodes, self.ttl / 4)
        answers = {n: r for n, r in results.items() if isinstance(r, ClaimAnswer)}
        self.highest_seen = max([self.highest_seen] + [a.node_epoch for a in answers.values() if a.node_epoch])
        granted = {n: a for n, a in answers.items() if a.granted}
        if not rules.won(len(granted), len(self.nodes)):
            self.events("election", f"master {self.me} campaigned for epoch {epoch}: "
                                    f"{len(granted)} of {len(self.nodes)} grants, not a majority")
            with self.lock:
                later = self.clock() + self.rand() * self.ttl / 2
                for w in self.watches.values():
                    w.changed_at = later
            return
        try:
            self._take_office(epoch, granted, started)
            self.office_failures, self.quiet_until = 0, None
        except Exception as e:               # never half a leader: stand by and let the lease run out
            with self.lock:
                self._step_down(f"could not take office: {type(e).__name__}: {e}")
                # Its own name is on the nodes now: without a pause it would
                # claim again at once, forever, and nobody else could lead.
                self.office_failures += 1
                self.quiet_until = self.clock() + self.ttl * min(2 ** self.office_failures, 16)
            self.events("error", f"master {self.me} won epoch {epoch} but could not take office: "
                                 f"{type(e).__name__}: {e}; it waits {self.quiet_until - self.clock():.0f}s "
                                 f"and leaves the next term to whoever sees the lease quiet")

    def _take_office(self, epoch, granted, started):
        """Adopt the newest readable replica of the claim majority (each read in
        the same locked step as its claim), then lead `epoch`."""
        with self.term_lock:
            granted = self._grants_of_members(epoch, granted, set(self.nodes))
            self.store.set_epoch(epoch)
            with self.lock:
                self.role, self.epoch, self.last_good = LEADER, epoch, started
                self.claimed = {n: epoch for n in granted}
                self.renewals = {n: started for n in granted}     # a grant is a renewal
                self.leader_seen = (self.me, epoch)
                self.reason = ""
        self.events("leader", f"master {self.me} leads epoch {epoch} "
                              f"({len(granted)} of {len(self.nodes)} nodes granted)")
        self.on_lead()
        threading.Thread(target=self._first_commit, args=(epoch,), name="first-commit", daemon=True).start()

    def _grants_of_members(self, epoch, granted, asked):
        """The grants that count under the member list this master takes office
        with. It adopts the newest replica its grants hold and puts that
        state's member list in force (the store's own when nothing newer was
        granted); members it has not `asked` yet are claimed, and their
        replicas may be newer still: again, until the list stays the same.
        Then the grants must be a majority of that list, whose successor
        (if one was committed) reached a majority of it: a list any number of
        changes behind catches up here (docs/failover.md, Membership changes)."""
        granted = dict(granted)
        while True:
            self._adopt({n: a.replica for n, a in granted.items()})
            self._members_in_force()
            new = [n for n in self.nodes if n not in asked]
            if not new:
                break
            asked.update(new)
            answers = self.rounds.run("claim", lambda n: parse.claim(self._call(n, cmd.claim(epoch, self.me)).stdout),
                                      new, self.ttl / 4)
            granted.update({n: a for n, a in answers.items() if isinstance(a, ClaimAnswer) and a.granted})
        granted = {n: a for n, a in granted.items() if n in self.nodes}
        if not rules.won(len(granted), len(self.nodes)):
            raise NotLeader(f"{len(granted)} of the {len(self.nodes)} members granted epoch {epoch}")
        return granted

    def _members_in_force(self):
        """The store's member list (changed through the API) in force here: a
        list this master wrote as leader but could not commit is the one it
        must count with when it leads again."""
        members = self.store.members()
        if members is not None:
            epoch, version = self.store.stamp()
            self.on_adopted({"epoch": epoch, "version": version, "members": members})

    def _first_commit(self, epoch):
        """Write the adopted state under the new epoch to a majority."""
        try:
            self.replicate(epoch)
        except NotLeader as e:
            self.events("leader", f"first replication of epoch {epoch} failed: {e}")
