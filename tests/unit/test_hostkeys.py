"""remote/hostkeys.py (fingerprints, pin, the refusing policy, scan, trust) and the
host key check of remote/transport.NodeConnection, against a tiny paramiko
SSH server this test runs on 127.0.0.1 (ephemeral port, no real node)."""
import io
import os
import socket
import stat
import subprocess
import threading
import time

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from model import NodeInfo
from remote import hostkeys
from remote.hostkeys import HostKeyRefused, PinnedOnly, TrustError, fingerprint, pin, scan, trust
from remote.transport import HostKeyError, NodeConnection, RemoteError


# -- keys --------------------------------------------------------------------------

def ed25519_pem():
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


def new_ed25519():
    return paramiko.Ed25519Key(file_obj=io.StringIO(ed25519_pem()))


def write_ed25519(path):
    """An OpenSSH private key file (mode 0600) and its key."""
    text = ed25519_pem()
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return paramiko.Ed25519Key(filename=str(path))


def public(key):
    """The public half only (what a known_hosts file holds)."""
    return paramiko.PKey.from_type_string(key.get_name(), key.asbytes())


def line(host, key):
    return f"{host} {key.get_name()} {key.get_base64()}\n"


def pinned(path, host):
    """{key type: base64} pinned for host in the known_hosts file at path."""
    keys = paramiko.HostKeys(str(path))
    found = keys.lookup(host)
    return {} if found is None else {t: k.get_base64() for t, k in found.items()}


# -- fingerprint ---------------------------------------------------------------------

def ssh_keygen(path, kind, *extra):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", "test", "-f", str(path)],
                   check=True, capture_output=True, timeout=60)
    out = subprocess.run(["ssh-keygen", "-lf", f"{path}.pub"], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return out.split()[1]          # "256 SHA256:... comment (ED25519)"


@pytest.mark.parametrize("kind,extra", [("ed25519", ()), ("ecdsa", ("-b", "256")), ("rsa", ("-b", "2048"))])
def test_fingerprint_is_the_one_ssh_keygen_prints(tmp_path, kind, extra):
    path = tmp_path / f"id_{kind}"
    expected = ssh_keygen(path, kind, *extra)
    assert expected.startswith("SHA256:")
    key = paramiko.PKey.from_path(str(path))
    assert fingerprint(key) == expected
    assert fingerprint(public(key)) == expected        # the public half alone gives the same
    assert not fingerprint(key).endswith("=")


def test_fingerprints_of_different_keys_differ():
    a, b = new_ed25519(), new_ed25519()
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint(public(a))


# -- pin -----------------------------------------------------------------------------

NODE = NodeInfo("node1", "10.0.0.5")                 # port 22
NODE_2222 = NodeInfo("node2", "10.0.0.6", 2222, "deploy")


def test_pin_creates_the_file_with_mode_0600(tmp_path):
    kh = tmp_path / "known_hosts"
    key = new_ed25519()
    old = os.umask(0o022)
    try:
        pin(str(kh), NODE, key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(kh).st_mode) == 0o600
    assert pinned(kh, "10.0.0.5") == {"ssh-ed25519": key.get_base64()}


def test_pin_makes_a_loose_file_0600(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(line("other", new_ed25519()))
    os.chmod(kh, 0o644)
    pin(str(kh), NODE, new_ed25519())
    assert stat.S_IMODE(os.stat(kh).st_mode) == 0o600


def test_pin_uses_bracketed_host_and_port_when_the_port_is_not_22(tmp_path):
    kh = tmp_path / "known_hosts"
    key = new_ed25519()
    pin(str(kh), NODE_2222, key)
    text = kh.read_text()
    assert text.split()[0] == "[10.0.0.6]:2222"
    assert pinned(kh, "[10.0.0.6]:2222") == {"ssh-ed25519": key.get_base64()}
    assert pinned(kh, "10.0.0.6") == {}                # not pinned for port 22


def test_pin_uses_the_bare_host_on_port_22(tmp_path):
    kh = tmp_path / "known_hosts"
    pin(str(kh), NODE, new_ed25519())
    assert kh.read_text().split()[0] == "10.0.0.5"
    assert hostkeys.known_hosts_name(NODE) == "10.0.0.5"
    assert hostkeys.known_hosts_name(NODE_2222) == "[10.0.0.6]:2222"


def test_pin_replaces_the_hosts_entry_and_keeps_the_others(tmp_path):
    kh = tmp_path / "known_hosts"
    old, other, other2222, new = new_ed25519(), new_ed25519(), new_ed25519(), new_ed25519()
    kh.write_text(line("10.0.0.9", other) + line("10.0.0.5", old) + line("[10.0.0.5]:2222", other2222))
    pin(str(kh), NODE, new)
    assert pinned(kh, "10.0.0.5") == {"ssh-ed25519": new.get_base64()}
    assert pinned(kh, "10.0.0.9") == {"ssh-ed25519": other.get_base64()}
    assert pinned(kh, "[10.0.0.5]:2222") == {"ssh-ed25519": other2222.get_base64()}   # same host, other port
    assert old.get_base64() not in kh.read_text()
    assert len(kh.read_text().splitlines()) == 3


def test_pin_replaces_a_key_of_another_type(tmp_path):
    kh = tmp_path / "known_hosts"
    old = paramiko.ECDSAKey.generate()
    new = new_ed25519()
    kh.write_text(line("[10.0.0.6]:2222", old))
    pin(str(kh), NODE_2222, new)
    assert pinned(kh, "[10.0.0.6]:2222") == {"ssh-ed25519": new.get_base64()}


def test_pin_replaces_a_hashed_entry_for_the_host(tmp_path):
    kh = tmp_path / "known_hosts"
    old, new = new_ed25519(), new_ed25519()
    kh.write_text(line(paramiko.HostKeys.hash_host("10.0.0.5"), old) + line("10.0.0.9", old))
    pin(str(kh), NODE, new)
    assert pinned(kh, "10.0.0.5") == {"ssh-ed25519": new.get_base64()}
    assert pinned(kh, "10.0.0.9") == {"ssh-ed25519": old.get_base64()}


def test_pin_leaves_only_the_new_key_when_the_host_had_several(tmp_path):
    kh = tmp_path / "known_hosts"
    old_ecdsa, old_ed, new = paramiko.ECDSAKey.generate(), new_ed25519(), new_ed25519()
    kh.write_text(line("10.0.0.5", old_ed) + line("10.0.0.5", old_ecdsa))   # as ssh-keyscan lists them
    pin(str(kh), NODE, new)
    # the ecdsa key the node no longer uses must not stay trusted
    assert pinned(kh, "10.0.0.5") == {"ssh-ed25519": new.get_base64()}


def test_pin_keeps_other_hosts_of_a_shared_line(tmp_path):
    kh = tmp_path / "known_hosts"
    shared, new = new_ed25519(), new_ed25519()
    kh.write_text(line("10.0.0.5,10.0.0.7", shared))
    pin(str(kh), NODE, new)
    assert pinned(kh, "10.0.0.5") == {"ssh-ed25519": new.get_base64()}
    assert pinned(kh, "10.0.0.7") == {"ssh-ed25519": shared.get_base64()}


def test_pin_leaves_no_temporary_file(tmp_path):
    kh = tmp_path / "known_hosts"
    pin(str(kh), NODE, new_ed25519())
    pin(str(kh), NODE_2222, new_ed25519())
    pin(str(kh), NODE, new_ed25519())
    assert sorted(os.listdir(tmp_path)) == ["known_hosts"]


def test_pin_leaves_no_temporary_file_when_writing_fails(tmp_path, monkeypatch):
    kh = tmp_path / "known_hosts"
    kh.write_text(line("10.0.0.9", new_ed25519()))
    before = kh.read_text()

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken)       # the temporary file was written, the rename fails
    with pytest.raises(OSError):
        pin(str(kh), NODE, new_ed25519())
    assert sorted(os.listdir(tmp_path)) == ["known_hosts"]
    assert kh.read_text() == before                    # the old file is untouched


def test_pinned_file_loads_with_paramiko_and_holds_exactly_the_new_key(tmp_path):
    kh = tmp_path / "known_hosts"
    old, new = new_ed25519(), new_ed25519()
    kh.write_text(line("[10.0.0.6]:2222", old))
    pin(str(kh), NODE_2222, new)
    keys = paramiko.HostKeys()
    keys.load(str(kh))
    entry = keys.lookup("[10.0.0.6]:2222")
    assert list(entry.keys()) == ["ssh-ed25519"]
    assert entry["ssh-ed25519"] == public(new)
    assert keys.check("[10.0.0.6]:2222", public(new))
    assert not keys.check("[10.0.0.6]:2222", public(old))


# -- PinnedOnly ----------------------------------------------------------------------

def test_pinned_only_refuses_with_host_and_fingerprint():
    key = new_ed25519()
    with pytest.raises(HostKeyRefused) as info:
        PinnedOnly().missing_host_key(None, "[127.0.0.1]:2222", key)
    message = str(info.value)
    assert "[127.0.0.1]:2222" in message
    assert fingerprint(key) in message
    assert info.value.key is key
    assert isinstance(info.value, paramiko.SSHException)


# -- a tiny SSH server ----------------------------------------------------------------

AUTH_METHODS = ("get_allowed_auths", "check_auth_none", "check_auth_password", "check_auth_publickey",
                "check_auth_interactive", "check_auth_interactive_response",
                "check_auth_gssapi_with_mic", "check_auth_gssapi_keyex")


class Recorder(paramiko.ServerInterface):
    """Records every authentication step; accepts only `client_key`; an exec
    answers "ran COMMAND" on stdout and exits 3."""

    def __init__(self, client_key=None):
        self.client_key = client_key
        self.auth_calls = []
        self.commands = []
        self.channels = 0
        self.global_requests = []
        self.frozen = threading.Event()       # set: a global request waits for `thaw`
        self.thaw = threading.Event()

    def check_global_request(self, kind, msg):
        self.global_requests.append(kind)
        if self.frozen.is_set():
            self.thaw.wait(10)
        return False                          # refused, as OpenSSH refuses a keepalive

    def get_allowed_auths(self, username):
        self.auth_calls.append("get_allowed_auths")
        return "publickey"

    def check_auth_none(self, username):
        self.auth_calls.append("check_auth_none")
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username, password):
        self.auth_calls.append("check_auth_password")
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        self.auth_calls.append("check_auth_publickey")
        if self.client_key is not None and key.asbytes() == self.client_key.asbytes():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_interactive(self, username, submethods):
        self.auth_calls.append("check_auth_interactive")
        return paramiko.AUTH_FAILED

    def check_auth_interactive_response(self, responses):
        self.auth_calls.append("check_auth_interactive_response")
        return paramiko.AUTH_FAILED

    def check_auth_gssapi_with_mic(self, *args, **kw):
        self.auth_calls.append("check_auth_gssapi_with_mic")
        return paramiko.AUTH_FAILED

    def check_auth_gssapi_keyex(self, *args, **kw):
        self.auth_calls.append("check_auth_gssapi_keyex")
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        self.channels += 1
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        self.commands.append(command)

        def answer():
            time.sleep(0.05)           # let the transport send its "exec accepted" first
            channel.sendall(b"ran " + command)
            channel.send_exit_status(3)
            channel.close()
        threading.Thread(target=answer, daemon=True).start()
        return True


class TinySSH:
    def __init__(self, host_key, client_key=None):
        self.host_key = host_key
        self.iface = Recorder(client_key)
        self.transports = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.node = NodeInfo("tiny", "127.0.0.1", self.port, "bicycle")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            self.transports.append(t)
            try:
                t.start_server(server=self.iface)
            except (paramiko.SSHException, EOFError, OSError):
                pass

    def settle(self, timeout=5.0):
        """Wait (up to timeout) until every connection the server took has
        ended; True if they all did."""
        deadline = time.monotonic() + timeout
        for t in list(self.transports):
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.transports)

    def client_transports(self):
        """Client-side paramiko transports of this process still connected here."""
        return [t for t in threading.enumerate()
                if isinstance(t, paramiko.Transport) and not t.server_mode and t.is_active()
                and _peer_port(t) == self.port]

    def close(self):
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()
        for t in self.client_transports():       # what a refused connection may leave behind
            t.close()
        for t in self.transports:
            t.close()


def _peer_port(transport):
    try:
        return transport.sock.getpeername()[1]
    except OSError:
        return None


def quiet(server, seconds=0.3):
    """Leave the server a moment to record anything the client still sends."""
    server.settle(seconds)


@pytest.fixture
def server_key():
    return new_ed25519()


@pytest.fixture
def tiny(server_key):
    s = TinySSH(server_key)
    yield s
    s.close()


def test_scan_returns_the_servers_key(tiny, server_key):
    key = scan(tiny.node, timeout=5)
    assert fingerprint(key) == fingerprint(server_key)
    assert key.get_name() == "ssh-ed25519"
    assert tiny.settle()                           # scan closed its connection
    assert tiny.iface.auth_calls == []             # a scan never authenticates


def test_scan_of_a_closed_port_raises_ssh_exception():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                      # bound once, never listened: refused
    with pytest.raises(paramiko.SSHException) as info:
        scan(NodeInfo("gone", "127.0.0.1", port), timeout=2)
    assert f"127.0.0.1:{port}" in str(info.value)


def test_scan_of_something_that_is_not_ssh_raises_ssh_exception():
    """A port that answers but not with SSH: an SSHException (node trust catches it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def babble():
        conn, _ = listener.accept()
        conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        conn.close()
    t = threading.Thread(target=babble, daemon=True)
    t.start()
    try:
        with pytest.raises((paramiko.SSHException, EOFError)):
            scan(NodeInfo("web", "127.0.0.1", port), timeout=2)
    finally:
        t.join(2)
        listener.close()


# -- trust (bicycle.py node trust) -------------------------------------------------------

def test_trust_without_a_fingerprint_only_looks(tiny, server_key, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    seen = trust(str(kh), tiny.node, timeout=5)
    assert (seen.kind, seen.fingerprint, seen.pinned) == ("ssh-ed25519", fingerprint(server_key), False)
    assert kh.read_text() == ""
    assert tiny.iface.auth_calls == []


def test_trust_with_the_right_fingerprint_pins_the_key(tiny, server_key, tmp_path):
    kh = tmp_path / "known_hosts"
    seen = trust(str(kh), tiny.node, fingerprint(server_key), timeout=5)
    assert seen.pinned and seen.fingerprint == fingerprint(server_key)
    assert pinned(kh, f"[127.0.0.1]:{tiny.port}") == {"ssh-ed25519": server_key.get_base64()}
    assert stat.S_IMODE(os.stat(kh).st_mode) == 0o600


def test_trust_on_first_use_pins_whatever_key_is_presented(tiny, server_key, tmp_path):
    kh = tmp_path / "known_hosts"
    assert trust(str(kh), tiny.node, accept=True, timeout=5).pinned
    assert pinned(kh, f"[127.0.0.1]:{tiny.port}") == {"ssh-ed25519": server_key.get_base64()}


def test_trust_with_another_fingerprint_pins_nothing(tiny, server_key, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    with pytest.raises(TrustError) as info:
        trust(str(kh), tiny.node, "SHA256:wrong", accept=True, timeout=5)
    assert str(info.value) == f"tiny: the key's fingerprint is {fingerprint(server_key)}, not SHA256:wrong: " \
                              f"nothing pinned"
    assert info.value.presented.fingerprint == fingerprint(server_key) and not info.value.presented.pinned
    assert kh.read_text() == ""


def test_trust_of_a_closed_port_is_a_trust_error_without_a_key(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(TrustError) as info:
        trust(str(tmp_path / "known_hosts"), NodeInfo("gone", "127.0.0.1", port), accept=True, timeout=2)
    assert str(info.value).startswith("gone: cannot read its host key: ")
    assert info.value.presented is None
    assert not (tmp_path / "known_hosts").exists()


def test_trust_that_cannot_write_is_a_trust_error(tiny, server_key, tmp_path):
    kh = tmp_path / "missing-folder" / "known_hosts"
    with pytest.raises(TrustError) as info:
        trust(str(kh), tiny.node, accept=True, timeout=5)
    assert str(info.value).startswith(f"cannot write {kh}: ")
    assert info.value.presented.fingerprint == fingerprint(server_key)


# -- NodeConnection against the tiny server -------------------------------------------

def refusal(tiny, kh):
    """Run a command through a NodeConnection that must refuse the tiny
    server's key: (the HostKeyError's message, the connection)."""
    conn = NodeConnection(tiny.node, str(kh), connect_timeout=5)
    try:
        with pytest.raises(HostKeyError) as info:
            conn.run(["true"])
    finally:
        conn.close()
    return str(info.value), conn


def test_unknown_key_is_refused_before_authentication(tiny, server_key, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    message, conn = refusal(tiny, kh)
    assert fingerprint(server_key) in message
    assert message.startswith("tiny: host key not trusted")
    assert conn.opened == 0
    quiet(tiny)
    assert len(tiny.transports) == 1               # it did reach the server...
    assert tiny.iface.auth_calls == []             # ...but never tried to authenticate
    assert tiny.iface.commands == []
    assert kh.read_text() == ""                    # and nothing was added on the fly


@pytest.mark.parametrize("other", [new_ed25519, paramiko.ECDSAKey.generate], ids=["same-type", "other-type"])
def test_a_different_pinned_key_is_refused_with_both_fingerprints(tiny, server_key, tmp_path, other):
    wrong = other()
    kh = tmp_path / "known_hosts"
    kh.write_text(line(f"[127.0.0.1]:{tiny.port}", wrong))
    message, _ = refusal(tiny, kh)
    assert fingerprint(server_key) in message
    assert f"pinned is {fingerprint(wrong)}" in message
    assert message.index(fingerprint(server_key)) < message.index("pinned is")
    quiet(tiny)
    assert tiny.iface.auth_calls == []
    assert tiny.iface.commands == []


def test_a_key_pinned_for_another_port_does_not_count(tiny, server_key, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text(line("127.0.0.1", server_key))          # port 22's entry, the server is elsewhere
    conn = NodeConnection(tiny.node, str(kh), connect_timeout=5)
    try:
        with pytest.raises(HostKeyError):
            conn.run(["true"])
    finally:
        conn.close()
    quiet(tiny)
    assert tiny.iface.auth_calls == []


def test_a_refused_connection_is_closed(tiny, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    conn = NodeConnection(tiny.node, str(kh), connect_timeout=5)
    for _ in range(2):
        with pytest.raises(HostKeyError):
            conn.run(["true"])
    conn.close()
    assert tiny.settle(3.0), "the server still holds connections awaiting auth"
    assert tiny.client_transports() == []


def test_scan_then_pin_lets_the_connection_through(server_key, tmp_path):
    """The positive control: once pinned (scan + pin), the same server is
    accepted, authentication happens and the command runs."""
    client_key = write_ed25519(tmp_path / "id_client")
    server = TinySSH(server_key, client_key=client_key)
    try:
        node = NodeInfo("tiny", "127.0.0.1", server.port, "bicycle", key=str(tmp_path / "id_client"))
        kh = tmp_path / "known_hosts"
        kh.write_text("")
        conn = NodeConnection(node, str(kh), connect_timeout=5, command_timeout=10)
        with pytest.raises(HostKeyError):
            conn.run(["true"])
        pin(str(kh), node, scan(node, timeout=5))            # `bicycle.py node trust --yes`
        try:
            result = conn.run(["echo", "a b"])                # the file is read again: accepted now
        finally:
            conn.close()
        assert result.exit == 3
        assert result.stdout == "ran echo 'a b'"
        assert conn.opened == 1
        assert "check_auth_publickey" in server.iface.auth_calls
    finally:
        server.close()


@pytest.fixture
def trusted(server_key, tmp_path):
    """A tiny server that accepts our key, and a NodeConnection to it with its key pinned."""
    client_key = write_ed25519(tmp_path / "id_client")
    server = TinySSH(server_key, client_key=client_key)
    node = NodeInfo("tiny", "127.0.0.1", server.port, "bicycle", key=str(tmp_path / "id_client"))
    kh = tmp_path / "known_hosts"
    kh.write_text(line(f"[127.0.0.1]:{server.port}", server_key))
    conn = NodeConnection(node, str(kh), connect_timeout=5, command_timeout=10)
    yield server, conn
    server.iface.thaw.set()
    conn.close()
    server.close()


def test_a_ping_is_a_keepalive_answered_by_sshd_without_a_channel(trusted):
    server, conn = trusted
    for _ in range(3):
        assert conn.ping(timeout=5) >= 0
    assert server.iface.global_requests.count("keepalive@openssh.com") == 3
    assert server.iface.channels == 0 and server.iface.commands == []
    assert conn.opened == 1


def test_a_ping_nobody_answers_fails_within_its_timeout_and_keeps_the_connection(trusted):
    server, conn = trusted
    conn.ping(timeout=5)
    server.iface.frozen.set()
    with pytest.raises(RemoteError, match="no answer within 0.3s"):
        conn.ping(timeout=0.3)
    server.iface.frozen.clear()
    server.iface.thaw.set()
    assert conn.ping(timeout=5) >= 0                     # slow is not gone: the same connection
    assert conn.opened == 1


def test_host_key_error_is_a_remote_error():
    assert issubclass(HostKeyError, RemoteError)
