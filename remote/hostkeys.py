"""Pinned host keys: fingerprints, the policy that refuses unknown keys, and
the explicit trust step (`bicycle.py node trust`).

Bicycle never adds a host key on its own. A node whose key is not in the
known_hosts file is refused before anything is sent to it (the key check
comes before authentication), and the master marks it `untrusted`.
"""
import base64
import hashlib
import os
import socket
import tempfile

import paramiko


class HostKeyRefused(paramiko.SSHException):
    """Raised inside paramiko's connect when a node's key is not pinned."""

    def __init__(self, host, key):
        super().__init__(f"{host} presents {key.get_name()} key {fingerprint(key)}, which is not pinned")
        self.key = key


class PinnedOnly(paramiko.MissingHostKeyPolicy):
    """Like paramiko's RejectPolicy, with the refused key's fingerprint in the error."""

    def missing_host_key(self, client, hostname, key):
        raise HostKeyRefused(hostname, key)


def fingerprint(key):
    """OpenSSH's form: SHA256:<unpadded base64 of the key blob's SHA-256>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(node):
    return node.host if node.port == 22 else f"[{node.host}]:{node.port}"


def scan(node, timeout=5.0, source=None):
    """The host key a node presents now (no authentication, nothing sent)."""
    try:
        sock = socket.create_connection((node.host, node.port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
    except OSError as e:
        raise paramiko.SSHException(f"cannot connect to {node.address}: {e}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def pin(known_hosts, node, key):
    """Make `key` the only pinned key of `node` in the known_hosts file
    (written to a temporary file, then renamed; mode 0600)."""
    keys = paramiko.HostKeys()
    if os.path.exists(known_hosts):
        keys.load(known_hosts)
    name = known_hosts_name(node)
    if name in keys:
        del keys[name]
    keys.add(name, key.get_name(), key)
    folder = os.path.dirname(os.path.abspath(known_hosts))
    fd, tmp = tempfile.mkstemp(prefix=".known_hosts-", dir=folder)
    os.close(fd)
    try:
        keys.save(tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, known_hosts)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
