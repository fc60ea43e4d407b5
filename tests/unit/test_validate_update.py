"""master.validate.service_request: health checks and update settings in API
bodies -> model values, or Invalid naming every bad field (with the spec's)."""
import pytest

from master.validate import Invalid, service_request
from master.validate_update import duration
from model import ROLLBACK_DEFAULTS, Healthcheck, UpdateConfig

NODES = 3


def body(**changes):
    return dict({"name": "web", "image": "bicycle/demo:1", "replicas": 3}, **changes)


def fields(b, base=None):
    with pytest.raises(Invalid) as e:
        service_request(b, NODES, base=base)
    return sorted(err["field"] for err in e.value.errors)


@pytest.mark.parametrize("text, seconds", [(5, 5.0), (0.5, 0.5), ("10s", 10.0), ("1m30s", 90.0),
                                           ("500ms", 0.5), ("1h", 3600.0), ("2.5s", 2.5)])
def test_durations(text, seconds):
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "-1s", "1d", "s", True, None, "1m 30s", 10 ** 9])
def test_bad_durations(text):
    assert duration(text) is None


def test_defaults_and_a_full_request():
    plain = service_request(body(), NODES)
    assert (plain.update, plain.rollback, plain.spec.healthcheck) == (UpdateConfig(), ROLLBACK_DEFAULTS, None)
    full = service_request(body(update={"parallelism": 2, "delay": "10s", "order": "stop-first", "monitor": "1s",
                                        "failure_action": "pause", "max_failure_ratio": 0.25},
                                rollback={"parallelism": 0, "failure_action": "continue"},
                                healthcheck={"test": "wget -q -O- http://127.0.0.1/health", "interval": "2s",
                                             "retries": 5}), NODES)
    assert full.update == UpdateConfig(2, 10.0, "stop-first", 1.0, "pause", 0.25)
    assert full.rollback == UpdateConfig(0, 0.0, "start-first", 5.0, "continue", 0.0)
    assert full.spec.healthcheck == Healthcheck(("CMD-SHELL", "wget -q -O- http://127.0.0.1/health"), 2.0, 30.0, 5)
    off = service_request(body(healthcheck={"disable": True}), NODES)
    assert off.spec.healthcheck == Healthcheck(("NONE",))


def test_every_bad_field_is_named_with_the_spec_errors():
    assert fields(body(image="Bad Image", update={"parallelism": -1, "delay": "soon", "order": "random",
                                                  "monitor": True, "failure_action": "explode",
                                                  "max_failure_ratio": 2, "speed": 1},
                       rollback={"failure_action": "rollback"},
                       healthcheck={"test": ["CMD"], "interval": "-1s", "retries": 0, "what": 1})) == [
        "healthcheck.interval", "healthcheck.retries", "healthcheck.test", "healthcheck.what", "image",
        "rollback.failure_action", "update.delay", "update.failure_action", "update.max_failure_ratio",
        "update.monitor", "update.order", "update.parallelism", "update.speed"]
    assert fields(body(update="fast", healthcheck="curl")) == ["healthcheck", "update"]
    assert fields(body(healthcheck={"test": ["CMD", "curl", "-f", "http://x/"]})) == ["healthcheck.test"]
    assert fields(body(healthcheck={"test": "true", "interval": "500us"})) == ["healthcheck.interval"]


def test_a_patch_changes_only_the_settings_it_names():
    stored = service_request(body(update={"parallelism": 2, "monitor": 1},
                                  healthcheck={"test": ["CMD-SHELL", "true"], "interval": 1}), NODES)
    base = {"spec": stored.spec.to_dict(), "replicas": 3, "update": stored.update.to_dict(),
            "rollback": stored.rollback.to_dict()}
    patched = service_request({"update": {"delay": "3s"}}, NODES, base=base)
    assert patched.update == UpdateConfig(parallelism=2, delay=3.0, monitor=1.0)
    assert patched.spec == stored.spec                # the health check, unchanged, is the same
    assert service_request({"healthcheck": None}, NODES, base=base).spec.healthcheck is None


def test_resource_limits():
    limited = service_request(body(resources={"limits": {"cpus": "0.5", "memory": "256m"}}), NODES).spec
    assert (limited.cpus, limited.memory) == (0.5, 256 << 20)
    assert service_request(body(resources={"limits": {"memory": 104857600}}), NODES).spec.memory == 100 << 20
    assert service_request(body(resources={"limits": {"memory": "1.5g"}}), NODES).spec.memory == 3 << 29
    assert fields(body(resources={"limits": {"cpus": -1, "memory": "5m"}})) == [
        "resources.limits.cpus", "resources.limits.memory"]
    base = {"spec": limited.to_dict(), "replicas": 3, "update": {}, "rollback": {}}
    more = service_request({"resources": {"limits": {"memory": "512m"}}}, NODES, base=base).spec
    assert (more.cpus, more.memory) == (0.5, 512 << 20)                 # the cpu limit stays
    less = service_request({"resources": {"limits": {"cpus": 0}}}, NODES, base=base).spec
    assert (less.cpus, less.memory) == (0.0, 256 << 20)                 # 0 clears one
    assert fields(body(resources={"limits": {"cpus": True, "memory": "lots"}})) == [
        "resources.limits.cpus", "resources.limits.memory"]
    assert fields(body(resources={"reservations": {"cpus": -1, "memory": "1k"}})) == [
        "resources.reservations.cpus", "resources.reservations.memory"]
    reserved = service_request(body(resources={"reservations": {"cpus": "1.5", "memory": "1g"}}), NODES).spec
    assert (reserved.reserve_cpus, reserved.reserve_memory, reserved.cpus) == (1.5, 1 << 30, 0.0)
    base = {"spec": reserved.to_dict(), "replicas": 3, "update": {}, "rollback": {}}
    kept = service_request({"resources": {"reservations": {"cpus": 2}}}, NODES, base=base).spec
    assert (kept.reserve_cpus, kept.reserve_memory) == (2.0, 1 << 30)     # the memory reservation stays
    assert fields(body(resources={"limits": {"gpus": 1}})) == ["resources.limits"]
    assert service_request(body(), NODES).spec.to_dict().get("resources") is None     # the digest as before
