"""`bicycle.py deploy -f compose.yml`: what a Compose file changes on the
cluster (the plan: create, update, remove) and doing it through the API.

Every body is checked with the API's own validation before the first
write, so a file with one bad service changes nothing. A service of the
same name that belongs to no project or to another one is never taken
over. An update sends every field (a key removed from the file goes back
to its default); the same file deployed twice replaces no container.
Removal (--prune) touches only services labelled with this project.
"""
from dataclasses import dataclass, field

from cli.compose.load import ComposeError
from cli.compose.translate import PROJECT_LABEL
from master.validate import MAX_REPLICAS, Invalid, service_request

CREATE, UPDATE, REMOVE, UNCHANGED = "create", "update", "remove", "unchanged"


@dataclass
class Step:
    action: str
    name: str
    body: dict = None
    notes: list = field(default_factory=list)
    changed: tuple = ()          # an update's fields that differ from the service as it runs


def plan(services, existing, project, prune=False, nodes=MAX_REPLICAS):
    """services: [translate.Service]; existing: GET /service; nodes: how
    many the cluster has (a service with host ports runs one replica per
    node) -> [Step]."""
    requests = {svc.name: check(svc, nodes) for svc in services}
    by_name = {s["name"]: s for s in existing}
    steps = []
    for svc in services:
        old = by_name.get(svc.name)
        if old is None:
            steps.append(Step(CREATE, svc.name, svc.body, svc.notes))
            continue
        if old.get("state") == "DELETE":
            raise ComposeError(f"services.{svc.key}: {svc.name} is being removed: deploy again once it is gone")
        owner = (old["spec"].get("labels") or {}).get(PROJECT_LABEL)
        if owner != project:
            raise ComposeError(f"services.{svc.key}: a service {svc.name} exists and is not of project {project} "
                               f"({'of project ' + owner if owner else 'made outside Compose'}): remove it, or "
                               f"deploy with another --project")
        if old.get("mode", "replicated") != svc.body["mode"]:
            raise ComposeError(f"services.{svc.key}.deploy.mode: {svc.name} is {old.get('mode', 'replicated')}; "
                               f"a mode is set at creation: remove the service first")
        body = {k: v for k, v in svc.body.items() if k not in ("name", "mode")}
        changed = differences(requests[svc.name], old)
        steps.append(Step(UPDATE if changed else UNCHANGED, svc.name, body, svc.notes, changed))
    if prune:
        wanted = {svc.name for svc in services}
        steps += [Step(REMOVE, s["name"]) for s in sorted(existing, key=lambda s: s["name"])
                  if (s["spec"].get("labels") or {}).get(PROJECT_LABEL) == project and s["name"] not in wanted
                  and s.get("state") != "DELETE"]
    return steps


def differences(new, old):
    """The fields of the request `new` (master.validate.ServiceRequest) that
    differ from the stored service `old` (as GET /service shows it: secrets
    masked, so only their names compare)."""
    spec, before = new.spec.public_dict(), old["spec"]
    fields = [k for k in sorted(set(spec) | set(before)) if spec.get(k) != before.get(k)]
    update = old.get("update") or {}
    for name, now, was in (("replicas", new.replicas if new.mode != "global" else None,
                            old["replicas"]["desired"] if new.mode != "global" else None),
                           ("update", new.update.to_dict(), update.get("settings")),
                           ("rollback", new.rollback.to_dict(), update.get("rollback_settings")),
                           ("constraints", list(new.constraints), old.get("constraints"))):
        if now != was:
            fields.append(name)
    return tuple(fields)


def check(svc, nodes=MAX_REPLICAS):
    """The API's validation of the body, here, before anything is written -> the request."""
    try:
        return service_request(svc.body, nodes, seal=lambda name, value: value)
    except Invalid as e:
        first = e.errors[0]
        more = f" (and {len(e.errors) - 1} more)" if len(e.errors) > 1 else ""
        raise ComposeError(f"services.{svc.key} ({svc.name}): {first['field']}: {first['message']}{more}") from None


def apply(steps, call, segment):
    """Send each step (call(method, path, body, params) -> (code, payload));
    -> the services created or updated, as the API answered them."""
    answered, done = [], []
    for step in steps:
        path = f"/service/{segment(step.name)}"
        try:
            if step.action == CREATE:
                answered.append(call("POST", "/service", step.body, {"wait": "false"})[1])
            elif step.action in (UPDATE, UNCHANGED):      # unchanged: the API keeps it as it is
                answered.append(call("PATCH", path, step.body, {"wait": "false"})[1])
            else:
                call("DELETE", path, None, {"wait": "false"})
        except Exception as e:
            raise ComposeError(f"{step.action} {step.name} failed: {e} (done before it: "
                               f"{', '.join(done) or 'nothing'}; deploy again once fixed)") from None
        done.append(f"{step.action} {step.name}")
    return answered


def describe(step):
    """One line of the plan, as --dry-run prints it."""
    if step.action == REMOVE:
        return f"remove {step.name}"
    body = step.body
    count = "global" if body.get("mode") == "global" or "replicas" not in body else f"{body['replicas']} x"
    line = f"{step.action} {step.name}: {count} {body['image']}" + \
        (f" ({', '.join(step.changed)} differ)" if step.changed else "") + \
        (" (the values of its secrets are not compared)" if step.action == UNCHANGED and body.get("secrets") else "")
    return "\n".join([line] + [f"  note: {n}" for n in step.notes])
