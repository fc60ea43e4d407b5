"""Pinned host keys: fingerprints, the policy that refuses unknown keys, and
the explicit trust step (`trust`, behind `bicycle.py node trust`).

Bicycle never adds a host key on its own. A node whose key is not in the
known_hosts file is refused before anything is sent to it (the key check
comes before authentication), and the master marks it `untrusted`.
"""
import base64
import hashlib
import os
import socket
from dataclasses import dataclass, replace

import paramiko

from files import replace_private


class HostKeyRefused(paramiko.SSHException):
    """Raised inside paramiko's connect when a node's key is not pinned."""

    def __init__(self, host, key):
        super().__init__(f"{host} presents {key.get_name()} key {fingerprint(key)}, which is not pinned")
        self.key = key


class TrustError(Exception):
    """`trust` pinned nothing: the node's key could not be read, was not the
    one expected, or could not be written. `presented` is the key the node
    showed (a Presented), when it showed one."""

    def __init__(self, message, presented=None):
        super().__init__(message)
        self.presented = presented


@dataclass(frozen=True)
class Presented:
    """The host key a node presents, as `trust` saw it."""
    kind: str                 # ssh-ed25519, ecdsa-sha2-nistp256, ...
    fingerprint: str          # SHA256:...
    pinned: bool              # whether `trust` pinned it
    text: str = ""            # "ssh-ed25519 AAAA...": the key itself, for pin_text elsewhere


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


def trust(known_hosts, node, expected=None, accept=False, timeout=5.0):
    """Read the host key `node` presents now and pin it in `known_hosts` once
    the caller vouched for it: its fingerprint is `expected`, or `accept`
    (trust on first use). Without either it only looks: the answer's `pinned`
    is False. Returns a Presented; TrustError when nothing could be pinned."""
    try:
        key = scan(node, timeout=timeout)
    except (paramiko.SSHException, EOFError, OSError) as e:
        raise TrustError(f"{node.name}: cannot read its host key: {e}") from None
    seen = Presented(key.get_name(), fingerprint(key), pinned=False, text=f"{key.get_name()} {key.get_base64()}")
    if expected is not None and expected != seen.fingerprint:
        raise TrustError(f"{node.name}: the key's fingerprint is {seen.fingerprint}, not {expected}: "
                         f"nothing pinned", seen)
    if expected is None and not accept:
        return seen
    try:
        pin(known_hosts, node, key)
    except OSError as e:
        raise TrustError(f"cannot write {known_hosts}: {e}", seen) from None
    return replace(seen, pinned=True)


def pin_text(known_hosts, node, text):
    """pin() of a key given as "TYPE BASE64" (a Presented's text, as another
    master pinned it); TrustError when the text is no key."""
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(f"{known_hosts_name(node)} {text}")
    except (paramiko.SSHException, ValueError) as e:
        raise TrustError(f"{node.name}: not a host key: {e}") from None
    if entry is None or entry.key is None:
        raise TrustError(f"{node.name}: not a host key: {text[:60]!r}")
    pin(known_hosts, node, entry.key)


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
