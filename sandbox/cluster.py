"""Public face of the sandbox: `up`, `down`, `status` of a local cluster of real nodes on
loopback, and `engines`/`docker_socket` for tests that talk to a node's engine directly.

Node i of a sandbox with base B is number A = B + i: address 127.0.0.A (sshd on port 22,
user bicycleA whose `docker` talks to the node's own dockerd), bridge bicyA with
172.30.A.1/24, engine socket unix:///run/bicycle-sb/A/docker.sock. The sandbox directory
holds sandbox.json, inventory.yml, the client key, known_hosts and one folder per node.
"""
from __future__ import annotations

import os
import pwd
import re
import time
from concurrent.futures import ThreadPoolExecutor

from . import daemons, host, images
from .common import (RUN_ROOT, STATE_FILE, Node, Sandbox, SandboxError, load, resolve)

__all__ = ["up", "down", "status", "engines", "docker_socket", "SandboxError"]


def _parallel(fn, items):
    """fn(item) for every item at once; the first failure is raised after all finished."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = [pool.submit(fn, it) for it in items]
    return [f.result() for f in futures]


def _owner(node: Node) -> str | None:
    try:
        with open(node.owner_file) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _foreign_owner(node: Node) -> str | None:
    """The directory of another live sandbox that holds this node number, if any."""
    other = _owner(node)
    if other and other != node.directory and os.path.exists(os.path.join(other, STATE_FILE)):
        return other
    return None


def _claim(sb: Sandbox) -> None:
    for node in sb.all_nodes():
        other = _foreign_owner(node)
        if other:
            raise SandboxError(f"127.0.0.{node.number} is taken by the sandbox in {other}; "
                               f"use another base or run `sandbox down` there")
    for node in sb.all_nodes():
        os.makedirs(RUN_ROOT, mode=0o755, exist_ok=True)
        os.makedirs(node.run_dir, mode=0o755, exist_ok=True)
        daemons.write_file(node.owner_file, sb.directory + "\n")


def _known_hosts_text(sb: Sandbox) -> str:
    lines = []
    for node in sb.all_nodes():
        with open(node.host_key + ".pub") as f:
            kind, key = f.read().split()[:2]
        lines.append(f"{node.address} {kind} {key}")
    return "\n".join(lines) + "\n"


def inventory_text(sb: Sandbox) -> str:
    out = ["# Bicycle inventory for the local sandbox (written by `bicycle.py sandbox up`).",
           "nodes:"]
    for node in sb.all_nodes():
        out += [f"  - name: {node.name}",
                f"    host: {node.address}",
                "    port: 22",
                f"    user: {node.user}",
                "    key: id_ed25519",
                "    labels: {}"]
    out += ["masters:",
            "  - name: m1",
            f"    api: {sb.api}",
            "settings:",
            "  state_file: state.json",
            "  known_hosts: known_hosts",
            "  secrets_key: secrets.key",
            "  api:",
            "    tokens: tokens.json",
            "  probe_interval: 1",
            "  down_after: 5",
            "  connect_timeout: 5",
            "  command_timeout: 120",
            ""]
    return "\n".join(out)


def _served_authorized_keys(sb: Sandbox) -> str:
    """The authorized_keys file sshd reads: DIR/authorized_keys, or a copy under
    /run when sshd's StrictModes would refuse DIR (under /tmp, say)."""
    if host.unsafe_ancestor(sb.directory):
        return os.path.join(sb.node(1).run_dir, "authorized_keys")
    return sb.authorized_keys


def restart_sshd(directory: str, node_index: int) -> None:
    """Restart one node's sshd (it reads its host key again) and end the SSH
    sessions of the node's user, so that every client has to connect anew."""
    sb = load(directory)
    if sb is None:
        raise SandboxError(f"no sandbox in {resolve(directory)} (run `sandbox up`)")
    node = sb.node(node_index)
    daemons.stop_sshd(node)
    host.end_processes_of(pwd.getpwnam(node.user).pw_uid)
    daemons.start_sshd(node, _served_authorized_keys(sb), lambda *a: None)
    daemons.wait_sshd(node)


def _prepare_node(node: Node) -> None:
    os.makedirs(node.dir, mode=0o755, exist_ok=True)
    os.chmod(node.dir, 0o755)
    host.ensure_bridge(node)
    host.ensure_user(node)
    daemons.ensure_keypair(node.host_key, f"{node.name}@bicycle-sandbox")


def _teardown_node(node: Node, log) -> None:
    daemons.stop_sshd(node)
    other = _foreign_owner(node)
    if other:
        log(f"{node.name}: 127.0.0.{node.number} now belongs to {other}: engine left alone")
        return
    daemons.stop_dockerd(node, log)
    host.delete_user(node, log)
    host.delete_bridge(node)
    host.remove_tree(node.run_dir)
    host.remove_tree(node.dir)


def up(directory: str = ".sandbox", nodes: int = 3, base: int = 10,
       api: str = "127.0.0.1:7070", log=print) -> str:
    """Start (or repair) the sandbox; returns the path of the inventory file it wrote."""
    started = time.monotonic()
    sb = Sandbox(resolve(directory), int(nodes), int(base), str(api))
    host.ensure_packages(log)
    host.require_root()
    previous = load(sb.directory)
    if previous and previous.base != sb.base:
        raise SandboxError(f"{sb.directory} holds a sandbox with base={previous.base}; "
                           f"run `sandbox down` first or keep that base")
    _claim(sb)
    os.makedirs(sb.directory, mode=0o755, exist_ok=True)
    os.chmod(sb.directory, 0o755)
    authorized_keys = _served_authorized_keys(sb)
    if authorized_keys != sb.authorized_keys:
        log(f"note: {host.unsafe_ancestor(sb.directory)} is not root-only; "
            f"sshd reads authorized_keys from {RUN_ROOT}")
    closed = host.untraversable_ancestor(sb.directory)
    if closed:
        log(f"warning: {closed} is not enterable by other users: node users lack their home")
    if previous and previous.nodes > sb.nodes:
        for i in range(sb.nodes + 1, previous.nodes + 1):
            log(f"removing {previous.node(i).name}")
            _teardown_node(previous.node(i), log)
    sb.save()

    pub = daemons.ensure_keypair(sb.client_key, "bicycle-sandbox")
    daemons.write_file(sb.authorized_keys, pub + "\n")
    if authorized_keys != sb.authorized_keys:
        daemons.write_file(authorized_keys, pub + "\n")
    all_nodes = sb.all_nodes()
    for node in all_nodes:           # users and bridges: one at a time (/etc/passwd lock)
        _prepare_node(node)

    for node in all_nodes:
        daemons.start_dockerd(node, log)
        daemons.start_sshd(node, authorized_keys, log)
    _parallel(daemons.wait_dockerd, all_nodes)
    _parallel(daemons.wait_sshd, all_nodes)

    daemons.write_file(sb.known_hosts, _known_hosts_text(sb))
    daemons.write_file(sb.inventory, inventory_text(sb))
    images.ensure_images(sb, log)
    log(f"sandbox up: {sb.nodes} node(s) 127.0.0.{sb.base + 1}..{sb.base + sb.nodes} "
        f"in {time.monotonic() - started:.1f}s; inventory {sb.inventory}")
    return sb.inventory


def down(directory: str = ".sandbox", log=print) -> None:
    """Stop and remove everything the sandbox in `directory` made, then the directory."""
    path = resolve(directory)
    sb = load(path)
    if sb is None:
        log(f"no sandbox in {path}: nothing to do")
        return
    host.require_root()
    _parallel(lambda node: _teardown_node(node, log), sb.all_nodes())
    host.remove_tree(path)
    try:
        os.rmdir(RUN_ROOT)
    except OSError:
        pass          # other sandboxes still use it
    log(f"sandbox in {path} removed")


def status(directory: str = ".sandbox") -> list[dict]:
    """Per node: name, address, user, socket, sshd/dockerd ("running"/"stopped") with
    sshd_pid/dockerd_pid (None when stopped), containers (None if the engine is silent)."""
    sb = load(directory)
    if sb is None:
        return []
    rows = []
    for node in sb.all_nodes():
        spid, dpid = daemons.sshd_pid(node), daemons.dockerd_pid(node)
        listed = daemons.containers(node) if dpid else None
        rows.append({"name": node.name, "address": node.address, "user": node.user,
                     "socket": node.docker_host,
                     "sshd": "running" if spid else "stopped", "sshd_pid": spid,
                     "dockerd": "running" if dpid else "stopped", "dockerd_pid": dpid,
                     "containers": None if listed is None else len(listed)})
    return rows


def set_path(directory: str, node_index: int, path: str | None, log=lambda *a: None) -> None:
    """Give node `node_index`'s SSH sessions this PATH (None: sshd's default
    again), so that a command can be missing there: `docker` before a
    bootstrap, `flock` for the doctor. Sessions open now are ended (a
    master reconnects and gets the new PATH). Returns once the node's sshd
    answers again."""
    sb = load(directory)
    if sb is None or not 1 <= node_index <= sb.nodes:
        raise SandboxError(f"no node {node_index} in the sandbox in {resolve(directory)}")
    node = sb.node(node_index)
    if path is None:
        if os.path.exists(node.path_file):
            os.remove(node.path_file)
    else:
        daemons.write_file(node.path_file, path + "\n")
    daemons.stop_sshd(node)          # not a SIGHUP: its re-exec refuses connections for an unseen moment
    daemons.start_sshd(node, _served_authorized_keys(sb), log)
    daemons.wait_sshd(node)
    session = re.compile(rf"sshd: {node.user}(@|\s|$)")      # "sshd: bicycle14@notty", "... [priv]"
    host.terminate(host.find_pids(lambda line: session.match(line) is not None), grace=2.0)


def without(command: str, folder: str) -> str:
    """A PATH like sshd's default, but where `command` is missing: `folder`
    gets a link to every program of /usr/local/bin, /usr/bin and /bin except
    it, and is the PATH's only entry besides /usr/sbin and /sbin."""
    os.makedirs(folder, mode=0o755, exist_ok=True)
    for root in ("/usr/local/bin", "/usr/bin", "/bin"):
        for name in os.listdir(root) if os.path.isdir(root) else ():
            link = os.path.join(folder, name)
            if name != command and not os.path.lexists(link):
                os.symlink(os.path.join(root, name), link)
    return f"{folder}:/usr/local/sbin:/usr/sbin:/sbin"


def engines(directory: str = ".sandbox") -> dict[str, str]:
    """{node name: "unix:///run/bicycle-sb/A/docker.sock"} of the sandbox in `directory`."""
    sb = load(directory)
    if sb is None:
        raise SandboxError(f"no sandbox in {resolve(directory)} (run `sandbox up`)")
    return {node.name: node.docker_host for node in sb.all_nodes()}


def docker_socket(directory: str, node_index: int) -> str:
    """Engine URL ("unix://...") of node `node_index` (1-based) of the sandbox in `directory`."""
    sb = load(directory)
    if sb is None:
        raise SandboxError(f"no sandbox in {resolve(directory)} (run `sandbox up`)")
    if not 1 <= node_index <= sb.nodes:
        raise SandboxError(f"no node {node_index}: the sandbox has {sb.nodes} node(s)")
    return sb.node(node_index).docker_host


def ha_inventory(inventory: str, masters: dict, ttl: float, name: str = "inventory-ha.yml",
                 settings: dict | None = None) -> str:
    """Write, beside the sandbox's inventory, one for the same nodes with several
    masters: masters maps name -> (address, port); each master's SSH connections
    come from its own address, so a test can cut one master off with iptables.
    `settings` adds numeric settings (e.g. fenced_send_delay)."""
    text = open(inventory).read().split("masters:")[0]
    text += "masters:\n" + "".join(f"  - name: {n}\n    api: {a}:{p}\n    source: {a}\n"
                                   for n, (a, p) in masters.items())
    text += f"settings:\n  state_file: state-ha.json\n  known_hosts: known_hosts\n  lease_ttl: {ttl}\n"
    text += "".join(f"  {k}: {v}\n" for k, v in (settings or {}).items())
    path = os.path.join(os.path.dirname(inventory), name)
    with open(path, "w") as f:
        f.write(text)
    return path
