"""The SSH transport against real sshd: one connection reused, pinned host keys, quoting."""
import os

import pytest

from conftest import SANDBOX
from master.inventory import load
from remote import commands
from remote.transport import NodeConnection, HostKeyError, RemoteError, Fleet


@pytest.fixture
def inventory(sandbox):
    return load(sandbox)


def test_one_connection_serves_many_commands(inventory):
    node = inventory.nodes[0]
    conn = NodeConnection(node, inventory.settings.known_hosts)
    try:
        for _ in range(20):
            assert conn.run(["true"]).ok
        assert conn.opened == 1
        assert conn.run(commands.list_containers()).ok
        assert conn.opened == 1
    finally:
        conn.close()


def test_openssh_answers_a_ping_on_the_open_connection(inventory):
    conn = NodeConnection(inventory.nodes[0], inventory.settings.known_hosts)
    try:
        for _ in range(5):
            assert conn.ping(timeout=5) < 5
        assert conn.run(["true"]).ok
        assert conn.opened == 1
    finally:
        conn.close()


def test_reopens_after_the_connection_drops(inventory):
    conn = NodeConnection(inventory.nodes[0], inventory.settings.known_hosts)
    try:
        assert conn.run(["true"]).ok
        conn._conn.transport.close()          # the network dropped it
        assert conn.run(["echo", "again"]).stdout == "again\n"
        assert conn.opened == 2
    finally:
        conn.close()


def test_unknown_host_key_is_refused(inventory, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conn = NodeConnection(inventory.nodes[0], str(empty))
    with pytest.raises(HostKeyError):
        conn.run(["true"])


def test_other_host_key_is_refused(inventory, tmp_path):
    lines = open(inventory.settings.known_hosts).read().splitlines()
    first, second = lines[0].split(), lines[1].split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{first[0]} {second[1]} {second[2]}\n")     # node1's address with node2's key
    conn = NodeConnection(inventory.nodes[0], str(wrong))
    with pytest.raises(RemoteError):
        conn.run(["true"])
    assert conn.opened == 0


def test_hostile_values_reach_the_node_as_literals(inventory):
    conn = NodeConnection(inventory.nodes[0], inventory.settings.known_hosts)
    marker = f"/tmp/bicycle-pwned-{os.getpid()}"
    hostile = [f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", f"&& touch {marker}",
               f"\ntouch {marker}\n", f"'\"; touch {marker}"]
    try:
        result = conn.run(["printf", "%s|", *hostile])
        assert result.ok
        assert result.stdout == "".join(h + "|" for h in hostile)
        assert not os.path.exists(marker)
    finally:
        conn.close()


def test_fan_out_returns_errors_as_values(inventory, tmp_path):
    from dataclasses import replace
    nodes = list(inventory.nodes) + [replace(inventory.nodes[0], name="ghost", host="127.0.0.254")]
    fleet = Fleet(nodes, inventory.settings.known_hosts, connect_timeout=2)
    try:
        results = fleet.fan_out(lambda n: fleet.run(n, ["echo", n]))
        for node in inventory.nodes:
            assert results[node.name].stdout == f"{node.name}\n"
        assert isinstance(results["ghost"], RemoteError)
    finally:
        fleet.close()
