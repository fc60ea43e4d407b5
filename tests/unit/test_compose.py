"""Compose files: interpolation, the Compose schema, the translation to
service bodies, and the deploy plan. Pure (files in tmp_path)."""
import os
import textwrap

import pytest
from hypothesis import given, strategies as st

from cli.compose import deploy
from cli.compose.interpolate import InterpolationError, interpolate
from cli.compose.load import ComposeError, load
from cli.compose.translate import translate
from model import Mount


def compose(tmp_path, text, env=None, dotenv=None, folder="shop"):
    where = tmp_path / folder
    where.mkdir(exist_ok=True)
    (where / "compose.yml").write_text(textwrap.dedent(text))
    if dotenv is not None:
        (where / ".env").write_text(dotenv)
    return load(str(where / "compose.yml"), environ=env or {})


def bodies(tmp_path, text, **kw):
    return {s.key: s.body for s in translate(compose(tmp_path, text, **kw))}


# -- interpolation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("${A}", "a"), ("$A-x", "a-x"), ("${UNSET}", ""), ("$$A", "$A"), ("cost $5", "cost $5"),
    ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${UNSET-d}", "d"),
    ("${A:+alt}", "alt"), ("${EMPTY:+alt}", ""), ("${EMPTY+alt}", "alt"), ("${UNSET+alt}", ""),
    ("${UNSET:-${A}}", "a"), ("${UNSET:-${UNSET2:-deep}}", "deep"), ("x${A}y${A}", "xaya"),
    ("${A:?need it}", "a"), ("{A}", "{A}"),
])
def test_interpolation_follows_compose(text, expected):
    assert interpolate(text, {"A": "a", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${UNSET:?say why}", "${EMPTY:?x}", "${UNSET?x}", "${A", "${1A}", "${A:=b}"])
def test_bad_or_required_interpolations_are_errors(text):
    with pytest.raises(InterpolationError):
        interpolate(text, {"A": "a", "EMPTY": ""})


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_a_dollar_is_unchanged(text):
    assert interpolate(text, {"A": "a"}) == text


@given(st.text())
def test_doubled_dollars_come_back_as_the_text(text):
    assert interpolate(text.replace("$", "$$"), {"A": "a", "B": "b"}) == text


def test_unset_variables_are_named(tmp_path):
    c = compose(tmp_path, """
        services:
          web: {image: "demo:${TAG}", environment: ["X=${NOPE:-fine}"]}
    """)
    assert c.unset == {"TAG"}


def test_numbers_may_come_from_variables(tmp_path):
    b = bodies(tmp_path, """
        services:
          web: {image: demo, deploy: {replicas: "${N}", update_config: {parallelism: "${N}"}}}
    """, env={"N": "3"})
    assert (b["web"]["replicas"], b["web"]["update"]["parallelism"]) == (3, 3)


def test_the_shell_environment_wins_over_dot_env(tmp_path):
    b = bodies(tmp_path, """
        services:
          web: {image: "demo:${TAG}", environment: {WHO: "${WHO}"}}
    """, env={"TAG": "2"}, dotenv="TAG=1\nWHO=dotenv\n")
    assert b["web"]["image"] == "demo:2" and b["web"]["env"] == {"WHO": "dotenv"}


# -- schema and Bicycle's support -----------------------------------------------------------------------

@pytest.mark.parametrize("text, says", [
    ("services: {web: {image: demo, colour: red}}", "services.web: additional property 'colour' is not allowed"),
    ("services: {web: {image: demo, ports: [{target: eighty}]}}", "services.web.ports.0"),
    ("services: {web: {image: demo, deploy: {replicas: many}}}", "services.web.deploy.replicas: 'many' is not"),
    ("services: {web: {image: demo, deploy: {replicas: -1}}}", "services.web (shop-web): replicas: must be"),
    ("servces: {web: {image: demo}}", "(top level)"),
    ("services: {web: {image: demo, privileged: true}}", "services.web.privileged: not supported by Bicycle"),
    ("services: {web: {build: .}}", "services.web: needs an image"),
    ("services: {web: {image: demo, ports: ['127.0.0.1:8080:80']}}", "publishes on one address (127.0.0.1)"),
    ("services: {web: {image: demo, ports: ['80']}}", "publishes no host port"),
    ("services: {web: {image: demo, volumes: ['cache:/c']}}", "no top-level volume 'cache'"),
    ("services: {web: {image: demo, volumes: ['~/x:/c']}}", "a path under ~"),
    ("services: {web: {image: demo, volumes: [{type: tmpfs, target: /t}]}}", "tmpfs mounts are not supported"),
    ("services: {web: {image: demo, secrets: [key]}}", "no top-level secret 'key'"),
    ("services: {web: {image: demo, depends_on: [db]}}", "no service 'db'"),
    ("services: {a: {image: demo, depends_on: [b]}, b: {image: demo, depends_on: [a]}}", "a cycle"),
    ("services: {web: {image: demo, deploy: {placement: {preferences: [{spread: node.labels.z}]}}}}",
     "deploy.placement.preferences: not supported"),
    ("services: {web: {image: demo, restart: sometimes}}", "services.web.restart"),
    ("services: {web_app: {image: demo}, web-app: {image: demo}}", "are both shop-web-app"),
    ("services: {web: {image: 'demo:${T:?set a tag}'}}", "required variable T is missing a value: set a tag"),
    ("services: [web]", "services: ['web'] is not of type 'object'"),
    ("services: {web: {image: demo}}\nsecrets: {key: {external: true}}", None),
    ("include: [db.yml]\nservices: {web: {image: demo}}", "include: not supported by Bicycle"),
    ("services: {web: {image: demo}}\nvolumes: {nfs: {driver_opts: {type: nfs}}}", "volumes.nfs: only the engine's"),
    ("services: {web: {image: demo, volumes: [{type: volume, source: d}]}}\nvolumes: {d: {}}", "needs a target"),
    ("services: {web: {image: demo, volumes: [{type: bind, target: /x}]}}", "a bind needs a source"),
    ("services: {web: {image: demo, volumes: [{type: volume, source: d, target: /x, volume: {subpath: a}}]}}\n"
     "volumes: {d: {}}", "the mount option subpath"),
    ("services: {web: {image: demo, ports: [{published: 80}]}}", "needs a target port"),
    ("services: {web: {image: demo, ports: [{target: 80, published: abc}]}}", "abc:80 is not a port"),
    ("services: {web: {image: demo, secrets: [{target: X}]}}", "services.web.secrets.0: needs a source"),
    ("services: {web: {image: demo, healthcheck: {interval: 10s}}}", "services.web.healthcheck: give its test"),
    ("services: {web: {image: demo, deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}}}",
     "deploy.resources.reservations.devices: not supported by Bicycle"),
    ("services: {web: {image: demo, labels: {2: x}}}", "the key 2 must be a string"),
    ("services: {web: {image: demo, ports: ['8080:80'], deploy: {replicas: 4}}}", "at most one container per node"),
])
def test_a_file_bicycle_cannot_run_is_refused_with_the_path(tmp_path, text, says):
    if says is None:             # declared but unused: fine
        assert bodies(tmp_path, text)
        return
    with pytest.raises(ComposeError) as e:
        deploy.plan(translate(compose(tmp_path, text)), [], "shop", nodes=3)
    assert says in str(e.value)
    assert "\n" not in str(e.value)


def test_a_missing_file_and_bad_yaml_are_one_line_errors(tmp_path):
    with pytest.raises(ComposeError, match="cannot read"):
        load(str(tmp_path / "nope.yml"))
    (tmp_path / "bad.yml").write_text("services: [\n")
    with pytest.raises(ComposeError, match="not valid YAML"):
        load(str(tmp_path / "bad.yml"))


# -- translation -----------------------------------------------------------------------------------------

def test_a_typical_file_becomes_service_bodies(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "web.env").write_text("COLOR=blue\n# a comment\nSIZE=1\n")
    (tmp_path / "shop" / "key.txt").write_text("s3cret\n")
    b = bodies(tmp_path, """
        services:
          web:
            image: demo:1
            command: sh -c 'exec httpd -f'
            entrypoint: ["/bin/tini", "--"]
            environment: [SIZE=2, FROM_SHELL, MISSING]
            env_file: web.env
            ports: ["8080:80", "9000-9001:9000-9001/udp", {target: 443, published: "8443"}]
            labels: {tier: front}
            volumes: ["data:/data", "./conf:/conf:ro,z", "/var/log:/logs", "/anon",
                      {type: volume, source: ext, target: /ext, read_only: true}]
            restart: unless-stopped
            healthcheck: {test: ["CMD", "wget", "-q", "http://x/a b"], interval: 5s, retries: 2}
            secrets: [key, {source: key, target: OTHER}]
            deploy:
              replicas: 3
              placement: {constraints: ["node.labels.zone == a"]}
              update_config: {parallelism: 2, order: stop-first}
              resources: {limits: {cpus: "0.5", memory: 64M}}
            container_name: web
            networks: [front]
          db:
            image: demo:1
            deploy: {mode: global, restart_policy: {condition: on-failure, max_attempts: 3}}
        volumes: {data: {}, ext: {external: true}}
        networks: {front: {}}
        secrets: {key: {file: key.txt}}
    """, env={"FROM_SHELL": "yes"})
    web, db = b["web"], b["db"]
    folder = str(tmp_path / "shop")
    assert web["name"] == "shop-web" and db["name"] == "shop-db"
    assert web["command"] == ["sh", "-c", "exec httpd -f"] and web["entrypoint"] == ["/bin/tini", "--"]
    assert web["env"] == {"COLOR": "blue", "SIZE": "2", "FROM_SHELL": "yes"}
    assert web["ports"] == ["8080:80/tcp", "9000:9000/udp", "9001:9001/udp", "8443:443/tcp"]
    assert web["labels"] == {"tier": "front", "com.docker.compose.project": "shop",
                             "com.docker.compose.service": "web"}
    assert web["volumes"] == ["shop_data:/data", f"{folder}/conf:/conf:ro", "/var/log:/logs", "/anon",
                              "ext:/ext:ro"]
    assert web["restart"] == "always" and db["restart"] == "on-failure"
    assert web["healthcheck"] == {"test": ["CMD-SHELL", "wget -q 'http://x/a b'"], "interval": "5s", "retries": 2}
    assert web["secrets"] == {"key": "s3cret", "OTHER": "s3cret"}
    assert web["replicas"] == 3 and web["constraints"] == ["node.labels.zone == a"]
    assert (web["update"]["parallelism"], web["update"]["order"]) == (2, "stop-first")
    assert web["resources"] == {"limits": {"cpus": "0.5", "memory": "64M"}, "reservations": {"cpus": 0, "memory": 0}}
    assert db["mode"] == "global" and "replicas" not in db
    for svc in translate(compose(tmp_path, open(os.path.join(folder, "compose.yml")).read(),
                                 env={"FROM_SHELL": "yes"})):
        deploy.check(svc)                 # the API's own validation takes them
    spec = deploy.service_request(web, 10, seal=lambda k, v: v).spec
    assert spec.volumes[1] == Mount("/conf", f"{folder}/conf", True)


def test_what_compose_accepts_and_means_is_taken_so(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "web.env").write_text("FROM_FILE=x\nKEPT=1\n")
    b = bodies(tmp_path, """
        services:
          web:
            image: demo
            environment: {RELEASE: 2024-01-01, FROM_FILE: null}
            env_file: [{path: web.env, required: "${REQ:-false}"}, {path: missing.env, required: false}]
            ports: ["[::]:8080:80"]
            volumes: [{type: volume, source: d, target: /d, read_only: "${RO:-false}"}]
            healthcheck: {test: "true", disable: "${OFF:-false}"}
            deploy: {x-note: 1, placement: {x-note: 2}, resources: {limits: {x-note: 3},
                                                                   reservations: {cpus: "0.5", memory: 1G}}}
        volumes: {d: {external: "false"}}
    """)
    web = b["web"]
    assert web["env"] == {"RELEASE": "2024-01-01", "KEPT": "1"}    # FROM_FILE: unset in the shell, so unset
    assert web["ports"] == ["8080:80/tcp"] and web["volumes"] == ["shop_d:/d"]
    assert web["healthcheck"] == {"test": "true"}
    assert web["resources"] == {"limits": {"cpus": 0, "memory": 0}, "reservations": {"cpus": "0.5", "memory": "1G"}}
    assert deploy.service_request(web, 10, seal=lambda k, v: v).spec.reservation == (0.5, 1 << 30)
    assert (web["update"]["order"], web["update"]["failure_action"]) == ("stop-first", "pause")   # Swarm's
    assert (web["rollback"]["order"], web["rollback"]["failure_action"]) == ("stop-first", "pause")


def test_compose_project_name_comes_before_the_file_s_name(tmp_path):
    c = compose(tmp_path, "name: named\nservices: {web: {image: demo}}", dotenv="COMPOSE_PROJECT_NAME=fromenv\n")
    assert c.project == "fromenv"


def test_the_default_file_is_found_as_compose_finds_it(tmp_path):
    from cli.compose.load import default_file
    with pytest.raises(ComposeError, match="give one with -f"):
        default_file(str(tmp_path))
    (tmp_path / "docker-compose.yml").write_text("")
    (tmp_path / "compose.yaml").write_text("")
    assert default_file(str(tmp_path)) == str(tmp_path / "compose.yaml")


def test_services_come_in_depends_on_order(tmp_path):
    c = compose(tmp_path, """
        services:
          web: {image: demo, depends_on: {api: {condition: service_healthy}}}
          api: {image: demo, depends_on: [db]}
          db: {image: demo}
    """)
    assert [s.key for s in translate(c)] == ["db", "api", "web"]


def test_the_project_name_comes_from_the_flag_the_file_or_the_folder(tmp_path):
    text = "services: {web: {image: demo}}"
    assert compose(tmp_path, text, folder="My_Shop").project == "my_shop"
    assert compose(tmp_path, "name: named\n" + text).project == "named"
    where = tmp_path / "shop" / "compose.yml"
    assert load(str(where), project="given").project == "given"
    with pytest.raises(ComposeError, match="give --project"):
        compose(tmp_path, text, folder="___")


# -- the plan --------------------------------------------------------------------------------------------

def stored(name, project="shop", mode="replicated", state="RUNNING"):
    labels = {"com.docker.compose.project": project} if project else {}
    return {"name": name, "mode": mode, "state": state, "spec": {"image": "demo", "labels": labels},
            "replicas": {"desired": 1, "running": 1}}


def as_shown(svc):
    """A translated service as GET /service shows it once created."""
    r = deploy.service_request(svc.body, 10, seal=lambda k, v: v)
    return {"name": svc.name, "mode": r.mode, "state": "RUNNING", "spec": r.spec.public_dict(),
            "replicas": {"desired": r.replicas, "running": r.replicas}, "constraints": list(r.constraints),
            "update": {"settings": r.update.to_dict(), "rollback_settings": r.rollback.to_dict()}}


def test_a_dry_run_says_unchanged_or_which_fields_differ(tmp_path):
    text = """
        services:
          web: {image: demo, environment: [A=1], deploy: {replicas: 2}}
          db: {image: demo, secrets: [key]}
        secrets: {key: {environment: KEY}}
    """
    running = [as_shown(s) for s in translate(compose(tmp_path, text, env={"KEY": "k"}))]
    steps = deploy.plan(translate(compose(tmp_path, text, env={"KEY": "k"})), running, "shop")
    assert [deploy.describe(s) for s in steps] == [
        "unchanged shop-db: 1 x demo (the values of its secrets are not compared)", "unchanged shop-web: 2 x demo"]
    edited = text.replace("A=1", "A=2").replace("replicas: 2", "replicas: 3")
    steps = deploy.plan(translate(compose(tmp_path, edited, env={"KEY": "k"})), running, "shop")
    assert [deploy.describe(s) for s in steps] == [
        "unchanged shop-db: 1 x demo (the values of its secrets are not compared)",
        "update shop-web: 3 x demo (env, replicas differ)"]


def test_ignore_unsupported_deploys_without_the_keys_and_says_so(tmp_path):
    text = "services: {web: {image: demo, privileged: true, cap_add: [NET_ADMIN], deploy: {placement_x: 1}}}"
    with pytest.raises(ComposeError, match="services.web.cap_add: not supported by Bicycle"):
        translate(compose(tmp_path, text.replace(", deploy: {placement_x: 1}", "")))
    (svc,) = translate(compose(tmp_path, text.replace(", deploy: {placement_x: 1}", "")), ignore_unsupported=True)
    assert svc.notes == ["services.web.cap_add: not supported by Bicycle, ignored",
                         "services.web.privileged: not supported by Bicycle, ignored"]
    assert "privileged" not in svc.body


def test_the_plan_creates_updates_and_prunes_only_its_own(tmp_path):
    services = translate(compose(tmp_path, "services: {web: {image: demo}, db: {image: demo}}"))
    existing = [stored("shop-web"), stored("shop-old"), stored("other-x", project="other"),
                stored("plain", project=None), stored("shop-going", state="DELETE")]
    steps = deploy.plan(services, existing, "shop", prune=True)
    assert [(s.action, s.name) for s in steps] == [("create", "shop-db"), ("update", "shop-web"),
                                                   ("remove", "shop-old")]
    update = steps[1].body
    assert "name" not in update and "mode" not in update and update["env"] == {} and update["command"] == []
    assert [(s.action, s.name) for s in deploy.plan(services, existing, "shop")] == [
        ("create", "shop-db"), ("update", "shop-web")]


def test_a_failed_write_says_what_was_done_before_it(tmp_path):
    services = translate(compose(tmp_path, "services: {web: {image: demo}, db: {image: demo}}"))
    steps = deploy.plan(services, [], "shop")
    sent = []

    def call(method, path, body, params):
        if len(sent) == 1:
            raise RuntimeError("no majority")
        sent.append(path)
        return 202, {}
    with pytest.raises(ComposeError, match=r"create shop-web failed: no majority \(done before it: create shop-db"):
        deploy.apply(steps, call, lambda name: name)


@pytest.mark.parametrize("existing, says", [
    (stored("shop-web", state="DELETE"), "is being removed"),
    (stored("shop-web", project=None), "made outside Compose"),
    (stored("shop-web", project="other"), "of project other"),
    (stored("shop-web", mode="global"), "a mode is set at creation"),
])
def test_the_plan_never_takes_over_or_remodes_a_service(tmp_path, existing, says):
    services = translate(compose(tmp_path, "services: {web: {image: demo}}"))
    with pytest.raises(ComposeError, match=says):
        deploy.plan(services, [existing], "shop")


def test_a_body_the_api_would_refuse_stops_the_plan_before_any_write(tmp_path):
    services = translate(compose(tmp_path, """
        services:
          web: {image: demo, deploy: {placement: {constraints: ["node.role == manager"]}}}
    """))
    with pytest.raises(ComposeError, match=r"services.web \(shop-web\): constraints.0"):
        deploy.plan(services, [], "shop")
