"""model.BOOTSTRAP, the default settings.bootstrap: run by /bin/sh against
recording stand-ins of the package manager, sudo, systemctl and usermod
(the real install is the user's distribution's business)."""
import os
import subprocess

import pytest

from model import BOOTSTRAP

RECORD = '#!/bin/sh\necho "$(basename "$0") $*" >> "$LOG"\n'
SUDO = '#!/bin/sh\necho "sudo $*" >> "$LOG"\n[ "$1" = -n ] && shift\nexec "$@"\n'


def run(tmp_path, uid, tools, fail=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).write_text(RECORD + (f'if [ "$1" = {fail} ]; then exit 100; fi\n' if fail else ""))
    (bin_dir / "sudo").write_text(SUDO)
    (bin_dir / "id").write_text(f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} || echo deploy\n')
    (bin_dir / "basename").write_text('#!/bin/sh\necho "${1##*/}"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    log = tmp_path / "log"
    proc = subprocess.run(["/bin/sh", "-c", BOOTSTRAP], env={"PATH": str(bin_dir), "LOG": str(log)},
                          capture_output=True, text=True)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_a_user_with_sudo_gets_the_engine_started_and_the_docker_group(tmp_path):
    proc, calls = run(tmp_path, 1000, ["apt-get", "systemctl", "usermod", "env"])
    assert proc.returncode == 0, proc.stderr
    assert [c for c in calls if not c.startswith("sudo")] == [
        "apt-get update -q", "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io",
        "systemctl enable --now docker", "usermod -aG docker deploy"]
    assert all(c.startswith("sudo -n ") for c in calls if c.startswith("sudo"))


def test_root_needs_no_sudo_and_no_group(tmp_path):
    proc, calls = run(tmp_path, 0, ["dnf", "systemctl", "usermod"])
    assert proc.returncode == 0, proc.stderr
    assert calls == ["dnf install -y docker", "systemctl enable --now docker"]


def test_a_host_without_systemd_still_counts_on_the_checks_that_follow(tmp_path):
    proc, calls = run(tmp_path, 0, ["apt-get", "systemctl", "env"], fail="enable")
    assert proc.returncode == 0 and "systemctl could not start docker" in proc.stderr


@pytest.mark.parametrize("tools, fail, words", [
    (["systemctl"], None, "no apt-get, dnf or yum"),
    (["yum", "systemctl"], "install", ""),
])
def test_a_failing_step_fails_the_bootstrap(tmp_path, tools, fail, words):
    proc, calls = run(tmp_path, 0, tools, fail=fail)
    assert proc.returncode != 0 and words in proc.stderr
    assert not any(c.startswith("systemctl") for c in calls)
