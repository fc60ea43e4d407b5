"""master.api: the Bottle app called in-process as a WSGI app, on bad input only.

Bad requests must be answered before anything reaches the loop, so the views,
the loop's events and wake-ups, the waits and the monitor fail the request
if they are ever called. The store is a real one in memory, behind the API's
own door (Desired); this master is the leader and commits at once.
"""
import io
import json
from types import SimpleNamespace
from wsgiref.util import setup_testing_defaults

import pytest
from cryptography.fernet import Fernet
from prometheus_client import CollectorRegistry, Counter

from master.api import Desired, Leadership, Waits, make_app
from master.api.http import MAX_BODY
from master.vault import Vault
from model import ServiceSpec
from store.state import Store


TOKENS = {"admin": "admin-token-0123456789", "read": "read-token-0123456789"}
ADMIN = {"HTTP_AUTHORIZATION": f"Bearer {TOKENS['admin']}"}
NODES = ("node1", "node2", "node3")
LEADING = SimpleNamespace(status=lambda: ("leader", 101), settle=lambda _: True, ttl=6.0, reason="")


class Untouchable:
    """Stands in for the views, the loop, the waits, the monitor and the doctor: bad input must never get here."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        def called(*_, **__):
            raise AssertionError(f"a bad request reached {self.name}.{attr}")
        return called

    def __call__(self, *_, **__):
        raise AssertionError(f"a bad request reached {self.name}")


def make(store, views=Untouchable("views"), loop=Untouchable("loop"), waits=Untouchable("waits")):
    """The app of master m1 over `store`; `loop` records the events of changes and is woken by them."""
    desired = Desired(store, Vault(Fernet.generate_key()), lambda: NODES, commit=lambda change: change(),
                      record=loop.record, wake=loop.wake, now_iso=lambda: "2024-01-01T00:05:00Z")
    requests = Counter("requests", "API requests", ["method", "route", "status"], registry=CollectorRegistry())
    return make_app(TOKENS, requests, desired, views, Leadership("m1", LEADING, lambda: None, str),
                    Waits(1, waits.settled, waits.emptied), Untouchable("monitor"), Untouchable("doctor"),
                    Untouchable("changes"))


@pytest.fixture
def store():
    store = Store(None)
    store.create_service("web", ServiceSpec(image="nginx:1"), 2, "2024-01-01T00:00:00Z")
    return store


@pytest.fixture
def app(store):
    return make(store)


def call(app, method, path, body=None, query="", headers=ADMIN):
    """One request through the WSGI app: (status code, headers, parsed JSON body);
    with the admin token unless other headers are given."""
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(raw)}
    environ.update(headers or {})
    setup_testing_defaults(environ)
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started["status"], started["headers"] = status, dict(response_headers)
    chunks = app(environ, start_response)
    text = b"".join(chunks).decode()
    if hasattr(chunks, "close"):
        chunks.close()
    assert started["headers"]["Content-Type"].startswith("application/json"), started
    return int(started["status"].split()[0]), started["headers"], json.loads(text)


def snapshot(store):
    return [store.record(s.name) for s in store.services()], store.events()


@pytest.fixture
def unchanged(store):
    """Asserts after the test that no bad request changed the store."""
    before = snapshot(store)
    yield
    assert snapshot(store) == before


GOOD = {"name": "api", "image": "nginx:1.25", "replicas": 2}


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe{}", b'{"name": "x",}'])
def test_a_body_that_is_not_json_is_400(app, unchanged, body):
    status, _, payload = call(app, "POST", "/service", body)
    assert status == 400
    assert payload["message"].startswith("body is not valid JSON") and "errors" not in payload


def test_a_two_megabyte_body_is_413(app, unchanged):
    big = json.dumps(dict(GOOD, env={"BLOB": "x" * (2 * 1024 * 1024)})).encode()
    assert len(big) > MAX_BODY
    status, _, payload = call(app, "POST", "/service", big)
    assert status == 413 and str(MAX_BODY) in payload["message"]


def test_a_body_larger_than_its_content_length_says_is_still_bounded(app, unchanged):
    big = json.dumps(dict(GOOD, env={"BLOB": "x" * (2 * 1024 * 1024)})).encode()
    status, _, _ = call(app, "POST", "/service", big, headers=dict(ADMIN, CONTENT_LENGTH="100"))
    assert status == 400                         # only the first 100 bytes were read


@pytest.mark.parametrize("body, fields", [
    ({"image": "nginx", "replicas": 1}, ["name"]),
    (dict(GOOD, replicas=-1), ["replicas"]),
    (dict(GOOD, replicas="3"), ["replicas"]),
    (dict(GOOD, replicas=True), ["replicas"]),
    (dict(GOOD, name="$(touch /tmp/x)"), ["name"]),
    (dict(GOOD, image=None, privileged=True), ["privileged", "image"]),
    (dict(GOOD, ports=["8080:80"], replicas=4), ["replicas"]),
    (dict(GOOD, labels={"bicycle.service": "web"}), ["labels"]),
    ([GOOD], ["body"]),
])
def test_invalid_fields_are_422_with_errors(app, unchanged, body, fields):
    status, _, payload = call(app, "POST", "/service", body)
    assert status == 422
    assert [e["field"] for e in payload["errors"]] == fields
    assert all(e["message"] for e in payload["errors"]) and payload["message"]


NODE = {"name": "node4", "host": "127.0.0.14", "user": "bicycle14", "key": "id_ed25519", "trust": True}


@pytest.mark.parametrize("body, fields", [
    (dict(NODE, name="Node_4"), ["name"]),
    (dict(NODE, host="127.0.0.1; rm -rf /"), ["host"]),
    (dict(NODE, port=0), ["port"]),
    (dict(NODE, port="22"), ["port"]),
    (dict(NODE, user="$(id)"), ["user"]),
    (dict(NODE, key="id\nrm"), ["key"]),
    (dict(NODE, labels={"zone": 1}), ["labels.zone"]),
    (dict(NODE, fingerprint="MD5:aa:bb"), ["fingerprint"]),
    (dict(NODE, trust="yes"), ["trust"]),
    (dict(NODE, privileged=True, host=None), ["privileged", "host"]),
    ([NODE], ["body"]),
])
def test_an_invalid_node_is_422_and_never_reaches_a_node(app, unchanged, body, fields):
    """Untouchable("changes") fails the test if a bad body got as far as connecting."""
    status, _, payload = call(app, "POST", "/nodes", body)
    assert status == 422, payload
    assert payload["message"] == "invalid node"
    assert [e["field"] for e in payload["errors"]] == fields


@pytest.mark.parametrize("body, fields", [
    ({"labels": {"-bad": "x"}}, ["labels.-bad"]),
    ({"availability": "pause"}, ["availability"]),
    ({"host": "elsewhere"}, ["host"]),
])
def test_a_bad_node_change_is_422(app, unchanged, body, fields):
    status, _, payload = call(app, "PATCH", "/nodes/n1", body)
    assert status == 422 and [e["field"] for e in payload["errors"]] == fields, payload


def test_an_unknown_node_cannot_be_changed_or_removed(app, unchanged):
    assert call(app, "PATCH", "/nodes/n9", {"labels": {}})[0] == 404
    assert call(app, "DELETE", "/nodes/n9")[0] == 404
    assert call(app, "DELETE", "/nodes/n1", query="force=perhaps")[0] == 400


def test_a_taken_name_is_409(app, unchanged):
    status, _, payload = call(app, "POST", "/service", dict(GOOD, name="web"))
    assert status == 409 and "web" in payload["message"]


def test_a_create_retried_with_the_same_spec_is_200_and_changes_nothing(store, unchanged):
    """After a 503 (outcome unknown) a client retries the same create: it finds the service."""
    app = make(store, views=SimpleNamespace(service=lambda s: {"name": s.name, "version": s.version}),
               loop=QUIET_LOOP, waits=SimpleNamespace(settled=lambda *_: True, emptied=None))
    status, _, payload = call(app, "POST", "/service", {"name": "web", "image": "nginx:1", "replicas": 2})
    assert (status, payload) == (200, {"name": "web", "version": 1})
    status, _, _ = call(app, "POST", "/service", {"name": "web", "image": "nginx:1", "replicas": 3})
    assert status == 409


def test_patch_rejects_bad_fields_and_a_rename(app, unchanged):
    status, _, payload = call(app, "PATCH", "/service/web", {"replicas": -2, "name": "other"})
    assert status == 422
    assert sorted(e["field"] for e in payload["errors"]) == ["name", "replicas"]


def test_patch_of_a_deleting_service_is_409(app, store):
    store.mark_delete("web", "2024-01-01T00:01:00Z")
    before = snapshot(store)
    status, _, _ = call(app, "PATCH", "/service/web", {"replicas": 5})
    assert status == 409
    assert snapshot(store) == before


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/service/nope", None),
    ("PATCH", "/service/nope", {"replicas": 1}),
    ("DELETE", "/service/nope", None),
])
def test_an_unknown_service_is_404(app, unchanged, method, path, body):
    status, _, payload = call(app, method, path, body)
    assert status == 404 and "nope" in payload["message"]


def test_a_bad_service_name_in_the_path_is_422(app, unchanged):
    status, _, payload = call(app, "DELETE", "/service/Web;ls")
    assert status == 422 and [e["field"] for e in payload["errors"]] == ["name"]


@pytest.mark.parametrize("path", ["/nope", "/services", "/service/web/containers", "/dashboard"])
def test_an_unknown_path_is_404_json(app, unchanged, path):
    status, _, payload = call(app, "GET", path)
    assert (status, payload) == (404, {"message": "no such endpoint"})


@pytest.mark.parametrize("method, path", [("PUT", "/service"), ("DELETE", "/service"),
                                          ("POST", "/service/web"), ("POST", "/state")])
def test_a_wrong_method_is_405_json(app, unchanged, method, path):
    status, _, payload = call(app, method, path, GOOD)
    assert (status, payload) == (405, {"message": "method not allowed"})


QUIET_LOOP = SimpleNamespace(record=lambda *a, **k: None, wake=lambda: None)
BAD_QUERIES = ["wait=maybe", "timeout=abc", "timeout=601", "timeout=-1"]


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_bad_query_parameters_are_400(store, query):
    status, _, payload = call(make(store, loop=QUIET_LOOP), "POST", "/service", GOOD, query=query)
    assert status == 400 and "query parameter" in payload["message"]


@pytest.mark.parametrize("query", ["wait=maybe", "timeout=abc"])
@pytest.mark.parametrize("method, path, body", [("POST", "/service", GOOD),
                                                ("PATCH", "/service/web", {"replicas": 5}),
                                                ("DELETE", "/service/web", None)])
def test_bad_query_parameters_are_rejected_before_any_write(store, method, path, body, query):
    before = snapshot(store)
    status, _, _ = call(make(store, loop=QUIET_LOOP), method, path, body, query=query)
    assert status == 400
    assert snapshot(store) == before


def test_health(app):
    assert call(app, "GET", "/health")[::2] == (200, {"status": "ok", "master": "m1", "role": "leader", "epoch": 101})


def test_openapi_document(app):
    status, _, doc = call(app, "GET", "/openapi.json")
    assert status == 200
    assert doc["openapi"].startswith("3.")
    assert {"/service", "/service/{name}", "/state"} <= set(doc["paths"])
    assert set(doc["paths"]["/service"]) == {"get", "post"}
    assert {"get", "patch", "delete"} <= set(doc["paths"]["/service/{name}"])
    create = doc["paths"]["/service"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(create["required"]) == {"name", "image"}
    assert create["properties"]["mode"]["enum"] == ["replicated", "global"]
    assert {"400", "409", "413", "422"} <= set(doc["paths"]["/service"]["post"]["responses"])


def test_a_deeply_nested_body_is_400(app, unchanged):
    status, _, _ = call(app, "POST", "/service", b"[" * 100000)
    assert status == 400


def _routes(app):
    """Every route of the app with its path parameters filled in."""
    return sorted({(r.method, r.rule.replace("<name>", "web")) for r in app.routes})


def test_every_endpoint_but_health_needs_a_token(app, unchanged):
    routes = _routes(app)
    assert len(routes) > 15
    for method, path in routes:
        for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer not-the-token"},
                        {"HTTP_AUTHORIZATION": TOKENS["admin"]},             # no scheme
                        {"HTTP_AUTHORIZATION": "Basic %%%"}):
            status, response_headers, payload = call(app, method, path, {}, headers=headers)
            if path == "/health":
                assert status == 200
                continue
            assert status == 401, (method, path, headers)
            assert "token" in payload["message"]
            challenge = {k.lower(): v for k, v in response_headers.items()}["www-authenticate"]
            assert "realm=" in challenge


def test_a_read_token_reads_but_cannot_write(app, unchanged):
    read = {"HTTP_AUTHORIZATION": f"Bearer {TOKENS['read']}"}
    assert call(app, "GET", "/openapi.json", headers=read)[0] == 200
    for method, path in _routes(app):
        if method in ("GET", "HEAD"):
            continue
        status, _, payload = call(app, method, path, {"name": "x", "image": "a:1", "replicas": 1}, headers=read)
        assert status == 403, (method, path)
        assert "read" in payload["message"]


def test_basic_auth_carries_the_token_as_password(app):
    import base64
    basic = base64.b64encode(f"anyone:{TOKENS['read']}".encode()).decode()
    assert call(app, "GET", "/openapi.json", headers={"HTTP_AUTHORIZATION": f"Basic {basic}"})[0] == 200
    wrong = base64.b64encode(b"anyone:nope").decode()
    assert call(app, "GET", "/openapi.json", headers={"HTTP_AUTHORIZATION": f"Basic {wrong}"})[0] == 401
