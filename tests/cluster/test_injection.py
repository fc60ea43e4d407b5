"""Shell injection through every string the API and the CLI take.

Each payload would create a marker file if any shell on the master or a node
ever interpreted it. Every string field of every endpoint, every path and
query parameter and every CLI option gets each payload: it is refused (4xx,
or a one-line CLI error) or passed through as a literal, which is then
checked on the engines. No marker file may appear anywhere.
"""
import glob
import os
import shlex
import subprocess
import sys
import traceback
import urllib.parse
import uuid

import pytest
from click.testing import CliRunner

from conftest import NODE_BASE, ROOT, SANDBOX, api, wait_for
import bicycle  # noqa: E402 (bicycle.py at the root, on the path conftest sets)

pytestmark = pytest.mark.usefixtures("clean")

RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID", uuid.uuid4().hex)[:8]     # the same in every worker
MARKER = f"/tmp/bicycle-pwned-{RUN}"
PAYLOADS = [
    f"$(touch {MARKER}-a)",
    f"`touch {MARKER}-b`",
    f"x; touch {MARKER}-c",
    f"x && touch {MARKER}-d",
    f"x\ntouch {MARKER}-e\n",
    f"x' ; touch {MARKER}-f; echo '",
    f'x" ; touch {MARKER}-g; echo "',
    f"x | touch {MARKER}-h",
    f"$(touch${{IFS}}{MARKER}-i)",
    f"--help; touch {MARKER}-j",
]


def markers():
    return glob.glob(MARKER + "*")


@pytest.fixture(autouse=True)
def no_marker_after():
    yield
    assert markers() == []


def base(**fields):
    return dict({"name": "inj", "image": "bicycle/demo:1", "replicas": 1}, **fields)


def refused(r):
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
    assert "message" in r.json()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_fields_that_must_match_a_pattern_refuse_every_payload(payload):
    bodies = [base(name=payload), base(image=payload), base(image=f"bicycle/demo:1{payload}"),
              base(ports=[payload]), base(ports=[{"published": payload, "target": 80}]), base(restart=payload),
              base(env={payload: "v"}), base(labels={payload: "v"}), base(secrets={payload: "v"}),
              base(replicas=payload), base(command=[payload, "\x00"])]
    for body in bodies:
        refused(api("POST", "/service", body, params={"wait": "false"}))
    assert api("GET", "/service").json() == []
    api("POST", "/service", base(), params={"wait": "false"}).raise_for_status()
    for body in bodies[1:]:
        body.pop("name")
        refused(api("PATCH", "/service/inj", body, params={"wait": "false"}))
    assert api("GET", "/service/inj").json()["version"] == 1


@pytest.mark.parametrize("payload", PAYLOADS)
def test_path_and_query_parameters_refuse_every_payload(payload):
    api("POST", "/service", base(), params={"wait": "false"}).raise_for_status()
    quoted = urllib.parse.quote(payload, safe="")
    for method, path in [("GET", f"/service/{quoted}"), ("PATCH", f"/service/{quoted}"),
                         ("DELETE", f"/service/{quoted}"), ("GET", f"/service/{quoted}/logs"),
                         ("GET", f"/service/{quoted}/stats"), ("GET", f"/nodes/{quoted}"),
                         ("POST", f"/nodes/{quoted}/drain"), ("POST", f"/nodes/{quoted}/activate"),
                         ("GET", f"/nodes/{quoted}/logs"), ("GET", f"/nodes/{quoted}/stats")]:
        refused(api(method, path, {"replicas": 2} if method == "PATCH" else None))
    for method, path, name in [("GET", "/service/inj/logs", "tail"), ("GET", "/service/inj/logs", "since"),
                               ("GET", "/service/inj/logs", "follow"), ("GET", "/service/inj/logs", "timestamps"),
                               ("GET", "/nodes/node1/logs", "since"), ("GET", "/events", "limit"),
                               ("GET", "/events", "since"), ("GET", "/events", "follow"),
                               ("PATCH", "/service/inj", "wait"), ("PATCH", "/service/inj", "timeout"),
                               ("POST", "/nodes/node1/drain", "wait"), ("DELETE", "/service/inj", "timeout")]:
        refused(api(method, path, {"replicas": 2} if method == "PATCH" else None, params={name: payload}))
    assert api("GET", "/service/inj").json()["version"] == 1
    assert all(n["availability"] == "active" for n in api("GET", "/nodes").json())


def test_free_text_fields_reach_the_container_as_literals(engines):
    env = {f"P{i}": p for i, p in enumerate(PAYLOADS)}
    labels = {f"l{i}": p for i, p in enumerate(PAYLOADS)}
    secrets = {f"S{i}": p.replace("\n", " ") for i, p in enumerate(PAYLOADS)}
    command = ["sh", "-c", 'sleep 3600', "literal", *PAYLOADS]
    r = api("POST", "/service", base(replicas=3, env=env, labels=labels, secrets=secrets, command=command))
    assert r.status_code == 201, r.text
    containers = [c for cs in engines.containers("inj").values() for c in cs]
    assert len(containers) == 3
    for c in containers:
        got = c.attrs["Config"]["Env"]
        for k, v in list(env.items()) + list(secrets.items()):
            assert f"{k}={v}" in got
        for k, v in labels.items():
            assert c.labels[k] == v
        assert c.attrs["Config"]["Cmd"] == command
    # The image's command itself is a literal too: an executable named like a payload.
    r = api("POST", "/service", base(name="inj-cmd", replicas=1, command=[PAYLOADS[0]]), params={"wait": "false"})
    assert r.status_code == 202, r.text
    wait_for(lambda: any(e["kind"] == "failed" and "inj-cmd" in e["message"]
                         for e in api("GET", "/events", params={"limit": 100}).json()), 30)


# -- the CLI ---------------------------------------------------------------------

INVENTORY = os.path.join(SANDBOX, "inventory.yml")


def cli(*args, env=None):
    """A real `bicycle.py` process."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", INVENTORY, *args],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, **(env or {})))
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode != 0:
        assert r.stderr.strip().count("\n") == 0 or r.stderr.startswith("Usage:"), r.stderr
    return r


def cli_here(*args, env=None, inventory=True):
    """The same command line (bicycle.main, click's parsing included) run in
    this process, so that every option gets every payload in seconds. Any
    exception but the CLI's own exit fails the test."""
    r = CliRunner().invoke(bicycle.main, [*(["-i", INVENTORY] if inventory else []), *args], env=env)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError(f"{args}: " + "".join(traceback.format_exception(*r.exc_info)))
    if r.exit_code != 0:
        assert r.stderr.strip().count("\n") == 0 or r.stderr.startswith("Usage:"), (args, r.stderr)
    return r


def cli_refusals(payload, tmp):
    """Every option and argument of the CLI that takes a value, given `payload`
    where each of them would have to refuse it: [(argv, env, with -i)]."""
    missing = f"{tmp}/{payload}"              # a file or folder named like the payload: absent
    create = ["service", "create", "inj", "--image", "bicycle/demo:1", "--no-wait"]
    argvs = [
        # service create: every option
        ["service", "create", payload, "--image", "bicycle/demo:1", "--no-wait"],
        ["service", "create", "inj", "--image", payload, "--no-wait"],
        [*create, "--replicas", payload], [*create, "--publish", payload],
        [*create, "--env", f"{payload}=v"], [*create, "--env", payload],
        [*create, "--label", f"{payload}=v"], [*create, "--label", payload],
        [*create, "--restart", payload],
        [*create, "--secret", payload], [*create, "--secret", f"S={payload}"],
        [*create, "--secret", f"S=@{missing}"], [*create, "--secret", f"{payload}=@{tmp}/ok-secret"],
        # the other service commands, on a service that exists and on a name that is the payload
        ["service", "ps", payload], ["service", "scale", payload, "2"], ["service", "scale", "keep", payload],
        ["service", "rm", payload], ["service", "update", payload, "--image", "bicycle/demo:2"],
        ["service", "update", "keep", "--image", payload], ["service", "update", "keep", "--secret", payload],
        ["service", "update", "keep", "--secret", f"S={payload}"],
        ["service", "update", "keep", "--secret", f"S=@{missing}"],
        # nodes
        ["node", "drain", payload], ["node", "activate", payload], ["node", "trust", payload],
        ["node", "trust", payload, "--yes"], ["node", "trust", "node1", "--fingerprint", payload],
        # logs, top, events
        ["logs", payload], ["logs", "-", "--node", payload], ["logs", "keep", "--tail", payload],
        ["logs", "keep", "--since", payload], ["logs", "-", "--node", "node1", "--tail", payload],
        ["logs", "-", "--node", "node1", "--since", payload], ["top", payload], ["top", "--node", payload],
        ["events", "--limit", payload],
        # the master and the sandbox (an up whose nodes are taken stops before it starts anything)
        ["--api", payload, "status"], ["up", "--name", payload],
        ["sandbox", "up", "--api", payload, "--dir", f"{tmp}/sb"], ["sandbox", "up", "--nodes", payload],
        ["sandbox", "up", "--base", payload], ["sandbox", "up", "--dir", missing, "--base", str(NODE_BASE)],
        ["sandbox", "status", "--dir", payload], ["sandbox", "status", "--dir", missing],
    ]
    out = [(argv, None, True) for argv in argvs]
    out += [(["-i", payload, "status"], None, False), (["-i", missing, "status"], None, False),
            (["status"], {"BICYCLE_INVENTORY": payload}, False), (["status"], {"BICYCLE_API": payload}, True),
            (["status"], {"BICYCLE_TOKEN": payload}, True)]
    return out


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_cli_option_refuses_or_passes_each_payload_literally(engines, payload, tmp_path):
    api("POST", "/service", base(name="keep"), params={"wait": "false"}).raise_for_status()
    keep = api("GET", "/service/keep").json()
    (tmp_path / "ok-secret").write_text("v")
    refusals = cli_refusals(payload, tmp_path)
    assert len(refusals) >= 45
    for argv, env, inventory in refusals:
        r = cli_here(*argv, env=env, inventory=inventory)
        assert r.exit_code != 0, (argv, env, r.stdout)
    # Taken as a folder, it is only a name: no sandbox there, nothing to remove or create.
    r = cli_here("sandbox", "down", "--dir", f"{tmp_path}/{payload}")
    assert r.exit_code == 0 and not os.path.lexists(f"{tmp_path}/{payload}")
    assert [(s["name"], s["spec"], s["version"]) for s in api("GET", "/service").json()] == \
        [("keep", keep["spec"], 1)]
    assert all(n["availability"] == "active" for n in api("GET", "/nodes").json())

    # Where a value is free text, a real process passes it through as a literal.
    secret_file = tmp_path / "secret"
    secret_file.write_text(payload.replace("\n", " "))
    r = cli("service", "create", "inj", "--image", "bicycle/demo:1", "--env", f"E={payload}",
            "--label", f"l={payload}", "--secret", f"S=@{secret_file}", "--secret", "FROM_ENV",
            "--cmd", f"sh -c 'sleep 3600' literal {shlex.quote(payload)} {payload}",
            env={"FROM_ENV": payload.replace("\n", " ")})
    assert r.returncode == 0, r.stderr
    (c,) = [c for cs in engines.containers("inj").values() for c in cs]
    assert f"E={payload}" in c.attrs["Config"]["Env"] and c.labels["l"] == payload
    assert f"S={payload.replace(chr(10), ' ')}" in c.attrs["Config"]["Env"]
    assert f"FROM_ENV={payload.replace(chr(10), ' ')}" in c.attrs["Config"]["Env"]
    # --cmd is split like a shell would, never run by one: quoted, the payload is one word.
    assert c.attrs["Config"]["Cmd"] == ["sh", "-c", "sleep 3600", "literal", payload, *shlex.split(payload)]
    assert markers() == []


def test_cli_names_never_reach_another_endpoint():
    """A name is one segment of the API path: a '/', '?' or '..' in it never
    turns a command into another one (drain into activate, a scale of
    'keep?x=' into a scale of keep, a service into the /state document)."""
    api("POST", "/service", base(name="keep")).raise_for_status()
    assert api("POST", "/nodes/node1/drain").status_code == 200
    try:
        for argv in (["node", "drain", "node1/activate?x="], ["node", "activate", "node1/drain?x="],
                     ["service", "scale", "keep?x=", "3"], ["service", "update", "keep?x=", "--image", "bicycle/demo:2"],
                     ["service", "rm", "keep?x="], ["service", "rm", "keep#"], ["service", "ps", "../state"],
                     ["service", "ps", ".."], ["service", "ps", "."], ["logs", "../nodes/node1"],
                     ["logs", "-", "--node", "../service/keep"], ["top", "../nodes/node1"],
                     ["top", "--node", "../service/keep"]):
            r = cli_here(*argv)
            assert r.exit_code != 0, (argv, r.stdout)
        assert [(n["name"], n["availability"]) for n in api("GET", "/nodes").json()] == \
            [("node1", "drain"), ("node2", "active"), ("node3", "active")]
        keep = api("GET", "/service/keep").json()
        assert (keep["version"], keep["replicas"]["desired"], keep["spec"]["image"]) == (1, 1, "bicycle/demo:1")
    finally:
        api("POST", "/nodes/node1/activate")
