"""master.validate.service_body: API bodies -> (name, ServiceSpec, replicas) or Invalid naming fields."""
import pytest

from master.validate import Invalid, service_body, check_name
from model import Mount, Port, ServiceSpec

NODES = 3


def good(**changes):
    body = {"name": "web", "image": "nginx:1.25", "replicas": 3}
    body.update(changes)
    return body


def fields(body, base=None, nodes=NODES):
    with pytest.raises(Invalid) as e:
        service_body(body, nodes, base=base)
    assert all(set(err) == {"field", "message"} and err["message"] for err in e.value.errors)
    return [err["field"] for err in e.value.errors]


def test_minimal_body():
    assert service_body(good(), NODES) == ("web", ServiceSpec(image="nginx:1.25"), 3)


def test_full_body():
    body = good(command="sh -c 'sleep 1000'", env={"B": "2", "A": "x y"}, ports=["8080:80", "53:53/udp"],
                labels={"team": "web", "com.example/tier": "front"}, restart="on-failure", replicas=2)
    name, spec, replicas = service_body(body, NODES)
    assert (name, replicas) == ("web", 2)
    assert spec == ServiceSpec(image="nginx:1.25", command=("sh", "-c", "sleep 1000"),
                               env=(("A", "x y"), ("B", "2")),
                               ports=(Port(8080, 80, "tcp"), Port(53, 53, "udp")),
                               labels=(("com.example/tier", "front"), ("team", "web")), restart="on-failure")


@pytest.mark.parametrize("body", [
    good(image="registry.example.com/team/app:v1.2-rc_3"),
    good(image="alpine@sha256:" + "a" * 64),
    good(replicas=0),
    good(replicas=1000),
    good(name="a"),
    good(name="a" * 63),
    good(name="web-2"),
    good(command=["echo", "$(touch /tmp/x)", "a\nb"]),
    good(env={"_X1": "$(touch /tmp/x); rm -rf /"}),
    good(ports=[{"published": 8080, "target": 80}], replicas=NODES),
    good(restart="never"),
    good(pull="never"),
    good(pull="always"),
])
def test_accepts(body):
    name, spec, replicas = service_body(body, NODES)
    assert (name, replicas) == (body["name"], body["replicas"])
    assert spec.image == body["image"]


def test_command_list_values_are_kept_verbatim():
    _, spec, _ = service_body(good(command=["echo", "$(touch /tmp/x)", "a\nb"]), NODES)
    assert spec.command == ("echo", "$(touch /tmp/x)", "a\nb")


def test_volumes_and_an_entrypoint_are_taken():
    _, spec, _ = service_body(good(volumes=["web-data:/data", "/srv/conf:/etc/conf:ro", "/cache",
                                            {"source": "v2", "target": "/v2", "read_only": True}],
                                   entrypoint="/bin/sh -c"), NODES)
    assert spec.volumes == (Mount("/data", "web-data"), Mount("/etc/conf", "/srv/conf", True), Mount("/cache"),
                            Mount("/v2", "v2", True))
    assert spec.entrypoint == ("/bin/sh", "-c")
    assert service_body(good(entrypoint=[]), NODES)[1].entrypoint == ()          # none at all
    assert service_body(good(), NODES)[1].entrypoint is None                     # the image's own


def test_a_create_without_replicas_runs_one_as_in_swarm():
    assert service_body({"name": "web", "image": "nginx"}, NODES)[2] == 1


@pytest.mark.parametrize("body, expected", [
    ({"name": "web", "replicas": 1}, ["image"]),
    (good(image=""), ["image"]),
    (good(image="$(touch /tmp/x)"), ["image"]),
    (good(image="nginx; rm -rf /"), ["image"]),
    (good(image=["nginx"]), ["image"]),
    (good(replicas=-1), ["replicas"]),
    (good(replicas=1001), ["replicas"]),
    (good(replicas="3"), ["replicas"]),
    (good(replicas=True), ["replicas"]),
    (good(replicas=2.0), ["replicas"]),
    (good(replicas=None), ["replicas"]),
    (good(name="web;ls"), ["name"]),
    (good(name="$(touch /tmp/x)"), ["name"]),
    (good(name="Web"), ["name"]),
    (good(name="a" * 64), ["name"]),
    (good(name="-web"), ["name"]),
    (good(name="web-"), ["name"]),
    (good(name=""), ["name"]),
    (good(name=7), ["name"]),
    ({"image": "nginx", "replicas": 1}, ["name"]),
    (good(replica=3), ["replica"]),
    (good(volumes=["data:/"], privileged=True), ["privileged", "volumes.0"]),
    (good(volumes=["data:relative"]), ["volumes.0"]),
    (good(volumes=["../up:/x"]), ["volumes.0"]),
    (good(volumes=["/a/../etc:/x"]), ["volumes.0"]),
    (good(volumes=["/a,b:/x"]), ["volumes.0"]),
    (good(volumes=["data:/x:rx"]), ["volumes.0"]),
    (good(volumes=["$(id):/x"]), ["volumes.0"]),
    (good(volumes=[{"source": "data", "target": "/x", "driver": "nfs"}]), ["volumes.0"]),
    (good(volumes=["a:/x", "b:/x"]), ["volumes"]),
    (good(volumes="data:/x"), ["volumes"]),
    (good(entrypoint=7), ["entrypoint"]),
    (good(entrypoint="sh 'unclosed"), ["entrypoint"]),
    (good(env={"1BAD": "x"}), ["env.1BAD"]),
    (good(env={"A-B": "x"}), ["env.A-B"]),
    (good(env={"A": 1}), ["env.A"]),
    (good(env={"A": "x\x00y"}), ["env.A"]),
    (good(env=["A=1"]), ["env"]),
    (good(labels={"bicycle.service": "other"}), ["labels"]),
    (good(labels={"bicycle.spec": "x", "ok": "y"}), ["labels"]),
    (good(labels={"a b": "x"}), ["labels.a b"]),
    (good(ports=["80"]), ["ports.0"]),
    (good(ports=["8080:80", "0:80"]), ["ports.1"]),
    (good(ports=["70000:80"]), ["ports.0"]),
    (good(ports=["8080:80/sctp"]), ["ports.0"]),
    (good(ports=[{"published": 8080}]), ["ports.0"]),
    (good(ports=[{"published": True, "target": 80}]), ["ports.0"]),
    (good(ports=[{"published": 8080, "target": 80, "host": "0.0.0.0"}]), ["ports.0"]),
    (good(ports=[8080]), ["ports.0"]),
    (good(ports="8080:80"), ["ports"]),
    (good(ports=["8080:80", "8080:81"]), ["ports"]),
    (good(restart="unless-stopped"), ["restart"]),
    (good(restart=None), ["restart"]),
    (good(pull="if-not-present"), ["pull"]),
    (good(pull=None), ["pull"]),
    (good(command="echo 'unterminated"), ["command"]),
    (good(command=["echo", 1]), ["command"]),
    (good(command={"sh": "-c"}), ["command"]),
    (good(ports=["8080:80"], replicas=NODES + 1), ["replicas"]),
    ({"name": "BAD", "image": "", "replicas": -1, "extra": 1}, ["extra", "name", "image", "replicas"]),
])
def test_rejects_naming_the_field(body, expected):
    assert fields(body) == expected


def test_not_an_object():
    assert fields(["web"]) == ["body"]
    assert fields("web") == ["body"]


def test_more_replicas_than_nodes_is_fine_without_ports():
    assert service_body(good(replicas=NODES + 5), NODES)[2] == NODES + 5


def test_same_port_number_over_tcp_and_udp_is_two_ports():
    _, spec, _ = service_body(good(ports=["53:53", "53:53/udp"]), NODES)
    assert {p.protocol for p in spec.ports} == {"tcp", "udp"}


BASE = {"spec": ServiceSpec(image="nginx:1", command=("nginx", "-g", "daemon off;"), env=(("A", "1"),),
                            ports=(Port(8080, 80),), labels=(("team", "web"),), restart="on-failure").to_dict(),
        "replicas": 2}


def test_patch_merges_over_the_stored_service():
    name, spec, replicas = service_body({"replicas": 3}, NODES, base=BASE)
    assert (name, replicas) == (None, 3)
    assert spec == ServiceSpec.from_dict(BASE["spec"])


def test_patch_replaces_only_the_fields_given():
    _, spec, replicas = service_body({"image": "nginx:2", "env": {"B": "2"}}, NODES, base=BASE)
    assert replicas == 2
    assert spec.image == "nginx:2" and spec.env == (("B", "2"),)
    assert spec.command == ("nginx", "-g", "daemon off;")
    assert spec.ports == (Port(8080, 80),) and spec.labels == (("team", "web"),)
    assert spec.restart == "on-failure"


def test_patch_rejects_a_name_and_bad_values_of_the_merge():
    assert fields({"name": "other"}, base=BASE) == ["name"]
    assert fields({"replicas": NODES + 1}, base=BASE) == ["replicas"]   # the stored ports still apply
    assert fields({"replicas": "4"}, base=BASE) == ["replicas"]


def test_empty_patch_keeps_everything():
    assert service_body({}, NODES, base=BASE) == (None, ServiceSpec.from_dict(BASE["spec"]), 2)


def test_check_name_names_the_field_it_was_given():
    assert check_name("web") == "web"
    with pytest.raises(Invalid) as e:
        check_name("../etc", field="service")
    assert [err["field"] for err in e.value.errors] == ["service"]


@pytest.mark.parametrize("body, expected", [
    (good(name="web\n"), ["name"]),
    (good(image="nginx\n"), ["image"]),
    (good(env={"A\n": "x"}), ["env.A\n"]),
    (good(labels={"team\n": "x"}), ["labels.team\n"]),
])
def test_rejects_a_trailing_newline(body, expected):
    assert fields(body) == expected


@pytest.mark.parametrize("image", ["localhost:5000/app:1", "registry.example.com:5000/team/app"])
def test_accepts_a_registry_with_a_port(image):
    assert service_body(good(image=image), NODES)[1].image == image
