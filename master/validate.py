"""Validation of API bodies into model values. Pure: no store, no network.

Every string that may later reach a remote shell is checked against a strict
pattern here, and quoted again where the command line is built.
"""
import re
import shlex

from model import NAME_PATTERN, PULL_POLICIES, ServiceSpec, Port, RESTART_POLICIES

NAME = re.compile(NAME_PATTERN)
IMAGE = re.compile(r"([A-Za-z0-9][A-Za-z0-9.-]{0,252}(:\d{1,5})?/)?"          # registry host[:port]/
                   r"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"  # path
                   r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?")
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?")
PORT = re.compile(r"(\d{1,5}):(\d{1,5})(/(tcp|udp))?")
MAX_REPLICAS = 1000
MAX_STRING = 4096
MAX_ITEMS = 100

CREATE_FIELDS = {"name", "image", "replicas", "command", "env", "ports", "labels", "restart", "secrets", "pull"}
PATCH_FIELDS = CREATE_FIELDS - {"name"}


class Invalid(Exception):
    """Carries per-field errors: [{"field": ..., "message": ...}]."""

    def __init__(self, errors):
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


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
    for key in sorted(set(body) - allowed):
        errors.append({"field": str(key)[:64], "message": "unknown field"})
    merged = dict(base["spec"], replicas=base["replicas"]) if base else {}
    merged.update({k: v for k, v in body.items() if k in allowed})

    def err(field, message):
        errors.append({"field": field, "message": message})

    name = _create_name(body, err) if base is None else None
    image = merged.get("image")
    if not isinstance(image, str) or len(image) > 512 or not IMAGE.fullmatch(image):
        err("image", "required: an image reference such as 'repo/name:tag'")
    replicas = merged.get("replicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
        err("replicas", f"required: an integer from 0 to {MAX_REPLICAS}")
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
    if ports and isinstance(replicas, int) and replicas > max_per_node_nodes:
        err("replicas", f"a service that publishes host ports runs at most one container per node "
                        f"({max_per_node_nodes} nodes)")
    if errors:
        raise Invalid(errors)
    spec = ServiceSpec(image=image, command=tuple(command), env=tuple(sorted(env.items())),
                       ports=tuple(ports), labels=tuple(sorted(labels.items())), restart=restart,
                       secrets=_sealed(stored, secrets, seal), pull=pull)
    return name, spec, replicas


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


def _command(value, err):
    if value is None:
        return []
    if isinstance(value, str):
        try:
            value = shlex.split(value)
        except ValueError as e:
            err("command", f"cannot be split into words: {e}")
            return []
    if not isinstance(value, list) or len(value) > MAX_ITEMS or not all(_text_ok(v) for v in value):
        err("command", f"must be a string or a list of at most {MAX_ITEMS} strings")
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
