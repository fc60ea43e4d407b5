"""remote.commands: the exact command lines that reach a node (quoted once, by shlex.join)."""
import json
import shlex
import subprocess
import sys

from hypothesis import given, settings, strategies as st

from model import Healthcheck, Mount, Port, ServiceSpec
from remote import commands


def line(argv):
    return shlex.join(argv)


FULL = ServiceSpec(image="nginx:1.25", command=("nginx", "-g", "daemon off;"),
                   env=(("A", "1"), ("GREETING", "hello world")),
                   ports=(Port(8080, 80), Port(53, 53, "udp")),
                   labels=(("team", "web"),), restart="never")


def test_spec_digest_is_stable():
    # Every running container carries this label; a new digest for the same
    # spec would make a master upgrade replace every container.
    assert ServiceSpec(image="alpine").digest() == "f44081b37921"
    assert FULL.digest() == "d1a7c50f7115"


def test_run_minimal():
    assert line(commands.run("web.2.a1b2c3", "web", 2, ServiceSpec(image="alpine"))) == (
        "docker run -d --name web.2.a1b2c3"
        " --label bicycle.service=web --label bicycle.slot=2"
        " --label bicycle.spec=f44081b37921 --label bicycle.epoch=0"
        " --restart no -- alpine")


def test_run_with_everything():
    assert line(commands.run("web.1.abc123", "web", 1, FULL, epoch=7)) == (
        "docker run -d --name web.1.abc123"
        " --label bicycle.service=web --label bicycle.slot=1"
        " --label bicycle.spec=d1a7c50f7115 --label bicycle.epoch=7"
        " --restart no --label team=web"
        " --env A=1 --env 'GREETING=hello world'"
        " --publish 8080:80/tcp --publish 53:53/udp"
        " -- nginx:1.25 nginx -g 'daemon off;'")


def test_the_engine_never_restarts_bicycles_containers():
    # Restarts are the master's decisions (restart policy with back-off).
    for policy in ("always", "on-failure", "never"):
        argv = commands.run("x.1.a", "x", 1, ServiceSpec(image="a", restart=policy))
        assert argv[argv.index("--restart") + 1] == "no"


def test_a_pull_policy_other_than_missing_goes_to_docker_run():
    assert "--pull" not in commands.run("x.1.a", "x", 1, ServiceSpec(image="a"))
    argv = commands.run("x.1.a", "x", 1, ServiceSpec(image="a", pull="never"))
    assert argv[argv.index("--pull"):argv.index("--pull") + 2] == ["--pull", "never"]
    assert argv.index("--pull") < argv.index("--")


def test_hostile_values_are_quoted_as_literals():
    spec = ServiceSpec(image="alpine", command=("sh", "-c", "echo $HOME; $(touch /tmp/pwned)"),
                       env=(("MSG", "$(touch /tmp/pwned)\nrm -rf / `id`"),), labels=(("note", "it's"),))
    assert line(commands.run("web.1.abc", "web", 1, spec)) == (
        "docker run -d --name web.1.abc"
        " --label bicycle.service=web --label bicycle.slot=1"
        f" --label bicycle.spec={spec.digest()} --label bicycle.epoch=0"
        " --restart no --label 'note=it'\"'\"'s'"
        " --env 'MSG=$(touch /tmp/pwned)\nrm -rf / `id`'"
        " -- alpine sh -c 'echo $HOME; $(touch /tmp/pwned)'")


def test_remove():
    assert line(commands.remove("0123456789ab")) == "docker rm -f 0123456789ab"


def test_list_containers():
    assert line(commands.list_containers()) == (
        "sh -c 'ids=$(docker ps -aq --no-trunc --filter label=bicycle.service) || exit 3; "
        "if [ -z \"$ids\" ]; then echo \"[]\"; else docker inspect $ids; fi'")


def test_container_name():
    assert commands.container_name("web", 3, "a1b2c3") == "web.3.a1b2c3"


def test_a_real_shell_receives_exactly_the_argv(tmp_path):
    """The joined line through /bin/sh: every word arrives intact and nothing runs."""
    pwned = tmp_path / "pwned"
    spec = ServiceSpec(image="alpine", command=("sh", "-c", f"touch {pwned}"),
                       env=(("A", f"$(touch {pwned})"), ("B", f"`touch {pwned}`; touch {pwned}\n&& x")),
                       labels=(("q", "'\"\\"),))
    argv = commands.run("web.1.abc", "web", 1, spec)
    echo = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    out = subprocess.run(["sh", "-c", line(echo + argv)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == argv
    assert not pwned.exists()


WORDS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@settings(max_examples=200, deadline=None)
@given(image=WORDS, command=st.lists(WORDS, max_size=4),
       env=st.dictionaries(WORDS, WORDS, max_size=3), labels=st.dictionaries(WORDS, WORDS, max_size=3))
def test_joined_lines_split_back_to_the_same_argv(image, command, env, labels):
    spec = ServiceSpec(image=image, command=tuple(command), env=tuple(sorted(env.items())),
                       labels=tuple(sorted(labels.items())))
    argv = commands.run("svc.1.abc", "svc", 1, spec)
    assert shlex.split(line(argv)) == argv
    assert argv[argv.index("--") + 1:] == [image, *command]


def test_a_health_check_goes_to_docker_run_and_into_the_digest():
    shell = ServiceSpec(image="a", healthcheck=Healthcheck(("CMD-SHELL", "wget -q -O- http://127.0.0.1/health"),
                                                           interval=1.5, timeout=2, retries=2, start_period=0))
    assert line(commands.run("x.1.a", "x", 1, shell)).endswith(
        " --health-cmd 'wget -q -O- http://127.0.0.1/health' --health-interval 1500ms --health-timeout 2000ms"
        " --health-retries 2 --health-start-period 0ms -- a")
    assert "--no-healthcheck" in commands.run("x.1.a", "x", 1, ServiceSpec(image="a", healthcheck=Healthcheck(("NONE",))))
    assert ServiceSpec(image="alpine").digest() == "f44081b37921"          # no check: the digest as before
    assert shell.digest() != ServiceSpec(image="a").digest()


def test_limits_go_to_docker_run():
    argv = commands.run("x.1.a", "x", 1, ServiceSpec(image="a", cpus=0.5, memory=256 << 20))
    assert argv[argv.index("--cpus"):argv.index("--cpus") + 4] == ["--cpus", "0.5", "--memory", "268435456b"]
    assert "--cpus" not in commands.run("x.1.a", "x", 1, ServiceSpec(image="a"))


def test_volumes_and_an_entrypoint_go_to_docker_run():
    spec = ServiceSpec(image="a", command=("-c", "echo hi"), entrypoint=("sh", "-e"),
                       volumes=(Mount("/data", "web-data"), Mount("/etc/x", "/srv/x", read_only=True), Mount("/tmp/a")))
    argv = commands.run("x.1.a", "x", 1, spec)
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"] == ["web-data:/data", "/srv/x:/etc/x:ro",
                                                                           "/tmp/a"]
    assert argv[argv.index("--entrypoint"):] == ["--entrypoint", "sh", "--", "a", "-e", "-c", "echo hi"]
    cleared = commands.run("x.1.a", "x", 1, ServiceSpec(image="a", entrypoint=()))
    assert cleared[cleared.index("--entrypoint"):] == ["--entrypoint", "", "--", "a"]
    assert "--entrypoint" not in commands.run("x.1.a", "x", 1, ServiceSpec(image="a"))
    assert ServiceSpec(image="alpine", entrypoint=None, volumes=()).digest() == "f44081b37921"   # as before
    assert ServiceSpec.from_dict(spec.to_dict()) == spec
