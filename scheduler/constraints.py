"""Placement constraints, as Swarm writes them: `node.labels.K==V`,
`node.labels.K!=V`, `node.name==N`, `node.name!=N`. Pure.

A service's containers go only to nodes that satisfy all of its constraints;
a node that does not (its labels changed, or the constraints did) is to the
service what a drained node is: its containers there move away start-first.
"""
import re

CONSTRAINT = re.compile(r"node\.(name|labels\.([A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?))"
                        r"\s*(==|!=)\s*([^\s=!]{1,253})")


def parse(text):
    """(key, op, value) of a constraint, key "name" or a label key; None when malformed."""
    m = CONSTRAINT.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        return None
    return ("name" if m.group(1) == "name" else m.group(2)), m.group(4), m.group(5)


def _holds(constraint, node, labels):
    key, op, value = parse(constraint)
    actual = node if key == "name" else labels.get(key)
    return (actual == value) == (op == "==")


def satisfies(constraints, node, labels):
    """Whether `node` with `labels` (a dict) satisfies every constraint."""
    return all(_holds(c, node, labels) for c in constraints)


def unfit(constraints, node_labels):
    """The nodes of node_labels ({node: labels}) that fail the constraints."""
    return frozenset(n for n, labels in node_labels.items() if not satisfies(constraints, n, labels))


def why_not(constraints, node_labels, eligible):
    """Why no eligible node takes the service: each constraint and the
    nodes it rules out; or the eligible nodes are none at all."""
    if not eligible:
        return "no eligible node (every node is down, suspect or drained)"
    parts = []
    for c in constraints:
        out = sorted(n for n in eligible if not _holds(c, n, node_labels.get(n, {})))
        if out:
            parts.append(f"{c} rules out {', '.join(out)}")
    if not parts:
        return "no eligible node fits (the constraints hold on some, but none has room: host ports?)"
    return "no node satisfies the constraints: " + "; ".join(parts)
