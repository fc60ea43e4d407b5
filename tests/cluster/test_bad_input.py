"""Bad input gets a 4xx JSON answer and changes nothing stored or running."""
import pytest

from conftest import api, http, BASE

pytestmark = pytest.mark.usefixtures("clean")

BAD_BODIES = [
    ({"name": "web", "replicas": 2}, 422, "image"),
    ({"name": "web", "image": "bicycle/demo:1", "replicas": -1}, 422, "replicas"),
    ({"name": "web;rm -rf /", "image": "bicycle/demo:1", "replicas": 1}, 422, "name"),
    ({"name": "$(touch /tmp/pwned)", "image": "bicycle/demo:1", "replicas": 1}, 422, "name"),
    ({"name": "web", "image": "bicycle/demo:1;touch /tmp/pwned", "replicas": 1}, 422, "image"),
    ({"name": "web", "image": "bicycle/demo:1", "replicas": "3"}, 422, "replicas"),
    ({"name": "web", "image": "bicycle/demo:1", "replicas": 1.5}, 422, "replicas"),
    ({"name": ["web"], "image": "bicycle/demo:1", "replicas": 1}, 422, "name"),
    ({"name": "web", "image": "bicycle/demo:1", "replicas": 1, "env": {"A B": "x"}}, 422, "env.A B"),
    ({"name": "web", "image": "bicycle/demo:1", "replicas": 1, "ports": ["99999:80"]}, 422, "ports.0"),
    ({"name": "web", "image": "bicycle/demo:1", "replicas": 1, "privileged": True}, 422, "privileged"),
    ({"name": "web", "image": "bicycle/demo:1", "replicas": 1, "restart": "sometimes"}, 422, "restart"),
]


def desired():
    """What a request could change: each service's name, spec, version and
    replicas (not its state or status, which the loop moves on by itself)."""
    return [(s["name"], s["spec"], s["version"], s["replicas"]["desired"]) for s in api("GET", "/service").json()]


def engine_snapshot(engines):
    return {n: sorted(c.id for c in cs) for n, cs in engines.containers(running_only=False).items()}


@pytest.fixture
def existing(engines):
    r = api("POST", "/service", {"name": "keep", "image": "bicycle/demo:1", "replicas": 2})
    assert r.status_code == 201
    return desired(), engine_snapshot(engines)


@pytest.mark.parametrize("body,status,field", BAD_BODIES)
def test_bad_create_is_refused_and_changes_nothing(existing, engines, body, status, field):
    services, containers = existing
    r = api("POST", "/service", body)
    assert r.status_code == status, r.text
    payload = r.json()
    assert payload["message"]
    assert field in [e["field"] for e in payload["errors"]]
    assert desired() == services
    assert engine_snapshot(engines) == containers


def test_not_json_is_400(existing, engines):
    services, containers = existing
    r = http.post(f"{BASE}/service", data="{not json", headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["message"]
    assert desired() == services and engine_snapshot(engines) == containers


def test_two_megabyte_body_is_413(existing, engines):
    services, containers = existing
    body = '{"name": "web", "image": "bicycle/demo:1", "replicas": 1, "env": {"A": "' + "x" * (2 << 20) + '"}}'
    r = http.post(f"{BASE}/service", data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413 and r.json()["message"]
    assert desired() == services and engine_snapshot(engines) == containers


def test_bad_patch_changes_nothing(existing, engines):
    services, containers = existing
    for body in ({"replicas": -5}, {"image": ""}, {"name": "other"}, [1, 2]):
        r = api("PATCH", "/service/keep", body)
        assert r.status_code == 422, r.text
    assert desired() == services and engine_snapshot(engines) == containers


def test_unknown_service_and_path_are_json_404(existing, engines):
    services, containers = existing
    assert api("GET", "/service/nope").status_code == 404
    for params in ({}, {"wait": "false"}):
        r = api("DELETE", "/service/nope", params=params)
        assert r.status_code == 404, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        assert list(r.json()) == ["message"] and "'nope'" in r.json()["message"]
    assert desired() == services and engine_snapshot(engines) == containers
    r = api("GET", "/nothing-here")
    assert r.status_code == 404 and r.json()["message"]
    assert api("PUT", "/service").status_code == 405
