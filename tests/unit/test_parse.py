"""remote.parse: engine output -> model values, on captured `docker inspect` output."""
import dataclasses
import json
import os

import pytest

from model import ClaimAnswer, Container, Lease, LeaseRead, NO_STAMP, RenewAnswer, Replica, Stamp
from remote import parse
from remote.parse import ParseError, container_id, containers

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def fixture(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return f.read()


def test_inspect_output_gives_only_labelled_containers():
    assert containers("node1", fixture("inspect.json")) == [
        Container(id="3f4e8a9b2c1d0e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f",
                  name="web.1.a1b2c3", node="node1", service="web", slot=1, spec="f44081b37921",
                  image="nginx:1.25", status="running",
                  created_at="2024-03-05T10:14:22.918273645Z", started_at="2024-03-05T10:14:23.402716528Z",
                  exit_code=0),
        Container(id="8c2d4f6a8b0c2e4d6f8a0b2c4e6d8f0a2b4c6e8d0f2a4b6c8e0d2f4a6b8c0e2d",
                  name="batch.2.d4e5f6", node="node1", service="batch", slot=2, spec="0c1d2e3f4a5b",
                  image="alpine:3.19", status="exited",
                  created_at="2024-03-05T10:14:22.771402117Z", started_at="2024-03-05T10:14:23.118650914Z",
                  finished_at="2024-03-05T10:14:25.131907220Z", exit_code=137),
    ]


def test_running_follows_the_engine_state():
    web, batch = containers("node1", fixture("inspect.json"))
    assert web.running and not batch.running


@pytest.mark.parametrize("stdout", ["[]", "[]\n", ""])
def test_no_containers(stdout):
    assert containers("node1", stdout) == []


def labelled(**state):
    return {"Id": "abc", "Name": "/web.3.x", "Created": "2024-01-01T00:00:00Z",
            "Config": {"Image": "alpine", "Labels": {"bicycle.service": "web", "bicycle.slot": "3"}},
            "State": dict({"Status": "created", "ExitCode": 0, "StartedAt": "0001-01-01T00:00:00Z"}, **state)}


def test_a_container_that_never_started_has_no_start_time():
    [c] = containers("n", json.dumps([labelled()]))
    assert (c.status, c.started_at, c.running, c.slot, c.spec) == ("created", "", False, 3, "")


def test_restarting_counts_as_running():
    [c] = containers("n", json.dumps([labelled(Status="restarting")]))
    assert c.running


def test_a_bad_slot_label_becomes_slot_zero():
    item = labelled()
    item["Config"]["Labels"]["bicycle.slot"] = "one"
    assert containers("n", json.dumps([item]))[0].slot == 0


@pytest.mark.parametrize("stdout", [
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
    '[{"Id": "abc"',                      # cut off
    '{"Id": "abc"}',                      # an object, not an array
    "null",
    '"[]"',
])
def test_garbage_raises_parse_error_naming_the_node(stdout):
    with pytest.raises(ParseError, match="node7"):
        containers("node7", stdout)


@pytest.mark.parametrize("stdout", ["[1]", '[{"Config": {"Labels": {"bicycle.service": "w"}}, "State": "up"}]'])
def test_garbage_items_raise_parse_error(stdout):
    with pytest.raises(ParseError):
        containers("node7", stdout)


def test_container_id_is_the_last_line():
    cid = "3f4e8a9b2c1d0e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f"
    assert container_id(cid + "\n") == cid
    assert container_id("some earlier output\n" + cid + "\n\n  \n") == cid


@pytest.mark.parametrize("stdout", ["", "\n  \n", None])
def test_container_id_missing(stdout):
    with pytest.raises(ParseError):
        container_id(stdout)


def test_only_vanished_containers_excuse_a_failed_listing():
    from remote.parse import only_vanished
    assert only_vanished("Error: No such object: 0123abcd\n")
    assert only_vanished("Error response from daemon: No such container: ab\nError: No such object: cd\n")
    assert not only_vanished("")
    assert not only_vanished("Cannot connect to the Docker daemon at unix:///run/x.sock. Is the docker daemon running?\n")
    assert not only_vanished("Error: No such object: ab\nerror during connect: EOF\n")


def test_output_captured_from_a_real_engine():
    """dockerd 20.10's `docker inspect` of a running and an exited labelled
    container and an unlabelled one, captured from a sandbox node."""
    found = containers("node1", fixture("inspect-captured.json"))
    assert [(c.name, c.service, c.slot, c.spec, c.status, c.exit_code) for c in found] == [
        ("web.1.a1b2c3", "web", 1, "f44081b37921", "running", 0),
        ("batch.2.d4e5f6", "batch", 2, "0c1d2e3f4a5b", "exited", 3),
    ]
    web, batch = found
    assert web.running and web.finished_at == "" and web.started_at.startswith("2026-11-25T16:42:49.")
    assert len(web.id) == 64 and web.image == "bicycle/demo:1"
    # An instant exit: the engine may record FinishedAt a little before StartedAt.
    assert batch.finished_at < batch.started_at


def test_an_instant_exit_counts_as_a_crash():
    from scheduler.backoff import Backoffs
    from model import Service, ServiceSpec, parse_time
    batch = containers("node1", fixture("inspect-captured.json"))[1]
    b = Backoffs()
    exits = b.observe([Service("batch", ServiceSpec(image="bicycle/demo:1"), 2)], [batch], now=100.0,
                      wall=parse_time(batch.finished_at) + 1)
    assert exits == [("batch", 2, "exited with code 3 after 0.0s")]
    # Its replacement dies the same way: a crash in a row, so the wait grows.
    again = dataclasses.replace(batch, id="0" * 64)
    b.observe([Service("batch", ServiceSpec(image="bicycle/demo:1"), 2)], [again], now=101.0,
              wall=parse_time(batch.finished_at) + 2)
    assert b.crash[("batch", 2)].count == 2 and b.crash[("batch", 2)].not_before > 101.0


# -- node-side lease answers (remote/lease.py) --------------------------------------

def test_claim_answers():
    assert parse.claim("granted 7\nver \n") == ClaimAnswer(True, 7, Replica(NO_STAMP, ""))
    assert parse.claim('refused 102\nver 7 12\n{"version": 12}\n') == (
        ClaimAnswer(False, 102, Replica(Stamp(7, 12), '{"version": 12}\n')))
    assert parse.claim("unreadable\nver 7 3\n{}") == ClaimAnswer(False, None, Replica(Stamp(7, 3), "{}"))
    # the replica text is passed on as it is, torn or not
    assert parse.claim("granted 8\nver 7 3\n{\"serv").replica == Replica(Stamp(7, 3), '{"serv')


def test_renew_answers():
    assert parse.renew("ok 5\n") == RenewAnswer(True, 5)
    assert parse.renew("lost 102\n") == RenewAnswer(False, 102)
    assert parse.renew("lost 0\n") == RenewAnswer(False, 0)
    assert parse.renew("lost unreadable\n") == RenewAnswer(False, None)


def test_lease_answers():
    assert parse.lease("epoch 0\nlease \nver \n") == LeaseRead(0, None, NO_STAMP)
    assert parse.lease("epoch 102\nlease 102 m2 7\nver 7 12\n") == LeaseRead(102, Lease(102, "m2", 7), Stamp(7, 12))
    assert parse.lease("epoch unreadable\nlease 7 m1 3\nver 7 12\n") == (
        LeaseRead(None, Lease(7, "m1", 3), Stamp(7, 12)))
    assert parse.lease("epoch unreadable\nlease \nver \n") == LeaseRead(None, None, NO_STAMP)


def test_replica_answers():
    assert parse.replica("ver \n") == Replica(NO_STAMP, "")
    assert parse.replica("ver 7 12\n{\n}\n") == Replica(Stamp(7, 12), "{\n}\n")


@pytest.mark.parametrize("reader, stdout", [
    (parse.claim, ""),
    (parse.claim, "granted 7\n"),
    (parse.claim, "granted\nver \n"),
    (parse.claim, "granted seven\nver \n"),
    (parse.claim, "refused unreadable\nver \n"),
    (parse.claim, "maybe 7\nver \n"),
    (parse.claim, "granted 7\nver 7\n"),
    (parse.claim, "granted 7\nver 7 x\n"),
    (parse.claim, "bash: flock: command not found\n"),
    (parse.renew, ""),
    (parse.renew, "ok\n"),
    (parse.renew, "ok unreadable\n"),
    (parse.renew, "ok x\n"),
    (parse.renew, "lost 7 8\n"),
    (parse.renew, "renewed 7\n"),
    (parse.lease, ""),
    (parse.lease, "lease 7 m1 0\nver \n"),
    (parse.lease, "epoch \nlease \nver \n"),
    (parse.lease, "epoch seven\nlease \nver \n"),
    (parse.lease, "epoch 7\nlease 7 m1\nver \n"),
    (parse.lease, "epoch 7\nlease 7 m1 x\nver \n"),
    (parse.lease, "epoch 7\nlease \nver 7 12 1\n"),
    (parse.replica, ""),
    (parse.replica, "{}\n"),
    (parse.replica, "ver x 1\n{}"),
])
def test_garbage_lease_answers_raise_parse_error(reader, stdout):
    with pytest.raises(ParseError):
        reader(stdout)


# -- the engine's own words when a docker command fails ---------------------------------

@pytest.mark.parametrize("stderr, expected", [
    ("Unable to find image 'nope/x:1' locally\n"
     "docker: Error response from daemon: pull access denied for nope/x, repository does not exist or may "
     "require 'docker login': denied: requested access to the resource is denied.\n"
     "See 'docker run --help'.\n",
     "Unable to find image 'nope/x:1' locally; pull access denied for nope/x, repository does not exist or may "
     "require 'docker login': denied: requested access to the resource is denied."),
    ("docker: Error response from daemon: Conflict. The container name \"/web.1.abc\" is already in use.\n"
     "Run 'docker run --help' for more information\n",
     "Conflict. The container name \"/web.1.abc\" is already in use."),
    ("Unable to find image 'demo:9' locally\n"
     "docker: Error response from daemon: Get \"https://registry.invalid/v2/\": dial tcp: lookup "
     "registry.invalid: no such host.\nSee 'docker run --help'.\n",
     "Unable to find image 'demo:9' locally; Get \"https://registry.invalid/v2/\": dial tcp: lookup "
     "registry.invalid: no such host."),
    ("", "docker exited 125"),
    ("See 'docker run --help'.\n", "docker exited 125"),
])
def test_engine_error_keeps_the_engine_s_words_not_docker_s_hints(stderr, expected):
    assert parse.engine_error(stderr, 125) == expected


def test_health_and_the_last_check_output_of_an_unhealthy_container():
    item = labelled(Status="running")
    item["State"]["Health"] = {"Status": "unhealthy", "FailingStreak": 3,
                               "Log": [{"ExitCode": 1, "Output": "old"}, {"ExitCode": 1, "Output": "wget: server\n returned error: HTTP/1.1 500 "}]}
    [c] = containers("n", json.dumps([item]))
    assert (c.health, c.health_log, c.unhealthy) == ("unhealthy", "wget: server returned error: HTTP/1.1 500", True)
    item["State"]["Health"] = {"Status": "healthy", "Log": [{"Output": "ok"}]}
    [c] = containers("n", json.dumps([item]))
    assert (c.health, c.health_log, c.unhealthy) == ("healthy", "", False)
    [c] = containers("n", json.dumps([labelled(Status="running")]))
    assert c.health == ""
