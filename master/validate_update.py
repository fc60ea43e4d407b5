"""Validation of a service's health check, its resource limits and its
rolling-update and rollback settings (API bodies, and Compose files through
them). Pure.

Durations are seconds as numbers, or Go/Compose duration strings such as
"1m30s", "500ms" or "10s".
"""
import re

from model import FAILURE_ACTIONS, ROLLBACK_DEFAULTS, UPDATE_ORDERS, Healthcheck, UpdateConfig

DURATION = re.compile(r"((\d+(\.\d+)?)(h|ms|m|s|us|ns))+")
UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MAX_SECONDS = 7 * 24 * 3600.0
MAX_CHECK = 4096
UPDATE_FIELDS = set(UpdateConfig.__dataclass_fields__)
HEALTH_FIELDS = {"test", "interval", "timeout", "retries", "start_period"}


def duration(value):
    """Seconds from a number or a duration string, or None when invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and DURATION.fullmatch(value):
        seconds = sum(float(n) * UNIT[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s|us|ns)", value))
    else:
        return None
    return seconds if 0 <= seconds <= MAX_SECONDS else None


def healthcheck(value, err):
    """A body's `healthcheck` -> Healthcheck or None (the image's own).
    test: a shell line, ["CMD-SHELL", line] or ["NONE"] (docker run's
    --health-cmd always runs through the container's shell, so the exec
    form ["CMD", ...] is refused rather than quietly turned into a line)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value.get("test") and value.get("disable") is not True:
        err("healthcheck", "must be an object with a test (a shell line or [\"CMD\", ...]) or disable: true")
        return None
    if value.get("disable") is True:
        return Healthcheck(test=("NONE",))
    for key in sorted(set(value) - HEALTH_FIELDS):
        err(f"healthcheck.{str(key)[:64]}", "unknown field")
    test = _test(value["test"], err)
    times = {}
    for key, default in (("interval", 30.0), ("timeout", 30.0), ("start_period", 0.0)):
        times[key] = duration(value.get(key, default))
        if times[key] is None or 0 < times[key] < 0.001:
            err(f"healthcheck.{key}", "must be a duration such as 5, \"5s\" or \"1m30s\", at least 1ms "
                                      "(0: the engine's default)")
    retries = value.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 1 <= retries <= 100:
        err("healthcheck.retries", "must be an integer from 1 to 100")
    if test is None or None in times.values() or not isinstance(retries, int):
        return None
    return Healthcheck(test=test, retries=retries, **times)


MEMORY = re.compile(r"(\d+(\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
MEMORY_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_MEMORY = 6 << 20            # the engine's own minimum
MAX_CPUS = 1024.0


def resources(value, err):
    """A body's `resources` -> ((cpus, memory bytes) limits, (cpus, memory
    bytes) reservations), 0 for none. {"limits": {"cpus": 0.5 or "0.5",
    "memory": "256m" or bytes}, "reservations": {the same}}: limits go to
    the engine, reservations to placement (a node takes a replica only while
    what its replicas reserve fits in what its engine has)."""
    if value is None:
        return (0.0, 0), (0.0, 0)
    if not isinstance(value, dict) or set(value) - {"limits", "reservations"}:
        err("resources", "must be an object with limits and/or reservations: {cpus, memory}")
        return (0.0, 0), (0.0, 0)
    return _amounts(value, "limits", err), _amounts(value, "reservations", err)


def _amounts(value, kind, err):
    amounts = value.get(kind) or {}
    if not isinstance(amounts, dict) or set(amounts) - {"cpus", "memory"}:
        err(f"resources.{kind}", "must be an object of cpus and memory")
        return 0.0, 0
    return _cpus(amounts.get("cpus"), f"resources.{kind}.cpus", err), \
        _memory(amounts.get("memory"), f"resources.{kind}.memory", err)


def _cpus(value, field, err):
    if value is None or value == 0 or value == "0":          # 0: none (clears one)
        return 0.0
    try:
        cpus = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        cpus = -1.0
    if not 0.01 <= cpus <= MAX_CPUS:
        err(field, f"must be a number of CPUs from 0.01 to {MAX_CPUS:.0f}, such as 0.5 (0: none)")
        return 0.0
    return round(cpus, 3)


def _memory(value, field, err):
    if value is None or value == 0 or value == "0":          # 0: none (clears one)
        return 0
    m = MEMORY.fullmatch(value.strip()) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif m:
        size = int(float(m.group(1)) * MEMORY_UNIT[m.group(3).lower()])
    else:
        size = -1
    if not MIN_MEMORY <= size <= (1 << 50):
        err(field, "must be bytes or a size such as \"256m\" or \"1g\", at least 6m (0: none)")
        return 0
    return size


def _test(value, err):
    if isinstance(value, str):
        value = ["CMD-SHELL", value]
    ok = (isinstance(value, list) and value and all(isinstance(v, str) and "\x00" not in v for v in value)
          and sum(len(v) for v in value) <= MAX_CHECK)
    if ok and value[0] == "NONE" and len(value) == 1:
        return ("NONE",)
    if ok and value[0] == "CMD-SHELL" and len(value) == 2:
        return tuple(value)
    if ok and value[0] == "CMD":
        err("healthcheck.test", "[\"CMD\", ...] is not supported: docker run runs a health check through the "
                                "container's /bin/sh; give a shell line (or [\"CMD-SHELL\", line])")
        return None
    err("healthcheck.test", "must be a shell line, [\"CMD-SHELL\", line] or [\"NONE\"]")
    return None


def update_settings(body, base, err):
    """(update, rollback) UpdateConfigs of a body merged over `base` (the
    stored service's dicts, or None for a create)."""
    update = _config(body.get("update"), (base or {}).get("update"), UpdateConfig(), "update", FAILURE_ACTIONS, err)
    rollback = _config(body.get("rollback"), (base or {}).get("rollback"), ROLLBACK_DEFAULTS, "rollback",
                       ("pause", "continue"), err)
    return update, rollback


def _config(value, stored, default, field, actions, err):
    if value is None:
        return UpdateConfig.from_dict(stored, default)
    if not isinstance(value, dict):
        err(field, "must be an object of update settings")
        return default
    for key in sorted(set(value) - UPDATE_FIELDS):
        err(f"{field}.{str(key)[:64]}", "unknown field")
    merged = dict(UpdateConfig.from_dict(stored, default).to_dict(), **{k: v for k, v in value.items()
                                                                       if k in UPDATE_FIELDS})
    parallelism = merged["parallelism"]
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or not 0 <= parallelism <= 1000:
        err(f"{field}.parallelism", "must be an integer from 0 (all at once) to 1000")
    for key in ("delay", "monitor"):
        merged[key] = duration(merged[key])
        if merged[key] is None:
            err(f"{field}.{key}", "must be a duration such as 5, \"5s\" or \"1m30s\"")
    if merged["order"] not in UPDATE_ORDERS:
        err(f"{field}.order", f"must be one of {', '.join(UPDATE_ORDERS)}")
    if merged["failure_action"] not in actions:
        err(f"{field}.failure_action", f"must be one of {', '.join(actions)}")
    ratio = merged["max_failure_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        err(f"{field}.max_failure_ratio", "must be a number from 0 to 1")
    try:
        return UpdateConfig(**dict(merged, max_failure_ratio=float(ratio)))
    except (TypeError, ValueError):
        return default
