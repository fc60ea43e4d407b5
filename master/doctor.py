"""Node doctor: ask a node its facts over its persistent connection and
check them (scheduler/doctor.py). A read: it changes nothing on the node
beyond creating ~/.bicycle when it is missing, as the lease scripts do."""
import time

from model import DELETE
from remote import commands, parse
from remote.transport import HostKeyError, RemoteError
from scheduler import doctor

TIMEOUT = 20.0


def images_in_use(store):
    """The images of the services that are not being deleted, sorted."""
    return sorted({s.spec.image for s in store.services() if s.state != DELETE})


class Doctor:
    def __init__(self, fleet, store, wall=time.time):
        """fleet: the nodes' connections; store: the services whose images
        the nodes should have."""
        self.fleet, self.store, self.wall = fleet, store, wall

    def images(self):
        return images_in_use(self.store)

    def examine(self, name):
        """{node, ok, checks: [{check, ok, detail, hint}]} of node `name`."""
        conn = self.fleet.connections[name]
        images = self.images()
        sent = self.wall()
        try:
            result = conn.run(commands.doctor(images), timeout=TIMEOUT)
        except RemoteError as e:
            node = conn.node
            where = f"{'-i ' + node.key + ' ' if node.key else ''}-p {node.port} {node.user}@{node.host}"
            return doctor.report(name, doctor.unreachable(name, e, isinstance(e, HostKeyError), where))
        checks = doctor.examine(parse.doctor(result.stdout), images, sent, self.wall())
        return doctor.report(name, checks)
