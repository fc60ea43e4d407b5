"""Rolling updates as the engines saw them: batches no wider than the
service's parallelism (from the engines' own start events), never fewer
running replicas than desired (one listing per engine every 0.2 s), an
update to an image whose own health check fails rolled back by itself after
its first batch, and a rollback asked for through the CLI."""
import time

import pytest

from conftest import api, wait_for
from sampling import Sampler, listing
from test_cli_flows import cli, ok
from test_heal import create

pytestmark = pytest.mark.usefixtures("clean")

EVERY = 0.2
MIN_SAMPLES = 10


def started_images(engines, service, since_ns):
    """[(time, image)] of every container of `service` the engines started since `since_ns`."""
    out = []
    for client in engines.clients.values():
        for e in client.events(since=since_ns / 1e9 - 1, until=time.time() + 0.2, decode=True,
                               filters={"type": "container", "event": "start",
                                        "label": f"bicycle.service={service}"}):
            if e["timeNano"] >= since_ns:
                out.append((e["timeNano"] / 1e9, e["Actor"]["Attributes"]["image"]))
    return sorted(out)


def widest_batch(starts, image, window):
    """The most starts of `image` within any `window` seconds."""
    times = [t for t, i in starts if i == image]
    return max((sum(1 for u in times if t - window < u <= t) for t in times), default=0)


def running(sample):
    return sum(1 for cs in sample.values() for _, state, _ in cs.values() if state == "running")


def images(engines, service):
    return sorted(c.attrs["Config"]["Image"] for cs in engines.containers(service).values() for c in cs)


def rollout(name):
    return api("GET", f"/service/{name}").json()["update"]


def test_an_update_rolls_two_slots_at_a_time_and_never_runs_fewer_than_desired(engines):
    create("web", 6)
    since = time.time_ns()
    with Sampler(lambda: listing(engines, "web"), every=EVERY) as watch:
        r = api("PATCH", "/service/web", {"image": "bicycle/demo:2",
                                          "update": {"parallelism": 2, "monitor": 2, "order": "start-first"}})
        assert r.status_code == 200, r.text
    assert r.json()["update"]["state"] == "completed", r.json()["update"]
    assert images(engines, "web") == ["bicycle/demo:2"] * 6
    assert len(watch.samples) >= MIN_SAMPLES, f"only {len(watch.samples)} samples"
    assert min(running(s) for s in watch.samples) >= 6
    starts = started_images(engines, "web", since)
    assert sum(1 for _, i in starts if i == "bicycle/demo:2") == 6
    assert widest_batch(starts, "bicycle/demo:2", window=1.7) == 2, starts


def test_an_update_to_an_image_whose_health_check_fails_rolls_back_by_itself(engines):
    create("web", 6)
    since = time.time_ns()
    with Sampler(lambda: listing(engines, "web"), every=EVERY) as watch:
        r = api("PATCH", "/service/web", {"image": "bicycle/demo:bad", "update": {"parallelism": 2, "monitor": 3}},
                params={"wait": "false"})
        assert r.status_code == 202, r.text
        wait_for(lambda: rollout("web")["state"] == "rolled back", 60)
        wait_for(lambda: images(engines, "web") == ["bicycle/demo:1"] * 6, 30)
    state = rollout("web")
    assert state["reason"].startswith("slot ") and "turned unhealthy" in state["reason"], state
    assert min(running(s) for s in watch.samples) >= 6
    bad = [t for t, i in started_images(engines, "web", since) if i == "bicycle/demo:bad"]
    assert 1 <= len(bad) <= 2, f"{len(bad)} containers of the bad image were started"
    assert max(sum(1 for node in s.values() for _, _, image in node.values() if image == "bicycle/demo:bad")
               for s in watch.samples) <= 2
    said = [e["message"] for e in api("GET", "/events", params={"limit": 200}).json() if e.get("service") == "web"]
    assert any("update of service web v2 failed: rolling back: slot" in m for m in said), said
    assert any("rollback of service web v3 rolled back" in m for m in said), said


def test_a_rollback_asked_for_returns_to_the_previous_image(engines):
    create("web", 3, update={"monitor": 1})
    ok(cli("service", "update", "web", "--image", "bicycle/demo:2", "--parallelism", "0"))
    assert images(engines, "web") == ["bicycle/demo:2"] * 3
    out = ok(cli("service", "rollback", "web"))
    assert "update: rolled back" in out, out
    assert images(engines, "web") == ["bicycle/demo:1"] * 3
    view = api("GET", "/service/web").json()
    assert view["update"]["previous"]["image"] == "bicycle/demo:2"
    assert {c["spec"] for c in view["containers"]} == {"current"}
    refused = cli("service", "rollback", "nothere")
    assert refused.returncode != 0 and "no service named 'nothere'" in refused.stderr


def test_an_update_to_an_image_that_exits_at_once_pauses_when_told_to_and_the_cli_says_so(engines):
    create("web", 4, update={"monitor": 1})
    r = cli("service", "update", "web", "--image", "bicycle/demo:crash", "--failure-action", "pause")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "the update of service web ended paused: slot 1:" in r.stderr and "exited with code 1" in r.stderr
    assert "update: paused" in r.stdout
    live = sorted((int(c.labels["bicycle.slot"]), c.attrs["Config"]["Image"])
                  for cs in engines.containers("web").values() for c in cs)
    assert [row for row in live if row[0] != 1] == [(2, "bicycle/demo:1"), (3, "bicycle/demo:1"),
                                                     (4, "bicycle/demo:1")], live
    assert rollout("web")["state"] == "paused"
