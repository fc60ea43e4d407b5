"""The REST API (Bottle). The only module that imports bottle.

It validates requests and writes desired records; it never touches a node.
Reads are served from the master's memory (master/view.py). Every error
body is JSON: {"message": ..., "errors": [{"field", "message"}]?}.
"""
import json

import bottle

from master import auth, openapi, api_monitor
from master.http import HTTPError, MAX_BODY, json_answer, read_body, query_flag, query_timeout  # noqa: F401 (MAX_BODY: part of the API)
from master.election import NotLeader
from master.validate import Invalid, service_body, check_name
from model import DELETE
from store.state import Conflict, Missing

def make_app(master):
    app = bottle.Bottle(catchall=True)
    store, views = master.store, master.views

    def route(path, method="GET"):
        def wrap(fn):
            def handler(**kw):
                try:
                    authorize(method)
                    status, payload = fn(**kw)
                except HTTPError as e:
                    status, payload = e.status, dict(e.extra, message=e.message)
                    if e.errors:
                        payload["errors"] = e.errors
                except NotLeader as e:
                    status, payload = 503, {"message": f"not acknowledged, outcome unknown (retry the same "
                                                       f"request): {e}"}
                except Invalid as e:
                    status, payload = 422, {"message": "invalid service", "errors": e.errors}
                except Conflict as e:
                    status, payload = 409, {"message": str(e)}
                except Missing as e:
                    status, payload = 404, {"message": str(e)}
                master.metrics.requests.labels(method, path, str(status)).inc()
                if isinstance(payload, (dict, list)):
                    return json_answer(status, payload)
                bottle.response.status = status
                return payload           # a stream of lines, metrics text, the dashboard
            app.route(path, method, handler)
            return fn
        return wrap

    def authorize(method):
        """401 without a valid token, 403 when a read token tries to write."""
        need = auth.required(method, bottle.request.path)
        have = auth.kind_of(auth.presented(bottle.request.get_header("Authorization")), master.tokens)
        if auth.allows(have, need):
            return
        if have is None:
            bottle.response.add_header("WWW-Authenticate", 'Bearer realm="bicycle"')
            bottle.response.add_header("WWW-Authenticate", 'Basic realm="bicycle"')
            raise HTTPError(401, "a valid API token is required: Authorization: Bearer TOKEN "
                                 "(the token file is settings.api.tokens)")
        raise HTTPError(403, "this token may only read; writes need the admin token")

    def leader_only():
        """Writes go to the leader: a standby answers 307 with its address.
        While no leader is known yet (this master is starting, or a term is
        changing hands) a write waits for one, at most 2 x lease_ttl."""
        if master.election.settle(2 * master.election.ttl):
            return
        leader = master.leader()
        if leader and leader[0] != master.name and leader[1]:
            query = bottle.request.query_string
            location = master.inventory.url(leader[1]) + bottle.request.path + (f"?{query}" if query else "")
            bottle.response.set_header("Location", location)
            raise HTTPError(307, f"{master.name} is a standby; the leader is {leader[0]}",
                            leader={"name": leader[0], "api": leader[1], "epoch": leader[2]})
        raise HTTPError(503, f"no leader can take writes now: {master.election.reason}")

    def committed(change, kind, message, **fields):
        """Make `change()` to the store within the current term and acknowledge
        it only once a majority of nodes holds it under that term's epoch
        (NotLeader, hence 503 with the outcome unknown, otherwise); then record
        it and wake the loop to act on it."""
        result = master.election.change(change)
        master.loop.event(kind, message, **fields)
        master.loop.wake()
        return result

    def existing(name):
        check_name(name)
        service = store.service(name)
        if service is None:
            raise Missing(f"no service named {name!r}")
        return service

    def waiting():
        """The query's wait and timeout, checked before anything is written."""
        return query_flag("wait"), query_timeout(master.settings["converge_timeout"])

    def answer(service, created, wait, timeout):
        if not wait:
            return 202, views.service(service)
        done = master.wait_settled(service.name, service.version, timeout)
        current = store.service(service.name) or service
        return (201 if created else 200) if done else 202, views.service(current)

    @route("/health")
    def health():
        role, epoch = master.election.status()
        return 200, {"status": "ok", "master": master.name, "role": role, "epoch": epoch}

    @route("/state")
    def state():
        return 200, views.state()

    @route("/openapi.json")
    def spec():
        return 200, openapi.document()

    @route("/service")
    def list_services():
        return 200, views.services()

    @route("/service", "POST")
    def create():
        wait, timeout = waiting()
        leader_only()
        body = read_body()
        before = store.service(body.get("name")) if isinstance(body, dict) and isinstance(body.get("name"), str) \
            else None
        sealed = before.spec.secrets if before is not None else ()
        name, spec, replicas = service_body(body, len(master.inventory.nodes),
                                            seal=lambda key, value: master.vault.reseal(sealed, key, value))

        def create_or_same():
            """A retry of a create whose answer was lost (or 503) finds the same
            service: 200. Another spec under the name is a conflict: 409."""
            current = store.service(name)
            if current is not None and current.state != DELETE and current.replicas == replicas \
                    and master.vault.same(current.spec, spec):
                return current, False
            return store.create_service(name, spec, replicas, master.now_iso()), True

        service, created = committed(create_or_same, "created", f"service {name} v1: {replicas} x {spec.image}",
                                     service=name)
        return answer(service, created, wait, timeout)

    @route("/service/<name>")
    def show(name):
        return 200, views.service(existing(name))

    @route("/service/<name>", "PATCH")
    def patch(name):
        wait, timeout = waiting()
        leader_only()
        current = existing(name)
        body = read_body()
        base = {"spec": current.spec.to_dict(), "replicas": current.replicas}
        _, spec, replicas = service_body(body, len(master.inventory.nodes), base=base,
                                         seal=lambda key, value: master.vault.reseal(current.spec.secrets, key, value))
        service = committed(lambda: store.update_service(name, spec, replicas, master.now_iso()),
                            "updated", f"service {name}: {replicas} x {spec.image}", service=name)
        return answer(service, False, wait, timeout)

    @route("/service/<name>", "DELETE")
    def delete(name):
        wait, timeout = waiting()
        leader_only()
        existing(name)
        service = committed(lambda: store.mark_delete(name, master.now_iso()),
                            "deleting", f"service {name} marked for deletion", service=name)
        if not wait:
            return 202, views.service(service)
        done = master.wait_settled(name, service.version, timeout)
        if done:
            return 200, {"message": f"service {name} deleted", "name": name}
        return 202, views.service(store.service(name) or service)

    def node_view(name):
        return next(n for n in views.nodes() if n["name"] == name)

    def node_named(name):
        check_name(name, "node")
        if name not in {n.name for n in master.inventory.nodes}:
            raise Missing(f"no node named {name!r} in the inventory")
        return name

    @route("/nodes")
    def list_nodes():
        return 200, views.nodes()

    @route("/nodes/<name>")
    def show_node(name):
        node_named(name)
        return 200, node_view(name)

    @route("/nodes/<name>/drain", "POST")
    def drain(name):
        wait, timeout = waiting()
        leader_only()
        node_named(name)
        committed(lambda: store.set_drained(name, True), "drain", f"node {name} drained: its containers move away",
                  node=name)
        done = master.wait_empty(name, timeout) if wait else False
        return (200 if done else 202), node_view(name)

    @route("/nodes/<name>/activate", "POST")
    def activate(name):
        leader_only()
        node_named(name)
        committed(lambda: store.set_drained(name, False), "activate", f"node {name} takes work again", node=name)
        return 200, node_view(name)

    api_monitor.add_routes(app, route, master, existing, node_named)

    def error_handler(res):
        bottle.response.content_type = "application/json"
        messages = {404: "no such endpoint", 405: "method not allowed"}
        return json.dumps({"message": messages.get(res.status_code, res.status_line)})

    for code in (400, 404, 405, 413, 500):
        app.error(code)(error_handler)
    return app
