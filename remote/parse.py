"""Pure parsers of engine output into model values."""
import json
import re

from model import (ClaimAnswer, Container, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC, Lease, LeaseRead,
                   NO_STAMP, RenewAnswer, Replica, Stamp)


class ParseError(ValueError):
    pass


def containers(node, stdout):
    """docker inspect's JSON array -> [Container] (only Bicycle's labelled ones)."""
    try:
        items = json.loads(stdout or "[]")
    except json.JSONDecodeError as e:
        raise ParseError(f"engine list from {node} is not JSON: {e}") from None
    if not isinstance(items, list):
        raise ParseError(f"engine list from {node} is not a JSON array")
    return [c for c in (_container(node, item) for item in items) if c is not None]


def _container(node, item):
    if not isinstance(item, dict):
        raise ParseError(f"engine list from {node} holds a non-object item")
    config = item.get("Config") or {}
    labels = config.get("Labels") or {} if isinstance(config, dict) else None
    state = item.get("State") or {}
    if not isinstance(labels, dict) or not isinstance(state, dict):
        raise ParseError(f"engine list from {node} has an item of unexpected shape")
    if LABEL_SERVICE not in labels:
        return None
    try:
        slot = int(labels.get(LABEL_SLOT, "0"))
    except ValueError:
        slot = 0
    started = state.get("StartedAt") or ""
    finished = state.get("FinishedAt") or ""
    return Container(
        id=item.get("Id", ""),
        name=(item.get("Name") or "").lstrip("/"),
        node=node,
        service=labels[LABEL_SERVICE],
        slot=slot,
        spec=labels.get(LABEL_SPEC, ""),
        image=config.get("Image", ""),
        status=state.get("Status", "unknown"),
        created_at=item.get("Created", ""),
        started_at="" if started.startswith("0001-") else started,
        finished_at="" if finished.startswith("0001-") else finished,
        exit_code=_int(state.get("ExitCode"), node),
        **_health(state.get("Health")),
    )


def _health(health):
    """health and health_log of a container from State.Health."""
    if not isinstance(health, dict):
        return {}
    status = str(health.get("Status") or "")
    log = health.get("Log") if status == "unhealthy" else None
    last = log[-1] if isinstance(log, list) and log and isinstance(log[-1], dict) else {}
    words = " ".join(str(last.get("Output") or "").split())[:200]
    return {"health": status, "health_log": words}


def _int(value, node):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise ParseError(f"engine list from {node} has a non-numeric exit code") from None


def only_vanished(stderr):
    """True when a failed listing only lost containers removed between `docker ps`
    and `docker inspect`; any other error (an engine dying midway) is a failed probe."""
    lines = [line for line in (stderr or "").splitlines() if line.strip()]
    return bool(lines) and all("No such object" in line or "No such container" in line for line in lines)


_HINTS = ("See 'docker", "Run 'docker")            # docker's usage hints after an error
_PREFIXES = ("docker: ", "Error response from daemon: ")


def engine_error(stderr, exit_code):
    """The engine's own words from a failed docker command, on one line:
    'Unable to find image ...; pull access denied for ...', without docker's
    usage hints ("See 'docker run --help'.") that end its stderr."""
    words = []
    for line in (stderr or "").splitlines():
        line = line.strip()
        if not line or line.startswith(_HINTS):
            continue
        for p in _PREFIXES:
            line = line[len(p):] if line.startswith(p) else line
        words.append(line)
    return "; ".join(words)[-500:] or f"docker exited {exit_code}"


def container_id(stdout):
    """docker run -d prints the new container's id on its last line."""
    lines = [line.strip() for line in (stdout or "").splitlines() if line.strip()]
    if not lines:
        raise ParseError("docker run printed no container id")
    return lines[-1]


# -- node-side lease files (remote/lease.py) ------------------------------------

def _number(word, what):
    try:
        return int(word)
    except (TypeError, ValueError):
        raise ParseError(f"bad {what} {word!r}") from None


def _node_epoch(word, what):
    """A node's epoch word: a number, or "unreadable" (-> None)."""
    return None if word == "unreadable" else _number(word, what)


def _ver(line):
    """'ver E V' -> Stamp(E, V); NO_STAMP when the node holds no replica yet."""
    words = line.split()[1:]
    if not words:
        return NO_STAMP
    if len(words) != 2:
        raise ParseError(f"bad replica version line {line!r}")
    return Stamp(_number(words[0], "replica epoch"), _number(words[1], "replica version"))


def capacity(stdout):
    """docker info's "NCPU MEMTOTAL" -> (cpus, memory bytes)."""
    words = (stdout or "").split()
    if len(words) != 2 or not all(w.isdigit() for w in words) or int(words[0]) < 1:
        raise ParseError(f"unexpected engine capacity {(stdout or '')[:100]!r}")
    return float(words[0]), int(words[1])


def claim(stdout):
    """'granted E' | 'refused E' | 'unreadable', then 'ver ...' and the replica
    -> ClaimAnswer (node_epoch None when the node's epoch is unreadable)."""
    lines = (stdout or "").split("\n", 2)
    if len(lines) < 2 or not lines[1].startswith("ver"):
        raise ParseError(f"unexpected claim answer {(stdout or '')[:200]!r}")
    verdict = lines[0].split()
    if verdict == ["unreadable"]:
        granted, node_epoch = False, None
    elif len(verdict) == 2 and verdict[0] in ("granted", "refused"):
        granted, node_epoch = verdict[0] == "granted", _number(verdict[1], "claim epoch")
    else:
        raise ParseError(f"unexpected claim answer {lines[0]!r}")
    return ClaimAnswer(granted, node_epoch, Replica(_ver(lines[1]), lines[2] if len(lines) > 2 else ""))


def renew(stdout):
    """'ok N' -> RenewAnswer(True, N); 'lost E' -> RenewAnswer(False, E), E None when unreadable."""
    words = (stdout or "").split()
    if len(words) != 2 or words[0] not in ("ok", "lost"):
        raise ParseError(f"unexpected renew answer {(stdout or '')[:200]!r}")
    if words[0] == "ok":
        return RenewAnswer(True, _number(words[1], "lease counter"))
    return RenewAnswer(False, _node_epoch(words[1], "node epoch"))


def lease(stdout):
    """'epoch E|unreadable', 'lease [E HOLDER COUNTER]', 'ver [E V]' -> LeaseRead."""
    lines = dict(line.split(" ", 1) if " " in line else (line, "") for line in (stdout or "").splitlines())
    if "epoch" not in lines:
        raise ParseError(f"unexpected lease answer {(stdout or '')[:200]!r}")
    words = lines.get("lease", "").split()
    if words and len(words) != 3:
        raise ParseError(f"bad lease line {lines['lease']!r}")
    held = Lease(_number(words[0], "lease epoch"), words[1], _number(words[2], "lease counter")) if words else None
    return LeaseRead(_node_epoch(lines["epoch"].strip(), "node epoch"), held, _ver("ver " + lines.get("ver", "")))


def replica(stdout):
    """read_state -> Replica(Stamp, replica text)."""
    first, _, rest = (stdout or "").partition("\n")
    if not first.startswith("ver"):
        raise ParseError(f"unexpected replica answer {(stdout or '')[:200]!r}")
    return Replica(_ver(first), rest)


# -- logs and stats ---------------------------------------------------------------

def log_line(line):
    """'2026-11-25T15:44:34.209481123Z text' -> (timestamp, text); no timestamp -> ("", line)."""
    stamp, sep, text = line.partition(" ")
    if sep and len(stamp) >= 20 and stamp[4] == "-" and stamp[10] == "T":
        return stamp, text
    return "", line


def stats(stdout):
    """docker stats --format '{{json .}}' -> [{id, name, cpu_percent, memory_bytes, memory_limit_bytes, memory_percent}]."""
    rows = []
    for line in (stdout or "").splitlines():
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise ParseError(f"unexpected stats line {line[:200]!r}") from None
        used, _, limit = item.get("MemUsage", "").partition(" / ")
        rows.append({"id": item.get("ID", "")[:12], "name": item.get("Name", ""),
                     "cpu_percent": _percent(item.get("CPUPerc")),
                     "memory_bytes": _bytes(used), "memory_limit_bytes": _bytes(limit),
                     "memory_percent": _percent(item.get("MemPerc"))})
    return rows


def _percent(text):
    try:
        return float((text or "").rstrip("%"))
    except ValueError:
        return None


UNITS = {"b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
         "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}


def _bytes(text):
    m = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", text or "")
    if not m:
        return None
    unit = UNITS.get(m.group(2).lower() or "b")
    return None if unit is None else int(float(m.group(1)) * unit)


# -- node doctor ------------------------------------------------------------------

def doctor(stdout):
    """commands.doctor's lines -> {fact: value}, with images_present and
    images_missing as lists."""
    facts = {"images_present": [], "images_missing": []}
    for line in (stdout or "").splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in ("image_present", "image_missing"):
            facts[key.replace("image_", "images_")].append(value)
        else:
            facts[key] = value
    return facts
