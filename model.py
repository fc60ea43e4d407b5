"""The nouns of Bicycle as frozen dataclasses. Imports nothing of ours.

Words follow docs/design.md (Words): node, service, spec, slot, container,
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
PULL_POLICIES = ("missing", "always", "never")     # docker run --pull; the first is the default
# A service or node name: a DNS label (lower case, digits, inner dashes).
NAME_PATTERN = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
SECRET_MASK = "********"          # what the API shows instead of a secret's value

# Node health words.
READY, SUSPECT, DOWN, UNKNOWN = "ready", "suspect", "down", "unknown"
UNTRUSTED = "untrusted"          # presents a host key that is not pinned: treated as down
NODE_STATUSES = (READY, SUSPECT, DOWN, UNKNOWN, UNTRUSTED)
UNREACHABLE = (DOWN, UNTRUSTED)  # what the master cannot see (nor act on)
# Stored service states (the API writes NEW and DELETE, the loop RUNNING).
NEW, RUNNING, DELETE = "NEW", "RUNNING", "DELETE"
# Service modes: `replicas` slots spread over the nodes, or one on every eligible node.
REPLICATED, GLOBAL = "replicated", "global"
MODES = (REPLICATED, GLOBAL)
# Rolling updates: how a batch replaces, what a failure does, the states of a rollout.
UPDATE_ORDERS = ("start-first", "stop-first")
FAILURE_ACTIONS = ("rollback", "pause", "continue")
UPDATING, PAUSED, ROLLING_BACK, COMPLETED, ROLLED_BACK = \
    "updating", "paused", "rolling back", "completed", "rolled back"
ROLLING = (UPDATING, ROLLING_BACK)         # rollouts that still replace slots
UNSEEN = "unseen"          # the health of a container the master started, until a listing shows it


@dataclass(frozen=True)
class Port:
    published: int
    target: int
    protocol: str = "tcp"

    def flag(self) -> str:
        return f"{self.published}:{self.target}/{self.protocol}"


@dataclass(frozen=True)
class Mount:
    """A volume of a service's containers (docker run --volume): a named
    volume of the node's own engine, created where a replica runs (as
    Swarm's local driver does); a bind of a path on the node (source starts
    with "/"); or an anonymous volume (no source)."""
    target: str
    source: str = ""
    read_only: bool = False

    def flag(self) -> str:
        return ":".join(p for p in (self.source, self.target, "ro" if self.read_only else "") if p)


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
    pull: str = "missing"    # when the engine pulls the image: missing, always, never
    healthcheck: Optional[Healthcheck] = None   # None: the image's own, if it has one
    cpus: float = 0.0        # limit in CPUs (docker run --cpus); 0: none
    memory: int = 0          # limit in bytes (docker run --memory); 0: none
    entrypoint: Optional[tuple] = None   # None: the image's own; (): none at all
    volumes: tuple = ()      # Mount values
    reserve_cpus: float = 0.0    # what placement sets aside on a node (reservations); 0: none
    reserve_memory: int = 0

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
        if self.pull != "missing":    # absent when the default, for the same reason
            d["pull"] = self.pull
        if self.healthcheck is not None:
            d["healthcheck"] = self.healthcheck.to_dict()
        if self.cpus or self.memory:        # absent without limits: older specs keep their digest
            d["resources"] = {"limits": {k: v for k, v in (("cpus", self.cpus), ("memory", self.memory)) if v}}
        if self.reserve_cpus or self.reserve_memory:
            d.setdefault("resources", {})["reservations"] = {
                k: v for k, v in (("cpus", self.reserve_cpus), ("memory", self.reserve_memory)) if v}
        if self.entrypoint is not None:     # absent when the image's own (older specs keep their digest)
            d["entrypoint"] = list(self.entrypoint)
        if self.volumes:
            d["volumes"] = [asdict(m) for m in self.volumes]
        return d

    @property
    def reservation(self) -> tuple:
        """(cpus, memory bytes) that placement sets aside for each container."""
        return self.reserve_cpus, self.reserve_memory

    def public_dict(self) -> dict:
        """to_dict with every secret's value masked: what the API shows."""
        d = dict(self.to_dict(), pull=self.pull)
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
            pull=d.get("pull", "missing"),
            healthcheck=Healthcheck.from_dict(d["healthcheck"]) if d.get("healthcheck") else None,
            entrypoint=tuple(d["entrypoint"]) if d.get("entrypoint") is not None else None,
            volumes=tuple(Mount(**m) for m in d.get("volumes") or ()),
            **_amounts(d, "limits", "cpus", "memory"),
            **_amounts(d, "reservations", "reserve_cpus", "reserve_memory"),
        )

    def digest(self) -> str:
        """Short stable hash: containers whose label differs run an older spec."""
        raw = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:12]


def _amounts(spec: dict, kind: str, cpus: str, memory: str) -> dict:
    """A spec dict's resources.limits or .reservations as the fields `cpus` and `memory`."""
    amounts = (spec.get("resources") or {}).get(kind) or {}
    return {cpus: float(amounts.get("cpus", 0.0)), memory: int(amounts.get("memory", 0))}


@dataclass(frozen=True)
class Healthcheck:
    """The engine's health check of a service's containers (docker run
    --health-*): test is ("CMD", argv...), ("CMD-SHELL", line) or ("NONE",)
    (the image's own check off); durations in seconds."""
    test: tuple
    interval: float = 30.0
    timeout: float = 30.0
    retries: int = 3
    start_period: float = 0.0

    def to_dict(self) -> dict:
        return {"test": list(self.test), "interval": self.interval, "timeout": self.timeout,
                "retries": self.retries, "start_period": self.start_period}

    @classmethod
    def from_dict(cls, d: dict) -> "Healthcheck":
        return cls(test=tuple(d["test"]), interval=float(d.get("interval", 30.0)),
                   timeout=float(d.get("timeout", 30.0)), retries=int(d.get("retries", 3)),
                   start_period=float(d.get("start_period", 0.0)))


@dataclass(frozen=True)
class UpdateConfig:
    """How a change of spec rolls over a service's slots (and, as the
    service's `rollback` settings, how a rollback does): `parallelism` slots
    at a time (0: all), `delay` s between batches, each new container
    watched for `monitor` s; a failure beyond `max_failure_ratio` of the
    replicas triggers `failure_action`."""
    parallelism: int = 1
    delay: float = 0.0
    order: str = "start-first"
    monitor: float = 5.0
    failure_action: str = "rollback"
    max_failure_ratio: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Optional[dict], default: "UpdateConfig" = None) -> "UpdateConfig":
        base = default or cls()
        return cls(**dict(asdict(base), **(d or {})))


ROLLBACK_DEFAULTS = UpdateConfig(failure_action="pause")


@dataclass(frozen=True)
class Rollout:
    """The state of a service's latest change of spec: `state` (updating,
    paused, rolling back, completed, rolled back), why it is so, and the
    slots whose new container failed while it ran."""
    state: str
    reason: str = ""
    failed: tuple = ()
    started_at: str = ""
    version: int = 0          # the service version whose change of spec started it

    def to_dict(self) -> dict:
        return {"state": self.state, "reason": self.reason, "failed": list(self.failed),
                "started_at": self.started_at, "version": self.version}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> Optional["Rollout"]:
        if not d:
            return None
        return cls(state=d["state"], reason=d.get("reason", ""), failed=tuple(d.get("failed", ())),
                   started_at=d.get("started_at", ""), version=d.get("version", 0))


@dataclass(frozen=True)
class Service:
    """A desired record from the store."""
    name: str
    spec: ServiceSpec
    replicas: int
    version: int = 1
    state: str = NEW
    update: UpdateConfig = UpdateConfig()
    rollback: UpdateConfig = ROLLBACK_DEFAULTS
    previous: Optional[ServiceSpec] = None      # the spec before the latest change of spec
    constraints: tuple = ()                     # placement: "node.labels.K==V", "node.name!=N", ...
    rollout: Optional[Rollout] = None           # that change's progress
    mode: str = REPLICATED                      # global: one replica on every eligible node, `replicas` unused

    @property
    def is_global(self) -> bool:
        return self.mode == GLOBAL

    def has_slot(self, slot) -> bool:
        """Is `slot` one the service wants? 1..replicas; any for a global
        service (its slots are numbered as its nodes come)."""
        return slot >= 1 if self.is_global else 1 <= slot <= self.replicas

    @property
    def rolling(self) -> bool:
        return self.rollout is not None and self.rollout.state in ROLLING

    @property
    def rollout_config(self) -> UpdateConfig:
        """The settings the current rollout runs under."""
        return self.rollback if self.rollout is not None and self.rollout.state == ROLLING_BACK else self.update


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
    health: str = ""          # docker's State.Health.Status (starting, healthy, unhealthy); "" without a check
    health_log: str = ""      # the last health check's output, when unhealthy

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting")

    @property
    def unhealthy(self) -> bool:
        return self.running and self.health == "unhealthy"


@dataclass(frozen=True)
class Action:
    """One step of a plan.

    kind is one of:
      place   -- run a new container for (service, slot) on node
      stop    -- remove container
      replace -- run a new container for (service, slot) on node, then remove container
      keep    -- nothing to do; reason says why (waiting, backing off, ...)

    stop_first: a replace that removes container before it runs the new one
    (the planner sets it where a service with host ports is replaced on the
    same node, whose port the old container holds).
    """
    kind: str
    service: str
    slot: int = 0
    node: str = ""
    container: Optional[Container] = None
    reason: str = ""
    stop_first: bool = False


@dataclass(frozen=True)
class Plan:
    actions: tuple = field(default_factory=tuple)
    verdicts: tuple = ()      # (service name, its version, scheduler.rollout.Verdict): rollouts that move on

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


# -- the lease on the nodes (docs/design.md, Lease, fencing and failover) ------------

@dataclass(frozen=True, order=True)
class Stamp:
    """Where a copy of the desired state stands: the epoch that wrote it, then
    its version within the store. Ordered: the epoch first."""
    epoch: int = 0
    version: int = 0


NO_STAMP = Stamp(0, 0)


@dataclass(frozen=True)
class Lease:
    """A node's `lease` file: EPOCH HOLDER COUNTER."""
    epoch: int
    holder: str
    counter: int


@dataclass(frozen=True)
class LeaseRead:
    """A node's answer to READ. node_epoch is None when its epoch file is unreadable."""
    node_epoch: Optional[int]
    lease: Optional[Lease]
    stamp: Stamp = NO_STAMP


@dataclass(frozen=True)
class Replica:
    """A node's copy of the desired state: its stamp and the JSON text (may be torn)."""
    stamp: Stamp
    text: str

    @property
    def present(self) -> bool:
        return self.stamp != NO_STAMP and bool(self.text.strip())


@dataclass(frozen=True)
class ClaimAnswer:
    """A node's answer to CLAIM(E), with its replica read in the same locked step.
    node_epoch is None when the node refused because its epoch file is unreadable."""
    granted: bool
    node_epoch: Optional[int]
    replica: Replica = Replica(NO_STAMP, "")


@dataclass(frozen=True)
class RenewAnswer:
    """renewed: the counter was bumped (value = new counter); otherwise value is
    the node's epoch (None when unreadable)."""
    renewed: bool
    value: Optional[int]


# -- settings of inventory.yml ---------------------------------------------------

@dataclass(frozen=True)
class Tls:
    """settings.api.tls: the master's certificate and key; ca is what clients
    verify the master with (the certificate unless given)."""
    certificate: str
    key: str
    ca: str


@dataclass(frozen=True)
class ApiSettings:
    tokens: str = "tokens.json"
    tls: Optional[Tls] = None


# The default install of the engine on a node that has none: the distribution's
# package manager, through sudo (no password prompt) unless the user is root.
BOOTSTRAP = ('set -e; if [ "$(id -u)" -eq 0 ]; then S=; else S="sudo -n"; fi; '
             'if command -v apt-get >/dev/null; then $S apt-get update -q; '
             '$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io; '
             'elif command -v dnf >/dev/null; then $S dnf install -y docker; '
             'elif command -v yum >/dev/null; then $S yum install -y docker; '
             'else echo "no apt-get, dnf or yum on this node" >&2; exit 1; fi; '
             'if command -v systemctl >/dev/null; then $S systemctl enable --now docker '
             '|| echo "systemctl could not start docker (no systemd here?)" >&2; fi; '
             'if [ -n "$S" ]; then $S usermod -aG docker "$(id -un)"; fi')


@dataclass(frozen=True)
class Settings:
    """settings: of inventory.yml with their defaults (the loader makes paths
    absolute); docs/operations.md says what each one tunes."""
    state_file: str = "state.json"
    known_hosts: str = "known_hosts"
    secrets_key: str = "secrets.key"
    probe_interval: float = 1.0
    down_after: float = 5.0
    engine_timeout: float = 30.0
    connect_timeout: float = 5.0
    command_timeout: float = 120.0
    per_node_parallelism: int = 4
    converge_timeout: float = 60.0
    rebalance_parallelism: int = 1
    lease_ttl: float = 6.0
    # What a node without `docker` runs when it is added (sh -c, as the node user).
    bootstrap: str = BOOTSTRAP
    # For tests only: seconds a fenced command waits between its last epoch
    # check and its sending, so that a test can pause a leader with commands
    # in flight and see the nodes refuse them (docs/failover.md).
    fenced_send_delay: float = 0.0
    api: ApiSettings = ApiSettings()
