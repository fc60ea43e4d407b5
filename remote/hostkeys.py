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

import paramiko

from store.atomic import replace_private


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
    """Make `key` the only pinned key of `node` in the known_hosts file: every
    other entry for the node goes (of any key type, hashed or not; other hosts
    of a shared line keep theirs). Replaced atomically, mode 0600."""
    name = known_hosts_name(node)
    lines = []
    if os.path.exists(known_hosts):
        with open(known_hosts, encoding="utf-8") as f:
            for line in f:
                entry = _entry(line)
                if entry is None or not any(_names(h, name) for h in entry.hostnames):
                    lines.append(line if line.endswith("\n") else line + "\n")
                    continue
                entry.hostnames = [h for h in entry.hostnames if not _names(h, name)]
                if entry.hostnames:
                    lines.append(entry.to_line())
    lines.append(f"{name} {key.get_name()} {key.get_base64()}\n")
    replace_private(known_hosts, "".join(lines))


def _entry(line):
    """A known_hosts line as a HostKeyEntry, or None (a comment, a blank or
    unreadable line: kept as it is)."""
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    try:
        return paramiko.hostkeys.HostKeyEntry.from_line(line)
    except Exception:
        return None


def _names(pattern, name):
    """Does a known_hosts host field (plain or hashed |1|salt|hash) name `name`?"""
    if pattern.startswith("|1|"):
        return paramiko.HostKeys.hash_host(name, pattern) == pattern
    return pattern == name
