"""store.state.Store on both backends: memory (Store(None)) and the atomic JSON file;
its read cache follows every write, and only the writes that succeeded."""
import json
import os
import stat
import tempfile

import pytest
from hypothesis import given, settings, strategies as st

from model import DELETE, NEW, RUNNING, Port, ServiceSpec
from store.state import MAX_EVENTS, Conflict, Missing, Store

SPEC = ServiceSpec(image="nginx:1", ports=(Port(8080, 80),), env=(("A", "1"),))
T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"


@pytest.fixture(params=["memory", "json"])
def store(request, tmp_path):
    s = Store(None if request.param == "memory" else str(tmp_path / "state.json"))
    yield s
    s.close()


def test_create_then_read(store):
    created = store.create_service("web", SPEC, 3, T0)
    assert (created.name, created.spec, created.replicas, created.version, created.state) == \
        ("web", SPEC, 3, 1, NEW)
    assert store.service("web") == created
    assert store.services() == [created]
    record = store.record("web")
    assert (record["created_at"], record["updated_at"]) == (T0, T0)
    assert store.service("nope") is None and store.record("nope") is None


def test_a_taken_name_conflicts(store):
    store.create_service("web", SPEC, 3, T0)
    with pytest.raises(Conflict):
        store.create_service("web", ServiceSpec(image="other"), 1, T1)
    assert store.service("web").spec == SPEC and len(store.services()) == 1


def test_update_bumps_the_version_and_resets_the_state(store):
    store.create_service("web", SPEC, 3, T0)
    store.mark_running("web", 1)
    updated = store.update_service("web", SPEC, 5, T1)
    assert (updated.replicas, updated.version, updated.state) == (5, 2, NEW)
    assert store.record("web")["updated_at"] == T1 and store.record("web")["created_at"] == T0


def test_an_update_that_changes_nothing_keeps_the_version(store):
    store.create_service("web", SPEC, 3, T0)
    store.mark_running("web", 1)
    same = store.update_service("web", ServiceSpec.from_dict(SPEC.to_dict()), 3, T1)
    assert (same.version, same.state) == (1, RUNNING)
    assert store.record("web")["updated_at"] == T0


def test_update_of_a_missing_or_deleting_service(store):
    with pytest.raises(Missing):
        store.update_service("web", SPEC, 1, T0)
    store.create_service("web", SPEC, 3, T0)
    store.mark_delete("web", T1)
    with pytest.raises(Conflict):
        store.update_service("web", SPEC, 1, T2)


def test_mark_delete_bumps_the_version_once(store):
    store.create_service("web", SPEC, 3, T0)
    deleting = store.mark_delete("web", T1)
    assert (deleting.state, deleting.version) == (DELETE, 2)
    assert store.mark_delete("web", T2).version == 2
    with pytest.raises(Missing):
        store.mark_delete("nope", T0)


def test_mark_running_only_for_the_version_that_converged(store):
    store.create_service("web", SPEC, 3, T0)
    store.update_service("web", SPEC, 4, T1)          # version 2
    store.mark_running("web", 1)
    assert store.service("web").state == NEW
    store.mark_running("web", 2)
    assert store.service("web").state == RUNNING


def test_mark_running_never_revives_a_deleting_service(store):
    store.create_service("web", SPEC, 3, T0)
    store.mark_delete("web", T1)                      # version 2
    store.mark_running("web", 2)
    assert store.service("web").state == DELETE


def test_remove_service_only_when_deleting_at_that_version(store):
    store.create_service("web", SPEC, 3, T0)
    store.remove_service("web", 1)                    # not being deleted
    assert store.service("web") is not None
    store.mark_delete("web", T1)
    store.remove_service("web", 1)                    # an older version
    assert store.service("web") is not None
    store.remove_service("web", 2)
    assert store.service("web") is None and store.services() == []


def test_other_services_are_untouched(store):
    store.create_service("web", SPEC, 3, T0)
    store.create_service("db", ServiceSpec(image="postgres:16"), 1, T0)
    store.update_service("web", SPEC, 1, T1)
    store.mark_delete("web", T2)
    store.remove_service("web", 3)
    assert [(s.name, s.version, s.state) for s in store.services()] == [("db", 1, NEW)]


def test_events_are_kept_in_order_and_bounded(store):
    store.add_events([])
    assert store.events() == []
    batch = [{"time": T0, "kind": "placed", "message": f"event {i}"} for i in range(MAX_EVENTS - 5)]
    store.add_events(batch)
    store.add_events([{"time": T1, "kind": "removed", "message": f"late {i}"} for i in range(10)])
    everything = store.events(limit=MAX_EVENTS * 2)
    assert len(everything) == MAX_EVENTS
    assert everything[0]["message"] == "event 5" and everything[-1]["message"] == "late 9"
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    assert [e["message"] for e in store.events(limit=2)] == ["late 8", "late 9"]


# -- the file backend ----------------------------------------------------------

def test_a_new_store_on_the_same_file_sees_the_data(tmp_path):
    path = str(tmp_path / "state.json")
    first = Store(path)
    first.create_service("web", SPEC, 3, T0)
    first.mark_delete("web", T1)
    first.add_events([{"time": T1, "kind": "deleting", "message": "web"}])
    first.close()
    second = Store(path)
    assert [(s.name, s.spec, s.replicas, s.version, s.state) for s in second.services()] == \
        [("web", SPEC, 3, 2, DELETE)]
    assert [e["message"] for e in second.events()] == ["web"]
    second.add_events([{"time": T2, "kind": "deleted", "message": "gone"}])
    assert [e["message"] for e in second.events()] == ["web", "gone"]


def test_the_file_is_private_json_and_no_temporary_file_is_left(tmp_path):
    folder = tmp_path / "state"
    path = folder / "state.json"
    store = Store(str(path))
    for i in range(5):
        store.create_service(f"s{i}", SPEC, i, T0)
    store.mark_delete("s1", T1)
    store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(folder)) == ["state.json"]
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert sorted(doc["name"] for doc in data["services"].values()) == [f"s{i}" for i in range(5)]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    store = Store(str(path))
    store.create_service("web", SPEC, 3, T0)
    before = path.read_bytes()

    def boom(*_):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        store.create_service("db", SPEC, 1, T1)
    monkeypatch.undo()
    assert [s.name for s in store.services()] == ["web"]
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["state.json"]
    assert [s.name for s in Store(str(path)).services()] == ["web"]


def test_events_limit_zero_returns_none(store):
    store.add_events([{"time": T0, "kind": "placed", "message": "one"}])
    assert store.events(limit=0) == []


# -- the read cache ---------------------------------------------------------------

def tinydb_view(store):
    """What TinyDB itself holds, read past the cache."""
    services = [(d["name"], d["spec"], d["replicas"], d["version"], d["state"], d["created_at"], d["updated_at"])
                for d in store._services.all()]
    nodes = {d["name"]: dict(d) for d in store._nodes.all()}
    meta = store._meta.get(doc_id=1) or {"epoch": 0, "version": 0}
    return services, nodes, (meta["epoch"], meta["version"])


def cached_view(store):
    services = []
    for s in store.services():
        record = store.record(s.name)
        assert store.service(s.name) == s
        assert (record["name"], ServiceSpec.from_dict(record["spec"]), record["replicas"], record["version"],
                record["state"]) == (s.name, s.spec, s.replicas, s.version, s.state)
        services.append((s.name, record["spec"], s.replicas, s.version, s.state, record["created_at"],
                         record["updated_at"]))
    return services, store.nodes(), store.stamp()


def count_reads(store, monkeypatch):
    """A list that grows by one at each read of the storage under TinyDB."""
    reads = []
    storage = getattr(store.db.storage, "storage", store.db.storage)     # under the middleware, if any
    original = storage.read
    monkeypatch.setattr(storage, "read", lambda: reads.append(1) or original())
    return reads


def test_reads_do_not_go_through_tinydb(store, monkeypatch):
    store.create_service("web", SPEC, 3, T0)
    store.set_drained("node1", True)
    store.add_events([{"time": T0, "kind": "placed", "message": f"e{i}"} for i in range(50)])
    reads = count_reads(store, monkeypatch)
    assert [s.name for s in store.services()] == ["web"]
    assert store.service("web").replicas == 3 and store.service("nope") is None
    assert store.record("web")["created_at"] == T0
    assert store.nodes()["node1"]["drained"] is True
    assert store.stamp() == (0, 2)
    assert reads == []
    store.update_service("web", SPEC, 4, T1)          # a write still goes through TinyDB ...
    assert reads
    assert store.service("web").replicas == 4         # ... and the cache follows it


def test_a_returned_record_or_node_is_a_copy(store):
    store.create_service("web", SPEC, 3, T0)
    store.set_node("node1", status="ready")
    store.record("web")["spec"]["image"] = "changed"
    store.nodes()["node1"]["status"] = "changed"
    assert store.record("web")["spec"]["image"] == "nginx:1"
    assert store.nodes()["node1"]["status"] == "ready"


def test_adopt_replaces_services_nodes_and_stamp(store):
    store.create_service("web", SPEC, 3, T0)
    store.create_service("db", SPEC, 1, T0)
    store.set_drained("node1", True)
    store.set_node("node2", status="ready")
    doc = {"epoch": 7, "version": 42, "drained": ["node2"],
           "services": [{"name": "cache", "spec": ServiceSpec(image="redis:7").to_dict(), "replicas": 2,
                         "version": 3, "state": RUNNING, "created_at": T1, "updated_at": T2}]}
    store.adopt(doc)
    assert [(s.name, s.replicas, s.version, s.state) for s in store.services()] == [("cache", 2, 3, RUNNING)]
    assert store.service("web") is None and store.record("db") is None
    assert store.record("cache")["updated_at"] == T2
    assert {n: d.get("drained") for n, d in store.nodes().items()} == {"node1": False, "node2": True}
    assert store.nodes()["node2"]["status"] == "ready"
    assert store.stamp() == (7, 42)
    assert cached_view(store) == tinydb_view(store)


def die_after_writes(monkeypatch, survives):
    """The process is killed once `survives` whole file writes are on disk."""
    writes = []
    real_fsync = os.fsync

    def fsync_then_die(fd):
        real_fsync(fd)
        if os.path.isdir(f"/proc/self/fd/{fd}"):            # one folder fsync ends each file write
            writes.append(fd)
            if len(writes) == survives:
                raise KeyboardInterrupt("killed")
    monkeypatch.setattr(os, "fsync", fsync_then_die)


@pytest.mark.parametrize("survives", [1, 2, 3, 4])
def test_an_adoption_cut_short_leaves_a_store_that_every_replica_outranks(tmp_path, monkeypatch, survives):
    """A master killed in the middle of an adoption (several writes): after its
    restart its half-adopted store must not pass for a copy of its old stamp."""
    path = str(tmp_path / "state.json")
    store = Store(path)
    for name in ("a", "b", "c"):
        store.create_service(name, SPEC, 1, T0)
    store.set_epoch(101)
    assert store.stamp() == (101, 3)
    die_after_writes(monkeypatch, survives)
    with pytest.raises(KeyboardInterrupt):
        store.adopt({"epoch": 202, "version": 1, "drained": ["node1", "node2"],
                     "services": [{"name": "z", "spec": SPEC.to_dict(), "replicas": 1, "version": 1,
                                   "state": RUNNING, "created_at": T1, "updated_at": T1}]})
    monkeypatch.undo()
    assert Store(path).stamp() in ((0, 0), (202, 1))       # never (101, 3) over other services


MEMBERS = [{"name": n, "host": "127.0.0.1", "port": 22, "user": "root", "key": "", "labels": {}, "host_key": ""}
           for n in ("node1", "node2", "node3")]


@pytest.mark.parametrize("survives", [1, 2, 3])
def test_a_change_of_members_cut_short_leaves_a_store_that_every_replica_outranks(tmp_path, monkeypatch,
                                                                                   survives):
    """The member list takes several writes: a crash between them must not
    leave a list that half changed under the stamp of the list before."""
    path = str(tmp_path / "state.json")
    store = Store(path)
    store.set_members(MEMBERS)
    store.set_epoch(101)
    assert store.stamp() == (101, 1)
    die_after_writes(monkeypatch, survives)
    with pytest.raises(KeyboardInterrupt):
        store.set_members(MEMBERS[:2])
    monkeypatch.undo()
    after = Store(path)
    assert (after.stamp(), after.members()) in (((0, 0), None), ((0, 0), MEMBERS[:2]), ((0, 0), MEMBERS))


def test_a_change_of_members_moves_the_version_on_once(store):
    store.set_members(MEMBERS)
    store.set_members(MEMBERS[:2])
    assert store.stamp() == (0, 2)
    assert store.members() == MEMBERS[:2]
    assert store.snapshot()["members"] == MEMBERS[:2]


def failing_fsync(monkeypatch):
    def boom(*_):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)


WRITES = [
    lambda s: s.create_service("db", SPEC, 1, T1),
    lambda s: s.update_service("web", SPEC, 5, T1),
    lambda s: s.mark_delete("web", T1),
    lambda s: s.set_drained("node1", True),
    lambda s: s.set_node("node2", status="down"),
    lambda s: s.set_epoch(9),
    lambda s: s.adopt({"epoch": 9, "version": 1, "drained": [], "services": []}),
]


@pytest.mark.parametrize("write", WRITES)
def test_a_read_after_a_failed_write_is_consistent(tmp_path, monkeypatch, write):
    path = str(tmp_path / "state.json")
    store = Store(path)
    store.create_service("web", SPEC, 3, T0)
    store.set_node("node2", status="ready")
    before = cached_view(store)
    failing_fsync(monkeypatch)
    with pytest.raises(OSError):
        write(store)
    monkeypatch.undo()
    assert cached_view(store) == tinydb_view(store) == before
    reopened = Store(path)
    assert cached_view(reopened) == before
    write(store)                                      # the same write succeeds now
    assert cached_view(store) == tinydb_view(store) == cached_view(Store(path))


# A random sequence of writes: after each one, the cache equals what TinyDB holds.
NAMES = st.sampled_from(["web", "db", "cache"])
NODES = st.sampled_from(["node1", "node2"])
operations = st.one_of(
    st.tuples(st.just("create"), NAMES, st.integers(1, 5)),
    st.tuples(st.just("update"), NAMES, st.integers(1, 5)),
    st.tuples(st.just("delete"), NAMES),
    st.tuples(st.just("running"), NAMES, st.integers(1, 4)),
    st.tuples(st.just("remove"), NAMES, st.integers(1, 4)),
    st.tuples(st.just("drain"), NODES, st.booleans()),
    st.tuples(st.just("node"), NODES, st.sampled_from(["ready", "suspect", "down"])),
    st.tuples(st.just("events"), st.integers(0, 3)),
    st.tuples(st.just("epoch"), st.integers(1, 9)),
    st.tuples(st.just("adopt"), st.lists(NAMES, unique=True, max_size=3), st.lists(NODES, unique=True)),
)


def apply_write(store, op):
    kind, *args = op
    try:
        if kind == "create":
            store.create_service(args[0], SPEC, args[1], T0)
        elif kind == "update":
            store.update_service(args[0], SPEC, args[1], T1)
        elif kind == "delete":
            store.mark_delete(args[0], T2)
        elif kind == "running":
            store.mark_running(*args)
        elif kind == "remove":
            store.remove_service(*args)
        elif kind == "drain":
            store.set_drained(*args)
        elif kind == "node":
            store.set_node(args[0], status=args[1])
        elif kind == "events":
            store.add_events([{"time": T0, "kind": "placed", "message": str(i)} for i in range(args[0])])
        elif kind == "epoch":
            store.set_epoch(args[0])
        elif kind == "adopt":
            epoch, version = store.stamp()
            store.adopt({"epoch": epoch + 1, "version": version, "drained": args[1],
                         "services": [{"name": n, "spec": SPEC.to_dict(), "replicas": 2, "version": 1,
                                       "state": NEW, "created_at": T0, "updated_at": T0} for n in args[0]]})
    except (Conflict, Missing):
        pass


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["memory", "json"]), st.lists(operations, max_size=25))
def test_every_write_reaches_the_cache(backend, ops):
    with tempfile.TemporaryDirectory() as folder:
        store = Store(None if backend == "memory" else os.path.join(folder, "state.json"))
        for op in ops:
            apply_write(store, op)
            assert cached_view(store) == tinydb_view(store), op
        if backend == "json":
            assert cached_view(Store(os.path.join(folder, "state.json"))) == cached_view(store)
