"""Back-off per slot: failed placements and crash loops.

Pure bookkeeping: callers pass `now` (monotonic) and `wall` (seconds since
the epoch, to compare with the engines' own start and finish times).

- A placement that fails waits 1, 2, 4 ... 30 s before the next try.
- A container that exits is replaced at once the first time; if it ran less
  than CRASH_WINDOW seconds it counts as a crash, and each crash in a row
  doubles the wait (2, 4 ... 30 s). A replacement that runs CRASH_WINDOW
  seconds clears the count.
- A container that turns unhealthy (its health check fails) counts as a
  crash: it is replaced with the same back-off.
- FAILED_AFTER failures in a row make the service `failed` (shown in /state).
"""
from collections import defaultdict
from dataclasses import dataclass

from model import parse_time, DELETE

CRASH_WINDOW = 10.0
MAX_DELAY = 30.0
FAILED_AFTER = 3


@dataclass(frozen=True)
class Failure:
    count: int
    not_before: float
    message: str
    spec: str = ""            # the spec digest a failed start was for
    node: str = ""            # where a failed start was tried


def _place_delay(count):
    return min(MAX_DELAY, 2.0 ** (count - 1))


def _crash_delay(count):
    return 0.0 if count == 1 else min(MAX_DELAY, 2.0 ** (count - 1))


class Backoffs:
    def __init__(self):
        self.place = {}          # (service, slot) -> Failure
        self.crash = {}          # (service, slot) -> Failure
        self.seen_exits = set()  # container ids whose exit was counted

    def place_failed(self, key, now, message, spec="", node=""):
        count = self.place[key].count + 1 if key in self.place else 1
        failure = Failure(count, now + _place_delay(count), message, spec, node)
        self.place[key] = failure
        return failure

    def place_ok(self, key):
        self.place.pop(key, None)

    def expect_exit(self, container_id):
        """Bicycle itself stops this container (a replacement, a move, a
        scale-down): the exit a listing may catch before it is gone (137
        after docker rm -f) is no crash and is never counted."""
        self.seen_exits.add(container_id)

    def observe(self, services, observed, now, wall):
        """Count new exits and clear slots that run steadily again.
        Returns a list of (service, slot, message) for the new exits."""
        by_name = {s.name: s for s in services if s.state != DELETE}
        exits = []
        for c in observed:
            s = by_name.get(c.service)
            if s is None or not s.has_slot(c.slot):
                continue
            key = (c.service, c.slot)
            started = parse_time(c.started_at)
            if c.running and not c.unhealthy:
                if key in self.crash and started is not None and wall - started >= CRASH_WINDOW:
                    del self.crash[key]
                continue
            if c.unhealthy:                 # replaced like a crash, with the same back-off
                if c.id not in self.seen_exits:
                    self.seen_exits.add(c.id)
                    count = self.crash[key].count + 1 if key in self.crash else 1
                    message = "turned unhealthy" + (f" ({c.health_log})" if c.health_log else "") + (
                        f", {count} failures in a row" if count > 1 else "")
                    self.crash[key] = Failure(count, now + _crash_delay(count), message)
                    exits.append((c.service, c.slot, message))
                continue
            if c.id in self.seen_exits or c.status == "created":
                continue
            self.seen_exits.add(c.id)
            finished = parse_time(c.finished_at)
            ran = finished - started if started is not None and finished is not None else None
            # A container that dies at once can show FinishedAt a little before StartedAt.
            crashed = ran is not None and ran < CRASH_WINDOW
            count = self.crash[key].count + 1 if crashed and key in self.crash else 1
            ran_text = f"{max(ran, 0.0):.1f}s" if ran is not None else "an unknown time"
            message = f"exited with code {c.exit_code} after {ran_text}" + (f", {count} crashes in a row" if count > 1 else "")
            self.crash[key] = Failure(count, now + _crash_delay(count), message)
            exits.append((c.service, c.slot, message))
        alive = {c.id for c in observed}
        self.seen_exits &= alive
        return exits

    def place_messages(self):
        """(service, slot) -> (the spec digest, why its last start failed)."""
        return {key: (f.spec, f.message) for key, f in self.place.items()}

    def place_nodes(self):
        """(service, slot) -> the node its last failed start was tried on."""
        return {key: f.node for key, f in self.place.items() if f.node}

    def keep_only(self, service, slots):
        """Forget the failures of `service`'s slots not in `slots`: a global
        service's slot goes with its node (drained, removed, out of its
        constraints), and its failures must not mark the service failed."""
        for table in (self.place, self.crash):
            for key in [k for k in table if k[0] == service and k[1] not in slots]:
                del table[key]

    def until(self):
        """(service, slot) -> time before which the slot gets no new container."""
        out = {}
        for table in (self.place, self.crash):
            for key, f in table.items():
                out[key] = max(out.get(key, 0.0), f.not_before)
        return out

    def forget(self, service):
        for table in (self.place, self.crash):
            for key in [k for k in table if k[0] == service]:
                del table[key]

    def failing(self, service):
        return failed(self.slots(service, 0.0))

    def slots(self, service, now):
        """What /state shows: per slot, how many failures and how long until the next try."""
        return self.by_service(now).get(service, [])

    def by_service(self, now):
        """The rows of `slots` for every service at once: service -> rows."""
        rows = defaultdict(dict)
        for kind, table in (("place", self.place), ("crash", self.crash)):
            for (name, slot), f in table.items():
                rows[name][(slot, kind)] = {"slot": slot, "kind": kind, "failures": f.count,
                                            "retry_in_s": round(max(0.0, f.not_before - now), 1),
                                            "message": f.message}
        return {name: [mine[k] for k in sorted(mine)] for name, mine in rows.items()}


def failed(rows):
    """True when a slot of one service's rows failed FAILED_AFTER times in a row."""
    return any(r["failures"] >= FAILED_AFTER for r in rows)
