"""master.inventory.load: inventory.yml -> Inventory, or one error naming the field and line."""
import os
import textwrap

import pytest

from master.inventory import DEFAULTS, InventoryError, load
from model import ApiSettings, NodeInfo, Settings, Tls

GOOD = """\
nodes:
  - name: node1
    host: 127.0.0.21
    user: bicycle
    key: keys/id_ed25519
    labels:
      zone: a
  - name: node2
    host: node2.example.com
    port: 2222
    user: bicycle
    key: /etc/bicycle/id_ed25519
  - name: node3
    host: "::1"
masters:
  - name: m1
    api: 127.0.0.1:7070
  - name: m2
    api: "[::1]:7071"
settings:
  probe_interval: 0.5
  down_after: 3
  state_file: data/state.json
"""


def write(tmp_path, text, name="inventory.yml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error(tmp_path, text):
    with pytest.raises(InventoryError) as e:
        load(write(tmp_path, text))
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_good_file(tmp_path):
    inv = load(write(tmp_path, GOOD))
    assert inv.path == str(tmp_path / "inventory.yml")
    assert inv.nodes == [
        NodeInfo("node1", "127.0.0.21", 22, "bicycle", str(tmp_path / "keys" / "id_ed25519"), (("zone", "a"),)),
        NodeInfo("node2", "node2.example.com", 2222, "bicycle", "/etc/bicycle/id_ed25519"),
        NodeInfo("node3", "::1", 22, "root", None),
    ]
    assert inv.masters == [{"name": "m1", "api": "127.0.0.1:7070", "source": None, "index": 1},
                           {"name": "m2", "api": "[::1]:7071", "source": None, "index": 2}]
    assert inv.master() == inv.masters[0] and inv.master("m2") == inv.masters[1]
    assert inv.settings == Settings(probe_interval=0.5, down_after=3,
                                    state_file=str(tmp_path / "data" / "state.json"),
                                    known_hosts=str(tmp_path / "known_hosts"),
                                    secrets_key=str(tmp_path / "secrets.key"),
                                    api=ApiSettings(tokens=str(tmp_path / "tokens.json"), tls=None))
    assert inv.scheme == "http" and inv.verify is True and inv.url("h:1") == "http://h:1"
    assert inv.nodes[1].address == "node2.example.com:2222" and inv.nodes[0].address == "127.0.0.21"


def test_relative_paths_follow_the_file_not_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    inv = load(os.path.join("..", "conf", os.path.basename(write(tmp_path / "conf", GOOD))))
    assert inv.nodes[0].key == str(tmp_path / "conf" / "keys" / "id_ed25519")
    assert inv.settings.state_file == str(tmp_path / "conf" / "data" / "state.json")


def test_defaults_only_need_nodes(tmp_path):
    inv = load(write(tmp_path, "nodes:\n  - {name: a, host: 10.0.0.1}\n"))
    assert inv.masters == [{"name": "m1", "api": "127.0.0.1:7070", "source": None, "index": 1}]
    assert inv.settings.down_after == DEFAULTS["down_after"] == 5.0


def test_an_unknown_master(tmp_path):
    inv = load(write(tmp_path, GOOD))
    with pytest.raises(InventoryError, match="m9"):
        inv.master("m9")


@pytest.mark.parametrize("text, expected", [
    ("masters: []\n", "nodes: must be a non-empty list"),
    ("nodes: []\n", "nodes: must be a non-empty list (line 1)"),
    ("nodes:\n  - name: a\n    host: h\n    port: 70000\n", "nodes[0].port: must be an integer 1-65535 (line 4)"),
    ("nodes:\n  - name: a\n    host: h\n    port: '22'\n", "nodes[0].port: must be an integer 1-65535 (line 4)"),
    ("nodes:\n  - name: a\n    host: h\n  - name: b\n    host: h\n    password: x\n",
     "nodes[1].password: unknown field (line 6)"),
    ("nodes:\n  - {name: a, host: h}\n  - {name: b, host: h}\n  - {name: a, host: h2}\n",
     "nodes: name 'a' appears twice"),
    ("nodes:\n  - {name: a, host: h}\nsettings:\n  probe_interval: 1\n  down_after: -5\n",
     "settings.down_after: must be a positive number (line 5)"),
    ("nodes:\n  - {name: a, host: h}\nsettings:\n  down_after: five\n",
     "settings.down_after: must be a positive number (line 4)"),
    ("nodes:\n  - {name: a, host: h}\nsettings:\n  down_after: true\n",
     "settings.down_after: must be a positive number (line 4)"),
    ("nodes:\n  - {name: a, host: h}\nsettings:\n  state_file: 3\n", "settings.state_file: must be a path (line 4)"),
    ("nodes:\n  - {name: a, host: h}\nsettings:\n  probe_intreval: 1\n",
     "settings.probe_intreval: unknown setting (line 4)"),
    ("nodes:\n  - {name: a, host: h}\nmaster:\n  - {name: m1, api: 'x:1'}\n",
     "unknown top-level field 'master' (line 3)"),
    ("nodes:\n  - {name: Node_1, host: h}\n", "nodes[0].name: must be lowercase letters, digits or '-' (line 2)"),
    ("nodes:\n  - {name: a, host: '-oProxyCommand=x'}\n", "nodes[0].host: must be a host name or IP address"),
    ("nodes:\n  - {name: a, host: 'h; rm -rf /'}\n", "nodes[0].host: must be a host name or IP address"),
    ("nodes:\n  - {name: a, host: h, user: 'root; id'}\n", "nodes[0].user: must be a valid user name"),
    ("nodes:\n  - {name: a, host: h, labels: [x]}\n", "nodes[0].labels: must be a mapping of strings"),
    ("nodes:\n  - {name: a, host: h}\nmasters:\n  - {name: m1, api: 'localhost'}\n",
     "masters[0].api: must be HOST:PORT (line 4)"),
    ("nodes:\n  - {name: a, host: h}\nmasters:\n  - {name: m1, api: 'localhost:99999'}\n",
     "masters[0].api: must be HOST:PORT"),
    ('nodes:\n  - {name: "a\\n", host: h}\n', "nodes[0].name: must be lowercase letters, digits or '-'"),
    ('nodes:\n  - {name: a, host: "h\\n"}\n', "nodes[0].host: must be a host name or IP address"),
    ("nodes:\n  - just-a-name\n", "nodes[0]: must be a mapping"),
    ("- a\n- b\n", "must be a mapping with nodes:"),
    ("nodes: [\n", "not valid YAML"),
])
def test_errors_name_the_field_and_line(tmp_path, text, expected):
    message = error(tmp_path, text)
    assert expected in message
    assert message.startswith(str(tmp_path / "inventory.yml") + ": ")


def test_a_missing_file(tmp_path):
    with pytest.raises(InventoryError, match="not found"):
        load(str(tmp_path / "nope.yml"))


@pytest.mark.parametrize("key", ["per_node_parallelism", "rebalance_parallelism"])
def test_counts_must_be_whole_numbers(tmp_path, key):
    assert "must be" in error(tmp_path, f"nodes:\n  - {{name: a, host: h}}\nsettings:\n  {key}: 0.5\n")


def test_api_settings_give_tls_and_the_token_file(tmp_path):
    inv = load(write(tmp_path, "nodes:\n  - {name: a, host: 10.0.0.1}\nsettings:\n  api:\n"
                               "    tokens: secret/tokens.json\n"
                               "    tls: {certificate: tls/api.crt, key: tls/api.key}\n"))
    assert inv.settings.api == ApiSettings(tokens=str(tmp_path / "secret" / "tokens.json"),
                                           tls=Tls(certificate=str(tmp_path / "tls" / "api.crt"),
                                                   key=str(tmp_path / "tls" / "api.key"),
                                                   ca=str(tmp_path / "tls" / "api.crt")))
    assert inv.scheme == "https" and inv.url("10.0.0.9:7070") == "https://10.0.0.9:7070"
    assert inv.verify == str(tmp_path / "tls" / "api.crt")


@pytest.mark.parametrize("api, field", [
    ("[]", "settings.api"),
    ("{token: x}", "settings.api.token"),
    ("{tokens: 3}", "settings.api.tokens"),
    ("{tls: yes}", "settings.api.tls"),
    ("{tls: {certificate: a.crt}}", "settings.api.tls.key"),
    ("{tls: {certificate: a.crt, key: a.key, chain: c}}", "settings.api.tls.chain"),
])
def test_bad_api_settings_name_the_field(tmp_path, api, field):
    message = error(tmp_path, f"nodes:\n  - {{name: a, host: 10.0.0.1}}\nsettings:\n  api: {api}\n")
    assert field + ":" in message
