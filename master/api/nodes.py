"""The routes of nodes: /nodes, /nodes/<name>, its doctor, adding, changing,
draining, activating and removing one.

Like every write, these are taken only by the leader. Draining and
activating are committed through Desired; a drain waits (bounded,
?wait=false to skip) until the node is empty. Adding, relabelling and
removing change the members (master/node_changes.py): checked, committed to
a majority of the members as they were, then in force.
"""
from master.api.http import query_flag, read_body


def add_routes(route, desired, views, leadership, waits, doctor, changes):
    def node_view(name):
        return next(n for n in views.nodes() if n["name"] == name)

    @route("/nodes")
    def list_nodes():
        return 200, views.nodes()

    @route("/nodes/<name>")
    def show_node(name):
        return 200, node_view(desired.node(name))

    @route("/nodes", "POST")
    def add_node():
        leadership.require()
        entry, fingerprint, trust = desired.new_node(read_body())
        info = changes.add(entry, fingerprint, trust)
        desired.wake()
        return 201, node_view(info.name)

    @route("/nodes/<name>", "PATCH")
    def change_node(name):
        leadership.require()
        labels, availability = desired.node_change(read_body())
        name = desired.node(name)
        if labels is not None:
            changes.relabel(name, labels)
        if availability == "drain":
            desired.drain(name)
        elif availability == "active":
            desired.activate(name)
        return 200, node_view(name)

    @route("/nodes/<name>", "DELETE")
    def remove_node(name):
        force = query_flag("force", False)
        _, timeout = waits.asked()
        leadership.require()
        changes.remove(desired.node(name), force, timeout)
        desired.wake()
        return 200, {"message": f"node {name} removed", "name": name}

    @route("/nodes/<name>/doctor")
    def examine(name):
        """Any master answers: it asks the node over its own connection."""
        return 200, doctor(desired.node(name))

    @route("/nodes/<name>/drain", "POST")
    def drain(name):
        wait, timeout = waits.asked()
        leadership.require()
        desired.drain(desired.node(name))
        done = waits.emptied(name, timeout) if wait else False
        return (200 if done else 202), node_view(name)

    @route("/nodes/<name>/activate", "POST")
    def activate(name):
        leadership.require()
        desired.activate(desired.node(name))
        return 200, node_view(name)
