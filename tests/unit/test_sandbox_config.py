"""Unit tests of the sandbox's pure parts: layout, rendered configs, sandbox.json.
Nothing here starts a daemon or needs root."""
import io
import os

import pytest
from ruamel.yaml import YAML

from sandbox import cluster, daemons, host, images
from sandbox.common import Sandbox, SandboxError, load, one_line


def make(tmp_path, nodes=3, base=30):
    return Sandbox(str(tmp_path / "sb"), nodes, base, "127.0.0.1:7170")


def test_node_layout(tmp_path):
    sb = make(tmp_path)
    n = sb.node(2)
    assert (n.name, n.number, n.address, n.user, n.bridge) == \
        ("node2", 32, "127.0.0.32", "bicycle32", "bicy32")
    assert n.bridge_cidr == "172.30.32.1/24"
    assert n.docker_host == "unix:///run/bicycle-sb/32/docker.sock"
    assert n.home == os.path.join(sb.directory, "node2", "home")
    assert n.data_root.startswith(sb.directory + "/")
    assert len(n.socket_path) < 100          # unix socket paths are short
    assert [x.name for x in sb.all_nodes()] == ["node1", "node2", "node3"]


def test_bases_do_not_collide(tmp_path):
    a = {n.number for n in make(tmp_path, 3, 10).all_nodes()}
    b = {n.number for n in make(tmp_path, 3, 20).all_nodes()}
    assert not a & b


@pytest.mark.parametrize("nodes,base", [(0, 10), (3, 0), (3, 252)])
def test_bad_sizes_rejected(tmp_path, nodes, base):
    with pytest.raises(SandboxError):
        make(tmp_path, nodes, base)


def test_sandbox_json_round_trip(tmp_path):
    sb = make(tmp_path)
    os.makedirs(sb.directory)
    sb.save()
    assert load(sb.directory) == sb
    assert load(str(tmp_path / "nothing")) is None


def test_sshd_config(tmp_path):
    n = make(tmp_path).node(1)
    text = daemons.sshd_config_text(n, "/x/authorized_keys")
    lines = set(text.splitlines())
    for want in ["ListenAddress 127.0.0.31:22", f"HostKey {n.host_key}",
                 f"PidFile {n.sshd_pidfile}",
                 "SetEnv DOCKER_HOST=unix:///run/bicycle-sb/31/docker.sock",
                 "AuthorizedKeysFile /x/authorized_keys", "AllowUsers bicycle31",
                 "PermitRootLogin no", "UsePAM no", "PasswordAuthentication no",
                 "StrictModes yes", "MaxSessions 64", "MaxStartups 100:30:200",
                 "ClientAliveInterval 5", "ClientAliveCountMax 3"]:
        assert want in lines


def test_dockerd_args(tmp_path):
    args = daemons.dockerd_args(make(tmp_path).node(3))
    joined = " ".join(args)
    assert "-b bicy33" in joined and "--ip 127.0.0.33" in joined
    assert "--iptables=false" in args and "--ip-masq=false" in args
    assert "unix:///run/bicycle-sb/33/docker.sock" in args


def test_inventory(tmp_path):
    sb = make(tmp_path, nodes=2)
    text = cluster.inventory_text(sb)
    assert text.startswith("# Bicycle inventory")
    inv = YAML(typ="safe").load(io.StringIO(text))
    assert inv["nodes"][1] == {"name": "node2", "host": "127.0.0.32", "port": 22,
                               "user": "bicycle32", "key": "id_ed25519", "labels": {}}
    assert inv["masters"] == [{"name": "m1", "api": "127.0.0.1:7170"}]
    assert inv["settings"]["known_hosts"] == "known_hosts"
    assert inv["settings"]["state_file"] == "state.json"


def test_demo_recipe():
    assert images.recipe_hash() == images.recipe_hash()
    assert images.DOCKERFILE.startswith("FROM scratch")
    assert '"--install", "-s", "/bin"' in images.DOCKERFILE
    assert "httpd -f" in images.START_SH and "bicycle demo v$V $H" in images.START_SH


def test_static_elf_probe():
    if os.path.exists(host.BUSYBOX) and "busybox-static" not in host.missing_packages():
        assert host.is_static_elf(host.BUSYBOX)
    assert not host.is_static_elf("/bin/sh")          # dynamically linked
    assert not host.is_static_elf("/etc/hostname")


def test_strict_modes_probe(tmp_path):
    # pytest's tmp_path lives under /tmp (world writable): sshd would refuse it
    assert host.unsafe_ancestor(str(tmp_path / "sb")) is not None
    assert host.unsafe_ancestor("/usr/share") is None


def test_one_line():
    assert one_line("a\n\nb\nc\nd\n") == "b | c | d"


def test_missing_sandbox(tmp_path):
    d = str(tmp_path / "none")
    assert cluster.status(d) == []
    cluster.down(d, log=lambda m: None)
    with pytest.raises(SandboxError):
        cluster.engines(d)
    with pytest.raises(SandboxError):
        cluster.docker_socket(d, 1)
