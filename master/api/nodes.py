"""The routes of nodes: /nodes, /nodes/<name>, its doctor, and draining or activating one.

Like every write, draining and activating are taken only by the leader and
committed through Desired; a drain waits (bounded, ?wait=false to skip)
until the node is empty.
"""


def add_routes(route, desired, views, leadership, waits, doctor):
    def node_view(name):
        return next(n for n in views.nodes() if n["name"] == name)

    @route("/nodes")
    def list_nodes():
        return 200, views.nodes()

    @route("/nodes/<name>")
    def show_node(name):
        return 200, node_view(desired.node(name))

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
