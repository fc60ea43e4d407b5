"""Security against the real master and nodes: tokens on every endpoint, a
node whose host key changed, and a canary secret that must never show."""
import glob
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from browser import RED, Browser, dashboard, row, status_colour
from conftest import BASE, ROOT, SANDBOX, api, http, port, token, wait_for
from master import auth
from sandbox import cluster, daemons
from sandbox.common import load as load_sandbox

pytestmark = pytest.mark.usefixtures("clean")


def endpoints():
    """(method, path) of every operation in /openapi.json, names filled in."""
    spec = http.get(f"{BASE}/openapi.json", timeout=10).json()
    out = []
    for path, item in spec["paths"].items():
        concrete = path.replace("{name}", "node1" if path.startswith("/nodes") else "web")
        out += [(method.upper(), concrete) for method in item if method in ("get", "post", "patch", "delete")]
    return out


def test_every_endpoint_but_health_needs_a_token(engines):
    api("POST", "/service", {"name": "web", "image": "bicycle/demo:1", "replicas": 2}).raise_for_status()
    before = api("GET", "/service/web").json()["version"], engines.counts("web")
    ops = endpoints()
    assert len(ops) >= 15
    for method, path in ops:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token()}x"}):
            r = requests.request(method, BASE + path, headers=headers, json={}, timeout=10,
                                 params={"wait": "false"})
            if path == "/health":
                assert r.status_code == 200
            else:
                assert r.status_code == 401, (method, path, headers)
                assert "token" in r.json()["message"]
    assert (api("GET", "/service/web").json()["version"], engines.counts("web")) == before


def test_a_read_token_reads_but_cannot_write(engines):
    api("POST", "/service", {"name": "web", "image": "bicycle/demo:1", "replicas": 2}).raise_for_status()
    before = api("GET", "/service/web").json()["version"], engines.counts("web")
    read = {"Authorization": f"Bearer {token(auth.READ)}"}
    for method, path in endpoints():
        r = requests.request(method, BASE + path, headers=read, timeout=30,
                             json={"replicas": 3, "name": "other", "image": "bicycle/demo:1"},
                             params={"wait": "false", "follow": "false"})
        if method == "GET":
            assert r.status_code in (200, 404), (method, path, r.status_code)   # 404: no logs of node1 yet
        else:
            assert r.status_code == 403, (method, path)
    assert (api("GET", "/service/web").json()["version"], engines.counts("web")) == before
    assert [s["name"] for s in api("GET", "/service").json()] == ["web"]


def test_token_state_and_key_files_are_private(master):
    for name in ("tokens.json", "state.json", "secrets.key", "known_hosts"):
        mode = stat.S_IMODE(os.stat(os.path.join(SANDBOX, name)).st_mode)
        assert mode & 0o077 == 0 or name == "known_hosts", (name, oct(mode))
    assert stat.S_IMODE(os.stat(os.path.join(SANDBOX, "tokens.json")).st_mode) == 0o600


# -- a node whose host key changed -------------------------------------------

def cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"),
                           "-i", os.path.join(SANDBOX, "inventory.yml"), *args],
                          capture_output=True, text=True, timeout=60)


def node_status(name):
    return next(n for n in api("GET", "/state").json()["nodes"] if n["name"] == name)["status"]


def test_a_node_with_another_host_key_is_untrusted_until_pinned(engines, tmp_path):
    api("POST", "/service", {"name": "web", "image": "bicycle/demo:1", "replicas": 3}).raise_for_status()
    node = load_sandbox(SANDBOX).node(3)
    saved = tmp_path / "key"
    saved.mkdir()
    for f in glob.glob(node.host_key + "*"):
        shutil.copy2(f, saved)
    known_hosts = open(os.path.join(SANDBOX, "known_hosts")).read()
    try:
        for f in glob.glob(node.host_key + "*"):
            os.remove(f)
        daemons.ensure_keypair(node.host_key, "impostor")
        cluster.restart_sshd(SANDBOX, 3)
        wait_for(lambda: node_status("node3") == "untrusted", 30)
        wait_for(lambda: any(e["kind"] == "untrusted" and "node3" in e["message"] and "SHA256:" in e["message"]
                             for e in api("GET", "/events", params={"limit": 200}).json()), 10)
        on_node3 = {c.id for c in engines.containers(running_only=False)["node3"]}
        with Browser(tmp_path / "profile") as browser:     # the dashboard shows it in red
            dashboard(browser)
            wait_for(lambda: row(browser, "nodes", "node", "node3")[2] == "untrusted", 10)
            assert status_colour(browser, "node3") == RED and status_colour(browser, "node1") != RED

        # Its slot moves away and new work never goes there.
        api("PATCH", "/service/web", {"replicas": 6}, params={"wait": "false"}).raise_for_status()
        wait_for(lambda: engines.counts("web")["node1"] + engines.counts("web")["node2"] == 6, 60)
        assert {c.id for c in engines.containers(running_only=False)["node3"]} == on_node3
        assert node_status("node3") == "untrusted"

        # Trust needs the fingerprint (or --yes): a wrong one pins nothing.
        r = cli("node", "trust", "node3")
        assert r.returncode == 1 and "--fingerprint SHA256:" in r.stderr
        fingerprint = r.stderr.split("--fingerprint ")[1].split()[0]
        assert cli("node", "trust", "node3", "--fingerprint", "SHA256:wrong").returncode == 1
        assert open(os.path.join(SANDBOX, "known_hosts")).read() == known_hosts
        os.chmod(os.path.join(SANDBOX, "known_hosts"), 0o644)    # trust must not keep a laxer mode
        r = cli("node", "trust", "node3", "--fingerprint", fingerprint)
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(os.stat(os.path.join(SANDBOX, "known_hosts")).st_mode) == 0o600
        wait_for(lambda: node_status("node3") == "ready", 30)
    finally:
        for f in glob.glob(node.host_key + "*"):
            os.remove(f)
        for f in saved.iterdir():
            shutil.copy2(f, os.path.dirname(node.host_key))
        cluster.restart_sshd(SANDBOX, 3)
        with open(os.path.join(SANDBOX, "known_hosts"), "w") as f:
            f.write(known_hosts)
    wait_for(lambda: node_status("node3") == "ready", 30)


# -- a canary secret -----------------------------------------------------------

def sample_ps(stop, seen):
    while not stop.is_set():
        seen.append(subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout)
        time.sleep(0.05)


def node_files():
    """Every file Bicycle keeps in the nodes' homes (replicated state, audit, lease)."""
    sb = load_sandbox(SANDBOX)
    return [f for node in sb.all_nodes() for f in glob.glob(os.path.join(node.home, ".bicycle", "*"))]


def test_a_canary_secret_never_shows_outside_the_container(engines, master):
    canary = f"canary-{uuid.uuid4().hex}"
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=sample_ps, args=(stop, seen))
    sampler.start()
    try:
        r = api("POST", "/service", {"name": "vault", "image": "bicycle/demo:1", "replicas": 3,
                                     "env": {"PLAIN": "visible"}, "secrets": {"CANARY_SECRET": canary}})
        assert r.status_code == 201, r.text
        # An update rolls every container: the secret is piped in again.
        r = api("PATCH", "/service/vault", {"image": "bicycle/demo:2"})
        assert r.status_code == 200, r.text
    finally:
        stop.set()
        sampler.join()
    # Positive control: the sampler did see the commands that carry the secret
    # (how many samples that took depends on the machine's load, not on Bicycle).
    assert any("--env-file /dev/stdin" in sample for sample in seen), f"{len(seen)} samples"

    # It did reach every container, as environment.
    containers = [c for cs in engines.containers("vault").values() for c in cs]
    assert len(containers) == 3
    for c in containers:
        assert f"CANARY_SECRET={canary}" in c.attrs["Config"]["Env"]
        assert "PLAIN=visible" in c.attrs["Config"]["Env"]

    # The same value again changes nothing; the API shows it masked.
    version = api("GET", "/service/vault").json()["version"]
    r = api("PATCH", "/service/vault", {"secrets": {"CANARY_SECRET": canary}})
    assert r.json()["version"] == version
    assert r.json()["spec"]["secrets"] == {"CANARY_SECRET": "********"}

    texts = {"ps": "\n".join(seen)}
    for path in ("/state", "/service", "/service/vault", "/events?limit=1000", "/metrics", "/nodes",
                 "/service/vault/logs?tail=all", "/nodes/node1/logs?tail=all", "/service/vault/stats"):
        texts[path] = http.get(BASE + path, timeout=30).text
    for f in [os.path.join(SANDBOX, "state.json"), master.log_path] + node_files():
        texts[f] = open(f, encoding="utf-8", errors="replace").read()
    assert any("CANARY_SECRET" in t for t in texts.values())       # the name is not hidden
    leaks = [where for where, text in texts.items() if canary in text]
    assert leaks == []


# -- TLS --------------------------------------------------------------------------

def self_signed(folder, ip="127.0.0.1"):
    """A certificate for `ip` and its key, as files (cryptography, no openssl CLI)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bicycle-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "api.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "api.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))


def lone_master(folder, api_address, tls):
    """A master of its own inventory, with one node where nothing listens (so
    it never meets the session's nodes); returns (process, inventory path)."""
    settings = "settings:\n  api:\n    tokens: tokens.json\n"
    if tls:
        settings += "    tls: {certificate: api.crt, key: api.key}\n"
    inventory = folder / "inventory.yml"
    inventory.write_text("nodes:\n  - {name: lonely, host: 127.0.0.99, user: nobody}\n"
                         f"masters:\n  - {{name: m1, api: '{api_address}'}}\n" + settings)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", str(inventory), "up"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, inventory


def test_tls_serves_https_and_the_cli_verifies_it(tmp_path):
    self_signed(tmp_path)
    proc, inventory = lone_master(tmp_path, f"127.0.0.1:{port(7191)}", tls=True)
    try:
        url, cert = f"https://127.0.0.1:{port(7191)}", str(tmp_path / "api.crt")
        wait_for(lambda: _answers(f"{url}/health", cert), 20)
        assert requests.get(f"{url}/state", verify=cert, timeout=5).status_code == 401
        admin = auth.load(str(tmp_path / "tokens.json"))[auth.ADMIN]
        r = requests.get(f"{url}/state", verify=cert, timeout=5, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200 and r.json()["nodes"][0]["name"] == "lonely"
        with pytest.raises(requests.RequestException):       # no plain HTTP on that port
            requests.get(f"http://127.0.0.1:{port(7191)}/health", timeout=5).json()
        with pytest.raises(requests.exceptions.SSLError):     # and not without trusting the certificate
            requests.get(f"{url}/health", timeout=5)
        r = subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", str(inventory), "status"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "master m1" in r.stdout and "lonely" in r.stdout
        assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert f"listening on https://127.0.0.1:{port(7191)}" in out
    assert "warning" not in err


def test_plain_http_off_loopback_starts_with_a_warning(tmp_path):
    proc, _ = lone_master(tmp_path, f"0.0.0.0:{port(7192)}", tls=False)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port(7192)}/health", True), 20)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert "warning" in err and "no TLS" in err and f"0.0.0.0:{port(7192)}" in err


def _answers(url, verify):
    try:
        return requests.get(url, verify=verify, timeout=1).status_code == 200
    except requests.RequestException:
        return False
