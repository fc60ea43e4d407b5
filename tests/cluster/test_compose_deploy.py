"""`bicycle.py deploy -f compose.yml` against the real sandbox: what the
Compose file says is what the engines run (environment, env file, secret,
named volume, read-only bind, published port, labels, global mode), the
same file deployed again replaces nothing, --dry-run and a bad file change
nothing; three services (replicas, a label constraint, global) deploy as
written, an edited file rolls only the changed service, an unsupported key
and a malformed file change nothing and say why, and --prune removes what
the file dropped."""
import os
import textwrap

import docker
import pytest

from conftest import api, port, remove_all, wait_for
from test_cli import cli

pytestmark = pytest.mark.usefixtures("clean")
WEB_PORT = port(18190)
COMPOSE = """
    name: shop
    services:
      web:
        image: bicycle/demo:${TAG:-1}
        environment:
          - GREETING=hello ${WHO}
          - PORT=8080
        env_file: web.env
        ports: ["%d:8080"]
        volumes:
          - data:/data
          - ./conf:/conf:ro
        healthcheck:
          test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/"]
          interval: 1s
        restart: unless-stopped
        depends_on: [db]
        networks: [front]
        container_name: shop-web
        secrets: [api_key]
        deploy:
          replicas: 2
          update_config: {monitor: 1s}
      db:
        image: bicycle/demo:1
        expose: ["5432"]
        deploy: {mode: global}
    volumes:
      data:
    networks:
      front:
    secrets:
      api_key:
        file: ./api_key.txt
""" % WEB_PORT


@pytest.fixture
def project(tmp_path, engines):
    """The Compose folder: compose.yml, .env, web.env, a secret file, conf/."""
    folder = tmp_path / "shop"
    (folder / "conf").mkdir(parents=True)
    (folder / "conf" / "greeting").write_text("from the bind\n")
    (folder / ".env").write_text("WHO=world\n")
    (folder / "web.env").write_text("COLOR=blue\n")
    (folder / "api_key.txt").write_text("s3cret-canary\n")
    write(folder, COMPOSE)
    yield folder
    remove_all(engines)               # the services first: a volume in use stays
    remove_volumes(engines)


def write(folder, text, name="compose.yml"):
    (folder / name).write_text(textwrap.dedent(text))
    return str(folder / name)


def remove_volumes(engines):
    """The project's volumes on every node, once no container uses them."""
    for client in engines.clients.values():
        for name in ("shop_data", "shop_dbdata"):
            try:
                client.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass


def health(container):
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status")


def ids(engines, service):
    return sorted(c.id for cs in engines.containers(service).values() for c in cs)


def test_a_compose_file_runs_as_it_says_and_a_second_deploy_replaces_nothing(project, engines):
    r = cli("deploy", "-f", str(project / "compose.yml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.index("create shop-db") < r.stdout.index("create shop-web")      # depends_on
    assert "note: networks" in r.stdout
    assert engines.counts("shop-db") == {"node1": 1, "node2": 1, "node3": 1}         # global
    web = [c for cs in engines.containers("shop-web").values() for c in cs]
    assert len(web) == 2
    wait_for(lambda: all(health(c) == "healthy" for c in web), 30)        # the check runs, and passes
    for c in web:
        c.reload()
        env = c.attrs["Config"]["Env"]
        assert {"GREETING=hello world", "COLOR=blue", "api_key=s3cret-canary"} <= set(env), env
        assert c.labels["com.docker.compose.project"] == "shop" and c.labels["com.docker.compose.service"] == "web"
        mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
        assert (mounts["/data"]["Type"], mounts["/data"]["Name"], mounts["/data"]["RW"]) == ("volume", "shop_data",
                                                                                            True)
        assert (mounts["/conf"]["Type"], mounts["/conf"]["Source"], mounts["/conf"]["RW"]) == (
            "bind", str(project / "conf"), False)
        assert c.exec_run(["cat", "/conf/greeting"]).output == b"from the bind\n"
        assert c.exec_run(["touch", "/conf/x"]).exit_code != 0                            # read-only
        assert c.attrs["HostConfig"]["PortBindings"] == {"8080/tcp": [{"HostIp": "", "HostPort": str(WEB_PORT)}]}
        assert c.attrs["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "wget -q -O- http://127.0.0.1:8080/"]
    before = ids(engines, "shop-web") + ids(engines, "shop-db")

    again = cli("deploy", "-f", str(project / "compose.yml"))
    assert again.returncode == 0, again.stderr
    assert "unchanged shop-web: 2 x bicycle/demo:1 (the values of its secrets are not compared)" in again.stdout
    assert "unchanged shop-db: global bicycle/demo:1" in again.stdout
    assert ids(engines, "shop-web") + ids(engines, "shop-db") == before


THREE = """
    name: shop
    services:
      web:
        image: bicycle/demo:${WEB_TAG:-1}
        deploy: {replicas: 2, update_config: {monitor: 1s}}
      db:
        image: bicycle/demo:1
        expose: ["5432"]
        restart: always
        environment: [POSTGRES_DB=shop, POSTGRES_USER=shop]
        volumes: [dbdata:/var/lib/data]
        deploy:
          replicas: 2
          placement: {constraints: ["node.labels.disk == ssd"]}
      agent:
        image: bicycle/demo:1
        deploy: {mode: global}
    volumes:
      dbdata:
"""


@pytest.fixture
def ssd_on_node3():
    assert api("PATCH", "/nodes/node3", {"labels": {"disk": "ssd"}}).status_code == 200
    yield
    api("PATCH", "/nodes/node3", {"labels": {}})


def all_ids(engines):
    return {name: ids(engines, f"shop-{name}") for name in ("web", "db", "agent")}


def test_three_services_deploy_as_written_and_only_what_changes_changes(project, engines, ssd_on_node3):
    three = write(project, THREE, name="three.yml")
    r = cli("deploy", "-f", three)
    assert r.returncode == 0, r.stderr
    assert sorted(engines.counts("shop-agent").values()) == [1, 1, 1]                   # global
    assert sum(engines.counts("shop-web").values()) == 2
    assert engines.counts("shop-db") == {"node1": 0, "node2": 0, "node3": 2}           # the label constraint
    assert engines.clients["node3"].volumes.get("shop_dbdata").name == "shop_dbdata"  # made where it runs
    before = all_ids(engines)

    again = cli("deploy", "-f", three)
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stdout.splitlines() if line.startswith(("unchanged", "update", "create"))] == [
        "unchanged shop-agent: global bicycle/demo:1", "unchanged shop-db: 2 x bicycle/demo:1",
        "unchanged shop-web: 2 x bicycle/demo:1"]
    assert all_ids(engines) == before

    dry = cli("deploy", "-f", three, "--dry-run", env={"WEB_TAG": "2"})
    assert "update shop-web: 2 x bicycle/demo:2 (image differ)" in dry.stdout, dry.stdout
    assert all_ids(engines) == before
    rolled = cli("deploy", "-f", three, env={"WEB_TAG": "2"})
    assert rolled.returncode == 0, rolled.stderr
    after = all_ids(engines)
    assert (after["db"], after["agent"]) == (before["db"], before["agent"])             # only web rolled
    assert len(after["web"]) == 2 and not set(after["web"]) & set(before["web"])

    malformed = write(project, "services:\n  web: [\n", name="malformed.yml")
    r = cli("deploy", "-f", malformed)
    assert r.returncode == 1 and "is not valid YAML" in r.stderr and "line" in r.stderr, r.stderr
    unsupported = write(project, THREE.replace("restart: always", "restart: always\n        privileged: true"),
                        name="unsupported.yml")
    r = cli("deploy", "-f", unsupported, env={"WEB_TAG": "2"})
    assert r.returncode == 1 and "services.db.privileged: not supported by Bicycle" in r.stderr, r.stderr
    assert all_ids(engines) == after

    two = write(project, THREE.split("      agent:")[0] + "    volumes:\n      dbdata:\n", name="two.yml")
    dry = cli("deploy", "-f", two, "--prune", "--dry-run", env={"WEB_TAG": "2"})
    assert dry.returncode == 0 and "remove shop-agent" in dry.stdout.splitlines(), dry.stdout
    assert all_ids(engines) == after
    pruned = cli("deploy", "-f", two, "--prune", env={"WEB_TAG": "2"})
    assert pruned.returncode == 0, pruned.stderr
    wait_for(lambda: ids(engines, "shop-agent") == [], 30)
    assert (ids(engines, "shop-web"), ids(engines, "shop-db")) == (after["web"], after["db"])
