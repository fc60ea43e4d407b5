"""The REST API (Bottle): the only package that imports bottle.

It validates requests and writes desired records; it never touches a node.
Reads are served from the master's memory (master/view.py). Every error
body is JSON: {"message": ..., "errors": [{"field", "message"}]?}.

`make_app` gets only what the routes use, never the whole master: the store
through one narrow door (Desired), the views, the leader gate and the waits
of writes (Leadership, Waits), and what the read-only routes read (Monitor).
The routes live in services.py, nodes.py and monitor.py; routing.py puts
the token check and the one table of errors to statuses around each.
"""
import json

import bottle

from master import openapi
from master.api import nodes, services
from master.api.desired import Desired
from master.api.monitor import Monitor, add_routes as add_monitor_routes
from master.api.routing import Router
from master.api.writes import Leadership, Waits

__all__ = ["make_app", "Desired", "Leadership", "Monitor", "Waits"]


def make_app(tokens, requests, desired, views, leadership, waits, monitor, doctor, changes):
    """The WSGI app. tokens: {"admin", "read"}; requests: the metrics counter
    of answers; views: service(), services(), nodes() and state() as JSON;
    doctor(node) -> the node's check list (master/doctor.py); changes: adds,
    relabels and removes nodes (master/node_changes.py)."""
    app = bottle.Bottle(catchall=True)
    route = Router(app, tokens, requests).route

    @route("/health")
    def health():
        return 200, leadership.health()

    @route("/state")
    def state():
        return 200, views.state()

    @route("/openapi.json")
    def spec():
        return 200, openapi.document()

    services.add_routes(route, desired, views, leadership, waits)
    nodes.add_routes(route, desired, views, leadership, waits, doctor, changes)
    add_monitor_routes(route, monitor, desired)
    for code in (400, 404, 405, 413, 500):
        app.error(code)(_error_page)
    return app


def _error_page(res):
    """Bottle's own errors (no route, wrong method, a crash) as JSON too."""
    bottle.response.content_type = "application/json"
    messages = {404: "no such endpoint", 405: "method not allowed"}
    return json.dumps({"message": messages.get(res.status_code, res.status_line)})
