"""cli/client.TokenSession: the token survives a 307 from one master to
another (another host), a callable token is read per request, and an explicit
`verify` is not replaced by REQUESTS_CA_BUNDLE. Two local HTTP servers on
127.0.0.1 and 127.0.0.2 (ephemeral ports)."""
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import requests.adapters

from cli.client import Client, ClientError, TokenSession

PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
              "NO_PROXY", "no_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class Server:
    """One HTTP server: records (method, path, Authorization, body) of every
    request; answers 307 to `redirect_to` when set, else 200 with JSON."""

    def __init__(self, host):
        self.seen = []
        self.redirect_to = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
                if outer.redirect_to is not None:
                    self.send_response(307)
                    self.send_header("Location", outer.redirect_to(self.path))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(2)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def pair():
    """standby (127.0.0.1) answers 307 to leader (127.0.0.2)."""
    standby, leader = Server("127.0.0.1"), Server("127.0.0.2")
    standby.redirect_to = lambda path: leader.url + path
    yield standby, leader
    standby.close()
    leader.close()


def test_the_token_follows_a_redirect_to_another_host(pair):
    standby, leader = pair
    with TokenSession(token="t") as s:
        r = s.get(standby.url + "/state", timeout=5)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert [x[:3] for x in standby.seen] == [("GET", "/state", "Bearer t")]
    assert [x[:3] for x in leader.seen] == [("GET", "/state", "Bearer t")]
    assert len(r.history) == 1 and r.history[0].status_code == 307


def test_plain_requests_drops_the_token_on_that_redirect(pair):
    """The control: without TokenSession the leader sees no token (so the
    test above does test something)."""
    standby, leader = pair
    with requests.Session() as s:
        r = s.get(standby.url + "/state", headers={"Authorization": "Bearer t"}, timeout=5)
    assert r.status_code == 200
    assert standby.seen[0][2] == "Bearer t"
    assert leader.seen[0][2] is None


def test_a_post_keeps_its_body_and_token_through_the_redirect(pair):
    standby, leader = pair
    c = Client(standby.url, timeout=5, token="t")
    code, payload = c.call("POST", "/service", {"name": "web"}, {"wait": "true"})
    assert code == 200 and payload == {"ok": True}
    method, path, auth, body = leader.seen[0]
    assert (method, path, auth) == ("POST", "/service?wait=true", "Bearer t")
    assert json.loads(body) == {"name": "web"}


def test_a_callable_token_is_read_per_request(pair):
    standby, leader = pair
    counter = itertools.count(1)
    calls = []

    def token():
        n = next(counter)
        calls.append(n)
        return f"t{n}"

    with TokenSession(token=token) as s:
        s.get(standby.url + "/a", timeout=5)
        s.get(leader.url + "/b", timeout=5)
        s.get(standby.url + "/c", timeout=5)
    assert calls == [1, 2, 3]                                   # once per request, not per hop
    assert [x[2] for x in standby.seen] == ["Bearer t1", "Bearer t3"]
    assert [(x[1], x[2]) for x in leader.seen] == [("/a", "Bearer t1"), ("/b", "Bearer t2"), ("/c", "Bearer t3")]


def test_no_token_sends_no_authorization(pair):
    standby, leader = pair
    with TokenSession(token=None) as s:
        s.get(standby.url + "/a", timeout=5)
    with TokenSession(token=lambda: "") as s:
        s.get(standby.url + "/b", timeout=5)
    assert [x[2] for x in leader.seen] == [None, None]


def test_an_explicit_authorization_header_is_kept(pair):
    standby, leader = pair
    with TokenSession(token="t") as s:
        s.get(standby.url + "/a", headers={"Authorization": "Bearer other"}, timeout=5)
    assert leader.seen[0][2] == "Bearer other"


def test_a_redirect_loop_is_one_client_error():
    loop = Server("127.0.0.1")
    loop.redirect_to = lambda path: loop.url + path
    try:
        c = Client(loop.url, timeout=5, token="t")
        with pytest.raises(ClientError) as info:
            c.call("GET", "/state")
        assert "too many redirects" in str(info.value)
        assert len(loop.seen) == 4                 # the first try and max_redirects=3 more
    finally:
        loop.close()


# -- verify -------------------------------------------------------------------------------

@pytest.fixture
def sent(monkeypatch):
    """Replace the adapter's send: record its keyword arguments, answer 200 {}."""
    seen = []

    def send(self, request, **kw):
        seen.append(kw)
        r = requests.models.Response()
        r.status_code = 200
        r._content = b"{}"
        r.headers["Content-Type"] = "application/json"
        r.url = request.url
        r.request = request
        return r

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return seen


def test_an_explicit_ca_file_beats_requests_ca_bundle(sent, monkeypatch, tmp_path):
    ca = str(tmp_path / "master-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/bundle.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/elsewhere/curl.pem")
    with TokenSession(token="t", verify=ca) as s:
        s.request("GET", "https://127.0.0.1:1/state")
        s.get("https://127.0.0.1:1/nodes")
    assert [kw["verify"] for kw in sent] == [ca, ca]


def test_plain_requests_lets_the_environment_replace_it(sent, monkeypatch, tmp_path):
    """The control: what TokenSession guards against does happen in requests."""
    ca = str(tmp_path / "master-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/bundle.pem")
    with requests.Session() as s:
        s.verify = ca
        s.get("https://127.0.0.1:1/state")
    assert sent[0]["verify"] == "/elsewhere/bundle.pem"


def test_verify_false_stays_false(sent, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/bundle.pem")
    with TokenSession(verify=False) as s:
        s.get("https://127.0.0.1:1/state")
    assert sent[0]["verify"] is False


def test_a_per_request_verify_still_wins(sent, tmp_path):
    with TokenSession(verify=str(tmp_path / "a.pem")) as s:
        s.get("https://127.0.0.1:1/state", verify=str(tmp_path / "b.pem"))
    assert sent[0]["verify"] == str(tmp_path / "b.pem")


def test_client_passes_its_ca_file_through(sent, monkeypatch, tmp_path):
    ca = str(tmp_path / "master-ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/elsewhere/bundle.pem")
    c = Client("127.0.0.1:1", token="t", scheme="https", verify=ca)
    assert c.call("GET", "/state") == (200, {})
    assert sent[0]["verify"] == ca
