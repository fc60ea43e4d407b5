"""Editing inventory.yml in place: add a node, set its labels, remove it.

Only the node's own lines change. The file is read with ruamel.yaml's round
trip for the positions of the `nodes:` items; the edit is a splice of text:
the new or changed entry is rendered in the indentation the file already
uses and put where the entry is (a new one after the last node), so the
comments, order, quoting and blank lines of everything else stay byte for
byte. Blank and comment lines after an entry belong to what follows it.

The edited text is checked with the loader `bicycle.py up` uses before it
replaces the file atomically (files.replace_keeping_mode); an invalid result
or any error raises InventoryError and leaves the file as it was.
"""
import re

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

import files
from master.inventory import InventoryError, parse, read_yaml

FIELDS = ("name", "host", "port", "user", "key", "labels")
PLAIN = re.compile(r"[A-Za-z0-9_./~@+-]+")     # and read back as the same string
# A `labels:` line whose value starts below it, or a one-line flow map without
# quotes: the comment after it (group 1, with its spaces) stays when labels change.
LABELS_COMMENT = re.compile(r"\s*labels:(?:\s*\{[^#'\"{}]*\})?(\s+#.*)?")
YAML11_WORDS = re.compile(r"(?i)y|n|yes|no|on|off|true|false")   # booleans to older readers: quoted


def add_node(path, entry):
    """Append `entry` ({name, host, port?, user?, key?, labels?}) to nodes:."""
    def edit(text, nodes, lines):
        if any(n.get("name") == entry.get("name") for n in nodes):
            raise InventoryError(f"{path}: a node named {entry.get('name')!r} is already in nodes:")
        at = _entry_end(nodes, len(nodes) - 1, lines)
        return _splice(lines, at, at, _render(entry, _columns(nodes, lines)))
    return _edit(path, edit, expect=lambda inv: _has(inv, entry["name"]))


def set_labels(path, name, labels):
    """Replace the labels of node `name` by `labels` (a dict of strings):
    only the lines of its labels: change (or one is added after the entry)."""
    def edit(text, nodes, lines):
        i = _index(path, nodes, name)
        node, start, end = nodes[i], _entry_start(nodes, i), _entry_end(nodes, i, lines)
        if "labels" not in node:
            return _splice(lines, end, end, [" " * nodes.lc.item(i)[1] + _labels_line(labels)])
        line, column = node.lc.key("labels")
        if line == start:                 # `- labels: ...` opens the entry: the entry is written anew
            entry = dict({k: node[k] for k in FIELDS if k in node}, labels=dict(labels))
            return _splice(lines, start, end, _render(entry, _columns(nodes, lines, i)))
        keys = list(node)
        after = keys[keys.index("labels") + 1:]
        stop = _content_end(lines, line, node.lc.key(after[0])[0] if after else end)
        comment = LABELS_COMMENT.match(lines[line].rstrip("\r\n"))
        rendered = _labels_line(labels)
        if comment and comment.group(1):
            rendered = rendered[:-1] + comment.group(1) + "\n"
        return _splice(lines, line, stop, [" " * column + rendered])
    return _edit(path, edit, expect=lambda inv: dict(_node(inv, name).labels) == dict(labels))


def remove_node(path, name):
    """Take node `name` out of nodes: (the last node cannot go)."""
    def edit(text, nodes, lines):
        i = _index(path, nodes, name)
        if len(nodes) == 1:
            raise InventoryError(f"{path}: {name!r} is the only node; an inventory needs one")
        return _splice(lines, _entry_start(nodes, i), _entry_end(nodes, i, lines), [])
    return _edit(path, edit, expect=lambda inv: not _has(inv, name))


# -- the edit, checked and written ---------------------------------------------------

def _edit(path, edit, expect):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    data = read_yaml(text, path)
    nodes = data.get("nodes") if isinstance(data, dict) else None
    if not nodes or not isinstance(nodes, list) or nodes.fa.flow_style():
        raise InventoryError(f"{path}: nodes: must be a block list ('- name: ...' lines) to be edited in place")
    new = edit(text, nodes, text.splitlines(keepends=True))
    inventory = parse(new, path)          # raises InventoryError: the file is not touched
    if not expect(inventory):
        raise InventoryError(f"{path}: the edit did not read back as intended; the file is unchanged")
    files.replace_keeping_mode(path, new)
    return inventory


def _has(inventory, name):
    return any(n.name == name for n in inventory.nodes)


def _node(inventory, name):
    return next(n for n in inventory.nodes if n.name == name)


def _index(path, nodes, name):
    for i, n in enumerate(nodes):
        if isinstance(n, dict) and n.get("name") == name:
            return i
    raise InventoryError(f"{path}: no node named {name!r} in nodes:")


# -- positions and text --------------------------------------------------------------

def _entry_start(nodes, i):
    """The line of entry i's dash."""
    return nodes.lc.item(i)[0]


def _entry_end(nodes, i, lines):
    """The line after entry i's last line of content: the next entry's start
    (or the next top-level key's line, or the end), less the blank and
    comment lines just before it."""
    if i + 1 < len(nodes):
        end = _entry_start(nodes, i + 1)
    else:
        end = next((k for k in range(_entry_start(nodes, i) + 1, len(lines))
                    if lines[k].strip() and not lines[k].startswith((" ", "\t", "#", "-"))), len(lines))
    return _content_end(lines, _entry_start(nodes, i), end)


def _content_end(lines, start, end):
    """`end` less the blank and comment lines just before it (never up to `start`)."""
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


def _columns(nodes, lines, i=0):
    """(column of the dash, column of the keys) of entry i (the first: how the file lays entries out)."""
    line, keys = nodes.lc.item(i)
    dash = lines[line].rfind("-", 0, keys)
    if dash < 0:
        raise InventoryError("nodes: an entry whose '-' stands on a line of its own cannot be edited in place")
    return dash, keys


def _splice(lines, start, end, new_lines):
    """lines[start:end] replaced by new_lines, which end as the line before
    them does (a file kept with Windows line ends keeps them)."""
    before = lines[:start]
    eol = "\r\n" if (before or lines or [""])[-1 if before else 0].endswith("\r\n") else "\n"
    if before and not before[-1].endswith("\n"):
        before[-1] += eol
    return "".join(before + [line[:-1] + eol for line in new_lines] + lines[end:])


def _render(entry, columns):
    dash, keys = columns
    out = []
    for k in FIELDS:
        if k not in entry or entry[k] is None:
            continue
        lead = " " * dash + "-" + " " * (keys - dash - 1) if not out else " " * keys
        out.append(lead + (_labels_line(entry[k]) if k == "labels" else f"{k}: {_scalar(entry[k])}\n"))
    return out


def _labels_line(labels):
    return "labels: {" + ", ".join(f"{_scalar(a)}: {_scalar(b)}" for a, b in labels.items()) + "}\n"


def _scalar(value):
    """A YAML scalar for `value`: plain when that reads back as the same
    string (to YAML 1.1 readers too), else double-quoted."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InventoryError(f"cannot write {value!r} into the inventory")
    if isinstance(value, int):
        return str(value)
    return value if _reads_back_plain(value) else _double_quoted(value)


def _double_quoted(value):
    """A YAML double-quoted scalar, ASCII only: anything else as an escape."""
    def one(c):
        if c in '"\\':
            return "\\" + c
        if " " <= c <= "~":
            return c
        return f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}"
    return '"' + "".join(one(c) for c in value) + '"'


def _reads_back_plain(value):
    if not PLAIN.fullmatch(value) or YAML11_WORDS.fullmatch(value):
        return False
    try:
        return YAML(typ="safe").load(f"k: {{{value}: {value}}}") == {"k": {value: value}}
    except YAMLError:
        return False
