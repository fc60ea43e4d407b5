"""Shared vocabulary of the sandbox: its error type, the layout of one sandbox
(which names, addresses and paths node i gets), `sandbox.json`, and running commands.

Everything here is pure or touches only files; host changes live in `sandbox.host`,
daemons in `sandbox.daemons`.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass

RUN_ROOT = "/run/bicycle-sb"   # short unix socket paths: one folder per node number
STATE_FILE = "sandbox.json"
# 1 and 2 answer on port 80; bad runs but fails its own HEALTHCHECK; crash exits at once.
DEMO_IMAGES = ("bicycle/demo:1", "bicycle/demo:2", "bicycle/demo:bad", "bicycle/demo:crash")


class SandboxError(Exception):
    """A sandbox operation failed; the message is one line meant for a human."""


@dataclass(frozen=True)
class Node:
    """Names, addresses and paths of node `index` (1-based) of a sandbox in `directory`."""

    directory: str
    index: int
    number: int          # A = base + index: the last octet of every address of the node

    @property
    def name(self) -> str:
        return f"node{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.{self.number}"

    @property
    def user(self) -> str:
        return f"bicycle{self.number}"

    @property
    def bridge(self) -> str:
        return f"bicy{self.number}"

    @property
    def bridge_cidr(self) -> str:
        return f"172.30.{self.number}.1/24"

    @property
    def container_prefix(self) -> str:
        """Prefix of every container address on this node's bridge."""
        return f"172.30.{self.number}."

    # --- files under the sandbox directory
    @property
    def dir(self) -> str:
        return os.path.join(self.directory, self.name)

    @property
    def home(self) -> str:
        return os.path.join(self.dir, "home")

    @property
    def path_file(self) -> str:
        """When present: the PATH of the node user's sessions (set_path)."""
        return os.path.join(self.dir, "path")

    @property
    def data_root(self) -> str:
        return os.path.join(self.dir, "docker")

    @property
    def dockerd_log(self) -> str:
        return os.path.join(self.dir, "dockerd.log")

    @property
    def sshd_config(self) -> str:
        return os.path.join(self.dir, "sshd_config")

    @property
    def host_key(self) -> str:
        return os.path.join(self.dir, "ssh_host_ed25519_key")

    @property
    def sshd_pidfile(self) -> str:
        return os.path.join(self.dir, "sshd.pid")

    @property
    def sshd_log(self) -> str:
        return os.path.join(self.dir, "sshd.log")

    # --- files under /run (short paths for the unix sockets)
    @property
    def run_dir(self) -> str:
        return os.path.join(RUN_ROOT, str(self.number))

    @property
    def run_marker(self) -> str:
        """Substring of the command line of every engine process of this node."""
        return self.run_dir + "/"

    @property
    def exec_root(self) -> str:
        return os.path.join(self.run_dir, "exec")

    @property
    def docker_pidfile(self) -> str:
        return os.path.join(self.run_dir, "docker.pid")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.run_dir, "docker.sock")

    @property
    def docker_host(self) -> str:
        return "unix://" + self.socket_path

    @property
    def owner_file(self) -> str:
        """Names the sandbox directory that holds this node number (guards collisions)."""
        return os.path.join(self.run_dir, "owner")

    def describe(self) -> dict:
        return {"name": self.name, "index": self.index, "address": self.address,
                "port": 22, "user": self.user, "bridge": self.bridge,
                "subnet": f"172.30.{self.number}.0/24", "socket": self.docker_host,
                "home": self.home}


@dataclass(frozen=True)
class Sandbox:
    """What one sandbox is made of; persisted as DIR/sandbox.json."""

    directory: str       # absolute
    nodes: int
    base: int
    api: str

    def __post_init__(self):
        if not os.path.isabs(self.directory):
            raise ValueError("Sandbox.directory must be absolute")
        if self.nodes < 1:
            raise SandboxError(f"nodes must be at least 1 (got {self.nodes})")
        if self.base < 1 or self.base + self.nodes > 254:
            raise SandboxError(f"base + nodes must stay within 2..254 "
                               f"(got base={self.base}, nodes={self.nodes})")

    def node(self, index: int) -> Node:
        return Node(self.directory, index, self.base + index)

    def all_nodes(self) -> list[Node]:
        return [self.node(i) for i in range(1, self.nodes + 1)]

    @property
    def state_path(self) -> str:
        return os.path.join(self.directory, STATE_FILE)

    @property
    def client_key(self) -> str:
        return os.path.join(self.directory, "id_ed25519")

    @property
    def authorized_keys(self) -> str:
        return os.path.join(self.directory, "authorized_keys")

    @property
    def known_hosts(self) -> str:
        return os.path.join(self.directory, "known_hosts")

    @property
    def inventory(self) -> str:
        return os.path.join(self.directory, "inventory.yml")

    @property
    def build_dir(self) -> str:
        return os.path.join(self.directory, "build")

    def to_json(self) -> dict:
        return {"directory": self.directory, "nodes": self.nodes, "base": self.base,
                "api": self.api, "inventory": self.inventory,
                "key": self.client_key, "known_hosts": self.known_hosts,
                "node_list": [n.describe() for n in self.all_nodes()]}

    def save(self) -> None:
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")
        os.replace(tmp, self.state_path)


def resolve(directory: str) -> str:
    return os.path.abspath(os.path.expanduser(directory))


def load(directory: str) -> Sandbox | None:
    """The sandbox recorded in `directory`, or None if there is none."""
    path = os.path.join(resolve(directory), STATE_FILE)
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise SandboxError(f"cannot read {path}: {e}") from None
    return Sandbox(resolve(directory), int(data["nodes"]), int(data["base"]), str(data["api"]))


def one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    out = " | ".join(lines[-3:])
    return out if len(out) <= limit else "..." + out[-limit:]


def run(args: list[str], *, check: bool = True, timeout: float = 120,
        env: dict | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a command, capture its output; on failure raise SandboxError with stderr's tail."""
    try:
        p = subprocess.run(args, capture_output=True, timeout=timeout, env=env, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError:
        raise SandboxError(f"command not found: {args[0]}") from None
    except subprocess.TimeoutExpired:
        raise SandboxError(f"timed out after {timeout:g}s: {' '.join(args)}") from None
    if check and p.returncode != 0:
        err = one_line(p.stderr.decode(errors="replace") or p.stdout.decode(errors="replace"))
        raise SandboxError(f"`{' '.join(args)}` failed ({p.returncode}): {err}")
    return p


def tail(path: str, lines: int = 3) -> str:
    """The last lines of a log file on one line (empty if unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4000))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return one_line("\n".join(text.splitlines()[-lines:]), limit=500)


def wait_for(predicate, timeout, interval=0.2):
    """predicate()'s first true value; AssertionError when none came within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
