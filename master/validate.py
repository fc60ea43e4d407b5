"""Validation of API bodies into model values. Pure: no store, no network.

Every string that may later reach a remote shell is checked against a strict
pattern here, and quoted again where the command line is built.
"""
import re
import shlex

from dataclasses import dataclass

from master.inventory import HOST, USER
from master.validate_update import healthcheck, resources, update_settings
from scheduler import constraints
from model import GLOBAL, MODES, NAME_PATTERN, PULL_POLICIES, REPLICATED, Mount, ServiceSpec, Port, \
    RESTART_POLICIES, UpdateConfig

NAME = re.compile(NAME_PATTERN)
IMAGE = re.compile(r"([A-Za-z0-9][A-Za-z0-9.-]{0,252}(:\d{1,5})?/)?"          # registry host[:port]/
                   r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"  # path
                   r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?")
PORT = re.compile(r"(\d{1,5}):(\d{1,5})(/(tcp|udp))?")
VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
NODE_PATH = re.compile(r"/[^\x00-\x1f:,]{0,1023}")     # an absolute path; no ':' nor ',' (docker's separators)
MAX_REPLICAS = 1000
MAX_STRING = 4096
MAX_ITEMS = 100

CREATE_FIELDS = {"name", "image", "replicas", "command", "env", "ports", "labels", "restart", "secrets", "pull",
                 "healthcheck", "update", "rollback", "constraints", "resources", "mode", "entrypoint", "volumes"}
PATCH_FIELDS = CREATE_FIELDS - {"name", "mode"}


class Invalid(Exception):
    """Carries per-field errors: [{"field": ..., "message": ...}], about a
    `what` ("service" or "node")."""

    def __init__(self, errors, what="service"):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors, self.what = errors, what


def check_name(name, field="name"):
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise Invalid([{"field": field, "message":
                        "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"}])
    return name


def service_body(body, max_per_node_nodes, base=None, seal=None):
    """Validate a create body (base=None) or a patch body merged over `base`.

    base is the stored dict {"spec": {...}, "replicas": n}. Returns
    (name or None, ServiceSpec, replicas). max_per_node_nodes is the number of
    nodes, the most replicas a service that publishes host ports can have.
    seal(name, value) -> sealed value turns each given secret into what is
    stored; a patch without `secrets` keeps the stored (sealed) ones.
    """
    errors = []
    if not isinstance(body, dict):
        raise Invalid([{"field": "body", "message": "must be a JSON object"}])
    allowed = CREATE_FIELDS if base is None else PATCH_FIELDS
    for key in sorted(set(body) - allowed - {"mode"}):      # a mode is service_request's to judge
        errors.append({"field": str(key)[:64], "message": "unknown field"})
    merged = dict(base["spec"], replicas=base["replicas"]) if base else {}
    merged.update({k: v for k, v in body.items()
                   if k in allowed and k not in ("update", "rollback", "constraints", "mode")})
    if base and isinstance(body.get("resources"), dict):
        merged["resources"] = _resources_over(body["resources"], base["spec"].get("resources") or {})

    def err(field, message):
        errors.append({"field": field, "message": message})

    name = _create_name(body, err) if base is None else None
    image = merged.get("image")
    if not isinstance(image, str) or len(image) > 512 or not IMAGE.fullmatch(image):
        err("image", "required: an image reference such as 'repo/name:tag'")
    replicas = merged.get("replicas", 1)            # as in Swarm: one unless told
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
        err("replicas", f"must be an integer from 0 to {MAX_REPLICAS}")
    command = _command(merged.get("command"), err)
    env = _mapping(merged.get("env"), "env", ENV_KEY, err)
    labels = _mapping(merged.get("labels"), "labels", LABEL_KEY, err)
    if any(k.startswith("bicycle.") for k in labels):
        err("labels", "keys starting with 'bicycle.' are reserved")
    ports = _ports(merged.get("ports"), err)
    stored = (base["spec"].get("secrets") or {}) if base else {}
    secrets = _secrets(body.get("secrets"), err) if "secrets" in body else None
    clash = sorted(set(stored if secrets is None else secrets) & set(env))
    if clash:
        err(f"secrets.{clash[0]}", "is also set in env")
    restart = merged.get("restart", "always")
    if restart not in RESTART_POLICIES:
        err("restart", f"must be one of {', '.join(RESTART_POLICIES)}")
    pull = merged.get("pull", "missing")
    if pull not in PULL_POLICIES:
        err("pull", f"must be one of {', '.join(PULL_POLICIES)}")
    check = healthcheck(merged.get("healthcheck"), err)
    (cpus, memory), (reserve_cpus, reserve_memory) = resources(merged.get("resources"), err)
    entrypoint = _entrypoint(merged.get("entrypoint"), err)
    volumes = _volumes(merged.get("volumes"), err)
    if ports and isinstance(replicas, int) and replicas > max_per_node_nodes:
        err("replicas", f"a service that publishes host ports runs at most one container per node "
                        f"({max_per_node_nodes} nodes)")
    if errors:
        raise Invalid(errors)
    spec = ServiceSpec(image=image, command=tuple(command), env=tuple(sorted(env.items())),
                       ports=tuple(ports), labels=tuple(sorted(labels.items())), restart=restart,
                       secrets=_sealed(stored, secrets, seal), pull=pull, healthcheck=check, cpus=cpus,
                       memory=memory, entrypoint=entrypoint, volumes=volumes, reserve_cpus=reserve_cpus,
                       reserve_memory=reserve_memory)
    return name, spec, replicas


@dataclass(frozen=True)
class ServiceRequest:
    """A valid create or patch: the service and how its changes roll."""
    name: str
    spec: ServiceSpec
    replicas: int
    update: UpdateConfig
    rollback: UpdateConfig
    constraints: tuple = ()
    mode: str = REPLICATED


def service_request(body, max_per_node_nodes, base=None, seal=None):
    """service_body and the update settings of a create or patch body, with
    every bad field of both in one Invalid. base: the stored service's dicts
    (spec, replicas, update, rollback, mode), for a patch."""
    errors = []

    def err(field, message):
        errors.append({"field": field, "message": message})

    name = spec = replicas = None
    mode = _mode(body, base, err)
    if mode == GLOBAL and isinstance(body, dict):
        body = dict(body, replicas=0)              # a global service has no count of its own
    try:
        name, spec, replicas = service_body(body, max_per_node_nodes, base, seal)
    except Invalid as e:
        errors += e.errors
    if isinstance(body, dict):
        update, rollback = update_settings(body, base, err)
        given = body.get("constraints") if "constraints" in body else (base or {}).get("constraints")
        constraints = _constraints(given, err)
    if errors:
        raise Invalid(errors)
    return ServiceRequest(name, spec, replicas, update, rollback, constraints, mode)


def _mode(body, base, err):
    """The service's mode: given at its creation, never changed after."""
    if not isinstance(body, dict):
        return REPLICATED
    if base is not None:
        mode = base.get("mode", REPLICATED)
        if "mode" in body:
            err("mode", f"is set at creation only (this service is {mode}): remove the service and create it again")
    else:
        mode = body.get("mode", REPLICATED)
        if mode not in MODES:
            err("mode", f"must be one of {', '.join(MODES)}")
            return REPLICATED
    if mode == GLOBAL and "replicas" in body:
        err("replicas", "a global service runs one replica on every eligible node: leave replicas out")
    return mode


def _constraints(value, err):
    """Placement constraints: a list of "node.labels.K==V", "node.labels.K!=V",
    "node.name==N" or "node.name!=N"."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        err("constraints", f"must be a list of at most {MAX_ITEMS} strings")
        return ()
    for i, c in enumerate(value):
        if constraints.parse(c) is None:
            err(f"constraints.{i}", "must be node.labels.KEY==VALUE, node.labels.KEY!=VALUE, node.name==NAME "
                                    "or node.name!=NAME")
    return tuple(c.strip() for c in value if constraints.parse(c) is not None)


def _create_name(body, err):
    try:
        return check_name(body.get("name"))
    except Invalid as e:
        for one in e.errors:
            err(one["field"], one["message"])
        return None


def _sealed(stored, secrets, seal):
    """The secrets to store: the stored (sealed) ones when the body has none,
    else each given one sealed (no seal given, no secrets allowed)."""
    if secrets is None:
        return tuple(sorted(stored.items()))
    return tuple(sorted((k, seal(k, v)) for k, v in secrets.items()))


def _text_ok(value):
    return isinstance(value, str) and len(value) <= MAX_STRING and "\x00" not in value


def _resources_over(given, stored):
    """A patch's resources over the stored ones: an amount not named stays."""
    merged = dict(given)
    for kind in ("limits", "reservations"):
        if isinstance(given.get(kind), dict):
            merged[kind] = dict(stored.get(kind) or {}, **given[kind])
    return merged


def _entrypoint(value, err):
    """None (the image's own), or the words that replace it ([]: none)."""
    if value is None:
        return None
    words = _command(value, err, "entrypoint")
    return tuple(words) if isinstance(words, list) else None


def _volumes(value, err):
    """A list of "SOURCE:TARGET[:ro|rw]", "TARGET" or {source, target,
    read_only}: SOURCE is a volume name (the node's engine makes it) or an
    absolute path on the node; TARGET an absolute path in the container."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        err("volumes", f"must be a list of at most {MAX_ITEMS} volumes")
        return ()
    mounts = []
    for i, v in enumerate(value):
        mount = _mount(v)
        if mount is None:
            err(f"volumes.{i}", "must be 'SOURCE:TARGET[:ro]' (SOURCE a volume name or an absolute path on the "
                                "node, TARGET an absolute path other than /) or {source, target, read_only}")
        else:
            mounts.append(mount)
    if len({m.target for m in mounts}) != len(mounts):
        err("volumes", "two volumes have the same target")
    return tuple(mounts)


def _mount(v):
    if isinstance(v, str):
        parts = v.split(":")
        mode = parts.pop() if len(parts) == 3 or (len(parts) == 2 and parts[1] in ("ro", "rw")) else "rw"
        source, target = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        v = {"source": source, "target": target, "read_only": mode == "ro"} if mode in ("ro", "rw") else None
    if not isinstance(v, dict) or set(v) - {"source", "target", "read_only"}:
        return None
    source, target, read_only = v.get("source") or "", v.get("target"), v.get("read_only", False)
    ok = (isinstance(source, str) and (source == "" or VOLUME_NAME.fullmatch(source) or _path_ok(source))
          and isinstance(target, str) and _path_ok(target) and target != "/" and isinstance(read_only, bool))
    return Mount(target=target, source=source, read_only=read_only) if ok else None


def _path_ok(path):
    return bool(NODE_PATH.fullmatch(path)) and ".." not in path.split("/")


def _command(value, err, field="command"):
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as e:
            err(field, f"cannot be split into words: {e}")
            return []
    if not isinstance(value, list) or len(value) > MAX_ITEMS or not all(_text_ok(v) for v in value):
        err(field, f"must be a string or a list of at most {MAX_ITEMS} strings")
        return []
    return value


def _mapping(value, field, key_pattern, err):
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ITEMS:
        err(field, f"must be an object of at most {MAX_ITEMS} string values")
        return {}
    for k, v in value.items():
        if not key_pattern.fullmatch(k):
            err(f"{field}.{k[:64]}", "invalid key")
        elif not _text_ok(v):
            err(f"{field}.{k}", "value must be a string without NUL")
    return value


def _secrets(value, err):
    """Secret values travel in a docker env file: one line each, so no line
    breaks (nor NUL); names are environment variable names."""
    secrets = _mapping(value, "secrets", ENV_KEY, err)
    for k, v in secrets.items():
        if ENV_KEY.fullmatch(k) and isinstance(v, str) and ("\n" in v or "\r" in v):
            err(f"secrets.{k}", "value must be one line (no line breaks)")
    return secrets


def _ports(value, err):
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_ITEMS:
        err("ports", "must be a list like [\"8080:80\"]")
        return []
    ports = []
    for i, p in enumerate(value):
        port = _port(p)
        if port is None:
            err(f"ports.{i}", "must be 'PUBLISHED:TARGET[/tcp|udp]' or {published, target, protocol} with ports 1-65535")
        else:
            ports.append(port)
    if len({(p.published, p.protocol) for p in ports}) != len(ports):
        err("ports", "a published port appears twice")
    return ports


def _port(p):
    if isinstance(p, str):
        m = PORT.fullmatch(p)
        if not m:
            return None
        published, target, protocol = int(m.group(1)), int(m.group(2)), m.group(4) or "tcp"
    elif isinstance(p, dict) and set(p) <= {"published", "target", "protocol"}:
        published, target, protocol = p.get("published"), p.get("target"), p.get("protocol", "tcp")
        if any(isinstance(x, bool) or not isinstance(x, int) for x in (published, target)):
            return None
    else:
        return None
    if not (1 <= published <= 65535 and 1 <= target <= 65535 and protocol in ("tcp", "udp")):
        return None
    return Port(published, target, protocol)


# -- nodes ---------------------------------------------------------------------------

NODE_FIELDS = {"name", "host", "port", "user", "key", "labels", "fingerprint", "trust"}
NODE_PATCH_FIELDS = {"labels", "availability"}
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
AVAILABILITY = ("active", "drain")


def node_body(body):
    """A POST /nodes body -> (entry {name, host, port, user, key?, labels},
    fingerprint or None, trust)."""
    errors = _fields(body, NODE_FIELDS, "node")

    def err(field, message):
        errors.append({"field": field, "message": message})
    name = _create_name(body, err)
    host, port, user, key = body.get("host"), body.get("port", 22), body.get("user", "root"), body.get("key")
    if not isinstance(host, str) or not HOST.fullmatch(host):
        err("host", "required: a host name or IP address")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        err("port", "must be an integer 1-65535")
    if not isinstance(user, str) or not USER.fullmatch(user):
        err("user", "must be a user name (lowercase letters, digits, '_' or '-')")
    if key is not None and (not isinstance(key, str) or not key or len(key) > 4096 or not _line_ok(key)):
        err("key", "must be the path of a private key file on the master")
    labels = _mapping(body.get("labels"), "labels", LABEL_KEY, err)
    fingerprint, trust = body.get("fingerprint"), body.get("trust", False)
    if fingerprint is not None and (not isinstance(fingerprint, str) or not FINGERPRINT.fullmatch(fingerprint)):
        err("fingerprint", "must be SHA256:... as ssh-keygen -lf prints it")
    if not isinstance(trust, bool):
        err("trust", "must be true or false")
    if errors:
        raise Invalid(errors, "node")
    entry = {"name": name, "host": host, "port": port, "user": user, "labels": labels}
    if key is not None:
        entry["key"] = key
    return entry, fingerprint, trust


def node_patch(body):
    """A PATCH /nodes/NAME body -> (labels or None, availability or None)."""
    errors = _fields(body, NODE_PATCH_FIELDS, "node")

    def err(field, message):
        errors.append({"field": field, "message": message})
    labels = _mapping(body.get("labels"), "labels", LABEL_KEY, err) if "labels" in body else None
    availability = body.get("availability")
    if availability is not None and availability not in AVAILABILITY:
        err("availability", f"must be one of {', '.join(AVAILABILITY)}")
    if errors:
        raise Invalid(errors, "node")
    return labels, availability


def _fields(body, allowed, what):
    if not isinstance(body, dict):
        raise Invalid([{"field": "body", "message": "must be a JSON object"}], what)
    return [{"field": str(key)[:64], "message": "unknown field"} for key in sorted(set(body) - allowed, key=str)]


def _line_ok(value):
    return _text_ok(value) and "\n" not in value and "\r" not in value
