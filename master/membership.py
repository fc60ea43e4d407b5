"""The nodes this master works with, and how they change while it runs.

The members start as the inventory's nodes. A change made through the API
(a node added, relabelled or removed) is a replicated change of the desired
state: the leader commits the whole new member list to a majority of the
members as they were, and only then lets it take effect; every master that
adopts a replica with a new list applies it too (standbys while they follow,
a new leader when it takes office). Applying a list opens or closes the
node's connection, starts or stops its prober, hands the list to the
election (whose majorities count it from then on), pins a new node's host
key and writes the change into this master's own inventory file.

One change at a time (`changing`): a change takes effect before the next
one starts, so two lists in force never differ by more than one node, and
any majority of one meets any majority of the other. docs/failover.md,
Membership changes, gives the argument.
"""
import os
import threading

from master import inventory_edit
from master.inventory import load
from model import NodeInfo
from remote import hostkeys


class Membership:
    def __init__(self, inventory, fleet, observation, election, events, prober, me=""):
        """prober(name, stop event) -> a started prober thread for a node;
        me: this master's name (the lease holder it writes)."""
        self.inventory, self.fleet, self.obs, self.election = inventory, fleet, observation, election
        self.me = me
        self.events, self.prober = events, prober
        self.lock = threading.Lock()           # the list in force, and the file that follows it
        self.changing = threading.Lock()       # one change at a time, from proposal to effect
        self.infos = {n.name: n for n in inventory.nodes}
        self.records = [self.record(n) for n in inventory.nodes]
        self.stops = {}                        # node -> the Event that stops its prober
        self.stamp = (0, 0)                    # of the state whose list is in force
        self.running = False                   # probers run from start() on

    # -- reads -------------------------------------------------------------------
    def names(self):
        with self.lock:
            return list(self.infos)

    def nodes(self):
        """[NodeInfo] of the members, in order."""
        with self.lock:
            return list(self.infos.values())

    def current(self):
        """The member list as records (what a change starts from)."""
        with self.lock:
            return [dict(r) for r in self.records]

    def record(self, info, host_key=""):
        """A member as it is replicated: the key path relative to the inventory's
        folder when it lies under it, the host key as "TYPE BASE64" when known."""
        key = info.key
        if key:
            rel = os.path.relpath(key, self._folder())
            key = key if rel.startswith("..") else rel
        return {"name": info.name, "host": info.host, "port": info.port, "user": info.user, "key": key,
                "labels": dict(info.labels), "host_key": host_key}

    def info(self, record):
        key = record.get("key")
        return NodeInfo(name=record["name"], host=record["host"], port=record["port"], user=record["user"],
                        key=os.path.join(self._folder(), os.path.expanduser(key)) if key else None,
                        labels=tuple(sorted(record.get("labels", {}).items())))

    def _folder(self):
        return os.path.dirname(self.inventory.path)

    # -- changes -----------------------------------------------------------------
    def start(self):
        with self.lock:
            self.running = True
            for name in self.infos:
                if name not in self.stops:
                    self._start_prober(name)

    def adopted(self, doc):
        """A replica was adopted (or a leader takes office with its store's
        list): its member list, when it has one, is in force."""
        if doc.get("members") is not None:
            self.apply(doc["members"], (doc["epoch"], doc["version"]))

    def apply(self, records, stamp, write_file=True):
        """Put the member list `records`, from the state at `stamp`, in force
        here, and into this master's inventory file unless `write_file` is
        False (a master starting from its own stored list: that list may be
        older than the one in force, which it follows within a poll; writing
        it would undo a newer entry). A list older than the one in force is
        ignored: a commit and an adoption may reach here in either order."""
        wanted = {r["name"]: (self.info(r), r) for r in records}
        with self.lock:
            if tuple(stamp) < self.stamp:
                return
            moved = [n for n in wanted if n in self.infos and self._moved(n, *wanted[n])]
            added = [n for n in wanted if n not in self.infos]
            removed = [n for n in self.infos if n not in wanted]
            for name in removed + moved:
                self._leave(name)
            for name in added + moved:
                self._join(*wanted[name])
            self.infos = {n: info for n, (info, _) in wanted.items()}
            self.records = [dict(r) for r in records]
            self.stamp = tuple(stamp)
            self.election.set_nodes(list(wanted))
            if write_file:
                self._write_inventory(records)
        if added or removed or moved:
            self.events("members", f"members now {', '.join(wanted)}" + "".join(f"; {n} joined" for n in added)
                        + "".join(f"; {n} left" for n in removed) + "".join(f"; {n} is another machine now"
                                                                           for n in moved))

    def _moved(self, name, info, record):
        """The same name for another machine or account (removed, then added
        anew while this master was behind): its connection starts over."""
        before = self.infos[name]
        kept = next((r for r in self.records if r["name"] == name), {})
        return ((before.host, before.port, before.user, before.key) != (info.host, info.port, info.user, info.key)
                or (record.get("host_key") or "") != (kept.get("host_key") or ""))

    def _join(self, info, record):
        if record.get("host_key"):
            try:
                hostkeys.pin_text(self.inventory.settings.known_hosts, info, record["host_key"])
            except hostkeys.TrustError as e:
                self.events("error", f"{info.name}: its host key could not be pinned here: {e}", node=info.name)
        self.fleet.add(info)
        self.obs.add_node(info.name)
        if self.running:
            self._start_prober(info.name)

    def _leave(self, name):
        stop = self.stops.pop(name, None)
        if stop is not None:
            stop.set()
        self.obs.remove_node(name)
        self.fleet.remove(name)

    def _start_prober(self, name):
        self.stops[name] = threading.Event()
        self.prober(name, self.stops[name])

    def stop(self):
        with self.lock:
            self.running = False
            for name, stop in self.stops.items():
                stop.set()
                self.obs.list_soon(name)       # wakes the prober between listings: it sees the stop

    def _write_inventory(self, records):
        """Make this master's inventory file list the members; an entry that is
        already right is left alone (masters sharing one file write it once)."""
        path = self.inventory.path
        try:
            on_file = {n.name: n for n in load(path).nodes}
            for r in records:
                entry = {k: v for k, v in r.items() if k != "host_key" and v is not None}
                there = on_file.get(r["name"])
                if there is not None and (there.host, there.port, there.user) != (r["host"], r["port"], r["user"]):
                    inventory_edit.remove_node(path, r["name"])
                    there = None
                if there is None:
                    inventory_edit.add_node(path, entry)
                elif dict(there.labels) != r.get("labels", {}):
                    inventory_edit.set_labels(path, r["name"], r.get("labels", {}))
            for name in on_file:
                if name not in {r["name"] for r in records}:
                    inventory_edit.remove_node(path, name)
        except Exception as e:            # the change is in force already: the file must not undo it
            self.events("error", f"the inventory file {path} could not follow the members: "
                                 f"{type(e).__name__}: {e}")
