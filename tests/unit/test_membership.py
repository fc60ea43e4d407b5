"""master.membership: which member list is in force. The fleet, the
election and the prober are recorders here (what the list drives is tested
against the sandbox in tests/cluster/test_members*.py); the observation and
the inventory file are the real ones."""
import pytest

from master.inventory import load
from master.membership import Membership
from master.observe import Observation
from model import Settings

INVENTORY = """\
# the lab
nodes:
  - name: n1
    host: 127.0.0.1
    port: 2201
  - name: n2   # keep this comment
    host: 127.0.0.1
    port: 2202
"""


class Recorder:
    def __init__(self):
        self.connections, self.nodes, self.probed, self.events = {}, None, [], []

    def add(self, info):
        self.connections[info.name] = info

    def remove(self, name):
        self.connections.pop(name, None)

    def set_nodes(self, names):
        self.nodes = list(names)


@pytest.fixture
def members(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    inventory = load(str(path))
    fake = Recorder()
    m = Membership(inventory, fake, Observation([n.name for n in inventory.nodes], Settings()), fake,
                   lambda kind, message, **f: fake.events.append(message),
                   lambda name, stop: fake.probed.append(name), me="m1")
    return m, fake, path


def listing(m, *names):
    return [dict(m.current()[0], name=n, port=2200 + int(n[1:])) for n in names]


def test_a_newer_list_is_in_force_and_in_the_file(members):
    m, fake, path = members
    m.apply(listing(m, "n1", "n2", "n3"), (101, 5))
    assert m.names() == ["n1", "n2", "n3"] and fake.nodes == ["n1", "n2", "n3"]
    assert "n3" in fake.connections and "n3" in m.obs.nodes
    assert [n.name for n in load(str(path)).nodes] == ["n1", "n2", "n3"]
    assert "# keep this comment" in path.read_text()
    assert fake.events == ["members now n1, n2, n3; n3 joined"]


def test_a_list_older_than_the_one_in_force_is_ignored(members):
    """A commit and an adoption can reach apply in either order."""
    m, fake, path = members
    m.apply(listing(m, "n1", "n2", "n3", "n4"), (202, 2))
    m.apply(listing(m, "n1", "n2", "n3"), (101, 9))
    assert m.names() == ["n1", "n2", "n3", "n4"] and fake.nodes == ["n1", "n2", "n3", "n4"]
    assert "n4" in fake.connections
    assert [n.name for n in load(str(path)).nodes] == ["n1", "n2", "n3", "n4"]


def test_the_same_list_again_changes_nothing(members):
    m, fake, path = members
    m.apply(listing(m, "n1", "n3"), (101, 5))
    text = path.read_text()
    m.apply(listing(m, "n1", "n3"), (101, 5))
    assert fake.events == ["members now n1, n3; n3 joined; n2 left"]
    assert path.read_text() == text and "n2" not in m.obs.nodes


def test_a_name_that_comes_back_as_another_machine_starts_over(members):
    """n2 removed and added anew at another port while this master was behind."""
    m, fake, path = members
    before = fake.connections.get("n2")
    records = [dict(r, port=2299) if r["name"] == "n2" else r for r in m.current()]
    m.apply(records, (101, 7))
    assert fake.connections["n2"].port == 2299 and fake.connections["n2"] is not before
    assert fake.probed == [] and "n2" in m.obs.nodes
    assert {n.name: n.port for n in load(str(path)).nodes} == {"n1": 2201, "n2": 2299}
    assert fake.events == ["members now n1, n2; n2 is another machine now"]
