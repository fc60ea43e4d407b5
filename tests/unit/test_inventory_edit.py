"""master.inventory_edit: a node added, relabelled or removed changes only
its own lines; comments, quoting, blank lines and the layout of everything
else stay byte for byte, and a refused edit leaves the file untouched."""
import difflib
import os
import shutil

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from master import inventory
from master.inventory import InventoryError
from master.inventory_edit import add_node, remove_node, set_labels

REPO_INVENTORY = os.path.join(os.path.dirname(__file__), "..", "..", "inventory.yml")

# A hand-kept file: comments everywhere, quotes, blank lines, items at column
# 0 under nodes:, a comment after the last node, no newline at the end.
HAND = '''\
# our cluster
nodes:
# the first rack
- name: web1     # the old one
  host: "10.0.0.1"
  user: 'deploy'
  key: keys/id   # shared

- name: web2
  host: 10.0.0.2
  labels:
    zone: a
# spare: web3 (broken disk)

masters:
- {name: m1, api: "127.0.0.1:7070"}
settings:
  probe_interval: 2   # slow links'''

NEW = {"name": "web4", "host": "10.0.0.4", "port": 2222, "user": "deploy", "key": "keys/id", "labels": {"zone": "b"}}


@pytest.fixture
def hand(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(HAND)
    os.chmod(path, 0o644)
    return str(path)


def changes(before, after):
    """[(tag, old lines, new lines)] of the edit, line by line."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return [(tag, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in
            difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if tag != "equal"]


def test_adding_to_the_default_inventory_only_inserts_the_entry(tmp_path):
    path = tmp_path / "inventory.yml"
    shutil.copy(REPO_INVENTORY, path)
    before = path.read_text()
    add_node(str(path), dict(NEW, name="node4", host="127.0.0.14"))
    assert changes(before, path.read_text()) == [("insert", [], [
        "  - name: node4\n", "    host: 127.0.0.14\n", "    port: 2222\n", "    user: deploy\n",
        "    key: keys/id\n", "    labels: {zone: b}\n"])]
    assert [n.name for n in inventory.load(str(path)).nodes] == ["node1", "node2", "node3", "node4"]


def test_adding_to_a_hand_kept_file_keeps_its_layout_and_comments(hand):
    add_node(hand, NEW)
    after = open(hand).read()
    assert changes(HAND, after) == [("insert", [], [
        "- name: web4\n", "  host: 10.0.0.4\n", "  port: 2222\n", "  user: deploy\n", "  key: keys/id\n",
        "  labels: {zone: b}\n"])]
    assert after.index("- name: web4") < after.index("# spare: web3")
    node = inventory.load(hand).nodes[-1]
    assert (node.name, node.host, node.port, node.user, node.labels) == ("web4", "10.0.0.4", 2222, "deploy",
                                                                         (("zone", "b"),))
    assert os.stat(hand).st_mode & 0o777 == 0o644


def test_relabelling_touches_only_the_labels_and_removing_only_that_entry(hand):
    set_labels(hand, "web1", {"zone": "c", "disk": "ssd"})
    after = open(hand).read()
    assert changes(HAND, after) == [("insert", [], ["  labels: {zone: c, disk: ssd}\n"])]
    set_labels(hand, "web2", {"zone": "b"})
    assert changes(after, open(hand).read()) == [
        ("replace", after.splitlines(keepends=True)[11:13], ["  labels: {zone: b}\n"])]
    after = open(hand).read()
    remove_node(hand, "web2")
    assert changes(after, open(hand).read()) == [("delete", after.splitlines(keepends=True)[9:12], [])]
    assert [n.name for n in inventory.load(hand).nodes] == ["web1"]


def test_labels_between_other_keys_and_labels_that_open_the_entry(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text("nodes:\n  - name: a\n    labels:   # where it runs\n      zone: a\n\n    # the lab box\n"
                    "    host: h   # by name\n  - labels: {zone: x}\n    name: b\n    host: h2\n")
    set_labels(str(path), "a", {"zone": "b"})
    set_labels(str(path), "b", {})
    assert path.read_text() == ("nodes:\n  - name: a\n    labels: {zone: b}   # where it runs\n\n    # the lab box\n"
                                "    host: h   # by name\n  - name: b\n    host: h2\n    labels: {}\n")


def test_a_file_with_windows_line_ends_keeps_them(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_bytes(HAND.replace("\n", "\r\n").encode())
    add_node(str(path), NEW)
    set_labels(str(path), "web1", {"zone": "c"})
    data = path.read_bytes()
    assert b"\r\n" in data and data.count(b"\n") == data.count(b"\r\n")
    assert [n.name for n in inventory.load(str(path)).nodes] == ["web1", "web2", "web4"]


def test_in_a_file_of_mixed_line_ends_only_the_new_lines_are_new(tmp_path):
    path = tmp_path / "inventory.yml"
    mixed = HAND.replace("# our cluster\n", "# our cluster\r\n")
    path.write_bytes(mixed.encode())
    add_node(str(path), NEW)
    after = path.read_bytes().decode()
    assert [tag for tag, _, _ in changes(mixed, after)] == ["insert"]
    assert after.count("\r\n") == 1


@pytest.mark.parametrize("edit, message", [
    (lambda p: add_node(p, dict(NEW, name="web1")), "already in nodes"),
    (lambda p: add_node(p, dict(NEW, host="bad host!")), "host"),
    (lambda p: add_node(p, dict(NEW, name="Web_4")), "name"),
    (lambda p: set_labels(p, "web9", {}), "no node named 'web9'"),
    (lambda p: remove_node(p, "web9"), "no node named 'web9'"),
])
def test_a_refused_edit_leaves_the_file_byte_for_byte(hand, edit, message):
    with pytest.raises(InventoryError, match=message):
        edit(hand)
    assert open(hand).read() == HAND


def test_the_last_node_and_a_flow_style_list_are_refused(tmp_path):
    one = tmp_path / "one.yml"
    one.write_text("nodes:\n  - name: a\n    host: h\n")
    with pytest.raises(InventoryError, match="only node"):
        remove_node(str(one), "a")
    flow = tmp_path / "flow.yml"
    flow.write_text("nodes: [{name: a, host: h}]\n")
    with pytest.raises(InventoryError, match="block list"):
        add_node(str(flow), NEW)
    assert flow.read_text() == "nodes: [{name: a, host: h}]\n"


TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(TEXT, TEXT, max_size=4))
def test_any_labels_read_back_exactly(tmp_path, labels):
    path = tmp_path / "inventory.yml"
    path.write_text(HAND)
    set_labels(str(path), "web2", labels)
    assert dict(inventory.load(str(path)).nodes[1].labels) == labels
