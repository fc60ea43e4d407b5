"""Node doctor's pure side: the probe's lines parsed, and each fact turned
into a pass or a failure with a fix (scheduler/doctor.py)."""
from remote import commands, parse
from scheduler import doctor

HEALTHY = ("docker_path=/usr/bin/docker\nengine_rc=0\nengine=26.1.5\nflock=/usr/bin/flock\nstate_dir=ok\n"
           "disk_free_kib=5242880\ndisk_path=/var/lib/docker\nclock=1000.25\n"
           "image_present=bicycle/demo:1\nimage_missing=bicycle/demo:2\n")


def checks(stdout=HEALTHY, images=("bicycle/demo:1",), sent=1000.0, answered=1000.5):
    return {c.check: c for c in doctor.examine(parse.doctor(stdout), list(images), sent, answered)}


def test_the_probe_takes_the_images_as_arguments_never_in_the_script():
    argv = commands.doctor(["a;rm -rf /", "b"])
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["bicycle-doctor", "a;rm -rf /", "b"]
    assert "a;rm" not in argv[2]


def test_a_healthy_node_passes_every_check():
    found = checks()
    assert [c for c in found.values() if not c.ok] == []
    assert set(found) == {"ssh", "host key", "engine", "docker access", "flock", "~/.bicycle", "disk", "clock",
                          "images"}
    assert found["engine"].detail == "Docker Engine 26.1.5"
    assert found["clock"].detail.startswith("+0.000 s")
    report = doctor.report("node1", list(found.values()))
    assert report["ok"] is True and len(report["checks"]) == 9


def test_each_failure_names_its_fix():
    stopped = HEALTHY.replace("engine_rc=0", "engine_rc=1").replace(
        "engine=26.1.5", "engine=Cannot connect to the Docker daemon at unix:///run/docker.sock.")
    assert not checks(stopped)["engine"].ok and "start the engine" in checks(stopped)["engine"].hint
    denied = HEALTHY.replace("engine_rc=0", "engine_rc=1").replace(
        "engine=26.1.5", "engine=permission denied while trying to connect to the Docker daemon socket")
    assert checks(denied)["engine"].ok and "docker group" in checks(denied)["docker access"].hint
    no_docker = HEALTHY.replace("docker_path=/usr/bin/docker", "docker_path=")
    assert not checks(no_docker)["engine"].ok and "install the engine" in checks(no_docker)["engine"].hint
    no_flock = checks(HEALTHY.replace("flock=/usr/bin/flock", "flock="))["flock"]
    assert not no_flock.ok and "util-linux" in no_flock.hint
    assert not checks(HEALTHY.replace("state_dir=ok", "state_dir=no"))["~/.bicycle"].ok
    assert not checks(HEALTHY.replace("disk_free_kib=5242880", "disk_free_kib=1000"))["disk"].ok
    assert not checks(HEALTHY.replace("clock=1000.25", "clock=1003.0"))["clock"].ok
    missing = checks(images=("bicycle/demo:1", "bicycle/demo:2"))["images"]
    assert not missing.ok and missing.detail == "missing: bicycle/demo:2"


def test_an_unreachable_node_says_whether_ssh_or_its_host_key_failed():
    ssh = doctor.unreachable("node2", "node2: connection refused", False, "-p 22 u@h")
    assert [(c.check, c.ok) for c in ssh] == [("ssh", False)] and "ssh -p 22 u@h" in ssh[0].hint
    key = doctor.unreachable("node2", "host key not trusted", True, "-p 22 u@h")
    assert [(c.check, c.ok) for c in key] == [("ssh", True), ("host key", False)]
    assert "bicycle.py node trust node2" in key[1].hint
