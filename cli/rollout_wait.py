"""Waiting for a service's change from the CLI: `service update` and
`service rollback` ask with ?wait=false, then poll the service until the
change settled, drawing the rollout's progress on a terminal (slots on the
new spec out of the desired ones), and judge how it ended: a rollout this
command started that did not complete (rolled back, paused) is a failure,
as is a service that failed."""
import sys
import time

POLL = 0.5
WIDTH = 24
ROLLING = ("updating", "rolling back")
ROLLED = ("rolling back", "rolled back", "paused")       # what an update's own automatic rollback may reach


def settled(svc):
    """The service stopped changing: no rollout rolling, and running, failed or paused."""
    update = svc.get("update") or {}
    return update.get("state") not in ROLLING and svc["status"] in ("running", "failed", "paused")


def follow(get, first, timeout, out=sys.stderr):
    """Poll get() -> the service from `first` (the write's answer) until it
    settled or `timeout` seconds passed -> (the last service seen, settled)."""
    svc, live, deadline = first, out.isatty(), time.monotonic() + timeout
    while not settled(svc) and time.monotonic() < deadline:
        if live:
            out.write("\r\x1b[K" + bar(svc))
            out.flush()
        time.sleep(POLL)
        svc = get()
    if live:
        out.write("\r\x1b[K")
        out.flush()
    return svc, settled(svc)


def bar(svc):
    update, desired = svc.get("update") or {}, svc["replicas"]["desired"]
    done = (update.get("slots") or {}).get("current", 0)
    filled = WIDTH * done // desired if desired else WIDTH
    return f"{svc['name']}: {update.get('state') or svc['status']} [{'#' * filled}{'-' * (WIDTH - filled)}] " \
           f"{done}/{desired}"


def failure(svc, started, is_settled, timeout):
    """Why the change that answered `started` (a service view) did not end
    well, or None: the message the CLI exits 1 with."""
    began = started.get("update") or {}
    ours = began.get("state") in ROLLING and began.get("version") == started["version"]
    expected = "completed" if began.get("state") == "updating" else "rolled back"
    update = svc.get("update") or {}
    if not is_settled:
        return f"service {svc['name']} still {update.get('state') or svc['status']} after {timeout:.0f}s " \
               f"(it goes on; see service ps {svc['name']})"
    rolled_back = began.get("state") == "updating" and update.get("state") in ROLLED
    if ours and update.get("version") not in ({started["version"]} | ({started["version"] + 1} if rolled_back
                                                                      else set())):
        return f"service {svc['name']} was changed again meanwhile (now v{svc['version']}); see service ps"
    if ours and update.get("state") != expected:
        what = "update" if expected == "completed" else "rollback"
        return f"the {what} of service {svc['name']} ended {update.get('state')}: " \
               f"{update.get('reason') or 'no reason given'}"
    if svc["status"] == "failed" and not ours:      # a rollout that completed ran its new containers healthy
        return f"service {svc['name']} failed" + (f": {svc['error']}" if svc.get("error") else "")
    return None
