"""Logs and stats of Bicycle's containers, read from the nodes on request.

Reads only: nothing here is fenced or changes a node. Each container's log is
read with `docker logs --timestamps` over the node's persistent connection;
lines are merged in time order and prefixed `service.slot@node |`. A node that
cannot be read gives one marker line instead of failing the whole answer.
Following streams one channel per container and picks up replacements.
"""
import queue
import threading

from model import UNREACHABLE
from remote import commands, parse
from remote.transport import RemoteError

RESCAN = 1.0          # seconds between looks for new containers while following


def prefix(c):
    return f"{c.service}.{c.slot}@{c.node} |"


def marker(node, error):
    return f"# {node} unreachable: {error}"


def split(stdout):
    """`docker logs --timestamps` output -> ([(stamp, text)] the container wrote,
    [text] of docker or the engine itself). docker stamps every line of a
    container; a line without a stamp ("Cannot connect to the Docker daemon
    ...") is about the node, never the container's output."""
    rows, errors = [], []
    for line in stdout.splitlines():
        stamp, text = parse.log_line(line)
        if stamp:
            rows.append((stamp, text))
        elif line.strip():
            errors.append(line.strip())
    return rows, errors


def render(c, stamp, text, timestamps):
    return f"{prefix(c)} {stamp} {text}" if timestamps and stamp else f"{prefix(c)} {text}"


def merge(batches):
    """batches: [(container, [(stamp, text)])] -> [(stamp, container, text)] in time order.
    RFC 3339 stamps from docker sort as text; lines without one keep their place at the end."""
    rows = [(stamp, i, n, c, text) for i, (c, lines) in enumerate(batches) for n, (stamp, text) in enumerate(lines)]
    rows.sort(key=lambda r: (r[0] or "~", r[1], r[2]))
    return [(stamp, c, text) for stamp, _, _, c, text in rows]


class Logs:
    def __init__(self, fleet, observation, clock):
        self.fleet, self.obs, self.clock = fleet, observation, clock

    def _down(self):
        return {n for n, s in self.obs.statuses(self.clock()).items() if s in UNREACHABLE}

    def snapshot(self, containers, tail=None, since=None, timestamps=False):
        """All lines of `containers` (bounded by tail/since per container), merged."""
        down = self._down()
        markers = []
        for node in sorted({c.node for c in containers}):
            if node in down:
                markers.append(marker(node, "node is down"))
        live = [c for c in containers if c.node not in down]

        def read(c):
            result = self.fleet.connections[c.node].run(commands.logs(c.id, tail, since), timeout=30)
            rows, errors = split(result.stdout)
            if errors and not parse.only_vanished("\n".join(errors)):
                raise RemoteError(errors[-1][:300])
            return rows

        results = self.fleet.fan_out_items(read, live)
        batches, failed = [], {}
        for c, r in zip(live, results):
            if isinstance(r, Exception):
                failed.setdefault(c.node, r)
            else:
                batches.append((c, r))
        markers += [marker(n, e) for n, e in sorted(failed.items())]
        return markers + [render(c, stamp, text, timestamps) for stamp, c, text in merge(batches)]

    def follow(self, pick, tail=None, since=None, timestamps=False, shutdown=None):
        """Generator of lines: the merged snapshot, then new lines as they come,
        including those of containers that start later. pick() -> containers now.
        Ends when the client leaves (the generator is closed) or `shutdown` is set."""
        shutdown = shutdown or threading.Event()
        streams = _Streams(self.fleet, timestamps)
        first = pick()
        try:
            yield from self.snapshot(first, tail, since, timestamps)
            down = self._down()
            for c in first:
                if c.node in down:
                    streams.told.add(c.node)       # the snapshot said so already
                else:
                    streams.start(c, 0)
            first_ids, last_scan = {c.id for c in first}, self.clock()
            while not shutdown.is_set():
                try:
                    yield streams.lines.get(timeout=0.25)
                    continue
                except queue.Empty:
                    pass
                if self.clock() - last_scan >= RESCAN:
                    last_scan, down = self.clock(), self._down()
                    for c in pick():
                        if c.id not in streams.open and c.node not in down and c.id not in first_ids:
                            streams.start(c, None)
        finally:
            streams.close()

    def stats(self, containers):
        """CPU % and memory per running container, read from each node's engine."""
        down = self._down()
        by_node = {}
        for c in containers:
            if c.running and c.node not in down:
                by_node.setdefault(c.node, []).append(c)

        def sample(node):
            result = self.fleet.connections[node].run(commands.stats([c.id for c in by_node[node]]), timeout=30)
            if not result.ok:
                raise RemoteError(result.stderr.strip()[-200:] or f"docker stats exited {result.exit}")
            return parse.stats(result.stdout)

        results = self.fleet.fan_out(sample, list(by_node))
        rows, errors = [], {}
        known = {c.id[:12]: c for c in containers}
        for node, r in sorted(results.items()):
            if isinstance(r, Exception):
                errors[node] = str(r)
                continue
            for row in r:
                c = known.get(row["id"])
                if c is not None:
                    rows.append(dict(row, name=c.name, service=c.service, slot=c.slot, node=node))
        for node in sorted({c.node for c in containers} & down):
            errors[node] = "node is down"
        return {"containers": sorted(rows, key=lambda r: (r["service"], r["slot"], r["node"])), "errors": errors}


class _Streams:
    """One follower's streams: a channel per container feeding one queue of
    lines, and a marker (said once per node) for a node that cannot be read."""

    def __init__(self, fleet, timestamps):
        self.fleet, self.timestamps = fleet, timestamps
        self.done = threading.Event()      # this follower's own end; never the master's
        self.lines = queue.Queue()
        self.open = {}                     # container id -> its stream
        self.told = set()                  # nodes already given a marker line

    def tell(self, node, error):
        if node not in self.told:
            self.told.add(node)
            self.lines.put(marker(node, error))

    def start(self, c, tail_n):
        try:
            stream = self.fleet.connections[c.node].stream(commands.logs(c.id, tail_n, None, follow=True))
        except RemoteError as e:
            self.tell(c.node, e)
            return
        self.open[c.id] = stream
        threading.Thread(target=self._pump, args=(c, stream), daemon=True, name=f"logs-{c.name}").start()

    def _pump(self, c, stream):
        for line in stream.lines(self.done):
            stamp, text = parse.log_line(line)
            if stamp:
                self.lines.put(render(c, stamp, text, self.timestamps))
            elif line.strip():
                self.tell(c.node, line.strip()[:300])     # docker's own words: about the node, said once

    def close(self):
        self.done.set()
        for s in self.open.values():
            s.close()
