"""Watching the engines while something happens: a sampler thread whose
errors fail the test, one cheap listing of a service's containers per engine,
and the engines' own container events. Used by the cluster tests that assert
an order (start-first, stop-first, back-off) on what really ran."""
import threading
import time
from collections import Counter, namedtuple


class Sampler:
    """Calls `sample()` every `every` seconds on a thread of its own while
    the `with` block runs, and keeps what it returns in `samples`. Whatever the
    thread raises is raised again when the block ends, so it fails the test
    (an exception in a bare thread is only a warning)."""

    def __init__(self, sample, every=0.15):
        self.sample, self.every = sample, every
        self.samples, self.error = [], None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self):
        try:
            while not self._stop.is_set():
                self.samples.append(self.sample())
                self._stop.wait(self.every)
        except BaseException as e:       # noqa: B036 - raised again in the test's thread
            self.error = e

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise AssertionError(f"the sampler failed: {self.error!r}") from self.error
        assert self.samples, "the sampler took no sample"


def listing(engines, service, nodes=None):
    """node -> {container id: (slot, state, image)} of the service on each
    engine of `nodes` (default all): one plain list request per engine, no
    inspect, so a container removed meanwhile never breaks a sample."""
    out = {}
    for node, client in engines.clients.items():
        if nodes is None or node in nodes:
            rows = client.api.containers(all=True, filters={"label": f"bicycle.service={service}"})
            out[node] = {r["Id"]: (int(r["Labels"]["bicycle.slot"]), r["State"], r["Image"]) for r in rows}
    return out


def running_services(engines):
    """service -> running containers of it, over every engine (one plain
    list request per engine)."""
    out = Counter()
    for client in engines.clients.values():
        for row in client.api.containers(filters={"label": "bicycle.service", "status": "running"}):
            out[row["Labels"]["bicycle.service"]] += 1
    return out


def running_per_node(engines):
    """node -> its running Bicycle containers, of every service."""
    return {node: len(client.api.containers(filters={"label": "bicycle.service", "status": "running"}))
            for node, client in engines.clients.items()}


def running_slots(sample):
    """slot -> number of running containers filling it, in one listing()."""
    out = {}
    for cs in sample.values():
        for slot, state, _ in cs.values():
            if state == "running":
                out[slot] = out.get(slot, 0) + 1
    return out


Event = namedtuple("Event", "time node action id slot exit_code")


def engine_events(engines, service, since_ns, nodes=None):
    """The engines' own container events of `service` from `since_ns`
    (time.time_ns()) until now, all nodes merged in time order."""
    out = []
    for node, client in engines.clients.items():
        if nodes is not None and node not in nodes:
            continue
        stream = client.events(since=since_ns / 1e9 - 1, until=time.time() + 0.2, decode=True,
                               filters={"type": "container", "label": f"bicycle.service={service}"})
        for e in stream:
            attrs = e["Actor"]["Attributes"]
            if e["timeNano"] >= since_ns:
                out.append(Event(e["timeNano"] / 1e9, node, e["Action"], e["Actor"]["ID"],
                                 int(attrs["bicycle.slot"]), attrs.get("exitCode")))
    return sorted(out)
