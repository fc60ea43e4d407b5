"""Node doctor: what a node's facts say, as a check list with a fix per line.

Pure: the facts come from remote/commands.doctor (parsed by remote/parse),
or the error that kept the master from asking; `sent` and `answered` are the
master's wall clock around the question, for the clock offset.
"""
from dataclasses import asdict, dataclass

MIN_FREE_KIB = 1024 * 1024          # 1 GiB for the engine's images and containers
MAX_CLOCK_OFFSET = 1.0              # seconds; log times and events compare across nodes


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str
    hint: str = ""


def report(node, checks):
    """The doctor's answer for one node: {node, ok, checks: [...]}."""
    return {"node": node, "ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


def unreachable(node, error, host_key_refused, where):
    """The checks when the master could not run anything on the node.
    where: "user@host:port" and the key, for the hints."""
    if host_key_refused:
        return [Check("ssh", True, "the node answers"),
                Check("host key", False, str(error)[:300],
                      f"if the node was reinstalled, check its key and run: bicycle.py node trust {node}")]
    return [Check("ssh", False, str(error)[:300],
                  f"check host, port, user and key of {node} in inventory.yml; try: ssh {where}")]


def examine(facts, images, sent, answered):
    """[Check] from a node's facts. images: those the services use."""
    return [Check("ssh", True, "connected with the inventory's key"),
            Check("host key", True, "matches the pinned key"),
            *_engine(facts),
            _flock(facts), _state_dir(facts), _disk(facts),
            _clock(facts, sent, answered), _images(facts, images)]


def _engine(facts):
    out = facts.get("engine", "").strip()
    if not facts.get("docker_path"):
        return [Check("engine", False, "no docker command on the node's PATH",
                      "install the engine (Docker Engine or the distribution's docker package)"),
                Check("docker access", False, "no docker command", "install the engine first")]
    if facts.get("engine_rc") == "0":
        return [Check("engine", True, f"Docker Engine {out}"),
                Check("docker access", True, "the node user may use the engine")]
    if "permission denied" in out.lower():
        return [Check("engine", True, "the engine's socket is there"),
                Check("docker access", False, out,
                      "add the node user to the docker group (usermod -aG docker USER), then reconnect")]
    return [Check("engine", False, out or "the engine does not answer",
                  "start the engine (systemctl start docker) and check `docker version` on the node"),
            Check("docker access", False, "the engine does not answer", "start the engine first")]


def _flock(facts):
    if facts.get("flock"):
        return Check("flock", True, facts["flock"])
    return Check("flock", False, "no flock command: the lease scripts need it",
                 "install util-linux (apt-get install util-linux)")


def _state_dir(facts):
    if facts.get("state_dir") == "ok":
        return Check("~/.bicycle", True, "writable")
    return Check("~/.bicycle", False, "cannot create or write ~/.bicycle",
                 "give the node user its home folder back (chown USER ~/.bicycle)")


def _disk(facts):
    try:
        free = int(facts.get("disk_free_kib", ""))
    except ValueError:
        return Check("disk", False, "free space unknown", "check `df -k` on the node")
    detail = f"{free / 1024 / 1024:.1f} GiB free at {facts.get('disk_path', '?')}"
    if free >= MIN_FREE_KIB:
        return Check("disk", True, detail)
    return Check("disk", False, detail, "free space: docker image prune, docker system df")


def _clock(facts, sent, answered):
    try:
        theirs = float(facts.get("clock", ""))
    except ValueError:
        return Check("clock", False, "the node's time is unknown", "check `date` on the node")
    offset = theirs - (sent + answered) / 2
    detail = f"{offset:+.3f} s from the master (+/- {(answered - sent) / 2:.3f} s)"
    if abs(offset) <= MAX_CLOCK_OFFSET + (answered - sent) / 2:
        return Check("clock", True, detail)
    return Check("clock", False, detail, "synchronise the clocks (chrony or systemd-timesyncd)")


def _images(facts, images):
    missing = [i for i in images if i in facts.get("images_missing", [])]
    if not missing:
        return Check("images", True, f"{len(images)} image(s) the services use are present")
    return Check("images", False, "missing: " + ", ".join(missing[:10]),
                 "load them on the node (docker save IMAGE | ssh NODE docker load) or let the engine pull")
