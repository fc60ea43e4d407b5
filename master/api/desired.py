"""The API's one door to the store: the services it reads, the request bodies
it turns into desired records, and the changes it makes.

A change is committed within the current term before it counts (`commit`:
Election.change, written locally and on a majority of nodes under the
leader's epoch, NotLeader otherwise), then recorded as an event, then the
loop is woken to act on it. No route reaches the store, a node or a lock in
any other way.
"""
from master.validate import check_name, node_body, node_patch, service_request
from model import DELETE, GLOBAL
from store.state import Missing


class Desired:
    def __init__(self, store, vault, members, commit, record, wake, now_iso):
        """members: () -> the names of the nodes in force; commit(change) -> change's result;
        record(kind, message, **fields): an event; wake(): start a round soon;
        now_iso(): the wall-clock time stored with a change."""
        self._store, self._vault, self.members = store, vault, members
        self._commit, self._record, self._wake, self._now_iso = commit, record, wake, now_iso

    # -- reads -------------------------------------------------------------------
    def service(self, name):
        """The stored service, or None."""
        return self._store.service(name)

    def existing(self, name):
        """The service a path names: Invalid when the name is malformed, Missing when unknown."""
        check_name(name)
        service = self._store.service(name)
        if service is None:
            raise Missing(f"no service named {name!r}")
        return service

    def node(self, name):
        """The node a path names: Invalid when malformed, Missing when not in the inventory."""
        check_name(name, "node")
        if name not in self.members():
            raise Missing(f"no node named {name!r}")
        return name

    def events(self, limit, since):
        return self._store.events(limit=limit, since=since)

    # -- request bodies ----------------------------------------------------------
    def new_service(self, body):
        """The ServiceRequest of a create's body; Invalid with every bad field.
        A secret keeps its sealed form when a service of that name already
        holds the same value (so a retried create finds the same spec)."""
        named = body.get("name") if isinstance(body, dict) and isinstance(body.get("name"), str) else None
        before = self._store.service(named) if named is not None else None
        sealed = before.spec.secrets if before is not None else ()
        return service_request(body, len(self.members()),
                               seal=lambda key, value: self._vault.reseal(sealed, key, value))

    def changed_service(self, current, body):
        """The ServiceRequest of `current` changed by a PATCH body; Invalid with every bad field."""
        base = {"spec": current.spec.to_dict(), "replicas": current.replicas, "update": current.update.to_dict(),
                "rollback": current.rollback.to_dict(), "constraints": list(current.constraints),
                "mode": current.mode}
        return service_request(body, len(self.members()), base=base,
                               seal=lambda key, value: self._vault.reseal(current.spec.secrets, key, value))

    def new_node(self, body):
        """A POST /nodes body -> (entry, fingerprint, trust); Invalid when bad."""
        return node_body(body)

    def node_change(self, body):
        """A PATCH /nodes/NAME body -> (labels or None, availability or None)."""
        return node_patch(body)

    # -- changes -----------------------------------------------------------------
    def wake(self):
        """Start a round soon (the members changed)."""
        self._wake()

    def create(self, request):
        """(service, created). A retry of a create whose answer was lost (or
        503) finds the same service: created is False. Another spec under the
        name is a Conflict."""
        name, spec, replicas = request.name, request.spec, request.replicas

        def create_or_same():
            current = self._store.service(name)
            if current is not None and current.state != DELETE and current.replicas == replicas \
                    and (current.update, current.rollback, current.constraints, current.mode) == (
                        request.update, request.rollback, request.constraints, request.mode) \
                    and self._vault.same(current.spec, spec):
                return current, False
            return self._store.create_service(name, spec, replicas, self._now_iso(), request.update,
                                              request.rollback, request.constraints, request.mode), True
        return self._committed(create_or_same, "created", f"service {name} v1: {_count(request)} x {spec.image}",
                               service=name)

    def update(self, name, request):
        return self._committed(lambda: self._store.update_service(name, request.spec, request.replicas,
                                                                  self._now_iso(), request.update, request.rollback,
                                                                  request.constraints),
                               "updated", f"service {name}: {_count(request)} x {request.spec.image}", service=name)

    def rollback(self, name):
        """Back to the previous spec, on demand."""
        return self._committed(lambda: self._store.rollback_service(name, self._now_iso(), "asked for"),
                               "rollback", f"service {name}: rolling back to its previous spec", service=name)

    def delete(self, name):
        return self._committed(lambda: self._store.mark_delete(name, self._now_iso()),
                               "deleting", f"service {name} marked for deletion", service=name)

    def drain(self, node):
        self._committed(lambda: self._store.set_drained(node, True),
                        "drain", f"node {node} drained: its containers move away", node=node)

    def activate(self, node):
        self._committed(lambda: self._store.set_drained(node, False),
                        "activate", f"node {node} takes work again", node=node)

    def _committed(self, change, kind, message, **fields):
        """Make `change()` within the current term, acknowledged only once a
        majority of nodes holds it; then record it and wake the loop."""
        result = self._commit(change)
        self._record(kind, message, **fields)
        self._wake()
        return result


def _count(request):
    """How many replicas an event says a service runs."""
    return "global" if request.mode == GLOBAL else request.replicas
