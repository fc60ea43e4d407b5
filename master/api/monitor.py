"""Read-only routes of logs, stats, events, metrics and the dashboard.

Logs and events can be followed: the answer is then a chunked stream of
lines that ends when the client leaves (or the master stops).
"""
import json
import os
import time
from dataclasses import dataclass
from typing import Callable

import bottle

from master.api.http import query_flag, query_int, query_since
from master.metrics import CONTENT_TYPE

DASHBOARD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dashboard.html")


@dataclass(frozen=True)
class Monitor:
    """What these routes read besides the store."""
    logs: object                  # master.logs.Logs: snapshot(), follow(), stats()
    containers: Callable          # () -> every container observed
    stopping: object              # a threading.Event set when the master stops
    metrics: Callable             # () -> the Prometheus text of /metrics


def _stream(lines):
    bottle.response.content_type = "text/plain; charset=utf-8"
    bottle.response.set_header("Cache-Control", "no-cache")
    bottle.response.set_header("X-Accel-Buffering", "no")
    return (line + "\n" for line in lines)


def add_routes(route, monitor, desired):
    _logs_and_stats(route, monitor, desired)
    _events(route, monitor, desired)
    _metrics_and_dashboard(route, monitor)


def _logs_and_stats(route, monitor, desired):
    def service_containers(name):
        desired.existing(name)
        return lambda: [c for c in monitor.containers() if c.service == name]

    def node_containers(name):
        desired.node(name)
        return lambda: [c for c in monitor.containers() if c.node == name]

    def logs(pick):
        tail, since = query_int("tail", 100, allow_all=True), query_since()
        timestamps, follow = query_flag("timestamps", False), query_flag("follow", False)
        if follow:
            return 200, _stream(monitor.logs.follow(pick, tail, since, timestamps, monitor.stopping))
        return 200, _stream(monitor.logs.snapshot(pick(), tail, since, timestamps))

    @route("/service/<name>/logs")
    def service_logs(name):
        return logs(service_containers(name))

    @route("/nodes/<name>/logs")
    def node_logs(name):
        return logs(node_containers(name))

    @route("/service/<name>/stats")
    def service_stats(name):
        return 200, monitor.logs.stats(service_containers(name)())

    @route("/nodes/<name>/stats")
    def node_stats(name):
        return 200, monitor.logs.stats(node_containers(name)())


def _events(route, monitor, desired):
    @route("/events")
    def events():
        since, limit = query_int("since", 0, 0, 10 ** 12), query_int("limit", 100, 1, 1000)
        if not query_flag("follow", False):
            return 200, desired.events(limit, since)

        def lines():
            last = since
            while not monitor.stopping.is_set():
                for e in desired.events(1000, last):
                    last = e["id"]
                    yield json.dumps(e)
                time.sleep(0.3)
        return 200, _stream(lines())


def _metrics_and_dashboard(route, monitor):
    @route("/metrics")
    def metrics():
        bottle.response.content_type = CONTENT_TYPE
        return 200, monitor.metrics()

    with open(DASHBOARD, "rb") as f:
        page = f.read()                    # static: read once

    @route("/")
    def dashboard():
        bottle.response.content_type = "text/html; charset=utf-8"
        return 200, page
