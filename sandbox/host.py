"""Changes the sandbox makes to the host itself: Debian packages, bridges, node users,
processes (found by pidfile or by a path in their command line), mounts and trees.

Nothing here kills or deletes anything that is not identified as the sandbox's own.
"""
from __future__ import annotations

import os
import pwd
import grp
import shutil
import signal
import struct
import time

from .common import Node, SandboxError, run

# --- packages -------------------------------------------------------------------------------


def is_static_elf(path: str) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:    # 64-bit only
                return False
            end = "<" if head[5] == 1 else ">"
            phoff, = struct.unpack(end + "Q", head[0x20:0x28])
            phentsize, phnum = struct.unpack(end + "HH", head[0x36:0x3A])
            for i in range(phnum):
                f.seek(phoff + i * phentsize)
                ptype, = struct.unpack(end + "I", f.read(4))
                if ptype == 3:                                  # PT_INTERP
                    return False
            return True
    except (OSError, struct.error):
        return False


BUSYBOX = "/bin/busybox"
PACKAGES = {   # Debian package -> probe that says it is usable
    "docker.io": lambda: bool(shutil.which("dockerd") and shutil.which("docker")),
    "openssh-server": lambda: os.access("/usr/sbin/sshd", os.X_OK) and bool(shutil.which("ssh-keygen")),
    "busybox-static": lambda: is_static_elf(BUSYBOX),
    "iproute2": lambda: bool(shutil.which("ip")),
}


def missing_packages() -> list[str]:
    return [name for name, probe in PACKAGES.items() if not probe()]


def ensure_packages(log) -> None:
    """Install what is missing when root; otherwise say what to install."""
    missing = missing_packages()
    if not missing:
        return
    command = "apt-get install -y " + " ".join(missing)
    if os.geteuid() != 0:
        raise SandboxError(f"missing packages: {', '.join(missing)}; install them with "
                           f"`sudo {command}` (or run the sandbox as root)")
    if not shutil.which("apt-get"):
        raise SandboxError(f"missing packages: {', '.join(missing)} and no apt-get to install them")
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends",
               "-o", "DPkg::Lock::Timeout=300", *missing]
    try:
        run(install, env=env, timeout=900)
    except SandboxError:
        run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=300"], env=env, timeout=900)
        run(install, env=env, timeout=900)
    still = missing_packages()
    if still:
        raise SandboxError(f"installed but still unusable: {', '.join(still)}")


def require_root() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (it creates bridges, users and daemons); "
                           "run it with sudo")


def unsafe_ancestor(path: str) -> str | None:
    """First existing directory from `path` up to / that sshd's StrictModes would refuse
    (not owned by root, or group/world writable); None if the chain is safe."""
    p = os.path.abspath(path)
    while True:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_uid != 0 or st.st_mode & 0o022):
            return p
        if p == "/":
            return None
        p = os.path.dirname(p)


def untraversable_ancestor(path: str) -> str | None:
    """First existing ancestor of `path` that other users cannot enter (o+x missing)."""
    p = os.path.dirname(os.path.abspath(path))
    while p != "/":
        if os.path.exists(p) and not os.stat(p).st_mode & 0o001:
            return p
        p = os.path.dirname(p)
    return None


# --- bridges --------------------------------------------------------------------------------


def bridge_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def ensure_bridge(node: Node) -> None:
    if not bridge_exists(node.bridge):
        run(["ip", "link", "add", "name", node.bridge, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", node.bridge]).stdout.decode()
    if f" {node.bridge_cidr} " not in addrs:
        run(["ip", "addr", "add", node.bridge_cidr, "dev", node.bridge])
    run(["ip", "link", "set", node.bridge, "up"])


def delete_bridge(node: Node) -> None:
    if bridge_exists(node.bridge):
        run(["ip", "link", "del", node.bridge], check=False)


# --- users ----------------------------------------------------------------------------------


def _retry_on_lock(args: list[str]) -> None:
    """useradd & co. fail when another one holds /etc/passwd's lock: try again a little."""
    for attempt in range(20):
        try:
            run(args)
            return
        except SandboxError as e:
            if "lock" not in str(e).lower() or attempt == 19:
                raise
            time.sleep(0.25)


def ensure_user(node: Node) -> None:
    """The node's login user: shell /bin/sh, group docker, home under the node folder, unlocked."""
    try:
        grp.getgrnam("docker")
    except KeyError:
        _retry_on_lock(["groupadd", "--system", "docker"])
    try:
        pw = pwd.getpwnam(node.user)
    except KeyError:
        pw = None
    if pw is None:
        _retry_on_lock(["useradd", "-M", "-d", node.home, "-s", "/bin/sh", "-G", "docker",
                        "-p", "*", node.user])
    else:
        _retry_on_lock(["usermod", "-d", node.home, "-s", "/bin/sh", "-G", "docker",
                        "-p", "*", node.user])
    pw = pwd.getpwnam(node.user)
    os.makedirs(node.home, exist_ok=True)
    os.chown(node.home, pw.pw_uid, pw.pw_gid)
    os.chmod(node.home, 0o755)


def delete_user(node: Node, log) -> None:
    """Remove the node user if it is this sandbox's (its home is this node's home)."""
    try:
        pw = pwd.getpwnam(node.user)
    except KeyError:
        return
    if pw.pw_dir != node.home:
        log(f"{node.name}: user {node.user} has home {pw.pw_dir}, not ours: left alone")
        return
    end_processes_of(pw.pw_uid)
    _retry_on_lock(["userdel", node.user])


def end_processes_of(uid: int) -> None:
    """End every process of a node user (its SSH sessions among them)."""
    terminate([pid for pid in all_pids() if _uid_of(pid) == uid])


# --- processes ------------------------------------------------------------------------------


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _uid_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def cmdline(pid: int) -> str | None:
    """The command line of a live process (None if it is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        if stat[stat.rindex(b")") + 2:][:1] in (b"Z", b"X"):
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, ValueError):
        return None


def read_pidfile(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def live_pid(pidfile: str, marker: str) -> int | None:
    """The pid in `pidfile` if that process is alive and its command line contains `marker`."""
    pid = read_pidfile(pidfile)
    if pid is None:
        return None
    line = cmdline(pid)
    return pid if line is not None and marker in line else None


def find_pids(match) -> list[int]:
    """Live processes whose command line satisfies `match(cmdline)`; never ourselves."""
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        line = cmdline(pid)
        if line is not None and match(line):
            found.append(pid)
    return found


def terminate(pids: list[int], grace: float = 10.0) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left."""
    pids = [p for p in pids if p != os.getpid()]
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        alive = [p for p in pids if cmdline(p) is not None]
        if not alive:
            return
        for p in alive:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(cmdline(p) is not None for p in alive):
            time.sleep(0.05)


# --- mounts and trees -----------------------------------------------------------------------


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def mounts_under(prefix: str) -> list[str]:
    prefix = prefix.rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape(line.split()[4])
            if mp == prefix or mp.startswith(prefix + "/"):
                found.append(mp)
    return found


def unmount_under(prefix: str) -> None:
    for mp in sorted(set(mounts_under(prefix)), key=len, reverse=True):
        if run(["umount", mp], check=False).returncode != 0:
            run(["umount", "-l", mp], check=False)


def remove_tree(path: str) -> None:
    """Delete a tree we own, after unmounting whatever is mounted inside it."""
    if not os.path.lexists(path):
        return
    unmount_under(path)
    left = mounts_under(path)
    if left:
        raise SandboxError(f"cannot remove {path}: still mounted: {left[0]}")
    shutil.rmtree(path)
