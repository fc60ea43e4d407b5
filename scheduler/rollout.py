"""Rolling updates: how many slots of a service may take its new spec now,
and the verdict on a rollout. Pure; `wall` is seconds since the epoch (to
compare with the engines' StartedAt).

While a service rolls (`updating` or `rolling back`), a slot whose container
runs an older spec is replaced only within the budget: `parallelism` slots
at a time (0: all), counting the changes under way and the new containers
still watched; no new batch before `delay` has passed since the last new
container passed its watch. A new container passes its watch once it has
run `monitor` seconds and is healthy (or has no health check); a job's
(restart `on-failure` or `never`) also once it exited with code 0. Watched
or not, while the rollout runs a new container that exits (with any code
when the service restarts `always`, else with a non-zero one) or turns
unhealthy, or a start of the new spec that failed (its container may be
left `created`), is a failure of the rollout; more failures than `max_failure_ratio` of the
replicas trigger the `failure_action`: roll back, pause (no slot changes
until the next change of spec), or continue. A paused service changes no
slot of an older spec. Places into empty slots are never held back.
"""
from dataclasses import dataclass, field

from model import COMPLETED, PAUSED, ROLLED_BACK, ROLLING_BACK, Rollout, parse_time


@dataclass(frozen=True)
class Progress:
    """Where each slot the service wants (1..replicas; a global service's
    per node) stands."""
    slots: frozenset = frozenset()       # every slot the service wants
    updated: frozenset = frozenset()     # the new spec, watched long enough and healthy
    watched: frozenset = frozenset()     # the new spec, still watched
    failed: dict = field(default_factory=dict)   # slot -> what went wrong with its new container
    old: frozenset = frozenset()         # an older spec (to be replaced within the budget)
    empty: frozenset = frozenset()       # no container
    last_passed: float = 0.0             # when the latest new container passed its watch


@dataclass(frozen=True)
class Verdict:
    """What the loop writes: `failed` (record the slots, go on), `paused`,
    `rollback`, or `done` (the rollout completed or rolled back)."""
    kind: str
    rollout: Rollout


def progress(service, keepers, wall, place_failures=None, slots=None):
    """keepers: slot -> the container that holds it; place_failures: slot ->
    (spec digest, why its last start failed); only those of the current spec
    count. slots: the slots the service wants (default 1..replicas)."""
    config, digest = service.rollout_config, service.spec.digest()
    slots = frozenset(range(1, service.replicas + 1) if slots is None else slots)
    groups = {"updated": set(), "watched": set(), "old": set(), "empty": set()}
    failed, last = {}, 0.0
    for slot in sorted(slots):
        c = keepers.get(slot)
        spec, message = (place_failures or {}).get(slot, ("", ""))
        if spec == digest and (c is None or c.spec != digest or c.status == "created"):
            failed[slot] = f"its new container could not start: {message}"
        elif c is None:
            groups["empty"].add(slot)
        elif c.spec != digest:
            groups["old"].add(slot)
        elif (why := _failure(c, service.spec.restart)) is not None:
            failed[slot] = f"{c.name} on {c.node} {why}"
        else:
            started = parse_time(c.started_at)
            done = not c.running and c.status != "created"           # a job that exited 0
            passed = done or (c.running and c.health in ("", "healthy") and started is not None
                              and wall - started >= config.monitor)
            groups["updated" if passed else "watched"].add(slot)
            if passed and started is not None:
                last = max(last, started + config.monitor)
    return Progress(slots, **{k: frozenset(v) for k, v in groups.items()}, failed=failed, last_passed=last)


def _failure(c, restart):
    if c.unhealthy:
        return "turned unhealthy" + (f": {c.health_log}" if c.health_log else "")
    if not c.running and c.status != "created" and (c.exit_code != 0 or restart == "always"):
        return f"exited with code {c.exit_code}"
    return None


def new_failures(service, p):
    """slot -> what went wrong, for the failures of `p` the rollout has not
    recorded yet (none while it does not roll): this round's verdict judges them."""
    if not service.rolling:
        return {}
    return {slot: why for slot, why in sorted(p.failed.items()) if slot not in service.rollout.failed}


def budget(service, p, in_flight, wall):
    """How many slots of an older spec may start their replacement now;
    in_flight: the number of the service's changes under way."""
    if service.rollout is not None and service.rollout.state == PAUSED:
        return 0
    if not service.rolling:
        return len(p.slots)
    config = service.rollout_config
    if new_failures(service, p):
        return 0                        # a failure the verdict of this round judges first
    if p.last_passed and wall < p.last_passed + config.delay:
        return 0
    limit = config.parallelism or len(p.slots)
    return max(0, limit - len(p.watched) - in_flight)


def verdict(service, p, in_flight):
    """The rollout's next state, or None while it runs on as it is."""
    rollout = service.rollout
    if not service.rolling:
        return None
    config = service.rollout_config
    new = new_failures(service, p)
    if new:
        failed = tuple(sorted({s for s in rollout.failed if s in p.slots} | set(new)))
        slot, why = next(iter(new.items()))
        reason = f"slot {slot}: {why}"
        if len(failed) > config.max_failure_ratio * len(p.slots) and config.failure_action != "continue":
            kind = "rollback" if config.failure_action == "rollback" else "paused"
            state = ROLLING_BACK if kind == "rollback" else PAUSED
            return Verdict(kind, Rollout(state, reason, failed, rollout.started_at, rollout.version))
        return Verdict("failed", Rollout(rollout.state, reason, failed, rollout.started_at, rollout.version))
    if not p.old and not p.watched and not p.empty and not in_flight:
        state = ROLLED_BACK if rollout.state == ROLLING_BACK else COMPLETED
        return Verdict("done", Rollout(state, rollout.reason, rollout.failed, rollout.started_at, rollout.version))
    return None
