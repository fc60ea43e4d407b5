"""The CLI options of rolling updates, health checks and resource limits
(service create and update), and the request body they make. Durations are seconds (a bare
number) or strings such as 500ms, 10s, 1m30s."""
import functools

import click

from model import FAILURE_ACTIONS, UPDATE_ORDERS

ROLLBACK_ACTIONS = ("pause", "continue")

OPTIONS = [
    ("--parallelism", "update.parallelism", int, "Slots replaced at once in an update (0: all)."),
    ("--delay", "update.delay", str, "Pause between batches (e.g. 10s)."),
    ("--order", "update.order", click.Choice(UPDATE_ORDERS), "Start the new container first, or stop the old."),
    ("--monitor", "update.monitor", str, "How long a new container must run healthy to count (e.g. 5s)."),
    ("--failure-action", "update.failure_action", click.Choice(FAILURE_ACTIONS), "What a failed update does."),
    ("--max-failure-ratio", "update.max_failure_ratio", float, "Failures tolerated, as a share of replicas."),
    ("--rollback-parallelism", "rollback.parallelism", int, "Slots a rollback replaces at once."),
    ("--rollback-delay", "rollback.delay", str, "Pause between rollback batches."),
    ("--rollback-order", "rollback.order", click.Choice(UPDATE_ORDERS), "Order of a rollback's replacements."),
    ("--rollback-monitor", "rollback.monitor", str, "Watch of a rollback's new containers."),
    ("--rollback-failure-action", "rollback.failure_action", click.Choice(ROLLBACK_ACTIONS),
     "What a failed rollback does."),
    ("--health-cmd", "healthcheck.test", str, "Health check: a shell line run in the container."),
    ("--health-interval", "healthcheck.interval", str, "Time between health checks (e.g. 5s)."),
    ("--health-timeout", "healthcheck.timeout", str, "How long one check may take."),
    ("--health-retries", "healthcheck.retries", int, "Failures in a row that make it unhealthy."),
    ("--health-start-period", "healthcheck.start_period", str, "Grace time after start."),
    ("--limit-cpu", "resources.limits.cpus", str, "CPU limit of each container (e.g. 0.5)."),
    ("--limit-memory", "resources.limits.memory", str, "Memory limit of each container (e.g. 256m)."),
]


def update_options(command):
    """Add the options above (and --no-healthcheck) to a click command; it
    receives them as one `rollout` dict argument (see update_body)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        chosen = {path: kwargs.pop(_param(flag)) for flag, path, _, _ in OPTIONS}
        chosen["healthcheck.disable"] = kwargs.pop("no_healthcheck")
        return command(*args, rollout=chosen, **kwargs)
    for flag, _, kind, text in reversed(OPTIONS):
        wrapper = click.option(flag, type=kind, default=None, help=text)(wrapper)
    return click.option("--no-healthcheck", is_flag=True, help="Turn the image's own health check off.")(wrapper)


DURATIONS = ("delay", "monitor", "interval", "timeout", "start_period")


def _seconds(value):
    """A duration as typed: a bare number is seconds, anything else goes as written."""
    try:
        return float(value)
    except ValueError:
        return value


def _param(flag):
    return flag.lstrip("-").replace("-", "_")


def update_body(rollout, current=lambda: None):
    """The body fields of the chosen options: {"update": {...}, "rollback":
    {...}, "healthcheck": {...}}. A health check given in part keeps the
    other fields of current() (the service's stored one) when there is one."""
    body = {}
    for path, value in rollout.items():
        if value is None or value is False:
            continue
        *groups, key = path.split(".")
        into = body
        for group in groups:
            into = into.setdefault(group, {})
        into[key] = _seconds(value) if key in DURATIONS else value
    check = body.get("healthcheck")
    if check and not check.get("disable") and "test" not in check:
        stored = current()
        if not stored or stored.get("test") == ["NONE"]:
            raise click.UsageError("--health-* options need --health-cmd (the service has no health check)")
        body["healthcheck"] = dict(stored, **check)
    return body
