"""The loop's writes for rolling updates: the verdicts of a round
(scheduler/rollout.py) become replicated changes of the service records,
and events that say what happened and why."""
from master.election import NotLeader
from store.state import Conflict, Missing

WORDS = {"failed": "a failure", "paused": "paused", "rollback": "failed: rolling back", "done": "done"}


def record(verdicts, store, election, events, epoch, now_iso):
    """Write each verdict within `epoch` -> the store version that holds the
    last one, or None (nothing written, or the term ended)."""
    version = None
    for name, service_version, verdict in verdicts:
        try:
            _, version, _ = election.local_change(
                lambda: _write(store, name, service_version, verdict, now_iso()), epoch)
        except NotLeader:
            break
        except (Conflict, Missing):        # the service changed or went meanwhile
            continue
        events.record("rollout", _message(name, service_version, verdict), service=name)
    return version


def _write(store, name, service_version, verdict, now):
    if verdict.kind == "rollback":
        store.rollback_service(name, now, verdict.rollout.reason, version=service_version)
    else:
        store.set_rollout(name, service_version, verdict.rollout)


def _message(name, service_version, verdict):
    rollout = verdict.rollout
    what = "rollback" if rollout.state in ("rolling back", "rolled back") and verdict.kind != "rollback" \
        else "update"
    if verdict.kind == "done":
        return f"{what} of service {name} v{service_version} {rollout.state}" + (
            f" ({len(rollout.failed)} slots failed)" if rollout.failed else "")
    return f"{what} of service {name} v{service_version} {WORDS[verdict.kind]}: {rollout.reason}" + (
        f" ({len(rollout.failed)} failed so far, within max_failure_ratio)" if verdict.kind == "failed" else "")
