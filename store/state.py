"""The desired state: services, nodes' stored settings, events.

One TinyDB handle behind one lock. The file backend writes atomically
(store/atomic.py); `Store(None)` keeps everything in memory (unit tests).
Callers pass wall-clock time strings in; nothing here reads the clock.

Reads of services, nodes and the stamp are served from a cache (`Cached`),
never from TinyDB (whose every read parses the whole database, events
included). The cache is rebuilt from each write TinyDB makes, in one place
that every write goes through whatever method made it (`Watched`, the
storage's middleware), and only once the write succeeded: after a failed
write the cache still equals the file.
"""
import copy
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from tinydb import TinyDB, Query
from tinydb.middlewares import Middleware
from tinydb.table import Document
from tinydb.storages import MemoryStorage

from model import (DELETE, NEW, REPLICATED, ROLLBACK_DEFAULTS, ROLLING_BACK, RUNNING, UPDATING, Rollout, Service, ServiceSpec,
                   UpdateConfig)
from store.atomic import AtomicJSONStorage

MAX_EVENTS = 1000


class Conflict(Exception):
    pass


class Missing(Exception):
    pass


def _service(doc):
    return Service(name=doc["name"], spec=ServiceSpec.from_dict(doc["spec"]),
                   replicas=doc["replicas"], version=doc["version"], state=doc["state"],
                   update=UpdateConfig.from_dict(doc.get("update")),
                   rollback=UpdateConfig.from_dict(doc.get("rollback"), ROLLBACK_DEFAULTS),
                   previous=ServiceSpec.from_dict(doc["previous"]) if doc.get("previous") else None,
                   rollout=Rollout.from_dict(doc.get("rollout")),
                   constraints=tuple(doc.get("constraints") or ()),
                   mode=doc.get("mode") or REPLICATED)


@dataclass(frozen=True)
class Cached:
    """What readers get without TinyDB: the services (by name, in stored order,
    each as its own copy of the document and its Service), the nodes'
    documents and the stamp. Replaced whole, never changed."""
    services: dict = field(default_factory=dict)      # name -> (document, Service)
    nodes: dict = field(default_factory=dict)         # name -> document
    stamp: tuple = (0, 0)

    def after(self, data):
        """The cache of the database `data` (TinyDB's whole content), reusing
        the entries of services whose document did not change."""
        services = {}
        for doc in (data.get("services") or {}).values():
            kept = self.services.get(doc["name"])
            services[doc["name"]] = kept if kept is not None and kept[0] == doc else \
                (copy.deepcopy(doc), _service(doc))
        nodes = {doc["name"]: dict(doc) for doc in (data.get("nodes") or {}).values()}
        meta = (data.get("meta") or {}).get("1") or {"epoch": 0, "version": 0}
        return Cached(services, nodes, (meta["epoch"], meta["version"]))


class Watched(Middleware):
    """A TinyDB storage middleware that hands every successful write of the
    whole database to `on_write`: the one place the cache is kept in step."""

    def __init__(self, storage_cls, on_write):
        super().__init__(storage_cls)
        self.on_write = on_write

    def read(self):
        return self.storage.read()

    def write(self, data):
        self.storage.write(data)       # raises when the write failed: the cache stays as the file is
        self.on_write(data)

    def close(self):
        self.storage.close()


class Store:
    def __init__(self, path=None):
        self._cache = Cached()
        if path is None:
            self.db = TinyDB(storage=Watched(MemoryStorage, self._remember))
        else:
            self.db = TinyDB(path, storage=Watched(AtomicJSONStorage, self._remember))
        self.lock = threading.RLock()
        self._services = self.db.table("services", cache_size=0)
        self._events = self.db.table("events", cache_size=0)
        self._nodes = self.db.table("nodes", cache_size=0)
        self._meta = self.db.table("meta", cache_size=0)
        self._members = self.db.table("members", cache_size=0)
        self._remember(self.db.storage.read() or {})

    def _remember(self, data):
        """Called with TinyDB's whole content after every write (and at open)."""
        self._cache = self._cache.after(data)

    def current(self):
        """The cached services, nodes and stamp as one immutable piece: what a
        reader takes once to answer a whole request. Its documents are shared:
        read them, never change them."""
        with self.lock:
            return self._cache

    # -- services ------------------------------------------------------
    def services(self):
        with self.lock:
            return [svc for _, svc in self._cache.services.values()]

    def service(self, name):
        with self.lock:
            kept = self._cache.services.get(name)
            return kept[1] if kept else None

    def record(self, name):
        """The stored document (with created_at / updated_at), or None."""
        with self.lock:
            kept = self._cache.services.get(name)
            return copy.deepcopy(kept[0]) if kept else None

    def create_service(self, name, spec, replicas, now, update=UpdateConfig(), rollback=ROLLBACK_DEFAULTS,
                       constraints=(), mode=REPLICATED):
        """mode is stored only when global: the documents of replicated
        services read the same as before modes existed."""
        with self.lock:
            existing = self._services.get(Query().name == name)
            if existing and existing["state"] == DELETE:
                raise Conflict(f"service {name!r} is being deleted; create it again once it is gone")
            if existing:
                raise Conflict(f"service {name!r} already exists")
            self._services.insert({"name": name, "spec": spec.to_dict(), "replicas": replicas,
                                   "version": 1, "state": NEW, "created_at": now, "updated_at": now,
                                   "update": update.to_dict(), "rollback": rollback.to_dict(),
                                   "constraints": list(constraints), **({"mode": mode} if mode != REPLICATED else {})})
            self._bump()
            return self.service(name)

    def update_service(self, name, spec, replicas, now, update=None, rollback=None, constraints=None):
        """A change of spec keeps the spec before it (`previous`) and starts a
        rollout; replicas, constraints and update settings change without one."""
        with self.lock:
            current = self._require(name)
            if current.state == DELETE:
                raise Conflict(f"service {name!r} is being deleted")
            update, rollback = update or current.update, rollback or current.rollback
            constraints = current.constraints if constraints is None else tuple(constraints)
            if (current.spec, current.replicas, current.update, current.rollback, current.constraints) == (
                    spec, replicas, update, rollback, constraints):
                return current
            fields = {"spec": spec.to_dict(), "replicas": replicas, "state": NEW, "version": current.version + 1,
                      "updated_at": now, "update": update.to_dict(), "rollback": rollback.to_dict(),
                      "constraints": list(constraints)}
            if spec != current.spec:
                fields.update(previous=current.spec.to_dict(),
                              rollout=Rollout(UPDATING, started_at=now, version=current.version + 1).to_dict())
            self._services.update(fields, Query().name == name)
            self._bump()
            return self.service(name)

    def rollback_service(self, name, now, reason, version=None):
        """Back to the spec before the latest change (which becomes the
        previous one in turn), rolled under the rollback settings. With
        `version`, only from that version (Conflict when it moved on)."""
        with self.lock:
            current = self._require(name)
            if version is not None and current.version != version:
                raise Conflict(f"service {name!r} is at v{current.version} now, not v{version}")
            if current.state == DELETE:
                raise Conflict(f"service {name!r} is being deleted")
            if current.previous is None:
                raise Conflict(f"service {name!r} has no previous spec to roll back to")
            self._services.update({"spec": current.previous.to_dict(), "previous": current.spec.to_dict(),
                                   "state": NEW, "version": current.version + 1, "updated_at": now,
                                   "rollout": Rollout(ROLLING_BACK, reason, started_at=now,
                                                      version=current.version + 1).to_dict()},
                                  Query().name == name)
            self._bump()
            return self.service(name)

    def set_rollout(self, name, version, rollout):
        """The loop's verdict on the rollout of `version` (a replicated change);
        Conflict when the service moved on meanwhile."""
        with self.lock:
            if not self._services.update({"rollout": rollout.to_dict()},
                                         (Query().name == name) & (Query().version == version)):
                raise Conflict(f"service {name!r} is not at v{version} any more")
            self._bump()

    def mark_delete(self, name, now):
        with self.lock:
            current = self._require(name)
            if current.state != DELETE:
                self._services.update({"state": DELETE, "version": current.version + 1, "updated_at": now},
                                      Query().name == name)
                self._bump()
            return self.service(name)

    def mark_running(self, name, version):
        """The loop saw `version` of the service converge."""
        with self.lock:
            self._services.update({"state": RUNNING},
                                  (Query().name == name) & (Query().version == version) & (Query().state == NEW))

    def remove_service(self, name, version):
        """The loop saw a deleted service's containers gone: forget it (a replicated change)."""
        with self.lock:
            if self._services.remove((Query().name == name) & (Query().version == version)
                                     & (Query().state == DELETE)):
                self._bump()

    def _require(self, name):
        current = self.service(name)
        if current is None:
            raise Missing(f"no service named {name!r}")
        return current

    # -- nodes ---------------------------------------------------------
    def set_node(self, name, **fields):
        """Stored facts about a node (its last status and since when)."""
        with self.lock:
            self._nodes.upsert(dict(fields, name=name), Query().name == name)

    def set_drained(self, name, drained):
        """Stored availability of a node; True means it takes no work."""
        with self.lock:
            self.set_node(name, drained=bool(drained))
            self._bump()

    def nodes(self):
        with self.lock:
            return {name: dict(doc) for name, doc in self._cache.nodes.items()}

    # -- membership ----------------------------------------------------
    def members(self):
        """The nodes as changed through the API (a list of dicts in order),
        or None while the inventory's nodes are the members."""
        with self.lock:
            docs = sorted(self._members.all(), key=lambda d: d["order"])
            return [{k: v for k, v in d.items() if k != "order"} for d in docs] or None

    def set_members(self, members):
        """Replace the member list (a replicated change). It takes several
        writes: as in `adopt`, the stamp is (0, 0) until the last, so a crash
        in between leaves a store that any replica outranks, never a half
        written list under a stamp that names another."""
        with self.lock:
            epoch, version = self.stamp()
            with self._unstamped_until(epoch, version + 1):
                self._write_members(members)

    def _write_members(self, members):
        self._members.truncate()
        self._members.insert_multiple(dict(m, order=i) for i, m in enumerate(members or ()))

    # -- replication ---------------------------------------------------
    def _bump(self):
        """Every change a client asked for moves the replicated version on."""
        meta = self._meta.get(doc_id=1) or {"epoch": 0, "version": 0}
        self._meta.upsert(Document({"epoch": meta["epoch"], "version": meta["version"] + 1}, doc_id=1))

    def stamp(self):
        """(epoch, version) of the desired state held here."""
        with self.lock:
            return self._cache.stamp

    def set_epoch(self, epoch):
        """The leader of `epoch` owns this state from now on."""
        with self.lock:
            _, version = self.stamp()
            self._meta.upsert(Document({"epoch": epoch, "version": version}, doc_id=1))

    def snapshot(self):
        """The replicated part of the state: services, drained nodes and the
        members once changed through the API."""
        with self.lock:
            epoch, version = self.stamp()
            doc = {"epoch": epoch, "version": version,
                   "services": sorted((dict(d) for d in self._services.all()), key=lambda d: d["name"]),
                   "drained": sorted(n for n, d in self.nodes().items() if d.get("drained"))}
            members = self.members()
            if members is not None:         # absent until the first change: older replicas read the same
                doc["members"] = members
            return doc

    def adopt(self, doc):
        """Replace the replicated part by `doc` (a snapshot from the nodes).

        It takes several writes; the first sets the stamp to (0, 0) and the
        last to the document's, so a crash in between leaves a store that any
        replica outranks: the next claim or poll replaces what was half adopted."""
        with self.lock, self._unstamped_until(doc["epoch"], doc["version"]):
            self._services.truncate()
            self._services.insert_multiple(doc.get("services", []))
            drained = set(doc.get("drained", []))
            for name in set(self.nodes()) | drained:
                self.set_node(name, drained=name in drained)
            self._write_members(doc.get("members"))

    @contextmanager
    def _unstamped_until(self, epoch, version):
        """Several writes as one change: the stamp is (0, 0) while they run
        and (epoch, version) after the last, so a crash in between leaves a
        store that any replica outranks (an exception leaves it at (0, 0) too)."""
        self._meta.upsert(Document({"epoch": 0, "version": 0}, doc_id=1))
        yield
        self._meta.upsert(Document({"epoch": epoch, "version": version}, doc_id=1))

    # -- events --------------------------------------------------------
    def add_events(self, events):
        """events: list of dicts with at least time, kind, message. One write."""
        if not events:
            return
        with self.lock:
            self._events.insert_multiple(events)
            excess = len(self._events) - MAX_EVENTS
            if excess > 0:
                oldest = sorted(doc.doc_id for doc in self._events.all())[:excess]
                self._events.remove(doc_ids=oldest)

    def events(self, limit=100, since=0):
        """The newest `limit` events with an id above `since`, oldest first."""
        with self.lock:
            docs = sorted((d for d in self._events.all() if d.doc_id > since), key=lambda d: d.doc_id)
            return [dict(d, id=d.doc_id) for d in docs[-limit:]] if limit > 0 else []

    def close(self):
        with self.lock:
            self.db.close()
