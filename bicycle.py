#!/usr/bin/env python3
"""Bicycle's command line: parse the arguments, call the API (or the master
daemon, the sandbox, the host-key trust step), print, exit code. The work
itself lives in master/, remote/, sandbox/ and cli/."""
import json
import os
import re
import sys
import urllib.parse

import click

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cli.client import Client, ClientError  # noqa: E402
from cli import tables  # noqa: E402
from cli import rollout_wait  # noqa: E402
from cli.update_options import update_body, update_options  # noqa: E402
from cli.compose import deploy as compose_deploy  # noqa: E402
from cli.compose.load import ComposeError, default_file as default_compose_file, load as load_compose  # noqa: E402
from cli.compose.translate import translate  # noqa: E402
from master import auth  # noqa: E402
from master.inventory import API, load, InventoryError  # noqa: E402
from model import GLOBAL, MODES, PULL_POLICIES, REPLICATED, RESTART_POLICIES  # noqa: E402

DEFAULT_INVENTORY = os.path.join(HERE, "inventory.yml")
API_ADDRESS = re.compile(r"(https?://)?" + API.pattern.strip("^$"))


class Fail(click.ClickException):
    """One line on stderr and exit code 1."""

    def show(self, file=None):
        click.echo(f"bicycle: {one_line(self.message)}", err=True)


def one_line(text):
    """Control characters (a newline, an escape sequence) that came back from
    the user's own input are shown escaped, so an error stays one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: repr(m.group())[1:-1], text)


def _inventory(path):
    try:
        return load(path)
    except InventoryError as e:
        raise Fail(str(e)) from None


def _client(ctx):
    """The master's address, scheme and token: --api or BICYCLE_API, else the
    inventory's first master; BICYCLE_TOKEN, else the inventory's token file."""
    obj = ctx.find_root().obj
    api = obj.get("api") or os.environ.get("BICYCLE_API")
    token = os.environ.get("BICYCLE_TOKEN")
    inventory = None
    if not api or not token or os.path.exists(obj["inventory"]):
        inventory = _inventory(obj["inventory"])
    api = api or inventory.master()["api"]
    if not API_ADDRESS.fullmatch(api):
        raise Fail(f"--api {api!r}: must be HOST:PORT or http(s)://HOST:PORT")
    if not token:
        try:
            token = auth.load(inventory.settings.api.tokens)[auth.ADMIN]
        except auth.TokenFileError as e:
            raise Fail(f"{e}; or set BICYCLE_TOKEN") from None
    scheme, verify = (inventory.scheme, inventory.verify) if inventory else ("http", True)
    return Client(api, token=token, scheme=scheme, verify=verify)


def _segment(name):
    """A service or node name as one segment of an API path: quoted, so that a
    '/', '?' or '#' in it never makes the request reach another endpoint."""
    if name in (".", ".."):
        raise Fail(f"{name!r} is not a valid name")
    return urllib.parse.quote(name, safe="")


def _call(ctx, method, path, body=None, params=None):
    try:
        return _client(ctx).call(method, path, body, params)
    except ClientError as e:
        raise Fail(str(e)) from None


def _follow(ctx, path, params, show):
    """Print a streamed answer line by line until it ends or the user presses Ctrl-C."""
    try:
        for line in _client(ctx).lines(path, params):
            show(line)
    except ClientError as e:
        raise Fail(str(e)) from None
    except KeyboardInterrupt:
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-i", "--inventory", default=DEFAULT_INVENTORY, show_default="inventory.yml",
              envvar="BICYCLE_INVENTORY", help="Inventory file.")
@click.option("--api", default=None, help="Master API address HOST:PORT (default: the inventory's first master).")
@click.pass_context
def main(ctx, inventory, api):
    """Bicycle: an agentless Docker orchestrator over SSH."""
    ctx.obj = {"inventory": inventory, "api": api}


@main.command()
@click.option("--name", default=None, help="Which master of masters: to run (default: the first).")
@click.pass_context
def up(ctx, name):
    """Run the master daemon in the foreground."""
    from master.daemon import Master
    from master.vault import VaultError
    inventory = _inventory(ctx.obj["inventory"])
    try:
        master = Master(inventory, name)
    except (InventoryError, auth.TokenFileError, VaultError) as e:
        raise Fail(str(e)) from None
    except OSError as e:
        raise Fail(f"cannot start: {e}") from None
    try:
        master.serve()
    except OSError as e:
        raise Fail(f"cannot serve on {master.api}: {e.strerror or e}") from None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print /state as JSON.")
@click.pass_context
def status(ctx, as_json):
    """Nodes, services and containers with their uptimes."""
    _, state = _call(ctx, "GET", "/state")
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    m = state["master"]
    click.echo(f"master {m['name']} ({m['role']}, epoch {m.get('epoch') or '-'}) at {m['api']}, pid {m['pid']}, "
               f"up {tables.duration(m['uptime_s'])}")
    leader = state.get("leader")
    click.echo(f"leader: {leader['name']} at {leader['api']}, epoch {leader['epoch']}" if leader
               else f"leader: none ({m.get('reason') or 'unknown'})")
    if len(state.get("masters", [])) > 1:
        click.echo(tables.masters_table(state["masters"]))
    click.echo()
    click.echo(tables.nodes_table(state["nodes"]) + "\n")
    click.echo(tables.services_table(state["services"]) + "\n")
    click.echo(tables.containers_table(state["containers"]))


@main.group()
def service():
    """Create, list, scale and remove services."""


def _pairs(values, what):
    out = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise Fail(f"{what} {v!r} must look like KEY=VALUE")
        out[key] = value
    return out


def _secrets(values):
    """--secret NAME takes the value of the environment variable NAME;
    --secret NAME=@FILE reads it from FILE (one line, the newline dropped).
    A value is never taken from the command line itself, where `ps` shows it."""
    out = {}
    for v in values:
        name, sep, source = v.partition("=")
        if not name:
            raise Fail("--secret needs a NAME: give NAME (from the environment) or NAME=@FILE")
        if not sep:
            if name not in os.environ:
                raise Fail(f"--secret {name}: no environment variable {name} to take the value from")
            out[name] = os.environ[name]
        elif source.startswith("@"):
            try:
                with open(source[1:], encoding="utf-8") as f:
                    out[name] = f.read().rstrip("\n")
            except (OSError, UnicodeDecodeError) as e:
                raise Fail(f"--secret {name}: cannot read {source[1:]}: {e}") from None
        else:
            raise Fail(f"--secret {name}: give NAME (from the environment) or NAME=@FILE, "
                       f"never the value itself")
    return out


def _waiting(no_wait):
    """The query of a write: answer once done, or at once with --no-wait."""
    return {"wait": "false" if no_wait else "true"}


def _print_service(svc):
    click.echo(f"service {svc['name']} v{svc['version']}: {svc['status']}, "
               f"{svc['replicas']['running']}/{svc['replicas']['desired']} running"
               + (" (global)" if svc.get("mode") == GLOBAL else "")
               + (f" ({svc['error']})" if svc.get("error") else ""))
    update = svc.get("update")
    if update and update.get("state"):
        click.echo(f"update: {update['state']}, {update['slots']['current']}/{svc['replicas']['desired']} slots "
                   f"on the current spec" + (f" ({update['reason']})" if update.get("reason") else ""))
    if svc.get("containers"):
        click.echo(tables.containers_table(svc["containers"]))


@service.command("create")
@click.argument("name")
@click.option("--image", required=True)
@click.option("--replicas", type=int, default=None, help="How many (default 1); not with --mode global.")
@click.option("--mode", type=click.Choice(MODES), default=REPLICATED, show_default=True,
              help="global: one replica on every eligible node, following nodes as they come and go.")
@click.option("--env", "-e", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--publish", "-p", multiple=True, help="PUBLISHED:TARGET[/udp], repeatable.")
@click.option("--label", "-l", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--restart", type=click.Choice(RESTART_POLICIES), default="always", show_default=True)
@click.option("--pull", type=click.Choice(PULL_POLICIES), default="missing", show_default=True,
              help="When the engine pulls the image; never: it must be on the node (image push).")
@click.option("--cmd", default=None, help="Command to run, split like a shell would.")
@click.option("--secret", "-s", "secret", multiple=True,
              help="NAME (value from the environment variable NAME) or NAME=@FILE, repeatable.")
@click.option("--constraint", "constraint", multiple=True,
              help="Placement: node.labels.K==V, node.labels.K!=V, node.name==N or node.name!=N, repeatable.")
@click.option("--no-wait", is_flag=True, help="Answer at once instead of waiting until converged.")
@update_options
@click.pass_context
def service_create(ctx, name, image, replicas, mode, env, publish, label, restart, pull, cmd, secret, constraint,
                   no_wait, rollout):
    """Create a service and wait until it runs."""
    if replicas is None and mode == REPLICATED:
        replicas = 1
    counted = {} if replicas is None else {"replicas": replicas}
    body = {"name": name, "image": image, "mode": mode, **counted, "restart": restart, "pull": pull,
            "env": _pairs(env, "--env"), "labels": _pairs(label, "--label"), "ports": list(publish),
            "secrets": _secrets(secret), "constraints": list(constraint), **update_body(rollout)}
    if cmd is not None:
        body["command"] = cmd
    code, svc = _call(ctx, "POST", "/service", body, _waiting(no_wait))
    _print_service(svc)
    if svc["status"] == "failed":
        sys.exit(1)


@service.command("ls")
@click.pass_context
def service_ls(ctx):
    """List services."""
    _, services = _call(ctx, "GET", "/service")
    click.echo(tables.services_table(services))


@service.command("ps")
@click.argument("name")
@click.pass_context
def service_ps(ctx, name):
    """The containers of one service."""
    _, svc = _call(ctx, "GET", f"/service/{_segment(name)}")
    _print_service(svc)


@service.command("scale")
@click.argument("name")
@click.argument("replicas", type=int)
@click.option("--no-wait", is_flag=True)
@click.pass_context
def service_scale(ctx, name, replicas, no_wait):
    """Change the number of replicas."""
    _, svc = _call(ctx, "PATCH", f"/service/{_segment(name)}", {"replicas": replicas},
                   _waiting(no_wait))
    _print_service(svc)


@service.command("update")
@click.argument("name")
@click.option("--image", default=None)
@click.option("--secret", "-s", "secret", multiple=True,
              help="Replace the secrets: NAME (from the environment) or NAME=@FILE, repeatable.")
@click.option("--constraint", "constraint", multiple=True,
              help="Replace the placement constraints (node.labels.K==V, ...), repeatable.")
@click.option("--no-constraints", is_flag=True, help="Drop every placement constraint.")
@click.option("--no-wait", is_flag=True)
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait for the rollout.")
@update_options
@click.pass_context
def service_update(ctx, name, image, secret, constraint, no_constraints, no_wait, timeout, rollout):
    """Change a service's image, secrets, health check or update settings.
    A change of what its containers run rolls over the slots under the
    update settings, and rolls back by itself when the new ones fail."""
    body = {k: v for k, v in {"image": image, "secrets": _secrets(secret) if secret else None,
                              "constraints": [] if no_constraints else list(constraint) or None}.items()
            if v is not None}
    body.update(update_body(rollout, lambda: _call(ctx, "GET", f"/service/{_segment(name)}")[1]["spec"]
                            .get("healthcheck")))
    if not body:
        raise Fail("nothing to change: give --image, --secret, a --health-* or an update option")
    _, svc = _call(ctx, "PATCH", f"/service/{_segment(name)}", body, _waiting(True))
    _settle(ctx, svc, no_wait, timeout)


def _settle(ctx, started, no_wait, timeout):
    """Wait for the change that answered `started` (unless no_wait), print
    the service, and exit 1 when the change did not end well."""
    if no_wait:
        _print_service(started)
        return
    svc, done = rollout_wait.follow(lambda: _call(ctx, "GET", f"/service/{_segment(started['name'])}")[1],
                                    started, timeout)
    _print_service(svc)
    why = rollout_wait.failure(svc, started, done, timeout)
    if why:
        raise Fail(why)


@service.command("rollback")
@click.argument("name")
@click.option("--no-wait", is_flag=True)
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait for the rollback.")
@click.pass_context
def service_rollback(ctx, name, no_wait, timeout):
    """Return a service to its previous spec (under its rollback settings)."""
    _, svc = _call(ctx, "POST", f"/service/{_segment(name)}/rollback", params=_waiting(True))
    _settle(ctx, svc, no_wait, timeout)


@service.command("rm")
@click.argument("name")
@click.option("--no-wait", is_flag=True)
@click.pass_context
def service_rm(ctx, name, no_wait):
    """Remove a service and its containers."""
    _, payload = _call(ctx, "DELETE", f"/service/{_segment(name)}", params=_waiting(no_wait))
    click.echo(payload.get("message") or f"service {name} is being deleted")


@main.group()
def node():
    """List, add, label, drain, activate, remove, check and trust nodes."""


@node.command("ls")
@click.pass_context
def node_ls(ctx):
    """Nodes with their health and availability."""
    _, nodes = _call(ctx, "GET", "/nodes")
    click.echo(tables.nodes_table(nodes))


@node.command("drain")
@click.argument("name")
@click.option("--no-wait", is_flag=True, help="Answer at once instead of waiting until the node is empty.")
@click.pass_context
def node_drain(ctx, name, no_wait):
    """Move a node's containers away (start-first); it takes no new work."""
    code, n = _call(ctx, "POST", f"/nodes/{_segment(name)}/drain", params=_waiting(no_wait))
    state = "empty" if code == 200 else "still moving containers"
    click.echo(f"node {name} drained ({state}, {n['containers']} containers left)")


@node.command("activate")
@click.argument("name")
@click.pass_context
def node_activate(ctx, name):
    """Let a drained node take work again."""
    _call(ctx, "POST", f"/nodes/{_segment(name)}/activate")
    click.echo(f"node {name} active")


@node.command("add")
@click.argument("name")
@click.option("--host", required=True, help="Address or host name the master connects to.")
@click.option("--port", type=int, default=22, show_default=True)
@click.option("--user", default="root", show_default=True)
@click.option("--key", default=None, help="Private key file on the master (relative to the inventory's folder).")
@click.option("--label", "-l", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--fingerprint", default=None, help="Pin the host key only if it has this fingerprint (SHA256:...).")
@click.option("--trust", is_flag=True, help="Pin whatever host key the node presents now (trust on first use).")
@click.pass_context
def node_add(ctx, name, host, port, user, key, label, fingerprint, trust):
    """Add a node: pin its host key, check its engine, then it joins and takes work.
    The master writes it into its inventory file; the other masters follow."""
    body = {"name": name, "host": host, "port": port, "user": user, "labels": _pairs(label, "--label"),
            "trust": trust}
    if key is not None:
        body["key"] = key
    if fingerprint is not None:
        body["fingerprint"] = fingerprint
    _, n = _call(ctx, "POST", "/nodes", body)
    click.echo(f"node {n['name']} added ({n['user']}@{n['address']}, {n['status']})")


@node.command("label")
@click.argument("name")
@click.argument("changes", nargs=-1, required=True)
@click.pass_context
def node_label(ctx, name, changes):
    """Set labels (KEY=VALUE) and remove them (KEY-) on a node."""
    _, current = _call(ctx, "GET", f"/nodes/{_segment(name)}")
    labels = dict(current["labels"])
    for change in changes:
        if change.endswith("-") and "=" not in change:
            labels.pop(change[:-1], None)
        else:
            labels.update(_pairs([change], "label"))
    _, n = _call(ctx, "PATCH", f"/nodes/{_segment(name)}", {"labels": labels})
    click.echo(f"node {name} labels: " + (", ".join(f"{k}={v}" for k, v in sorted(n["labels"].items())) or "none"))


@node.command("rm")
@click.argument("name")
@click.option("--force", is_flag=True, help="Forget the node at once, without draining it (a dead node).")
@click.pass_context
def node_rm(ctx, name, force):
    """Remove a node: drain it (its replicas move start-first), then forget it."""
    _call(ctx, "DELETE", f"/nodes/{_segment(name)}", params={"force": "true" if force else "false"})
    click.echo(f"node {name} removed")


@node.command("doctor")
@click.argument("name", required=False)
@click.pass_context
def node_doctor(ctx, name):
    """Check a node (or every node): SSH, host key, engine, docker access,
    flock, ~/.bicycle, disk, clock and the services' images; a fix per failure.
    Exits 1 when a check fails."""
    names = [name] if name else [n["name"] for n in _call(ctx, "GET", "/nodes")[1]]
    reports = [_call(ctx, "GET", f"/nodes/{_segment(n)}/doctor")[1] for n in names]
    click.echo(tables.doctor_table(reports))
    failed = [r["node"] for r in reports if not r["ok"]]
    if failed:
        raise Fail(f"{len(failed)} node(s) need care: {', '.join(failed)}")


@node.command("trust")
@click.argument("name")
@click.option("--fingerprint", default=None, help="Pin the key only if it has this fingerprint (SHA256:...).")
@click.option("--yes", is_flag=True, help="Pin whatever key the node presents now (trust on first use).")
@click.pass_context
def node_trust(ctx, name, fingerprint, yes):
    """Pin the host key a node presents now, in the inventory's known_hosts.

    Without --fingerprint or --yes it only prints the key's fingerprint:
    compare it with the node's own (ssh-keygen -lf on the node) first.
    """
    from remote import hostkeys
    inventory = _inventory(ctx.obj["inventory"])
    info = next((n for n in inventory.nodes if n.name == name), None)
    if info is None:
        raise Fail(f"no node named {name!r} in {inventory.path}")
    known_hosts = inventory.settings.known_hosts
    try:
        seen = hostkeys.trust(known_hosts, info, fingerprint, accept=yes,
                              timeout=inventory.settings.connect_timeout)
    except hostkeys.TrustError as e:
        _presents(info, e.presented)
        raise Fail(str(e)) from None
    _presents(info, seen)
    if not seen.pinned:
        raise Fail(f"{name}: not pinned; compare the fingerprint with the node's own and run again with "
                   f"--fingerprint {seen.fingerprint}")
    click.echo(f"pinned in {known_hosts}; the master uses it from its next connection to {name}")


def _presents(info, seen):
    if seen is not None:
        click.echo(f"{info.name} ({info.address}) presents {seen.kind} key {seen.fingerprint}")


@main.command()
@click.argument("service_name")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--tail", default="100", show_default=True, help="Lines per container, or 'all'.")
@click.option("--since", default=None, help="Unix time, RFC 3339 time or duration (10m).")
@click.option("--node", default=None, help="Every Bicycle container of this node instead of a service.")
@click.option("-t", "--timestamps", is_flag=True)
@click.pass_context
def logs(ctx, service_name, follow, tail, since, node, timestamps):
    """Merged logs of a service's containers (SERVICE_NAME '-' with --node for a node's)."""
    path = f"/nodes/{_segment(node)}/logs" if node else f"/service/{_segment(service_name)}/logs"
    params = {"tail": tail, "follow": str(follow).lower(), "timestamps": str(timestamps).lower()}
    if since:
        params["since"] = since
    _follow(ctx, path, params, click.echo)


@main.command()
@click.argument("service_name", required=False)
@click.option("--node", default=None, help="The containers of one node.")
@click.pass_context
def top(ctx, service_name, node):
    """CPU and memory per container (of a service, a node, or everything)."""
    if service_name:
        paths = [f"/service/{_segment(service_name)}/stats"]
    elif node:
        paths = [f"/nodes/{_segment(node)}/stats"]
    else:
        _, nodes = _call(ctx, "GET", "/nodes")
        paths = [f"/nodes/{_segment(n['name'])}/stats" for n in nodes]
    rows, errors = [], {}
    for path in paths:
        _, answer = _call(ctx, "GET", path)
        rows += answer["containers"]
        errors.update(answer["errors"])
    click.echo(tables.stats_table(rows))
    for n, e in sorted(errors.items()):
        click.echo(f"# {n}: {e}", err=True)


@main.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--limit", default=50, show_default=True)
@click.pass_context
def events(ctx, follow, limit):
    """The timeline of decisions: placements, removals, node health, leadership."""
    def show(e):
        click.echo(f"{e['time']}  {e['kind']:<10} {e['message']}")
    _, recent = _call(ctx, "GET", "/events", params={"limit": limit})
    for e in recent:
        show(e)
    if follow:
        since = recent[-1]["id"] if recent else 0
        _follow(ctx, "/events", {"follow": "true", "since": since}, lambda line: show(json.loads(line)))


@main.command()
@click.option("-f", "--file", "path", default=None,
              help="The Compose file (default: compose.yaml, compose.yml, docker-compose.yaml or .yml here).")
@click.option("--project", default=None, help="Services are named PROJECT-SERVICE (default: the file's name: "
                                               "key, else its folder's name).")
@click.option("--prune", is_flag=True, help="Remove the project's services that the file no longer has.")
@click.option("--dry-run", is_flag=True, help="Print what would change, change nothing.")
@click.option("--ignore-unsupported", is_flag=True, help="Deploy without the keys Bicycle cannot honour "
                                                         "(one note each) instead of refusing the file.")
@click.option("--no-wait", is_flag=True, help="Answer once the changes are stored, not once they ran.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait for the services.")
@click.pass_context
def deploy(ctx, path, project, prune, dry_run, ignore_unsupported, no_wait, timeout):
    """Deploy a Compose file: one service per Compose service, created or
    updated (rolling, under each service's update settings)."""
    try:
        loaded = load_compose(path or default_compose_file(), project)
        for name in sorted(loaded.unset):
            click.echo(f"warning: the {name} variable is not set; defaulting to a blank string", err=True)
        services = translate(loaded, ignore_unsupported=ignore_unsupported)
        existing, nodes = _cluster_now(ctx, dry_run)
        steps = compose_deploy.plan(services, existing, loaded.project, prune, nodes)
        for step in steps:
            click.echo(compose_deploy.describe(step))
        if dry_run or not steps:
            return
        answered = compose_deploy.apply(steps, lambda *a: _call(ctx, *a), _segment)
    except ComposeError as e:
        raise Fail(str(e)) from None
    why = [] if no_wait else [w for svc in answered if (w := _settled(ctx, svc, timeout))]
    _, now = _call(ctx, "GET", "/service")
    click.echo(tables.services_table([s for s in now if s["name"] in {step.name for step in steps}]))
    if why:
        raise Fail("; ".join(why))


def _cluster_now(ctx, dry_run):
    """(the services, the number of nodes) a deploy plans against. A dry run
    needs the cluster only to tell creates from updates: without an answer
    it plans against an empty one."""
    try:
        return _call(ctx, "GET", "/service")[1], len(_call(ctx, "GET", "/nodes")[1])
    except Fail:
        if not dry_run:
            raise
        click.echo("# the cluster did not answer: every service is shown as a create", err=True)
        return [], compose_deploy.MAX_REPLICAS


def _settled(ctx, started, timeout):
    """Wait for one service of a deploy; why it did not end well, or None."""
    svc, done = rollout_wait.follow(lambda: _call(ctx, "GET", f"/service/{_segment(started['name'])}")[1],
                                    started, timeout)
    return rollout_wait.failure(svc, started, done, timeout)


@main.group()
def image():
    """Copy images to the nodes without a registry."""


@image.command("push")
@click.argument("name")
@click.option("--node", "nodes", multiple=True, help="Only this node (repeatable); default: every node.")
@click.pass_context
def image_push(ctx, name, nodes):
    """Copy IMAGE from the local engine (DOCKER_HOST or the default socket) to
    the nodes over SSH: streamed into `docker load`, in parallel; a node that
    has the same image id already is skipped. Exits 1 when a node failed."""
    from remote import images
    from remote.transport import NodeConnection
    from cli.progress import NodesProgress, size
    inventory = _inventory(ctx.obj["inventory"])
    known = {n.name: n for n in inventory.nodes}
    unknown = [n for n in nodes if n not in known]
    if unknown:
        raise Fail(f"no node named {unknown[0]!r} in {inventory.path}")
    s = inventory.settings
    conns = [NodeConnection(known[n], s.known_hosts, s.connect_timeout) for n in (nodes or known)]
    progress = NodesProgress([c.node.name for c in conns])
    try:
        results = images.push(name, conns, progress.update)
    except images.PushError as e:
        raise Fail(str(e)) from None
    finally:
        progress.done()
        for c in conns:
            c.close()
    for r in results:
        rate = f", {size(r.sent / r.seconds)}/s" if r.seconds else ""
        click.echo(f"{r.node}: " + ("already has it, nothing sent" if r.skipped else
                                   f"FAILED after {size(r.sent)}: {r.error}" if r.error else
                                   f"sent {size(r.sent)} in {r.seconds:.1f}s{rate}"))
    failed = [r.node for r in results if r.error]
    if failed:
        raise Fail(f"{name} not pushed to {', '.join(failed)}")


@main.group()
def sandbox():
    """A local cluster of real nodes (sshd + dockerd pairs on 127.0.0.x)."""


def _sandbox_call(fn, *args):
    from sandbox.cluster import SandboxError
    try:
        return fn(*args)
    except SandboxError as e:
        raise Fail(str(e)) from None


@sandbox.command("up")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 40))
@click.option("--dir", "directory", default=os.path.join(HERE, ".sandbox"), show_default=".sandbox")
@click.option("--base", default=10, show_default=True, type=click.IntRange(1, 200),
              help="Node i listens on 127.0.0.(BASE+i).")
@click.option("--api", default="127.0.0.1:7070", show_default=True, help="Master API address to write.")
def sandbox_up(nodes, directory, base, api):
    """Start (or repair) the sandbox and write its inventory."""
    from sandbox import cluster
    if not API.fullmatch(api):
        raise Fail(f"--api {api!r}: must be HOST:PORT")
    path = _sandbox_call(cluster.up, directory, nodes, base, api)
    click.echo(f"sandbox ready: inventory {path}")


@sandbox.command("down")
@click.option("--dir", "directory", default=os.path.join(HERE, ".sandbox"), show_default=".sandbox")
def sandbox_down(directory):
    """Stop the sandbox's nodes and remove its data."""
    from sandbox import cluster
    _sandbox_call(cluster.down, directory)
    click.echo("sandbox removed")


@sandbox.command("status")
@click.option("--dir", "directory", default=os.path.join(HERE, ".sandbox"), show_default=".sandbox")
def sandbox_status(directory):
    """Processes of the sandbox's nodes."""
    from sandbox import cluster
    rows = _sandbox_call(cluster.status, directory)
    if not rows:
        raise Fail(f"no sandbox in {directory}")
    click.echo(tables.table(["node", "address", "user", "sshd", "dockerd", "containers"],
                            [[r["name"], r["address"], r["user"], f"{r['sshd']} ({r['sshd_pid'] or '-'})",
                              f"{r['dockerd']} ({r['dockerd_pid'] or '-'})", r["containers"]] for r in rows]))


if __name__ == "__main__":
    main()
