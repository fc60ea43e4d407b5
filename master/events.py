"""The system's event log: the timeline of decisions (`GET /events`).

Any thread records an event while holding any other lock (the election's,
the loop's): the log has a lock of its own and never waits for the store.
The loop writes what was recorded to the store once a round (`flush`, one
write); the store keeps the newest MAX_EVENTS. Also the one format of the
wall-clock times Bicycle writes (`iso`).
"""
import threading
import time
from datetime import datetime, timezone


def iso(ts):
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EventLog:
    def __init__(self, store, wall=time.time):
        self.store, self.wall = store, wall
        self._lock = threading.Lock()
        self._recorded = []

    def record(self, kind, message, **fields):
        with self._lock:
            self._recorded.append(dict(fields, time=iso(self.wall()), kind=kind, message=message))

    def flush(self):
        """Write what was recorded since the last flush to the store."""
        with self._lock:
            batch, self._recorded = self._recorded, []
        self.store.add_events(batch)
