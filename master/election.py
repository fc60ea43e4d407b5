"""Leadership: the quorum lease on the nodes, epoch fencing, the replicated state.

A master is a standby or the leader. A standby polls every node's lease every
ttl/5 and campaigns when scheduler.lease says so; the leader renews every
ttl/3 and stops acting as soon as it cannot show a majority. The leader claims
a node before its first action there; every action it takes is fenced by its
epoch on the node itself (remote/lease.py), so a deposed leader can never act
where a newer one has claimed. Lease traffic has its own small thread pool and
bypasses the per-node action limit, so busy nodes never starve renewals.
"""
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, FIRST_COMPLETED, wait

from remote import lease as cmd, parse
from remote.transport import RemoteError
from scheduler import lease as rules

LEADER, STANDBY = "leader", "standby"
# Standbys read the leases 10 times per ttl (design.md says 5): a read costs
# ~15 ms per node, and the finer clock shortens a takeover by up to ttl/10.
POLLS_PER_TTL = 10


class NotLeader(Exception):
    """Raised to stop an action or a write: this master may not act now."""


class Election(threading.Thread):
    def __init__(self, me, index, fleet, store, settings, events, clock=time.monotonic, on_lead=lambda: None):
        super().__init__(name="election", daemon=True)
        self.me, self.index, self.fleet, self.store = me, index, fleet, store
        self.ttl = float(settings["lease_ttl"])
        self.events = events                  # callable(kind, message, **fields)
        self.on_lead = on_lead                # called when this master starts leading
        self.clock = clock
        self.nodes = list(fleet.connections)
        self.pool = ThreadPoolExecutor(max_workers=2 * len(self.nodes) + 2, thread_name_prefix="lease")
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.role, self.epoch = STANDBY, None
        self.claimed = set()                  # nodes claimed for self.epoch
        self.last_good = None                 # start of the last renewal round that reached a majority
        self.watches = {n: rules.Watch() for n in self.nodes}
        self.leader_seen = None               # (holder, epoch) named on a majority of nodes
        self.highest_seen = 0
        self.reason = "starting: no lease read yet"
        self.polled = False                   # has one poll round finished
        self.inflight = {}                    # (kind, node) -> future of a lease call still running

    # -- what others ask -----------------------------------------------------
    @property
    def role_name(self):
        """leader, standby, or starting (before the first look at the leases)."""
        return self.role if self.polled or self.role == LEADER else "starting"

    def is_leader(self):
        with self.lock:
            if self.role == LEADER and rules.must_step_down(self.last_good, self.clock(), self.ttl):
                self._step_down("no renewal on a majority within 2/3 of the lease")
            return self.role == LEADER

    def current_epoch(self):
        with self.lock:
            if self.role != LEADER:
                raise NotLeader(self.reason)
            return self.epoch

    def ensure_claimed(self, node):
        """Claim `node` for our epoch before the first action there."""
        epoch = self.current_epoch()
        if node in self.claimed:
            return epoch
        granted, node_epoch, _, _ = parse.claim(self._call(node, cmd.claim(epoch, self.me)).stdout)
        with self.lock:
            if (granted or node_epoch == epoch) and self.role == LEADER and self.epoch == epoch:
                self.claimed.add(node)
                return epoch
            self._deposed(node, node_epoch)
        raise NotLeader(f"node {node} is at epoch {node_epoch}")

    def fenced_refusal(self, node, stderr):
        """A node refused an action of ours: a newer epoch exists; stop acting."""
        self.events("fenced", f"node {node} refused an action of epoch {self.epoch}: {stderr.strip()}", node=node)
        with self.lock:
            self._step_down(f"fenced by node {node}")

    def replicate(self):
        """Write the store's snapshot to a majority; raise NotLeader when it cannot."""
        epoch = self.current_epoch()
        if self.store.stamp()[0] != epoch:
            self.store.set_epoch(epoch)
        doc = self.store.snapshot()
        text = json.dumps(doc, sort_keys=True).encode()
        argv = cmd.replicate(epoch, doc["version"])

        def write(node):
            self.ensure_claimed(node)
            result = self._call(node, argv, stdin=text)
            if result.exit == cmd.FENCED_EXIT:
                self.fenced_refusal(node, result.stderr)
                return False
            return result.ok

        majority = rules.majority(len(self.nodes))
        # Concurrent writes each replicate in full: no skipping of busy nodes here.
        results = self._fan_out("replicate", write, self.nodes, max(1.0, self.ttl / 3), enough=majority,
                                skip_busy=False)
        ok = sum(1 for r in results.values() if r is True)
        if ok < rules.majority(len(self.nodes)):
            raise NotLeader(f"write reached {ok} of {len(self.nodes)} nodes, no majority")
        return ok

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
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _call(self, node, argv, stdin=None):
        return self.fleet.connections[node].run(argv, timeout=max(1.0, self.ttl / 3), stdin=stdin)

    def _fan_out(self, kind, fn, nodes, timeout, enough=None, skip_busy=True):
        """fn(node) on every node, waiting at most `timeout` seconds, or only
        until `enough` calls succeeded. A node that is slow to answer (cut off,
        or still connecting) counts as no answer; it never holds the round up,
        and (skip_busy) gets no second call of the same kind while its first still runs."""
        futures = {}
        for n in nodes:
            busy = self.inflight.get((kind, n))
            if skip_busy and busy is not None and not busy.done():
                continue
            futures[n] = self.inflight[(kind, n)] = self.pool.submit(fn, n)
        deadline = self.clock() + timeout
        pending = set(futures.values())
        while pending:
            ok = sum(1 for f in futures.values() if f.done() and not f.exception() and f.result() is not False)
            if enough is not None and ok >= enough:
                break
            left = deadline - self.clock()
            if left <= 0:
                break
            _, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
        out = {}
        for n in nodes:
            f = futures.get(n)
            if f is None or not f.done():
                out[n] = TimeoutError(f"node {n} did not answer in time")
            else:
                out[n] = f.exception() or f.result()
        return out

    # -- leader ----------------------------------------------------------------
    def _renew_round(self, started):
        epoch = self.epoch

        def renew(node):
            if node not in self.claimed:
                self.ensure_claimed(node)
                return True, epoch
            return parse.renew(self._call(node, cmd.renew(epoch, self.me)).stdout)

        results = self._fan_out("renew", renew, self.nodes, self.ttl / 4)
        with self.lock:
            if self.role != LEADER or self.epoch != epoch:
                return
            for node, r in results.items():
                if isinstance(r, tuple) and not r[0] and r[1] > epoch:
                    self._deposed(node, r[1])
                    return
            ok = sum(1 for r in results.values() if isinstance(r, tuple) and r[0])
            if ok >= rules.majority(len(self.nodes)):
                self.last_good = started
            elif rules.must_step_down(self.last_good, self.clock(), self.ttl):
                self._step_down(f"renewed on {ok} of {len(self.nodes)} nodes, no majority")

    def _deposed(self, node, node_epoch):
        self.highest_seen = max(self.highest_seen, node_epoch)
        self._step_down(f"node {node} granted epoch {node_epoch}")

    def _step_down(self, reason):
        if self.role == LEADER:
            self.events("leader", f"master {self.me} stops leading epoch {self.epoch}: {reason}")
        self.role, self.epoch, self.claimed, self.last_good = STANDBY, None, set(), None
        self.reason = f"not the leader: {reason}"
        now = self.clock()
        for w in self.watches.values():
            w.changed_at = now

    # -- standby -----------------------------------------------------------------
    def _poll_round(self, now):
        results = self._fan_out("read", lambda n: parse.lease(self._call(n, cmd.read()).stdout), self.nodes,
                                self.ttl / POLLS_PER_TTL)
        with self.lock:
            for node, r in results.items():
                value = (r[0], r[1]) if isinstance(r, tuple) else None
                rules.observe(self.watches[node], value, self.clock())
                if value:
                    self.highest_seen = max(self.highest_seen, r[0])
            self._note_leader()
            self.polled = True
            campaign = rules.should_campaign(self.watches, self.clock(), self.ttl, self.me, len(self.nodes))
            answered = sum(1 for w in self.watches.values() if w.answered)
            if answered < rules.majority(len(self.nodes)):
                self.reason = f"no majority of nodes answers ({answered} of {len(self.nodes)})"
            elif self.leader_seen:
                self.reason = f"standby: {self.leader_seen[0]} leads epoch {self.leader_seen[1]}"
        if campaign:
            self._campaign(now)
        else:
            self._follow(results)

    def _note_leader(self):
        holders = [w.value[1] for w in self.watches.values() if w.answered and w.value[1]]
        for lease in set((h[1], h[0]) for h in holders):
            if sum(1 for h in holders if (h[1], h[0]) == lease) >= rules.majority(len(self.nodes)):
                self.leader_seen = lease
                return

    def _follow(self, results):
        """Keep a standby's own copy of the desired state fresh."""
        versions = {n: r[2] for n, r in results.items() if isinstance(r, tuple)}
        if not versions:
            return
        node = max(versions, key=versions.get)
        if versions[node] > self.store.stamp():
            self._adopt_from([node])

    def _adopt_from(self, nodes):
        replicas = []
        for n in nodes:
            try:
                replicas.append(parse.replica(self._call(n, cmd.read_state()).stdout))
            except (RemoteError, parse.ParseError):
                continue
        best = rules.highest_replica(replicas)
        if best is not None and best[0] > self.store.stamp():
            self.store.adopt(json.loads(best[1]))

    def _campaign(self, started):
        epoch = rules.next_epoch(self.highest_seen, self.index)
        results = self._fan_out("claim", lambda n: parse.claim(self._call(n, cmd.claim(epoch, self.me)).stdout),
                                self.nodes, self.ttl / 4)
        granted = {n: r for n, r in results.items() if isinstance(r, tuple) and r[0]}
        for r in results.values():
            if isinstance(r, tuple):
                self.highest_seen = max(self.highest_seen, r[1])
        if not rules.won(len(granted), len(self.nodes)):
            self.events("election", f"master {self.me} campaigned for epoch {epoch}: "
                                    f"{len(granted)} of {len(self.nodes)} grants, not a majority")
            with self.lock:
                now = self.clock() + random.uniform(0, self.ttl / 2)
                for w in self.watches.values():
                    w.changed_at = now
            return
        # Adopt the newest replica of the claim majority, read in the same locked step as each claim.
        best = rules.highest_replica([(r[2], r[3]) for r in granted.values()])
        if best is not None:
            self.store.adopt(json.loads(best[1]))
        with self.lock:
            self.role, self.epoch, self.claimed, self.last_good = LEADER, epoch, set(granted), started
            self.leader_seen = (self.me, epoch)
            self.reason = ""
        self.store.set_epoch(epoch)
        self.events("leader", f"master {self.me} leads epoch {epoch} "
                              f"({len(granted)} of {len(self.nodes)} nodes granted)")
        self.on_lead()
        try:
            self.replicate()
        except NotLeader as e:
            self.events("leader", f"first replication of epoch {epoch} failed: {e}")
