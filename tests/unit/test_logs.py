"""Pure parts of logs and stats: exact command lines, parsing, merging in time order."""
import shlex

import pytest

from master.logs import merge, prefix, render, marker
from model import Container
from remote import commands, parse


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
