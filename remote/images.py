"""Images copied from the local engine to nodes, without a registry.

The local engine is the one `docker` talks to on this machine (DOCKER_HOST
or the default socket, as the docker SDK reads them). Each node gets the
engine's own `docker save` stream piped over its SSH connection into
`docker load`: no temporary copy on either side. A node whose engine has the
same image id already is skipped; nodes are done in parallel. `copy` does
the same from one node's engine to another's (a node that joins gets the
images the services use from a member).
"""
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import docker

from remote import commands
from remote.transport import RemoteError

CHUNK = 1 << 20
TIMEOUT = 3600.0          # a large image over a slow link


class PushError(Exception):
    pass


@dataclass
class Pushed:
    node: str
    sent: int = 0                  # bytes of the archive sent
    seconds: float = 0.0
    skipped: bool = False          # the node had the image already
    error: str = ""


def local_image(image, client=None):
    """(client, image id) of `image` in the local engine; PushError when absent."""
    try:
        client = client or docker.from_env()
        return client, client.images.get(image).id
    except docker.errors.ImageNotFound:
        raise PushError(f"no image {image} in the local engine: build or pull it here first") from None
    except docker.errors.DockerException as e:
        raise PushError(f"cannot reach the local engine: {e}") from None


def push(image, connections, progress=lambda node, sent, seconds: None, client=None):
    """Copy `image` to each connection's node -> [Pushed], in the order given.
    progress(node, bytes sent, seconds) is called as the bytes go."""
    client, wanted = local_image(image, client)
    with ThreadPoolExecutor(max_workers=max(1, len(connections))) as pool:
        return list(pool.map(lambda conn: _one(conn, client, image, wanted, progress), connections))


def _one(conn, client, image, wanted, progress):
    return _send(conn, image, wanted, lambda: client.api.get_image(image, chunk_size=CHUNK), progress)


def copy(image, source, target, progress=lambda node, sent, seconds: None):
    """Copy `image` from the engine of `source` to that of `target` (both
    NodeConnections): `docker save` there streamed through this process into
    `docker load` here -> Pushed of the target."""
    try:
        wanted = _node_image(source, image)
    except RemoteError as e:
        return Pushed(target.node.name, error=f"{source.node.name}: {e}"[:300])
    if wanted is None:
        return Pushed(target.node.name, error=f"{source.node.name} has no {image}")
    streams = []

    def archive():
        streams.append(source.stream(commands.save(image), combine_stderr=False))
        return streams[0].chunks(idle_timeout=60)
    try:
        pushed = _send(target, image, wanted, archive, progress)
        saved = streams[0].exit_status_if_ended() if streams and pushed.error else None
        if saved:                          # the load failed because the save did: say so
            pushed = replace(pushed, error=f"docker save on {source.node.name} failed "
                                                       f"(exit {saved}); {pushed.error}"[:300])
        return pushed
    finally:
        for s in streams:
            s.close()


def _send(conn, image, wanted, archive, progress):
    """Load the archive archive() yields into conn's engine unless it has
    `wanted` already -> Pushed."""
    name = conn.node.name
    try:
        if _node_image(conn, image) == wanted:
            return Pushed(name, skipped=True)
        started, sent = time.monotonic(), 0

        def chunks():
            nonlocal sent
            for chunk in archive():
                sent += len(chunk)
                progress(name, sent, time.monotonic() - started)
                yield chunk
        result = conn.run(commands.load(), timeout=TIMEOUT, stdin=chunks())
        seconds = time.monotonic() - started
        if not result.ok:
            return Pushed(name, sent, seconds, error=(result.stderr or result.stdout).strip()[-300:])
        if _node_image(conn, image) != wanted:
            return Pushed(name, sent, seconds, error=f"loaded, but {image} is not {wanted[:19]} there")
        return Pushed(name, sent, seconds)
    except (RemoteError, docker.errors.DockerException) as e:
        return Pushed(name, error=str(e)[:300])


def _node_image(conn, image):
    result = conn.run(commands.image_id(image), timeout=30)
    return result.stdout.strip() if result.ok else None
