"""The two daemons of a sandbox node — its dockerd and its sshd — plus the ssh keys
they use and a tiny HTTP client for the engine's unix socket.

A daemon is this node's when its pidfile names a live process whose command line holds
the node's own path (the /run folder for the engine, the sshd_config for sshd).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

from . import host
from .common import Node, SandboxError, run, tail

DOCKERD_TIMEOUT = 60.0
SSHD_TIMEOUT = 20.0

# --- engine HTTP over the unix socket ------------------------------------------------------


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def engine_call(node: Node, method: str, path: str, timeout: float = 5.0):
    """(status, decoded JSON or None) of one API call; raises OSError if nobody answers."""
    conn = _UnixHTTP(node.socket_path, timeout)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(body) if body else None
    except ValueError:
        return resp.status, body.decode(errors="replace")


def engine_ok(node: Node, timeout: float = 1.0) -> bool:
    try:
        return engine_call(node, "GET", "/_ping", timeout)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def containers(node: Node) -> list[dict] | None:
    """All containers of the node's engine, or None if the engine does not answer."""
    try:
        status, body = engine_call(node, "GET", "/containers/json?all=1")
    except (OSError, http.client.HTTPException):
        return None
    return body if status == 200 and isinstance(body, list) else None


def image_labels(node: Node, image: str) -> dict | None:
    """Labels of `image` on the node's engine; None if the image is absent."""
    status, body = engine_call(node, "GET", "/images/" + urllib.parse.quote(image) + "/json")
    if status != 200 or not isinstance(body, dict):
        return None
    return (body.get("Config") or {}).get("Labels") or {}


# --- keys ------------------------------------------------------------------------------------


def ensure_keypair(path: str, comment: str) -> str:
    """An ed25519 key pair at `path` (+ .pub); returns the public key line."""
    if not (os.path.exists(path) and os.path.exists(path + ".pub")):
        for p in (path, path + ".pub"):
            if os.path.exists(p):
                os.remove(p)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
    os.chmod(path, 0o600)
    with open(path + ".pub") as f:
        return f.read().strip()


def write_file(path: str, text: str, mode: int = 0o644) -> bool:
    """Write `text` if it differs from what is there; True if the file changed."""
    try:
        with open(path) as f:
            if f.read() == text:
                os.chmod(path, mode)
                return False
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


# --- dockerd ---------------------------------------------------------------------------------


def dockerd_pid(node: Node) -> int | None:
    return host.live_pid(node.docker_pidfile, node.run_marker)


def _dockerd_running(node: Node) -> list[int]:
    return host.find_pids(lambda line: "dockerd" in line.split(" ", 1)[0]
                          and node.docker_host in line)


def dockerd_args(node: Node) -> list[str]:
    return [shutil.which("dockerd") or "/usr/sbin/dockerd",
            "--data-root", node.data_root, "--exec-root", node.exec_root,
            "--pidfile", node.docker_pidfile, "-H", node.docker_host,
            "-b", node.bridge, "--iptables=false", "--ip-masq=false", "--ip", node.address]


def start_dockerd(node: Node, log) -> None:
    """Launch the node's dockerd unless it runs already; does not wait (see wait_dockerd)."""
    if dockerd_pid(node) or _dockerd_running(node):
        return
    # A killed dockerd leaves its pidfile and its containerd (and maybe shims): clear them.
    leftovers = host.find_pids(lambda line: node.run_marker in line)
    if leftovers:
        log(f"{node.name}: stopping {len(leftovers)} leftover engine process(es)")
        host.terminate(leftovers)
    for stale in (node.docker_pidfile, os.path.join(node.exec_root, "containerd", "containerd.pid")):
        if os.path.exists(stale):
            os.remove(stale)
    os.makedirs(node.data_root, mode=0o710, exist_ok=True)
    log(f"{node.name}: starting dockerd on {node.docker_host}")
    with open(node.dockerd_log, "ab") as out:
        # setsid -f: a new session, and the parent exits at once, so dockerd is
        # re-parented away from us and outlives the calling process.
        subprocess.run(["setsid", "-f", *dockerd_args(node)], stdin=subprocess.DEVNULL,
                       stdout=out, stderr=out, check=True, start_new_session=True)


def wait_dockerd(node: Node, timeout: float = DOCKERD_TIMEOUT) -> None:
    start = time.monotonic()
    while not engine_ok(node):
        waited = time.monotonic() - start
        gone = waited > 2.0 and not _dockerd_running(node)
        if gone or waited > timeout:
            why = "exited" if gone else f"did not answer within {timeout:g}s"
            raise SandboxError(f"{node.name}: dockerd {why}; log {node.dockerd_log}: "
                               f"{tail(node.dockerd_log)}")
        time.sleep(0.1)


def stop_dockerd(node: Node, log) -> None:
    """Remove every container, stop the engine, then whatever of it is left
    (containerd, shims, docker-proxy of this node's bridge)."""
    listed = containers(node) or []
    if listed:
        log(f"{node.name}: removing {len(listed)} container(s)")
    for c in listed:
        try:
            engine_call(node, "DELETE", f"/containers/{c['Id']}?force=1&v=1", timeout=60)
        except (OSError, http.client.HTTPException):
            pass
    pid = dockerd_pid(node)
    if pid:
        log(f"{node.name}: stopping dockerd (pid {pid})")
        host.terminate([pid], grace=20)
    host.terminate(host.find_pids(lambda line: node.run_marker in line))
    proxy = f"-container-ip {node.container_prefix}"
    host.terminate(host.find_pids(lambda line: "docker-proxy" in line and proxy in line))


# --- sshd ------------------------------------------------------------------------------------


SSHD = "/usr/sbin/sshd"


def sshd_config_text(node: Node, authorized_keys: str) -> str:
    env = f"DOCKER_HOST={node.docker_host}"
    if os.path.exists(node.path_file):          # a node made to lack a command (tests, trying bootstrap)
        with open(node.path_file) as f:
            env += f" PATH={f.read().strip()}"
    return "\n".join([
        f"# sshd of sandbox {node.name} (written by the Bicycle sandbox)",
        f"ListenAddress {node.address}:22",
        f"HostKey {node.host_key}",
        f"PidFile {node.sshd_pidfile}",
        f"SetEnv {env}",
        f"AuthorizedKeysFile {authorized_keys}",
        f"AllowUsers {node.user}",
        "PermitRootLogin no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "StrictModes yes",
        "MaxSessions 64",
        "MaxStartups 100:30:200",
        "ClientAliveInterval 5",            # a dead master's session is dropped
        "ClientAliveCountMax 3",            # within ~15 s
        "PrintMotd no",
        "PrintLastLog no",
        "X11Forwarding no",
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
        "",
    ])


def sshd_pid(node: Node) -> int | None:
    return host.live_pid(node.sshd_pidfile, node.sshd_config)


def start_sshd(node: Node, authorized_keys: str, log) -> None:
    """Write the node's sshd_config and run sshd (a running one re-reads a changed config)."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    changed = write_file(node.sshd_config, sshd_config_text(node, authorized_keys))
    pid = sshd_pid(node)
    if pid:
        if changed:
            log(f"{node.name}: sshd config changed, reloading")
            os.kill(pid, signal.SIGHUP)
        return
    strays = host.find_pids(lambda line: node.sshd_config in line)
    host.terminate(strays)
    if os.path.exists(node.sshd_pidfile):
        os.remove(node.sshd_pidfile)
    run([SSHD, "-t", "-f", node.sshd_config])
    log(f"{node.name}: starting sshd on {node.address}:22")
    open(node.sshd_log, "w").close()    # its tail explains a failure of this start
    run([SSHD, "-f", node.sshd_config, "-E", node.sshd_log])   # daemonizes itself


def wait_sshd(node: Node, timeout: float = SSHD_TIMEOUT) -> None:
    start = time.monotonic()
    while True:
        try:
            with socket.create_connection((node.address, 22), timeout=0.5) as s:
                s.settimeout(1.0)
                if s.recv(4).startswith(b"SSH-") and sshd_pid(node):
                    return
        except OSError:
            pass
        waited = time.monotonic() - start
        gone = waited > 1.0 and not host.find_pids(lambda line: node.sshd_config in line)
        if gone or waited > timeout:
            why = "exited" if gone else f"does not accept connections within {timeout:g}s"
            raise SandboxError(f"{node.name}: sshd on {node.address}:22 {why}; "
                               f"log {node.sshd_log}: {tail(node.sshd_log)}")
        time.sleep(0.1)


def stop_sshd(node: Node) -> None:
    pids = [p for p in [sshd_pid(node)] if p]
    pids += host.find_pids(lambda line: node.sshd_config in line)
    host.terminate(sorted(set(pids)))
    if os.path.exists(node.sshd_pidfile):
        os.remove(node.sshd_pidfile)
