"""scheduler.reconcile: settled containers, those that exited and that
their restart policy keeps down ("on-failure" after exit 0, "never" after
any exit). They fill their slot, take no place in the spread and count as
converged."""
import pytest

from model import Port, READY
from scheduler.reconcile import reconcile, converged

from test_reconcile import NOW, container, svc

NODES3 = {"a": READY, "b": READY, "c": READY}

HOST_PORTS_FULL = "no eligible node fits (a service with host ports runs one container per node)"


@pytest.mark.parametrize("restart, exit_code, settled", [
    ("on-failure", 0, True), ("on-failure", 1, False), ("on-failure", 137, False),
    ("never", 0, True), ("never", 1, True), ("never", 137, True),
    ("always", 0, False), ("always", 1, False),
])
def test_converged_for_exited_containers_follows_the_restart_policy(restart, exit_code, settled):
    web = svc("web", 2, restart=restart)
    d = web.spec.digest()
    observed = [container("web", 1, "a", d, status="exited", exit_code=exit_code), container("web", 2, "b", d)]
    assert converged(web, observed, NODES3) is settled
    # What converged() calls settled, reconcile leaves alone, and the other way round.
    assert (not reconcile([web], observed, NODES3, NOW).changes) is settled


def test_settled_exited_containers_piled_on_one_node_count_as_converged():
    # A job (restart=on-failure) placed while b was down: both slots on a, both done (exit 0).
    job = svc("job", 2, restart="on-failure")
    d = job.spec.digest()
    observed = [container("job", 1, "a", d, status="exited", exit_code=0),
                container("job", 2, "a", d, status="exited", exit_code=0)]
    status = {"a": READY, "b": READY}
    # b is back: reconcile has nothing to do (it must not restart a finished job) ...
    assert reconcile([job], observed, status, NOW).changes == []
    # ... so the service must count as converged, or it stays "converging" for ever.
    assert converged(job, observed, status)


SETTLED = [("on-failure", 0), ("never", 0), ("never", 1)]


def test_a_settled_old_container_replaced_in_place_with_room_elsewhere():
    web = svc("web", 2, ports=(Port(8000, 80),), restart="on-failure")
    for old_slot, empty in ((1, 2), (2, 1)):
        old = container("web", old_slot, "a", spec="0ld0ld0ld0ld", status="exited", exit_code=0)
        plan = reconcile([web], [old], {"a": READY, "b": READY}, NOW)
        # The old slot is replaced on a (same node); the empty one goes to b, not to a too.
        assert sorted((a.kind, a.slot, a.node) for a in plan.changes) == \
            sorted([("place", empty, "b"), ("replace", old_slot, "a")])


@pytest.mark.parametrize("restart, exit_code, old_slot", [(r, e, s) for r, e in SETTLED for s in (1, 2)])
def test_a_settled_old_container_replaced_in_place_still_holds_its_node(restart, exit_code, old_slot):
    """The replacement of a settled container with an older spec goes to the
    same node and runs there, so that node is taken for a service that
    publishes ports, as it is under restart=always, whatever the slot order."""
    web = svc("web", 2, ports=(Port(8000, 80),), restart=restart)
    old = container("web", old_slot, "a", spec="0ld0ld0ld0ld", status="exited", exit_code=exit_code)
    plan = reconcile([web], [old], {"a": READY}, NOW)
    assert [(a.kind, a.slot, a.node) for a in plan.changes] == [("replace", old_slot, "a")]
    assert [(a.kind, a.reason) for a in plan.actions if a.slot != old_slot] == [("keep", HOST_PORTS_FULL)]


@pytest.mark.parametrize("old_slot", [1, 2])
def test_under_restart_always_the_same_case_already_holds_the_node(old_slot):
    web = svc("web", 2, ports=(Port(8000, 80),), restart="always")
    old = container("web", old_slot, "a", spec="0ld0ld0ld0ld", status="exited", exit_code=0)
    plan = reconcile([web], [old], {"a": READY}, NOW)
    assert [(a.kind, a.slot, a.node) for a in plan.changes] == [("replace", old_slot, "a")]
    assert [(a.kind, a.reason) for a in plan.actions if a.slot != old_slot] == [("keep", HOST_PORTS_FULL)]
