"""Reading inventory.yml: nodes, masters, settings.

Paths in the file are relative to the file's own folder. An invalid file
raises InventoryError with one line naming the field and, where known, the line.
"""
import os
import re
from dataclasses import dataclass, field, fields

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from model import NAME_PATTERN, ApiSettings, NodeInfo, Settings, Tls

NODE_NAME = re.compile(f"^{NAME_PATTERN}$")
USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$|^\[?[0-9a-fA-F:]+\]?$")
API = re.compile(r"^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")

DEFAULTS = {f.name: f.default for f in fields(Settings) if f.name != "api"}
PATHS = ("state_file", "known_hosts", "secrets_key")
COMMANDS = ("bootstrap",)
NUMBERS = {k for k, v in DEFAULTS.items() if isinstance(v, (int, float))}
COUNTS = {k for k, v in DEFAULTS.items() if isinstance(v, int)}


class InventoryError(Exception):
    pass


@dataclass
class Inventory:
    path: str
    nodes: list
    masters: list                      # [{"name": ..., "api": "host:port"}]
    settings: Settings = field(default_factory=Settings)

    @property
    def scheme(self):
        return "https" if self.settings.api.tls else "http"

    def url(self, api):
        """The base URL of a master's API address."""
        return f"{self.scheme}://{api}"

    @property
    def verify(self):
        """What HTTPS clients verify a master's certificate with (requests' verify=)."""
        tls = self.settings.api.tls
        return tls.ca if tls else True

    def master(self, name=None):
        if name is None:
            return self.masters[0]
        for m in self.masters:
            if m["name"] == name:
                return m
        raise InventoryError(f"{self.path}: no master named {name!r} in masters:")


def _where(node, key=None):
    try:
        line = (node.lc.key(key)[0] if key is not None else node.lc.line) + 1
        return f" (line {line})"
    except Exception:
        return ""


def load(path):
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InventoryError(f"{path}: inventory file not found") from None
    return parse(text, path)


def read_yaml(text, path):
    """The round-trip document of an inventory's text (comments and line numbers kept)."""
    try:
        return YAML(typ="rt").load(text)
    except YAMLError as e:
        raise InventoryError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None


def parse(text, path):
    """The Inventory in `text`, the contents of the file at `path` (its folder
    anchors relative paths)."""
    data = read_yaml(text, path)
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: must be a mapping with nodes:, masters: and settings:")
    base = os.path.dirname(path)
    unknown = sorted(set(data) - {"nodes", "masters", "settings"})
    if unknown:
        raise InventoryError(f"{path}: unknown top-level field {unknown[0]!r}{_where(data, unknown[0])}")

    def fail(msg, where=""):
        raise InventoryError(f"{path}: {msg}{where}")

    return Inventory(path=path, nodes=_nodes(data, base, fail), masters=_masters(data, fail),
                     settings=_settings(data, base, fail))


def _nodes(data, base, fail):
    nodes_raw = data.get("nodes")
    if not isinstance(nodes_raw, list) or not nodes_raw:
        fail("nodes: must be a non-empty list", _where(data, "nodes") if "nodes" in data else "")
    nodes = [_node(i, n, base, fail) for i, n in enumerate(nodes_raw)]
    names = [n.name for n in nodes]
    dup = {x for x in names if names.count(x) > 1}
    if dup:
        fail(f"nodes: name {sorted(dup)[0]!r} appears twice")
    return nodes


def _node(i, n, base, fail):
    if not isinstance(n, dict):
        fail(f"nodes[{i}]: must be a mapping")
    extra = sorted(set(n) - {"name", "host", "port", "user", "key", "labels"})
    if extra:
        fail(f"nodes[{i}].{extra[0]}: unknown field", _where(n, extra[0]))
    name, host, user = n.get("name"), n.get("host"), n.get("user", "root")
    if not isinstance(name, str) or not NODE_NAME.fullmatch(name):
        fail(f"nodes[{i}].name: must be lowercase letters, digits or '-'", _where(n))
    if not isinstance(host, str) or not HOST.fullmatch(host):
        fail(f"nodes[{i}].host: must be a host name or IP address", _where(n))
    port = n.get("port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        fail(f"nodes[{i}].port: must be an integer 1-65535", _where(n, "port") if "port" in n else "")
    if not isinstance(user, str) or not USER.fullmatch(user):
        fail(f"nodes[{i}].user: must be a valid user name", _where(n))
    key = n.get("key")
    if key is not None and not isinstance(key, str):
        fail(f"nodes[{i}].key: must be a path", _where(n, "key"))
    labels = n.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        fail(f"nodes[{i}].labels: must be a mapping of strings", _where(n))
    return NodeInfo(name=name, host=host, port=port, user=user,
                    key=os.path.join(base, os.path.expanduser(key)) if key else None,
                    labels=tuple(sorted((str(k), v) for k, v in labels.items())))


def _masters(data, fail):
    masters_raw = data.get("masters") or [{"name": "m1", "api": "127.0.0.1:7070"}]
    if not isinstance(masters_raw, list) or len(masters_raw) >= 100:
        fail("masters: must be a list of at most 99 masters", _where(data, "masters"))
    masters = []
    for i, m in enumerate(masters_raw):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not NODE_NAME.fullmatch(m["name"]):
            fail(f"masters[{i}].name: must be lowercase letters, digits or '-'", _where(m) if isinstance(m, dict) else "")
        api = m.get("api")
        match = API.fullmatch(api) if isinstance(api, str) else None
        if not match or not 1 <= int(match.group(2)) <= 65535:
            fail(f"masters[{i}].api: must be HOST:PORT", _where(m))
        if any(x["name"] == m["name"] for x in masters):
            fail(f"masters[{i}].name: {m['name']!r} appears twice", _where(m))
        extra = sorted(set(m) - {"name", "api", "source"})
        if extra:
            fail(f"masters[{i}].{extra[0]}: unknown field", _where(m, extra[0]))
        source = m.get("source")
        if source is not None and (not isinstance(source, str) or not HOST.fullmatch(source)):
            fail(f"masters[{i}].source: must be a local IP address to connect from", _where(m, "source"))
        masters.append({"name": m["name"], "api": api, "source": source, "index": i + 1})
    return masters


def _settings(data, base, fail):
    settings_raw = data.get("settings") or {}
    if not isinstance(settings_raw, dict):
        fail("settings: must be a mapping", _where(data, "settings"))
    settings = dict(DEFAULTS)
    for key, value in settings_raw.items():
        if key == "api":
            continue
        if key not in DEFAULTS:
            fail(f"settings.{key}: unknown setting", _where(settings_raw, key))
        if key in NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            fail(f"settings.{key}: must be a positive number", _where(settings_raw, key))
        if key in COUNTS and not isinstance(value, int):
            fail(f"settings.{key}: must be a whole number", _where(settings_raw, key))
        if key not in NUMBERS and not isinstance(value, str):
            fail(f"settings.{key}: must be {'a shell command' if key in COMMANDS else 'a path'}",
                 _where(settings_raw, key))
        settings[key] = value
    for key in PATHS:
        settings[key] = os.path.join(base, os.path.expanduser(settings[key]))
    return Settings(**settings, api=_api_settings(settings_raw.get("api"), settings_raw, base, fail))


def _api_settings(raw, parent, base, fail):
    """settings.api: {tokens: PATH, tls: {certificate: PATH, key: PATH, ca: PATH}}.

    Paths made absolute; ca (what clients verify the master with) defaults
    to the certificate.
    """
    def path(value):
        return os.path.join(base, os.path.expanduser(value))

    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        fail("settings.api: must be a mapping with tokens: and tls:", _where(parent, "api"))
    extra = sorted(set(raw) - {"tokens", "tls"})
    if extra:
        fail(f"settings.api.{extra[0]}: unknown setting", _where(raw, extra[0]))
    tokens = raw.get("tokens", "tokens.json")
    if not isinstance(tokens, str) or not tokens:
        fail("settings.api.tokens: must be a path", _where(raw, "tokens"))
    tls = raw.get("tls")
    if tls is not None:
        if not isinstance(tls, dict):
            fail("settings.api.tls: must be a mapping with certificate: and key:", _where(raw, "tls"))
        extra = sorted(set(tls) - {"certificate", "key", "ca"})
        if extra:
            fail(f"settings.api.tls.{extra[0]}: unknown setting", _where(tls, extra[0]))
        for key in ("certificate", "key"):
            if not isinstance(tls.get(key), str) or not tls[key]:
                fail(f"settings.api.tls.{key}: must be a path", _where(tls))
        if "ca" in tls and (not isinstance(tls["ca"], str) or not tls["ca"]):
            fail("settings.api.tls.ca: must be a path", _where(tls, "ca"))
        tls = Tls(certificate=path(tls["certificate"]), key=path(tls["key"]),
                  ca=path(tls.get("ca") or tls["certificate"]))
    return ApiSettings(tokens=path(tokens), tls=tls)
