"""`bicycle.py deploy -f compose.yml` against the real sandbox: what the
Compose file says is what the engines run (environment, env file, secret,
named volume, read-only bind, published port, labels, global mode), the
same file deployed again replaces nothing, --dry-run and a bad file change
nothing, and --prune removes what the file dropped."""
import os
import textwrap

import docker
import pytest

from conftest import port, remove_all, wait_for
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
    """shop_data on every node, once no container uses it."""
    for client in engines.clients.values():
        try:
            client.volumes.get("shop_data").remove(force=True)
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
    assert "update shop-web" in again.stdout and "update shop-db" in again.stdout
    assert ids(engines, "shop-web") + ids(engines, "shop-db") == before


def test_dry_run_and_a_bad_file_change_nothing_and_prune_removes_what_the_file_dropped(project, engines):
    assert cli("deploy", "-f", str(project / "compose.yml")).returncode == 0
    before = {"web": ids(engines, "shop-web"), "db": ids(engines, "shop-db")}
    assert len(before["web"]) == 2 and len(before["db"]) == 3
    only_db = write(project, name="only-db.yml", text="""
        name: shop
        services:
          db:
            image: bicycle/demo:1
            deploy: {mode: global}
    """)
    dry = cli("deploy", "-f", only_db, "--prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == ["update shop-db: global bicycle/demo:1", "remove shop-web"]

    bad = write(project, name="bad.yml", text="""
        name: shop
        services:
          db: {image: bicycle/demo:1, deploy: {mode: global}, colour: red}
    """)
    refused = cli("deploy", "-f", bad, "--prune")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "services.db: additional property 'colour' is not allowed" \
        in refused.stderr
    assert {"web": ids(engines, "shop-web"), "db": ids(engines, "shop-db")} == before

    pruned = cli("deploy", "-f", only_db, "--prune")
    assert pruned.returncode == 0, pruned.stderr
    wait_for(lambda: ids(engines, "shop-web") == [], 30)
    assert ids(engines, "shop-db") == before["db"]
    assert [s for s in cli("service", "ls").stdout.split() if s.startswith("shop-")] == ["shop-db"]
