"""The nouns of Bicycle as frozen dataclasses. Imports nothing of ours.

Words follow ../shared/design.md: node, service, spec, slot, container,
desired, observed, plan. Everything here is plain data: no I/O, no clock.
"""
from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from dataclasses import dataclass, field, asdict
from typing import Optional

LABEL_SERVICE = "bicycle.service"
LABEL_SLOT = "bicycle.slot"
LABEL_SPEC = "bicycle.spec"
LABEL_EPOCH = "bicycle.epoch"
RESTART_POLICIES = ("always", "on-failure", "never")
SECRET_MASK = "********"          # what the API shows instead of a secret's value

# Node health words.
READY, SUSPECT, DOWN, UNKNOWN = "ready", "suspect", "down", "unknown"
UNTRUSTED = "untrusted"          # presents a host key that is not pinned: treated as down
UNREACHABLE = (DOWN, UNTRUSTED)  # what the master cannot see (nor act on)
# Stored service states (the API writes NEW and DELETE, the loop RUNNING).
NEW, RUNNING, DELETE = "NEW", "RUNNING", "DELETE"


@dataclass(frozen=True)
class Port:
    published: int
    target: int
    protocol: str = "tcp"

    def flag(self) -> str:
        return f"{self.published}:{self.target}/{self.protocol}"


@dataclass(frozen=True)
class ServiceSpec:
    """What every container of a service runs; replicas live beside it."""
    image: str
    command: tuple = ()
    env: tuple = ()          # sorted (key, value) pairs
    ports: tuple = ()        # Port values
    labels: tuple = ()       # sorted (key, value) pairs
    restart: str = "always"
    secrets: tuple = ()      # sorted (name, sealed value) pairs: never the plain value

    def to_dict(self) -> dict:
        d = {
            "image": self.image,
            "command": list(self.command),
            "env": dict(self.env),
            "ports": [asdict(p) for p in self.ports],
            "labels": dict(self.labels),
            "restart": self.restart,
        }
        if self.secrets:          # absent when empty: older specs keep their digest
            d["secrets"] = dict(self.secrets)
        return d

    def public_dict(self) -> dict:
        """to_dict with every secret's value masked: what the API shows."""
        d = self.to_dict()
        if self.secrets:
            d["secrets"] = {name: SECRET_MASK for name, _ in self.secrets}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ServiceSpec":
        return cls(
            image=d["image"],
            command=tuple(d.get("command") or ()),
            env=tuple(sorted((d.get("env") or {}).items())),
            ports=tuple(Port(**p) for p in d.get("ports") or ()),
            labels=tuple(sorted((d.get("labels") or {}).items())),
            restart=d.get("restart", "always"),
            secrets=tuple(sorted((d.get("secrets") or {}).items())),
        )

    def digest(self) -> str:
        """Short stable hash: containers whose label differs run an older spec."""
        raw = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:12]


@dataclass(frozen=True)
class Service:
    """A desired record from the store."""
    name: str
    spec: ServiceSpec
    replicas: int
    version: int = 1
    state: str = NEW


@dataclass(frozen=True)
class NodeInfo:
    """A node from the inventory."""
    name: str
    host: str
    port: int = 22
    user: str = "root"
    key: Optional[str] = None
    labels: tuple = ()

    @property
    def address(self) -> str:
        return self.host if self.port == 22 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Container:
    """One observed container with Bicycle's labels."""
    id: str
    name: str
    node: str
    service: str
    slot: int
    spec: str                 # the spec digest label
    image: str
    status: str               # docker's State.Status: running, exited, created, restarting, ...
    created_at: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")


@dataclass(frozen=True)
class Action:
    """One step of a plan.

    kind is one of:
      place   -- run a new container for (service, slot) on node
      stop    -- remove container
      replace -- run a new container for (service, slot) on node, then remove container
      keep    -- nothing to do; reason says why (waiting, backing off, ...)
    """
    kind: str
    service: str
    slot: int = 0
    node: str = ""
    container: Optional[Container] = None
    reason: str = ""


@dataclass(frozen=True)
class Plan:
    actions: tuple = field(default_factory=tuple)

    def of(self, kind: str) -> list:
        return [a for a in self.actions if a.kind == kind]

    @property
    def changes(self) -> list:
        return [a for a in self.actions if a.kind != "keep"]

    def __bool__(self) -> bool:
        return bool(self.changes)


def parse_time(ts):
    """Docker's RFC 3339 times carry nanoseconds; Python takes microseconds."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", ts or "")
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    zone = m.group(3) or "Z"
    return datetime.fromisoformat(m.group(1) + frac + ("+00:00" if zone == "Z" else zone)).timestamp()
