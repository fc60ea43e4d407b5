"""Pure builders of the command lines Bicycle sends to nodes.

Each returns an argv list; the transport turns it into one remote command line
with shlex.join, the one place where quoting happens.
"""
from model import LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC, LABEL_EPOCH


# docker inspect on every labelled container, as one JSON array ("[]" when none).
# Also the health probe: it needs both sshd and the engine to answer.
LIST_SCRIPT = (
    f"ids=$(docker ps -aq --no-trunc --filter label={LABEL_SERVICE}) || exit 3; "
    'if [ -z "$ids" ]; then echo "[]"; else docker inspect $ids; fi'
)


def list_containers():
    return ["sh", "-c", LIST_SCRIPT]


def container_name(service, slot, suffix):
    return f"{service}.{slot}.{suffix}"


def run(name, service, slot, spec, epoch=0):
    """docker run for one slot of a service; spec is a model.ServiceSpec.

    The engine never restarts Bicycle's containers (`--restart no`): the
    master replaces exited ones by the service's restart policy, with back-off,
    so every restart is a decision it can show and count. A spec with secrets
    takes them as an env file on stdin (the caller pipes it in).
    """
    argv = ["docker", "run", "-d", "--name", name,
            "--label", f"{LABEL_SERVICE}={service}",
            "--label", f"{LABEL_SLOT}={slot}",
            "--label", f"{LABEL_SPEC}={spec.digest()}",
            "--label", f"{LABEL_EPOCH}={epoch}",
            "--restart", "no"]
    if spec.pull != "missing":
        argv += ["--pull", spec.pull]
    for key, value in spec.labels:
        argv += ["--label", f"{key}={value}"]
    for key, value in spec.env:
        argv += ["--env", f"{key}={value}"]
    for port in spec.ports:
        argv += ["--publish", port.flag()]
    argv += _health_flags(spec.healthcheck)
    if spec.cpus:
        argv += ["--cpus", f"{spec.cpus:g}"]
    if spec.memory:
        argv += ["--memory", f"{spec.memory}b"]
    for mount in spec.volumes:
        argv += ["--volume", mount.flag()]
    if spec.secrets:
        # The values come on the command's stdin, never on its command line.
        argv += ["--env-file", "/dev/stdin"]
    entry = list(spec.entrypoint or ())
    if spec.entrypoint is not None:      # docker run takes one word; the rest go before the command
        argv += ["--entrypoint", entry.pop(0) if entry else ""]
    return argv + ["--", spec.image, *entry, *spec.command]


def _health_flags(check):
    """docker run's --health-* flags for a model.Healthcheck (none: the image's own)."""
    if check is None:
        return []
    kind, *rest = check.test
    if kind == "NONE":
        return ["--no-healthcheck"]
    return ["--health-cmd", rest[0], "--health-interval", _seconds(check.interval),
            "--health-timeout", _seconds(check.timeout), "--health-retries", str(check.retries),
            "--health-start-period", _seconds(check.start_period)]


def _seconds(value):
    return f"{int(value * 1000)}ms"


def capacity():
    """What the node's engine has: CPUs and memory bytes (placement weighs reservations against them)."""
    return ["docker", "info", "--format", "{{.NCPU}} {{.MemTotal}}"]


def remove(container_id):
    return ["docker", "rm", "-f", container_id]


def logs(container_id, tail=None, since=None, follow=False):
    """docker logs with timestamps, stderr folded into stdout."""
    argv = ["sh", "-c", 'exec docker logs "$@" 2>&1', "bicycle-logs", "--timestamps"]
    if tail is not None:
        argv += ["--tail", str(tail)]
    if since is not None:
        argv += ["--since", str(since)]
    if follow:
        argv.append("--follow")
    return argv + ["--", container_id]


def stats(container_ids):
    """One sample of CPU and memory per container, one JSON object a line."""
    return ["docker", "stats", "--no-stream", "--no-trunc", "--format", "{{json .}}", "--", *container_ids]


# What `node doctor` asks a node, in one round trip: one `key=value` line per
# fact (parse.doctor reads them); the images to look for come as "$@".
DOCTOR_SCRIPT = r'''
echo "docker_path=$(command -v docker)"
out=$(docker version --format '{{.Server.Version}}' 2>&1); echo "engine_rc=$?"
echo "engine=$(printf %s "$out" | tr '\n' ' ' | cut -c1-300)"
echo "flock=$(command -v flock)"
D="$HOME/.bicycle"; if mkdir -p "$D" 2>/dev/null && [ -w "$D" ]; then echo state_dir=ok; else echo state_dir=no; fi
root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null)
free=$(df -Pk "${root:-$HOME}" 2>/dev/null | awk 'NR==2 {print $4}')
[ -n "$free" ] || free=$(df -Pk "$HOME" | awk 'NR==2 {print $4}')
echo "disk_free_kib=$free"; echo "disk_path=${root:-$HOME}"
echo "clock=$(date +%s.%N)"
for image in "$@"; do
  if docker image inspect --format '{{.Id}}' -- "$image" >/dev/null 2>&1; then echo "image_present=$image"
  else echo "image_missing=$image"; fi
done
'''


def doctor(images):
    """The facts `node doctor` checks, for the images `images`."""
    return ["sh", "-c", DOCTOR_SCRIPT, "bicycle-doctor", *images]


def image_id(image):
    """The id of `image` on the node's engine (exit 1 when it has none)."""
    return ["docker", "image", "inspect", "--format", "{{.Id}}", "--", image]


def load():
    """docker load of an image archive read from stdin."""
    return ["docker", "load", "-q"]


def save(image):
    """docker save of `image` to stdout (an archive for docker load)."""
    return ["docker", "save", "--", image]
