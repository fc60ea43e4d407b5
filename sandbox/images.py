"""The offline demo images, built FROM scratch with the static busybox on node
1's engine, then copied to the other nodes (docker save/load).

A container of `bicycle/demo:1` or `:2` answers `GET /` on port 80 (or $PORT)
with `bicycle demo v<version> <hostname>`, `GET /health` with `ok`, and logs
to stdout. Two broken versions, for rolling updates to fail on (tests, and
users trying them): `bicycle/demo:bad` runs and answers `GET /`, but has no
/health, and its image's own HEALTHCHECK (every second, two tries) makes it
unhealthy; `bicycle/demo:crash` exits with code 1 at once.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

from . import daemons, host
from .common import DEMO_IMAGES, Node, Sandbox, SandboxError, run

HASH_LABEL = "bicycle.demo.hash"

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY start.sh /start.sh
ARG VERSION=1
ENV DEMO_VERSION=$VERSION
LABEL bicycle.demo.version=$VERSION {label}=@HASH@
EXPOSE 80
STOPSIGNAL SIGTERM
CMD ["/bin/sh", "/start.sh"]
""".format(label=HASH_LABEL)

START_SH = """\
#!/bin/sh
# Bicycle demo service: GET / answers "bicycle demo v<version> <hostname>".
V="${DEMO_VERSION:-0}"
H="$(hostname)"
P="${PORT:-80}"
mkdir -p /www
echo "bicycle demo v$V $H" > /www/index.html
[ "$DEMO_HEALTH" = broken ] || echo ok > /www/health
echo "bicycle demo v$V starting on $H, port $P"
httpd -f -v -p "$P" -h /www &
pid=$!
trap 'echo "bicycle demo v$V stopping"; kill $pid 2>/dev/null; wait $pid; exit 0' TERM INT
wait $pid
"""


# The broken versions, built FROM demo:1 (its label names the same recipe).
VARIANTS = {
    "bicycle/demo:bad": """\
FROM bicycle/demo:1
ENV DEMO_VERSION=bad DEMO_HEALTH=broken
HEALTHCHECK --interval=1s --timeout=2s --retries=2 CMD wget -q -O /dev/null http://127.0.0.1:${PORT:-80}/health
""",
    "bicycle/demo:crash": """\
FROM bicycle/demo:1
ENV DEMO_VERSION=crash
CMD ["/bin/sh", "-c", "echo 'bicycle demo crash: exiting at once' >&2; exit 1"]
""",
}


def recipe_hash() -> str:
    return hashlib.sha256((DOCKERFILE + START_SH + "".join(VARIANTS.values())).encode()).hexdigest()[:16]


def _version(image: str) -> str:
    return image.rsplit(":", 1)[1]


def _missing(node: Node, wanted: str) -> list[str]:
    return [img for img in DEMO_IMAGES
            if (daemons.image_labels(node, img) or {}).get(HASH_LABEL) != wanted]


def _docker(node: Node, *args: str) -> list[str]:
    return [shutil.which("docker") or "docker", "-H", node.docker_host, *args]


def prepare_context(sb: Sandbox, wanted: str) -> str:
    ctx = sb.build_dir
    os.makedirs(ctx, mode=0o755, exist_ok=True)
    if not host.is_static_elf(host.BUSYBOX):
        raise SandboxError(f"{host.BUSYBOX} is not a static binary: apt-get install -y busybox-static")
    shutil.copyfile(host.BUSYBOX, os.path.join(ctx, "busybox"))
    os.chmod(os.path.join(ctx, "busybox"), 0o755)
    daemons.write_file(os.path.join(ctx, "Dockerfile"), DOCKERFILE.replace("@HASH@", wanted))
    daemons.write_file(os.path.join(ctx, "start.sh"), START_SH, 0o755)
    for image, text in VARIANTS.items():
        daemons.write_file(os.path.join(ctx, _variant_file(image)), text)
    return ctx


def _variant_file(image: str) -> str:
    return f"Dockerfile.{_version(image)}"


def _build(first: Node, image: str, ctx: str, env: dict) -> None:
    recipe = ["-f", os.path.join(ctx, _variant_file(image))] if image in VARIANTS else \
        ["--build-arg", f"VERSION={_version(image)}"]
    run(_docker(first, "build", "-q", "--force-rm", *recipe, "-t", image, ctx), env=env, timeout=300)


def ensure_images(sb: Sandbox, log) -> None:
    """Every node has both demo images of the current recipe."""
    wanted = recipe_hash()
    nodes = sb.all_nodes()
    first = nodes[0]
    need = _missing(first, wanted)
    if need:
        ctx = prepare_context(sb, wanted)
        env = dict(os.environ, DOCKER_BUILDKIT="0")   # the classic builder: no buildx needed
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        for image in need:                 # in DEMO_IMAGES' order: the variants after demo:1
            log(f"{first.name}: building {image}")
            _build(first, image, ctx, env)
        run(_docker(first, "image", "prune", "-f"), check=False)   # replaced recipes
    todo = {n: _missing(n, wanted) for n in nodes[1:]}
    todo = {n: imgs for n, imgs in todo.items() if imgs}
    if not todo:
        return
    os.makedirs(sb.build_dir, mode=0o755, exist_ok=True)
    tar = os.path.join(sb.build_dir, "demo-images.tar")
    run(_docker(first, "save", "-o", tar, *DEMO_IMAGES), timeout=300)
    try:
        log(f"copying demo images to {', '.join(n.name for n in todo)}")
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            for fut in [pool.submit(run, _docker(n, "load", "-q", "-i", tar), timeout=300)
                        for n in todo]:
                fut.result()
    finally:
        os.remove(tar)
