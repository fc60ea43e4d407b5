"""Prometheus metrics of one master, served at /metrics.

Gauges about nodes and services are computed from the master's memory at
scrape time (the same views as /state); durations and counts are recorded as
they happen: reconcile rounds, SSH commands, API requests.
"""
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from model import NODE_STATUSES

CONTENT_TYPE = CONTENT_TYPE_LATEST


class StateCollector:
    def __init__(self, state):
        self.state = state

    def collect(self):
        state = self.state()
        nodes = GaugeMetricFamily("bicycle_nodes", "Nodes by health status", labels=["status"])
        for status in NODE_STATUSES:
            nodes.add_metric([status], sum(1 for n in state["nodes"] if n["status"] == status))
        yield nodes
        up = GaugeMetricFamily("bicycle_node_up", "1 when the node is ready", labels=["node"])
        for n in state["nodes"]:
            up.add_metric([n["name"]], 1 if n["status"] == "ready" else 0)
        yield up
        desired = GaugeMetricFamily("bicycle_service_replicas_desired", "Desired replicas", labels=["service"])
        running = GaugeMetricFamily("bicycle_service_replicas_running", "Running replicas", labels=["service"])
        for s in state["services"]:
            desired.add_metric([s["name"]], s["replicas"]["desired"])
            running.add_metric([s["name"]], s["replicas"]["running"])
        yield desired
        yield running
        leader = GaugeMetricFamily("bicycle_leader", "1 when this master leads", labels=["master"])
        leader.add_metric([state["master"]["name"]], 1 if state["master"]["role"] == "leader" else 0)
        yield leader


class Metrics:
    def __init__(self, state):
        """state: () -> the /state document (master.view.Views.state)."""
        self.registry = CollectorRegistry()
        self.registry.register(StateCollector(state))
        self.reconcile = Histogram("bicycle_reconcile_seconds", "Duration of one reconcile round",
                                   registry=self.registry,
                                   buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
        self.ssh = Histogram("bicycle_ssh_command_seconds", "Duration of one command on a node",
                             ["node"], registry=self.registry,
                             buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.requests = Counter("bicycle_api_requests", "API requests", ["method", "route", "status"],
                                registry=self.registry)

    def render(self):
        return generate_latest(self.registry)
