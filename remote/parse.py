"""Pure parsers of engine output into model values."""
import json

from model import Container, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC


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
    )


def _int(value, node):
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise ParseError(f"engine list from {node} has a non-numeric exit code") from None


def container_id(stdout):
    """docker run -d prints the new container's id on its last line."""
    lines = [line.strip() for line in (stdout or "").splitlines() if line.strip()]
    if not lines:
        raise ParseError("docker run printed no container id")
    return lines[-1]
