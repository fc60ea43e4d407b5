"""What every write goes through besides the store: the leader gate, and the
wait (bounded, `?wait=false` to skip) until the loop has acted on it."""
import bottle

from master.api.http import HTTPError, query_flag, query_timeout


class Leadership:
    def __init__(self, name, election, leader, url):
        """name: this master's; election: its status(), settle(), ttl and reason;
        leader(): (name, api, epoch) of the leader as seen, or None; url(api): its URL."""
        self.name, self.election, self.leader, self.url = name, election, leader, url

    def health(self):
        role, epoch = self.election.status()
        return {"status": "ok", "master": self.name, "role": role, "epoch": epoch}

    def require(self):
        """Writes go to the leader: a standby answers 307 with its address.
        While no leader is known yet (this master is starting, or a term is
        changing hands) a write waits for one, at most 2 x lease_ttl."""
        if self.election.settle(2 * self.election.ttl):
            return
        leader = self.leader()
        if leader and leader[0] != self.name and leader[1]:
            query = bottle.request.query_string
            location = self.url(leader[1]) + bottle.request.path + (f"?{query}" if query else "")
            bottle.response.set_header("Location", location)
            raise HTTPError(307, f"{self.name} is a standby; the leader is {leader[0]}",
                            leader={"name": leader[0], "api": leader[1], "epoch": leader[2]})
        raise HTTPError(503, f"no leader can take writes now: {self.election.reason}")


class Waits:
    def __init__(self, timeout, settled, emptied):
        """timeout: converge_timeout, the default; settled(name, version, timeout)
        and emptied(node, timeout): block until done, False on timeout."""
        self.timeout, self.settled, self.emptied = timeout, settled, emptied

    def asked(self):
        """The query's wait and timeout, checked before anything is written."""
        return query_flag("wait"), query_timeout(self.timeout)
