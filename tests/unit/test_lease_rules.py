"""scheduler.lease: the pure lease rules, and a model of the claim protocol.

The model at the bottom uses exactly the node-side rules of remote/lease.py
(claim: grant iff node epoch < E, then set it; fenced action or write: accept
iff node epoch == E) with scheduler.lease's epochs and majorities, and checks
the promises of docs/design.md ("Lease, fencing and failover") over random
interleavings and partitions.
"""
import json
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st

from model import Lease, Replica, Stamp
from scheduler import lease as rules
from scheduler.lease import Watch


# -- majority -------------------------------------------------------------------

@pytest.mark.parametrize("n, m", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)])
def test_majority(n, m):
    assert rules.majority(n) == m


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=1000))
def test_two_majorities_always_overlap_and_a_minority_never_wins(n):
    assert 2 * rules.majority(n) > n
    assert rules.majority(n) <= n
    assert not rules.won(n - rules.majority(n), n)
    assert rules.won(rules.majority(n), n)


# -- epochs -----------------------------------------------------------------------

@pytest.mark.parametrize("seen, index, epoch", [
    (0, 1, 101), (0, 2, 102), (0, 99, 199),
    (101, 1, 201), (101, 2, 202), (199, 3, 203), (200, 3, 303), (5, 7, 107), (12345, 4, 12404),
])
def test_next_epoch(seen, index, epoch):
    assert rules.next_epoch(seen, index) == epoch
    assert epoch % rules.SPAN == index


@settings(max_examples=100, deadline=None)
@given(seen=st.integers(min_value=0, max_value=10**12), index=st.integers(min_value=1, max_value=99))
def test_next_epoch_is_above_what_was_seen_and_belongs_to_its_master(seen, index):
    epoch = rules.next_epoch(seen, index)
    assert epoch > seen
    assert epoch % rules.SPAN == index
    assert epoch - seen <= 2 * rules.SPAN        # it moves on by at most one term


@settings(max_examples=100, deadline=None)
@given(seen=st.lists(st.integers(min_value=0, max_value=10**6), min_size=2, max_size=2),
       indices=st.lists(st.integers(min_value=1, max_value=99), min_size=2, max_size=2, unique=True))
def test_two_masters_never_propose_the_same_epoch(seen, indices):
    # whatever each has seen: the index is part of the epoch
    assert rules.next_epoch(seen[0], indices[0]) != rules.next_epoch(seen[1], indices[1])


# -- the leader stepping down -----------------------------------------------------

@pytest.mark.parametrize("last_good, now, down", [
    (None, 0.0, True),           # never renewed on a majority
    (10.0, 10.0, False),
    (10.0, 13.9, False),
    (10.0, 14.0, False),         # exactly 2*ttl/3: still leading
    (10.0, 14.001, True),
    (10.0, 100.0, True),
])
def test_must_step_down(last_good, now, down):
    assert rules.must_step_down(last_good, now, ttl=6.0) is down


def test_must_step_down_scales_with_the_ttl():
    assert not rules.must_step_down(0.0, 20.0, ttl=30.0)
    assert rules.must_step_down(0.0, 20.001, ttl=30.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=9).flatmap(
    lambda n: st.tuples(st.just(n), st.dictionaries(st.integers(0, n - 1), st.floats(0, 100), max_size=n))))
def test_renewed_since_is_the_latest_time_a_majority_renewed_after(case):
    n, renewals = case
    since = rules.renewed_since(renewals, n)
    if len(renewals) < rules.majority(n):
        assert since is None
        return
    after = [t for t in renewals.values() if t >= since]
    assert len(after) >= rules.majority(n)                   # a majority renewed since
    later = [t for t in renewals.values() if t > since]
    assert len(later) < rules.majority(n)                    # and no later time has one


def test_a_late_answer_moves_the_time_only_once_it_makes_a_majority():
    assert rules.renewed_since({"n1": 12.0}, 3) is None
    assert rules.renewed_since({"n1": 12.0, "n2": 10.0}, 3) == 10.0
    assert rules.renewed_since({"n1": 12.0, "n2": 10.0, "n3": 11.0}, 3) == 11.0


# -- a standby watching the leases --------------------------------------------------

def lease_of(epoch, holder, counter):
    return (epoch, Lease(epoch, holder, counter))


FRESH = (0, None)


def test_observe_notes_the_first_answer_and_each_change():
    w = Watch()
    assert rules.observe(w, lease_of(101, "m1", 0), 5.0) is w
    assert (w.value, w.changed_at, w.answered) == (lease_of(101, "m1", 0), 5.0, True)
    rules.observe(w, lease_of(101, "m1", 0), 9.0)
    assert w.changed_at == 5.0                          # same value: still quiet since 5
    rules.observe(w, lease_of(101, "m1", 1), 10.0)
    assert (w.value, w.changed_at) == (lease_of(101, "m1", 1), 10.0)


def test_observe_a_failed_poll_keeps_what_was_known():
    w = rules.observe(Watch(), lease_of(101, "m1", 3), 5.0)
    rules.observe(w, None, 8.0)
    assert (w.value, w.changed_at, w.answered) == (lease_of(101, "m1", 3), 5.0, False)
    rules.observe(w, lease_of(101, "m1", 3), 9.0)
    assert (w.changed_at, w.answered) == (5.0, True)


def test_observe_a_reset_changed_at_is_set_again():
    # election._step_down may reset changed_at; None means "not known yet"
    w = Watch(value=lease_of(101, "m1", 3), changed_at=None, answered=True)
    rules.observe(w, lease_of(101, "m1", 3), 7.0)
    assert w.changed_at == 7.0


def watches(*entries):
    """entries: (value or None, changed_at); None = the last poll got no answer."""
    out = {}
    for i, (value, changed_at) in enumerate(entries):
        out[f"n{i}"] = Watch(value=value, changed_at=changed_at, answered=value is not None)
    return out


TTL = 6.0


def campaign(ws, now, me="m2", n_nodes=None):
    return rules.should_campaign(ws, now, TTL, me, len(ws) if n_nodes is None else n_nodes)


def test_no_majority_answered_never_campaigns():
    quiet = lease_of(101, "m1", 4)
    assert not campaign(watches((quiet, 0.0), (None, 0.0), (None, 0.0)), now=1000.0)
    assert not campaign(watches((FRESH, 0.0), (None, None), (None, None)), now=1000.0)
    assert not campaign(watches((lease_of(102, "m2", 0), 0.0), (None, None), (None, None)), now=1000.0)
    # 5 nodes, 2 answer: a cut-off standby never campaigns
    assert not campaign(watches((quiet, 0.0), (quiet, 0.0), (None, 0.0), (None, 0.0), (None, 0.0)), now=1000.0)


def test_nodes_that_stopped_answering_count_for_nothing():
    ws = watches((lease_of(101, "m1", 4), 0.0), (lease_of(101, "m1", 4), 0.0), (lease_of(101, "m1", 9), 999.0))
    ws["n1"].answered = False                          # quiet once, unreadable now
    assert not campaign(ws, now=1000.0)


def test_a_late_answer_never_stretches_the_quiet():
    """Quiet counts from the first sight of a value up to the sending of the
    newest read that still saw it, not up to when its answer came."""
    quiet = lease_of(101, "m1", 4)
    ws = watches((quiet, 0.0), (quiet, 0.0), (quiet, 0.0))
    for w in ws.values():
        rules.observe(w, quiet, now=7.0, sent=5.9)       # sent before a ttl had passed, answered after
    assert not campaign(ws, now=7.0)
    for w in ws.values():
        rules.observe(w, quiet, now=7.5, sent=6.0)
    assert campaign(ws, now=7.5)


def test_a_fresh_cluster_campaigns_at_once():
    assert campaign(watches((FRESH, 10.0), (FRESH, 10.0), (FRESH, 10.0)), now=10.0)
    assert campaign(watches((FRESH, 10.0), (FRESH, 10.0), (None, None)), now=10.0)
    assert campaign(watches((FRESH, 10.0)), now=10.0)  # one node: it is the majority


def test_a_cluster_with_one_claimed_node_is_not_fresh():
    ws = watches((FRESH, 10.0), (FRESH, 10.0), (lease_of(101, "m1", 0), 10.0))
    assert not campaign(ws, now=10.0)


def test_own_previous_incarnation_on_a_majority_campaigns_at_once():
    mine = lease_of(102, "m2", 7)
    assert campaign(watches((mine, 10.0), (mine, 10.0), (None, None)), now=10.0, me="m2")
    assert not campaign(watches((mine, 10.0), (mine, 10.0), (None, None)), now=10.0, me="m3")


def test_own_name_on_a_minority_only_waits():
    ws = watches((lease_of(102, "m2", 7), 10.0), (lease_of(101, "m1", 3), 10.0), (FRESH, 10.0))
    assert not campaign(ws, now=10.0, me="m2")
    ws = watches((lease_of(102, "m2", 7), 10.0), (lease_of(102, "m2", 7), 10.0), (lease_of(203, "m3", 0), 10.0))
    assert not campaign(ws, now=10.0, me="m2")        # someone else holds a node too


def test_a_lease_that_changed_recently_is_respected():
    renewed = lease_of(101, "m1", 12)
    ws = watches((renewed, 100.0), (renewed, 100.0), (renewed, 100.0))
    assert not campaign(ws, now=100.0)
    assert not campaign(ws, now=100.0 + TTL - 0.001)


def test_a_lease_quiet_for_ttl_on_a_majority_campaigns():
    held = lease_of(101, "m1", 12)
    ws = watches((held, 100.0), (held, 100.0), (None, None))
    assert campaign(ws, now=100.0 + TTL)               # exactly ttl is enough
    assert campaign(ws, now=500.0)


def test_quiet_on_a_minority_only_waits():
    held = lease_of(101, "m1", 12)
    ws = watches((held, 100.0), (lease_of(101, "m1", 40), 105.0), (lease_of(101, "m1", 40), 105.0))
    assert not campaign(ws, now=100.0 + TTL)
    assert campaign(ws, now=105.0 + TTL)


def test_quiet_is_counted_against_all_nodes_not_those_answering():
    held = lease_of(101, "m1", 12)
    ws = watches((held, 0.0), (held, 0.0), (held, 0.0), (None, None), (None, None))
    assert campaign(ws, now=TTL)                      # 3 of 5
    ws = watches((held, 0.0), (held, 0.0), (held, 999.0), (None, None), (None, None))
    assert not campaign(ws, now=1000.0)               # only 2 of 5 quiet


# -- the newest replica --------------------------------------------------------------

def replica(epoch, version, services=(), text=None):
    doc = {"epoch": epoch, "version": version, "services": list(services), "drained": []}
    return Replica(Stamp(epoch, version), json.dumps(doc) if text is None else text)


def best(replicas):
    found, skipped = rules.best_replica(replicas)
    return (None if found is None else found[:2]), [(n, r.stamp) for n, r, _ in skipped]


def test_best_replica_is_the_newest():
    assert best({}) == (None, [])
    assert best({"a": Replica(Stamp(), ""), "b": Replica(Stamp(), "")}) == (None, [])
    assert best({"a": replica(101, 4), "b": replica(101, 9), "c": replica(101, 7)}) == (("b", Stamp(101, 9)), [])


def test_best_replica_ranks_the_epoch_before_the_version():
    assert best({"a": replica(101, 90), "b": replica(202, 3)}) == (("b", Stamp(202, 3)), [])


def test_best_replica_skips_nodes_without_a_document():
    # a version line with no document (state.json missing) is no replica
    assert best({"a": replica(202, 3, text=""), "b": replica(202, 4, text="  \n"), "c": replica(101, 1)}) \
        == (("c", Stamp(101, 1)), [])
    assert best({"a": Replica(Stamp(), '{"stray": 1}'), "c": replica(101, 1)}) == (("c", Stamp(101, 1)), [])


@pytest.mark.parametrize("bad", [
    '{"epoch": 202, "version": 9, "services": [{"name": "we',      # torn: the input ended early
    "",                                                            # empty file, valid state.ver
    "not json",
    '[1, 2]',                                                      # JSON, but no state document
    '{"epoch": 202, "version": 8, "services": []}',                # older than its version file says
])
def test_best_replica_falls_back_to_the_newest_one_that_reads(bad):
    replicas = {"a": Replica(Stamp(202, 9), bad), "b": replica(202, 7), "c": replica(101, 30)}
    found, skipped = best(replicas)
    assert found == ("b", Stamp(202, 7))
    assert skipped == ([("a", Stamp(202, 9))] if bad.strip() else [])


def test_a_document_newer_than_its_version_file_counts_at_its_own_stamp():
    """A node crashed between installing state.json and state.ver: the document
    (checked whole when it arrived) is newer than the file says, and it may
    hold an acknowledged write that no other copy of the claim majority has."""
    newer = Replica(Stamp(202, 9), replica(202, 10).text)
    assert best({"a": newer, "b": replica(202, 9), "c": replica(202, 8)}) == (("a", Stamp(202, 10)), [])


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.booleans()), max_size=6))
def test_best_replica_is_the_newest_readable_and_skips_only_newer_ones(entries):
    replicas = {f"n{i}": replica(e, v) if good else Replica(Stamp(e, v), "{torn")
                for i, (e, v, good) in enumerate(entries)}
    found, skipped = rules.best_replica(replicas)
    readable = [r.stamp for r in replicas.values() if r.present and r.text != "{torn"]
    if not readable:
        assert found is None
    else:
        assert found[1] == max(readable)
        assert all(r.stamp > found[1] for _, r, _ in skipped)


# -- a model of the whole protocol ----------------------------------------------------

@dataclass
class Master:
    index: int
    seen: int = 0
    incarnation: int = 0
    leading: bool = False
    epoch: int = 0
    version: int = 0
    missed: int = 0              # renewal rounds in a row without a majority

    @property
    def who(self):
        return (self.index, self.incarnation)


@dataclass
class Node:
    epoch: int = 0
    replica: tuple = (0, 0)
    granted: list = field(default_factory=list)     # epochs granted here, in order


class Cluster:
    """Nodes and masters under the rules of remote/lease.py and scheduler.lease."""

    def __init__(self, n_nodes, indices):
        self.nodes = [Node() for _ in range(n_nodes)]
        self.masters = [Master(i) for i in indices]
        self.majority = rules.majority(n_nodes)
        self.grants = {}           # (epoch, who) -> nodes granting it, over all time
        self.adopted = {}          # epoch -> the replica stamp its leader started from
        self.acked = []            # stamps written on a majority

    # node side: the CLAIM, FENCED and REPLICATE scripts
    def _claim(self, x, epoch, who):
        node = self.nodes[x]
        if node.epoch < epoch:
            node.epoch = epoch
            node.granted.append(epoch)
            self.grants.setdefault((epoch, who), set()).add(x)
            return True, node.epoch, node.replica
        return False, node.epoch, node.replica

    def _accepts(self, x, epoch):
        return self.nodes[x].epoch == epoch

    def _superseded_on_majority(self, epoch):
        """Has a majority granted some epoch above `epoch`?"""
        return sum(1 for n in self.nodes if any(e > epoch for e in n.granted)) >= self.majority

    # master side: what election.py does
    def campaign(self, m, reach):
        m.leading = False
        epoch = rules.next_epoch(m.seen, m.index)
        assert epoch > m.seen and epoch % rules.SPAN == m.index, (epoch, m)
        answers = [self._claim(x, epoch, m.who) for x in sorted(reach)]
        m.seen = max([m.seen] + [a[1] for a in answers])
        granted = [a for a in answers if a[0]]
        if rules.won(len(granted), len(self.nodes)):
            found, _ = rules.best_replica({i: replica(*a[2]) for i, a in enumerate(granted)})
            best = (found[1].epoch, found[1].version) if found else (0, 0)
            m.leading, m.epoch, m.missed = True, epoch, 0
            if best != (0, 0):
                m.version = best[1]
            self.adopted[epoch] = best

    def claim(self, m, reach):                       # ensure_claimed, before a first action
        if not m.leading:
            return
        for x in sorted(reach):
            granted, node_epoch, _ = self._claim(x, m.epoch, m.who)
            if not granted and node_epoch > m.epoch:
                m.leading, m.seen = False, max(m.seen, node_epoch)
                return

    def renew(self, m, reach):
        if not m.leading:
            return
        ok = sum(1 for x in reach if self._accepts(x, m.epoch))
        if self._superseded_on_majority(m.epoch):
            assert ok < self.majority, "a deposed leader renewed on a majority"
        # must_step_down: a round every ttl/3, so two bad rounds in a row are 2*ttl/3
        m.missed = 0 if ok >= self.majority else m.missed + 1
        if m.missed >= 2:
            m.leading = False

    def _fenced(self, m, x):
        """ensure_claimed, then the fenced action itself: was it accepted?"""
        self._claim(x, m.epoch, m.who)
        if not self._accepts(x, m.epoch):
            m.leading = False                         # fenced_refusal
            return False
        assert not any(e > m.epoch for e in self.nodes[x].granted), \
            f"node {x} accepted an action of epoch {m.epoch} after granting a newer one"
        return True

    def act(self, m, reach):
        for x in sorted(reach):
            if not m.leading or not self._fenced(m, x):
                return

    def write(self, m, reach):
        if not m.leading:
            return
        m.version += 1
        stamp = (m.epoch, m.version)
        accepted = 0
        for x in sorted(reach):
            if self._fenced(m, x):
                accepted += 1
                self.nodes[x].replica = max(self.nodes[x].replica, stamp)
        if accepted >= self.majority:                 # the API answers 2xx
            self.acked.append(stamp)

    def restart(self, m, reach):
        # a new process of the same master, remembering no epoch at all
        m.incarnation += 1
        m.leading, m.seen = False, 0

    # the promises
    def check(self):
        leaders = {}
        for (epoch, who), nodes in self.grants.items():
            if len(nodes) >= self.majority:
                leaders.setdefault(epoch, set()).add(who)
        for epoch, who in leaders.items():
            assert len(who) == 1, f"epoch {epoch} has leaders {who}"
            (index, _), = who
            assert epoch % rules.SPAN == index
        # any two masters (or two lives of one) that ever led did so in different epochs
        led = [(who, epoch) for epoch, whos in leaders.items() for who in whos]
        for a, ea in led:
            for b, eb in led:
                assert a == b or ea != eb, f"masters {a} and {b} both led epoch {ea}"
        # an acknowledged write survives every later leader
        for stamp in self.acked:
            for epoch, best in self.adopted.items():
                if epoch > stamp[0]:
                    assert best >= stamp, f"leader of {epoch} started from {best}, lost acked {stamp}"


OPS = ("campaign", "campaign", "claim", "renew", "act", "write", "write", "restart")


@st.composite
def histories(draw):
    n_nodes = draw(st.integers(min_value=1, max_value=6))
    indices = draw(st.lists(st.integers(min_value=1, max_value=99), min_size=2, max_size=4, unique=True))
    everyone = frozenset(range(n_nodes))
    # reach: all nodes, or any part of them (a partition, a slow node, a cut-off master)
    reach = st.one_of(st.just(everyone), st.frozensets(st.sampled_from(sorted(everyone))))
    steps = draw(st.lists(st.tuples(st.sampled_from(OPS),
                                    st.integers(min_value=0, max_value=len(indices) - 1),
                                    reach),
                          min_size=10, max_size=40))
    return n_nodes, indices, steps


@settings(max_examples=200, deadline=None)
@given(histories())
def test_one_leader_per_epoch_and_fencing_holds(history):
    n_nodes, indices, steps = history
    cluster = Cluster(n_nodes, indices)
    for op, i, reach in steps:
        getattr(cluster, op)(cluster.masters[i], reach)
        cluster.check()


def test_model_scenario_a_deposed_leader_acts_only_where_the_new_one_never_claimed():
    c = Cluster(3, [1, 2])
    m1, m2 = c.masters
    c.campaign(m1, {0, 1})
    assert (m1.leading, m1.epoch) == (True, 101)
    c.write(m1, {0, 1})
    assert c.acked == [(101, 1)]
    m2.seen = 101                                     # m2 polled the nodes first
    c.campaign(m2, {1, 2})
    assert (m2.leading, m2.epoch) == (True, 202)
    assert c.adopted[202] == (101, 1)                 # node 1 carried the acked write
    c.act(m1, {0})                                    # node 0 never heard of 202: still fine
    assert m1.leading
    c.renew(m1, {0, 1, 2})
    assert m1.leading                                 # one bad round is less than 2*ttl/3
    c.act(m1, {1})
    assert not m1.leading                             # fenced by node 1
    assert [c._accepts(x, 101) for x in range(3)] == [True, False, False]
    c.check()
