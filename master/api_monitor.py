"""Read-only API of logs, stats, events, metrics and the dashboard.

Logs and events can be followed: the answer is then a chunked stream of
lines that ends when the client leaves (or the master stops).
"""
import json
import os
import time

import bottle

from master.http import query_flag, query_int, query_since
from master.metrics import CONTENT_TYPE

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboard.html")


def _stream(lines):
    bottle.response.content_type = "text/plain; charset=utf-8"
    bottle.response.set_header("Cache-Control", "no-cache")
    bottle.response.set_header("X-Accel-Buffering", "no")
    return (line + "\n" for line in lines)


def add_routes(app, route, master, existing, node_named):
    """existing(name) / node_named(name): the API's checks of a path's service
    or node name (422 when malformed, 404 when unknown)."""
    def service_containers(name):
        existing(name)
        return lambda: [c for c in master.observation.containers() if c.service == name]

    def node_containers(name):
        node_named(name)
        return lambda: [c for c in master.observation.containers() if c.node == name]

    def logs(pick):
        tail, since = query_int("tail", 100, allow_all=True), query_since()
        timestamps, follow = query_flag("timestamps", False), query_flag("follow", False)
        if follow:
            return 200, _stream(master.logs.follow(pick, tail, since, timestamps, master.loop.stopping))
        return 200, _stream(master.logs.snapshot(pick(), tail, since, timestamps))

    @route("/service/<name>/logs")
    def service_logs(name):
        return logs(service_containers(name))

    @route("/nodes/<name>/logs")
    def node_logs(name):
        return logs(node_containers(name))

    @route("/service/<name>/stats")
    def service_stats(name):
        return 200, master.logs.stats(service_containers(name)())

    @route("/nodes/<name>/stats")
    def node_stats(name):
        return 200, master.logs.stats(node_containers(name)())

    @route("/events")
    def events():
        since, limit = query_int("since", 0, 0, 10 ** 12), query_int("limit", 100, 1, 1000)
        if not query_flag("follow", False):
            return 200, master.store.events(limit=limit, since=since)

        def lines():
            last = since
            while not master.loop.stopping.is_set():
                for e in master.store.events(limit=1000, since=last):
                    last = e["id"]
                    yield json.dumps(e)
                time.sleep(0.3)
        return 200, _stream(lines())

    @route("/metrics")
    def metrics():
        bottle.response.content_type = CONTENT_TYPE
        return 200, master.metrics.render()

    with open(DASHBOARD, "rb") as f:
        page = f.read()                    # static: read once

    @route("/")
    def dashboard():
        bottle.response.content_type = "text/html; charset=utf-8"
        return 200, page
