"""Rolling updates in the plan (scheduler/rollout.py through
scheduler/reconcile.py): a small simulator applies each round's changes,
lets time pass and lets the new containers pass or fail their watch; the
properties hold on every round, not only at the end."""
import itertools
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from model import (COMPLETED, PAUSED, READY, ROLLED_BACK, ROLLING_BACK, UPDATING, Container, Rollout, Service,
                   ServiceSpec, UpdateConfig)
from scheduler.reconcile import reconcile

T0 = 1_800_000_000.0
NODES = {"n1": READY, "n2": READY, "n3": READY}
V1, V2 = ServiceSpec(image="demo:1"), ServiceSpec(image="demo:2")
_ids = itertools.count()


def iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def box(slot, node, spec, started, health="", status="running", exit_code=0):
    n = next(_ids)
    return Container(id=f"c{n:06d}", name=f"web.{slot}.{n:06x}", node=node, service="web", slot=slot,
                     spec=spec.digest(), image=spec.image, status=status, started_at=iso(started),
                     exit_code=exit_code, health=health)


def rolling(replicas=6, state=UPDATING, failed=(), spec=V2, previous=V1, **update):
    return Service("web", spec, replicas, version=2, update=UpdateConfig(**update), previous=previous,
                   rollout=Rollout(state, failed=tuple(failed)))


def old_containers(replicas=6, spec=V1):
    nodes = sorted(NODES)
    return [box(slot, nodes[(slot - 1) % 3], spec, T0 - 100) for slot in range(1, replicas + 1)]


def plan_at(service, observed, t, **kw):
    return reconcile([service], observed, NODES, now=t, wall=t, **kw)


def apply(plan, observed, t, service, health=""):
    """Every change of the plan done at t; new containers start with `health`."""
    by_id = {c.id: c for c in observed}
    for a in plan.changes:
        if a.kind in ("stop", "replace"):
            del by_id[a.container.id]
        if a.kind in ("place", "replace"):
            new = box(a.slot, a.node, service.spec, t, health=health)
            by_id[new.id] = new
    return list(by_id.values())


def healthy_after(observed, t, seconds, spec):
    """New containers turn healthy `seconds` after their start."""
    return [c if c.spec != spec.digest() or c.health != "starting" or t - _start(c) < seconds
            else Container(**dict(c.__dict__, health="healthy")) for c in observed]


def _start(c):
    return datetime.strptime(c.started_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def roll(service, observed, rounds=200, step=1.0, health="", healthy_in=0.0):
    """Rounds until a verdict says done -> (observed, verdicts, widest batch)."""
    t, verdicts, widest = T0, [], 0
    for _ in range(rounds):
        observed = healthy_after(observed, t, healthy_in, service.spec)
        plan = plan_at(service, observed, t)
        verdicts += [v for _, _, v in plan.verdicts]
        unproven = {c.slot for c in observed if c.spec == service.spec.digest()
                    and (c.health not in ("", "healthy") or t - _start(c) < service.rollout_config.monitor)}
        changing = {a.slot for a in plan.changes if a.reason == "spec changed"}
        widest = max(widest, len(unproven | changing))
        if any(v.kind == "done" for v in verdicts):
            break
        observed = apply(plan, observed, t, service, health)
        t += step
    return observed, verdicts, widest


@settings(max_examples=60, deadline=None)
@given(replicas=st.integers(1, 9), parallelism=st.integers(0, 4), monitor=st.sampled_from([0.0, 2.0, 5.0]),
       healthy_in=st.sampled_from([0.0, 3.0]))
def test_an_update_never_has_more_than_parallelism_unproven_slots_and_ends_on_the_new_spec(
        replicas, parallelism, monitor, healthy_in):
    service = rolling(replicas, parallelism=parallelism, monitor=monitor)
    health = "starting" if healthy_in else ""
    observed, verdicts, widest = roll(service, old_containers(replicas), health=health, healthy_in=healthy_in)
    assert [v.kind for v in verdicts] == ["done"] and verdicts[0].rollout.state == COMPLETED
    assert widest <= (parallelism or replicas)
    assert sorted(c.slot for c in observed) == list(range(1, replicas + 1))
    assert {c.spec for c in observed} == {V2.digest()}


def test_a_new_container_that_turns_unhealthy_rolls_the_update_back_and_says_which():
    service = rolling(parallelism=2)
    observed = old_containers()
    plan = plan_at(service, observed, T0)
    assert [a.slot for a in plan.changes] == [1, 2]
    assert all(a.reason == "waiting for its turn (parallelism 2)" for a in plan.actions if a.slot > 2)
    observed = apply(plan, observed, T0, service, health="starting")
    observed = [Container(**dict(c.__dict__, health="unhealthy", health_log="HTTP 500"))
                if c.spec == V2.digest() and c.slot == 2 else c for c in observed]
    plan = plan_at(service, observed, T0 + 3)
    [(name, version, verdict)] = plan.verdicts
    assert (name, version, verdict.kind, verdict.rollout.state) == ("web", 2, "rollback", ROLLING_BACK)
    assert verdict.rollout.reason.startswith("slot 2: web.2.") and "turned unhealthy: HTTP 500" in verdict.rollout.reason
    assert not plan.changes                    # judged first: not restarted, and no next batch


def test_a_rollback_rolls_under_its_own_settings_and_ends_rolled_back():
    back = Service("web", V1, 4, version=3, rollback=UpdateConfig(parallelism=1, monitor=2, failure_action="pause"),
                   previous=V2, rollout=Rollout(ROLLING_BACK, "slot 2: unhealthy"))
    observed, verdicts, widest = roll(back, old_containers(4, spec=V2))
    assert widest == 1 and [v.rollout.state for v in verdicts] == [ROLLED_BACK]
    assert {c.spec for c in observed} == {V1.digest()}


def test_a_paused_update_changes_no_slot_of_an_older_spec():
    service = rolling(parallelism=2, failure_action="pause")
    before = old_containers()
    observed = apply(plan_at(service, before, T0), before, T0, service)
    observed = [Container(**dict(c.__dict__, status="exited", exit_code=1)) if c.spec == V2.digest() else c
                for c in observed]
    [(_, _, verdict)] = plan_at(service, observed, T0 + 1).verdicts
    assert (verdict.kind, verdict.rollout.state, verdict.rollout.failed) == ("paused", PAUSED, (1, 2))
    paused = rolling(state=PAUSED, failed=(1, 2), parallelism=2, failure_action="pause")
    plan = plan_at(paused, observed, T0 + 2)
    assert not [a for a in plan.changes if a.reason == "spec changed"]
    assert any(a.reason.startswith("rollout paused") for a in plan.actions)
    assert not plan.verdicts


def test_continue_records_failures_within_the_ratio_and_the_update_goes_on():
    service = rolling(parallelism=0, failure_action="rollback", max_failure_ratio=0.5)
    before = old_containers()
    observed = apply(plan_at(service, before, T0), before, T0, service)
    observed = [Container(**dict(c.__dict__, status="exited", exit_code=3)) if c.slot in (1, 2, 3) else c
                for c in observed]
    [(_, _, verdict)] = plan_at(service, observed, T0 + 1).verdicts
    assert (verdict.kind, verdict.rollout.failed) == ("failed", (1, 2, 3))   # 3 of 6: not more than half
    observed = [Container(**dict(c.__dict__, status="exited", exit_code=3)) if c.slot == 4 else c for c in observed]
    recorded = rolling(failed=(1, 2, 3), parallelism=0, max_failure_ratio=0.5)
    [(_, _, verdict)] = plan_at(recorded, observed, T0 + 2).verdicts
    assert (verdict.kind, verdict.rollout.failed) == ("rollback", (1, 2, 3, 4))


def test_a_new_container_that_cannot_start_is_a_failure_and_an_old_specs_failure_is_not():
    service = rolling(parallelism=1)
    plan = plan_at(service, old_containers(), T0, place_failures={("web", 1): (V2.digest(), "No such image: demo:2")})
    [(_, _, verdict)] = plan.verdicts
    assert verdict.kind == "rollback" and "could not start: No such image: demo:2" in verdict.rollout.reason
    # stop-first: the slot is empty, or holds the container the failed start left `created`
    left = [box(1, "n1", V2, T0, status="created")] + old_containers()[1:]
    for observed in (old_containers()[1:], left):
        plan = plan_at(service, observed, T0, place_failures={("web", 1): (V2.digest(), "port is already allocated")})
        assert [v.kind for _, _, v in plan.verdicts] == ["rollback"]
    # a start that failed under the spec before (v1) is not the new spec's failure
    plan = plan_at(service, old_containers()[1:], T0, place_failures={("web", 1): (V1.digest(), "port taken")})
    assert not plan.verdicts and (1, "place") in {(a.slot, a.kind) for a in plan.changes}


@pytest.mark.parametrize("restart, code, kind", [("on-failure", 0, "done"), ("never", 0, "done"),
                                                 ("on-failure", 2, "rollback"), ("always", 0, "rollback")])
def test_a_job_that_exits_0_passes_and_any_other_exit_fails(restart, code, kind):
    job = Service("web", ServiceSpec(image="demo:2", restart=restart), 1, version=2, previous=V1,
                  rollout=Rollout(UPDATING))
    observed = [box(1, "n1", job.spec, T0, status="exited", exit_code=code)]
    assert [v.kind for _, _, v in plan_at(job, observed, T0 + 1).verdicts] == [kind]


def test_a_drain_does_not_wait_for_a_paused_rollout_and_an_unhealthy_old_replica_is_replaced():
    paused = rolling(state=PAUSED, failed=(1,), parallelism=1)
    observed = old_containers()
    observed[2] = Container(**dict(observed[2].__dict__, health="unhealthy"))      # slot 3 on n3
    plan = reconcile([paused], observed, NODES, now=T0, wall=T0, drained={"n1"}, max_moves=2)
    changes = {(a.slot, a.reason) for a in plan.changes}
    assert changes == {(1, "node n1 drained"), (4, "node n1 drained"), (3, "container unhealthy")}, changes


def test_no_new_batch_before_the_delay_after_the_last_one_passed():
    service = rolling(parallelism=1, monitor=2.0, delay=10.0)
    before = old_containers(3)
    observed = apply(plan_at(service, before, T0), before, T0, service)
    assert not plan_at(service, observed, T0 + 2 + 9.5).changes      # passed at T0+2, delay until T0+12
    assert [a.slot for a in plan_at(service, observed, T0 + 2 + 10.5).changes] == [2]


@pytest.mark.parametrize("order, stop_first", [("stop-first", True), ("start-first", False)])
def test_the_order_of_an_update(order, stop_first):
    plan = plan_at(rolling(order=order), old_containers(), T0)
    assert [a.stop_first for a in plan.changes] == [stop_first]


def test_an_unhealthy_container_outside_an_update_is_replaced_where_it_is():
    service = Service("web", V1, 3, rollout=Rollout(COMPLETED))
    observed = old_containers(3)
    observed[1] = Container(**dict(observed[1].__dict__, health="unhealthy"))
    [change] = plan_at(service, observed, T0).changes
    assert (change.kind, change.slot, change.node, change.reason) == ("replace", 2, "n2", "container unhealthy")


def test_slots_waiting_for_their_turn_are_not_moved_to_even_the_spread():
    paused = rolling(state=PAUSED, failed=(1,), parallelism=1)
    observed = [box(slot, "n1" if slot <= 3 else "n2", V1, T0 - 100) for slot in range(1, 7)]
    assert not plan_at(paused, observed, T0).changes          # n3 is empty, but moving would update
