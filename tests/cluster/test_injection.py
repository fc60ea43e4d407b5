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
import urllib.parse
import uuid

import pytest

from conftest import ROOT, SANDBOX, api, wait_for

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

def cli(*args, env=None):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bicycle.py"), "-i", os.path.join(SANDBOX, "inventory.yml"),
                        *args], capture_output=True, text=True, timeout=120, env=dict(os.environ, **(env or {})))
    assert "Traceback" not in r.stderr, r.stderr
    if r.returncode != 0:
        assert r.stderr.strip().count("\n") == 0 or r.stderr.startswith("Usage:"), r.stderr
    return r


@pytest.mark.parametrize("payload", PAYLOADS[:6])
def test_every_cli_option_refuses_or_passes_each_payload_literally(engines, payload, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(payload.replace("\n", " "))
    refusals = [
        ["service", "create", payload, "--image", "bicycle/demo:1", "--no-wait"],
        ["service", "create", "inj", "--image", payload, "--no-wait"],
        ["service", "create", "inj", "--image", "bicycle/demo:1", "--replicas", payload],
        ["service", "create", "inj", "--image", "bicycle/demo:1", "--publish", payload, "--no-wait"],
        ["service", "create", "inj", "--image", "bicycle/demo:1", "--env", f"{payload}=v", "--no-wait"],
        ["service", "create", "inj", "--image", "bicycle/demo:1", "--label", f"{payload}=v", "--no-wait"],
        ["service", "create", "inj", "--image", "bicycle/demo:1", "--restart", payload],
        ["service", "create", "inj", "--image", "bicycle/demo:1", "--secret", payload, "--no-wait"],
        ["service", "create", "inj", "--image", "bicycle/demo:1", "--secret", f"S={payload}", "--no-wait"],
        ["service", "ps", payload], ["service", "scale", payload, "2"], ["service", "rm", payload],
        ["service", "update", payload, "--image", "bicycle/demo:2"],
        ["node", "drain", payload], ["node", "activate", payload], ["node", "trust", payload],
        ["logs", payload], ["logs", "-", "--node", payload], ["logs", "x", "--tail", payload],
        ["logs", "x", "--since", payload], ["top", payload], ["top", "--node", payload],
        ["events", "--limit", payload], ["--api", payload, "status"], ["up", "--name", payload],
        ["sandbox", "up", "--api", payload, "--dir", str(tmp_path / "sb")], ["sandbox", "status", "--dir", payload],
    ]
    for argv in refusals:
        r = cli(*argv)
        assert r.returncode != 0, argv
    assert api("GET", "/service").json() == []
    r = cli("service", "create", "inj", "--image", "bicycle/demo:1", "--env", f"E={payload}",
            "--label", f"l={payload}", "--secret", f"S=@{secret_file}", "--secret", "FROM_ENV",
            "--cmd", f"sh -c 'sleep 3600' literal {shlex.quote(payload)}", env={"FROM_ENV": payload.replace("\n", " ")})
    assert r.returncode == 0, r.stderr
    (c,) = [c for cs in engines.containers("inj").values() for c in cs]
    assert f"E={payload}" in c.attrs["Config"]["Env"] and c.labels["l"] == payload
    assert f"S={payload.replace(chr(10), ' ')}" in c.attrs["Config"]["Env"]
    assert f"FROM_ENV={payload.replace(chr(10), ' ')}" in c.attrs["Config"]["Env"]
    assert c.attrs["Config"]["Cmd"][-1] == payload
