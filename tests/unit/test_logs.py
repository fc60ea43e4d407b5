"""Pure parts of logs and stats: exact command lines, parsing, merging in time order."""
import shlex

import pytest

from master.logs import Logs, merge, prefix, render, marker, split
from model import Container
from remote import commands, parse
from remote.transport import Result


def c(slot, node, service="web"):
    return Container(id=f"id{slot}{node}", name=f"{service}.{slot}.abc", node=node, service=service, slot=slot,
                     spec="s", image="i", status="running")


def test_logs_command_lines():
    assert shlex.join(commands.logs("abc123", tail=50, since="10m")) == (
        "sh -c 'exec docker logs \"$@\" 2>&1' bicycle-logs --timestamps --tail 50 --since 10m -- abc123")
    assert shlex.join(commands.logs("abc123", follow=True)) == (
        "sh -c 'exec docker logs \"$@\" 2>&1' bicycle-logs --timestamps --follow -- abc123")


def test_stats_command_line():
    assert shlex.join(commands.stats(["a", "b"])) == (
        "docker stats --no-stream --no-trunc --format '{{json .}}' -- a b")


def test_log_line_splits_the_engine_timestamp():
    assert parse.log_line("2026-11-25T15:44:34.209481123Z hello world") == \
        ("2026-11-25T15:44:34.209481123Z", "hello world")
    assert parse.log_line("no stamp here") == ("", "no stamp here")
    assert parse.log_line("") == ("", "")


def test_stats_parse_units_and_percentages():
    out = ('{"ID":"0123456789abcdef","Name":"web.1.a","CPUPerc":"12.50%","MemUsage":"1.5MiB / 2GiB","MemPerc":"0.07%"}\n'
           '{"ID":"fedcba9876543210","Name":"web.2.b","CPUPerc":"--","MemUsage":"0B / 0B","MemPerc":"--"}\n')
    rows = parse.stats(out)
    assert rows[0] == {"id": "0123456789ab", "name": "web.1.a", "cpu_percent": 12.5,
                       "memory_bytes": 1572864, "memory_limit_bytes": 2 * 1024 ** 3, "memory_percent": 0.07}
    assert rows[1]["cpu_percent"] is None and rows[1]["memory_bytes"] == 0
    with pytest.raises(parse.ParseError):
        parse.stats("not json\n")


def test_merge_orders_by_engine_time_and_keeps_each_containers_order():
    a, b = c(1, "node1"), c(2, "node2")
    batches = [(a, [("2026-01-01T00:00:02.000000000Z", "a2"), ("2026-01-01T00:00:04.000000000Z", "a4")]),
               (b, [("2026-01-01T00:00:01.000000000Z", "b1"), ("2026-01-01T00:00:03.000000000Z", "b3"),
                    ("", "b-unstamped")])]
    assert [text for _, _, text in merge(batches)] == ["b1", "a2", "b3", "a4", "b-unstamped"]


def test_prefix_render_and_marker():
    x = c(3, "node2")
    assert prefix(x) == "web.3@node2 |"
    assert render(x, "2026-01-01T00:00:01Z", "hi", timestamps=False) == "web.3@node2 | hi"
    assert render(x, "2026-01-01T00:00:01Z", "hi", timestamps=True) == "web.3@node2 | 2026-01-01T00:00:01Z hi"
    assert marker("node2", "node is down") == "# node2 unreachable: node is down"


# -- docker's own words are about the node, never a container's output ----------------

class FakeConnection:
    def __init__(self, stdout, exit_code):
        self.answer = Result(exit_code, stdout, "", 0.0)

    def run(self, argv, timeout=None, stdin=None):
        return self.answer


class FakeFleet:
    def __init__(self, answers):
        self.connections = {node: FakeConnection(*a) for node, a in answers.items()}

    def fan_out_items(self, fn, items):
        out = []
        for item in items:
            try:
                out.append(fn(item))
            except Exception as e:
                out.append(e)
        return out


class AllReady:
    def statuses(self, now):
        return {"node1": "ready", "node2": "ready"}


DEAD_ENGINE = ("Cannot connect to the Docker daemon at unix:///run/bicycle-sb/22/docker.sock. "
               "Is the docker daemon running?\n")


def test_split_keeps_the_stamped_lines_and_returns_docker_s_own():
    out = "2026-11-25T15:44:34.000000001Z hello\nError response from daemon: boom\n"
    assert split(out) == ([("2026-11-25T15:44:34.000000001Z", "hello")], ["Error response from daemon: boom"])


def test_an_engine_that_just_died_gives_a_node_line_not_a_container_line():
    fleet = FakeFleet({"node1": ("2026-11-25T15:44:34.000000001Z up\n", 0), "node2": (DEAD_ENGINE, 1)})
    lines = Logs(fleet, AllReady(), lambda: 0.0).snapshot([c(1, "node1"), c(2, "node2")])
    assert lines == ["# node2 unreachable: " + DEAD_ENGINE.strip(), "web.1@node1 | up"]


def test_a_container_removed_while_its_log_was_read_gives_nothing():
    fleet = FakeFleet({"node1": ("Error response from daemon: No such container: id1node1\n", 1)})
    assert Logs(fleet, AllReady(), lambda: 0.0).snapshot([c(1, "node1")]) == []
