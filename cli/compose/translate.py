"""A Compose file (loaded and valid against the schema) -> the bodies of
Bicycle's POST /service, one per Compose service, named PROJECT-SERVICE.
Reads only through `read(path)` (env files, secret files). Pure otherwise.

Bicycle's own support is checked here, after the schema: a key it cannot
honour is an error naming it; keys that change nothing on Bicycle are
accepted and listed as notes (SILENT). Named volumes are volumes of each
node's own engine, named PROJECT_VOLUME as Compose names them; a relative
bind path is made absolute against the Compose file's folder and must
exist on the nodes.
"""
import io
import os
import re
import shlex
from dataclasses import dataclass, field

from dotenv import dotenv_values

from cli.compose.load import ComposeError
from model import UpdateConfig

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
SUPPORTED = {"image", "command", "entrypoint", "environment", "env_file", "ports", "labels", "healthcheck",
             "restart", "secrets", "deploy", "volumes", "scale", "pull_policy"}
SILENT = {"expose": "containers reach each other through published ports until Bicycle's network comes",
          "networks": "Bicycle does not make Compose networks yet",
          "container_name": "Bicycle names containers SERVICE.SLOT.ID",
          "depends_on": "services are created in its order; Bicycle does not wait for health",
          "build": "Bicycle does not build: the image must exist (bicycle.py image push)",
          "hostname": "each container keeps the engine's name", "links": "links are a legacy of Compose v1",
          "stop_grace_period": "Bicycle removes containers at once (docker rm -f), without a grace period"}
DEPLOY = {"mode", "replicas", "placement", "update_config", "rollback_config", "restart_policy", "resources",
          "labels", "endpoint_mode"}
RESTART = {"no": "never", "always": "always", "unless-stopped": "always", "on-failure": "on-failure"}
CONDITION = {"none": "never", "on-failure": "on-failure", "any": "always"}
PULL = {"always": "always", "missing": "missing", "if_not_present": "missing", "never": "never"}
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Swarm's defaults for deploy.update_config and rollback_config (not Bicycle's
# own start-first): stop-first keeps a node-local volume to one container.
SWARM_UPDATE = UpdateConfig(order="stop-first", failure_action="pause")


@dataclass
class Service:
    """One Compose service as Bicycle will run it."""
    key: str                 # its name in the Compose file
    name: str                # PROJECT-SERVICE
    body: dict               # a POST /service body
    notes: list = field(default_factory=list)      # what was accepted but changes nothing here


TOP_LEVEL = {"version", "name", "services", "volumes", "secrets", "networks", "configs"}


def translate(compose, read=None, ignore_unsupported=False):
    """compose: a load.ComposeFile -> [Service], in depends_on order.
    ignore_unsupported: a service's or its deploy's key that Bicycle cannot
    honour is a note instead of an error (a top-level one never is)."""
    read = read or _read
    data = compose.data
    unknown = sorted(k for k in data if k not in TOP_LEVEL and not k.startswith("x-"))
    if unknown:
        raise ComposeError(f"{unknown[0]}: not supported by Bicycle")
    for name, volume in (data.get("volumes") or {}).items():
        _local_volume(name, volume or {})
    services = data.get("services") or {}
    if not services:
        raise ComposeError("the Compose file has no services")
    out, names = [], {}
    for key in _ordered(services):
        svc = _service(compose, key, services[key] or {}, data, read, ignore_unsupported)
        if svc.name in names:
            raise ComposeError(f"services.{key} and services.{names[svc.name]} are both {svc.name} on Bicycle")
        names[svc.name] = key
        out.append(svc)
    return out


def _read(path):
    with open(path, encoding="utf-8") as f:
        try:
            return f.read()
        except UnicodeDecodeError:
            raise ComposeError(f"{path} is not UTF-8 text") from None


def _local_volume(name, volume):
    """A top-level volume: Bicycle makes it with the engine's local driver."""
    if volume.get("driver", "local") != "local" or volume.get("driver_opts"):
        raise ComposeError(f"volumes.{name}: only the engine's local driver without options is supported "
                           f"(each node makes its own volume)")


def _flag(value):
    """A Compose boolean, also as the string interpolation makes of it."""
    return value.strip().lower() in ("true", "yes", "1") if isinstance(value, str) else bool(value)


def _ordered(services):
    """Service keys, each after those it depends on (a cycle is an error)."""
    done, order = set(), []

    def visit(key, path):
        if key in done:
            return
        if key in path:
            raise ComposeError(f"services.{key}.depends_on: a cycle ({' -> '.join(path + [key])})")
        deps = (services.get(key) or {}).get("depends_on") or []
        for dep in sorted(deps):
            if dep not in services:
                raise ComposeError(f"services.{key}.depends_on: no service {dep!r}")
            visit(dep, path + [key])
        done.add(key)
        order.append(key)
    for key in sorted(services):
        visit(key, [])
    return order


def _service(compose, key, svc, data, read, ignore=False):
    where = f"services.{key}"
    name = _name(compose.project, key, where)
    if not svc.get("image"):
        raise ComposeError(f"{where}: needs an image (Bicycle does not build; build it, then bicycle.py image push)")
    notes = [f"{k}: {why}" for k, why in SILENT.items() if k in svc]
    notes += _unsupported_keys(sorted(k for k in svc if k not in SUPPORTED and k not in SILENT
                                      and not k.startswith("x-")), where, ignore)
    deploy = svc.get("deploy") or {}
    body = {"name": name, "image": svc["image"], "command": _words(svc.get("command"), f"{where}.command"),
            "entrypoint": _words(svc.get("entrypoint"), f"{where}.entrypoint", keep_none=True),
            "env": _environment(compose, svc, where, read),
            "ports": [p for i, port in enumerate(svc.get("ports") or []) for p in _ports(port, f"{where}.ports.{i}")],
            "labels": dict(_pairs(svc.get("labels"), f"{where}.labels"),
                           **{PROJECT_LABEL: compose.project, SERVICE_LABEL: key}),
            "healthcheck": _healthcheck(svc.get("healthcheck"), notes, where),
            "restart": _restart(svc, deploy, where, notes),
            "pull": PULL.get(svc.get("pull_policy", "missing")) or _unsupported(f"{where}.pull_policy"),
            "secrets": _secrets(compose, svc.get("secrets") or [], data.get("secrets") or {}, where, read),
            "volumes": [_volume(compose, v, data.get("volumes") or {}, f"{where}.volumes.{i}")
                        for i, v in enumerate(svc.get("volumes") or [])],
            **_deploy(deploy, svc, where, notes, ignore)}
    return Service(key, name, body, notes)


def _name(project, key, where):
    name = f"{project}-{key}".lower().replace("_", "-").replace(".", "-")
    if not NAME.fullmatch(name):
        raise ComposeError(f"{where}: {name!r} is not a Bicycle service name (at most 63 lowercase letters, "
                           f"digits and '-'): shorten the project or the service name")
    return name


def _unsupported(where, why="not supported by Bicycle"):
    raise ComposeError(f"{where}: {why}")


def _words(value, where, keep_none=False):
    if value is None:
        return None if keep_none else []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            raise ComposeError(f"{where}: cannot be split into words: {e}") from None
    return [str(v) for v in value]


def _pairs(value, where, env=None):
    """A Compose list ["K=V", "K"] or mapping {K: V} -> {K: "V"}; a key
    without a value takes it from `env` and is left out when unset there."""
    out = {}
    items = value.items() if isinstance(value, dict) else (
        (k, v if sep else None) for k, sep, v in (str(item).partition("=") for item in value or []))
    for k, v in items:
        if v is None:
            if env is not None and k in env:
                out[k] = env[k]
            continue
        out[k] = _scalar(v)
    return out


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _environment(compose, svc, where, read):
    env = {}
    files = svc.get("env_file") or []
    for i, entry in enumerate([files] if isinstance(files, str) else files):
        entry = {"path": entry} if isinstance(entry, str) else entry
        path = os.path.join(compose.folder, entry["path"])
        try:
            env.update(_env_file(read(path)))
        except OSError as e:
            if _flag(entry.get("required", True)):
                raise ComposeError(f"{where}.env_file.{i}: cannot read {path}: {e.strerror}") from None
    given = svc.get("environment") or {}
    named = given if isinstance(given, dict) else {k: None for k, _, _ in (str(i).partition("=") for i in given)}
    for k in named:
        env.pop(k, None)          # the service's own environment, even unset, wins over its env files
    env.update(_pairs(given, f"{where}.environment", compose.env))
    return env


def _env_file(text):
    """KEY=VALUE lines of an env file (python-dotenv's reading of them)."""
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None}


PORT_SHORT = re.compile(r"(?:(?P<ip>[^:\[\]]+|\[[0-9a-fA-F:]+\]):)??(?:(?P<published>\d+(?:-\d+)?):)?"
                        r"(?P<target>\d+(?:-\d+)?)(?:/(?P<protocol>tcp|udp))?")


def _ports(port, where):
    """One Compose port (short or long form) -> Bicycle's "PUBLISHED:TARGET/PROTO" strings."""
    if isinstance(port, dict):
        if "target" not in port:
            _unsupported(where, "needs a target port")
        ip, published, target, protocol = port.get("host_ip"), port.get("published"), port["target"], \
            port.get("protocol", "tcp")
        if port.get("mode", "host") not in ("host", "ingress"):
            _unsupported(f"{where}.mode")
        published = str(published) if published is not None else None
        target = str(target)
    else:
        m = PORT_SHORT.fullmatch(str(port))
        if m is None:
            _unsupported(where, f"{port!r} is not a port Bicycle understands")
        ip, published, target, protocol = m.group("ip"), m.group("published"), m.group("target"), \
            m.group("protocol") or "tcp"
    if ip and ip not in ("0.0.0.0", "::", "[::]"):
        _unsupported(where, f"publishes on one address ({ip}): Bicycle publishes on every address of the node; "
                            f"leave the address out")
    if not published:
        _unsupported(where, "publishes no host port: give PUBLISHED:TARGET (Bicycle publishes the same port on "
                            "every node that runs a replica)")
    if not all(re.fullmatch(r"\d{1,5}(-\d{1,5})?", str(p)) for p in (published, target)):
        _unsupported(where, f"{published}:{target} is not a port or a range of ports")
    pubs, targets = _span(published), _span(target)
    if len(pubs) != len(targets):
        _unsupported(where, "the published and target ranges differ in length")
    return [f"{p}:{t}/{protocol}" for p, t in zip(pubs, targets)]


def _span(text):
    first, _, last = str(text).partition("-")
    return list(range(int(first), int(last or first) + 1))


def _healthcheck(check, notes, where):
    if check is None:
        return None
    if _flag(check.get("disable", False)):
        return {"disable": True}
    test = check.get("test")
    if not test:
        raise ComposeError(f"{where}.healthcheck: give its test (Bicycle cannot change only the timing of an "
                           f"image's own check)")
    if isinstance(test, list) and test and test[0] == "CMD":
        test = ["CMD-SHELL", shlex.join(test[1:])]
        notes.append("healthcheck: the [\"CMD\", ...] form runs through the container's /bin/sh here")
    out = {"test": test}
    out.update({k: check[k] for k in ("interval", "timeout", "start_period") if k in check})
    if "retries" in check:
        out["retries"] = _number(check["retries"], "healthcheck.retries")
    if "start_interval" in check:
        notes.append("healthcheck.start_interval: the engine's default is used")
    return out


def _restart(svc, deploy, where, notes):
    condition = (deploy.get("restart_policy") or {}).get("condition")
    if condition is not None:
        if condition not in CONDITION:
            _unsupported(f"{where}.deploy.restart_policy.condition", f"must be one of {', '.join(CONDITION)}")
        if set(deploy["restart_policy"]) - {"condition"}:
            notes.append("deploy.restart_policy: only its condition counts (Bicycle backs off by itself)")
        return CONDITION[condition]
    policy = str(svc.get("restart", "always")).partition(":")[0]
    if policy not in RESTART:
        _unsupported(f"{where}.restart", f"must be one of {', '.join(RESTART)}")
    return RESTART[policy]


def _secrets(compose, wanted, declared, where, read):
    """Compose secrets -> Bicycle's (environment variables named after the
    secret's target, or its name), each read from its file or variable."""
    out = {}
    for i, ref in enumerate(wanted):
        ref = {"source": ref} if isinstance(ref, str) else ref
        at = f"{where}.secrets.{i}"
        if "source" not in ref:
            _unsupported(at, "needs a source")
        source = ref["source"]
        target = ref.get("target") or source
        spec = declared.get(source)
        if spec is None:
            _unsupported(at, f"no top-level secret {source!r}")
        if spec.get("file"):
            path = os.path.join(compose.folder, spec["file"])
            try:
                value = read(path).rstrip("\n")
            except OSError as e:
                raise ComposeError(f"secrets.{source}.file: cannot read {path}: {e.strerror}") from None
        elif spec.get("environment"):
            if spec["environment"] not in compose.env:
                _unsupported(f"secrets.{source}.environment", f"no variable {spec['environment']} is set")
            value = compose.env[spec["environment"]]
        else:
            _unsupported(f"secrets.{source}", "give it a file or an environment variable (external secrets are "
                                              "not supported)")
        out[target] = value
    return out


def _volume(compose, volume, declared, where):
    """One Compose volume -> "SOURCE:TARGET[:ro]" as Bicycle's API takes it."""
    if isinstance(volume, dict):
        kind, source, target = volume.get("type", "volume"), volume.get("source") or "", volume.get("target")
        read_only = _flag(volume.get("read_only", False))
        if kind not in ("volume", "bind"):
            _unsupported(f"{where}.type", f"{kind} mounts are not supported by Bicycle")
        if not target:
            _unsupported(where, "needs a target")
        if kind == "bind" and not source:
            _unsupported(where, "a bind needs a source")
        options = sorted(k for k in (volume.get("volume") or {}) if k != "nocopy") + \
            sorted(k for k in (volume.get("bind") or {}) if k != "create_host_path")
        if options:
            _unsupported(f"{where}", f"the mount option {options[0]} is not supported by Bicycle")
    else:
        parts = str(volume).split(":")
        options = parts.pop().split(",") if len(parts) == 3 or (len(parts) == 2 and not parts[1].startswith("/")) \
            else []
        source, target = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        read_only = "ro" in options
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    if kind == "bind" or source.startswith((".", "/", "~")):
        if source.startswith("~"):
            _unsupported(where, "a path under ~ means another home on each node: give an absolute path")
        source = os.path.normpath(os.path.join(compose.folder, source))
    elif source:
        if source not in declared:
            _unsupported(where, f"no top-level volume {source!r}")
        spec = declared[source] or {}
        source = spec.get("name") or (source if _flag(spec.get("external", False)) else f"{compose.project}_{source}")
    return ":".join(p for p in (source, target, "ro" if read_only else "") if p)


def _number(value, where, kind=int):
    """A number the file may give as a string (what interpolation makes)."""
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            _unsupported(where, f"{value!r} is not a number")
    return value


def _unsupported_keys(keys, where, ignore):
    """Notes for keys Bicycle cannot honour when told to ignore them; else the error of the first."""
    if keys and not ignore:
        _unsupported(f"{where}.{keys[0]}", "not supported by Bicycle (--ignore-unsupported: deploy without it)")
    return [f"{where}.{k}: not supported by Bicycle, ignored" for k in keys]


def _deploy(deploy, svc, where, notes, ignore=False):
    notes += _unsupported_keys([f"deploy.{k}" for k in sorted(set(deploy) - DEPLOY) if not k.startswith("x-")],
                               where, ignore)
    out = {"mode": deploy.get("mode", "replicated"), "constraints": [], "update": SWARM_UPDATE.to_dict(),
           "rollback": SWARM_UPDATE.to_dict(), "resources": {"limits": {"cpus": 0, "memory": 0}}}
    if out["mode"] not in ("replicated", "global"):
        _unsupported(f"{where}.deploy.mode", "must be replicated or global")
    if out["mode"] == "replicated":
        out["replicas"] = _number(deploy.get("replicas", svc.get("scale", 1)), f"{where}.deploy.replicas")
    placement = {k: v for k, v in (deploy.get("placement") or {}).items() if not k.startswith("x-")}
    if set(placement) - {"constraints"}:
        _unsupported(f"{where}.deploy.placement.{sorted(set(placement) - {'constraints'})[0]}")
    out["constraints"] = list(placement.get("constraints") or [])
    for key, field_ in (("update_config", "update"), ("rollback_config", "rollback")):
        given = deploy.get(key) or {}
        out[field_] = dict(out[field_], **{k: v for k, v in given.items() if not k.startswith("x-")})
        for k, kind in (("parallelism", int), ("max_failure_ratio", float)):
            out[field_][k] = _number(out[field_][k], f"{where}.deploy.{key}.{k}", kind)
    resources = deploy.get("resources") or {}
    for kind in ("limits", "reservations"):
        amounts = {k: v for k, v in (resources.get(kind) or {}).items() if not k.startswith("x-")}
        extra = sorted(set(amounts) - {"cpus", "memory"})
        if extra:
            _unsupported(f"{where}.deploy.resources.{kind}.{extra[0]}")
        out["resources"][kind] = {"cpus": amounts.get("cpus", 0), "memory": amounts.get("memory", 0)}
    for key in ("labels", "endpoint_mode"):
        if key in deploy:
            notes.append(f"deploy.{key}: no effect on Bicycle")
    return out
