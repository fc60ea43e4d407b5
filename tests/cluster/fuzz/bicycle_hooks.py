"""schemathesis hooks for the fuzz test (loaded through SCHEMATHESIS_HOOKS).

Requests stay bounded in time: right before each call (every phase), a wait
for convergence is cut to a fraction of a second and a stream is never
followed (a followed stream only ends when the client leaves). A malformed
value of either is sent as generated: the API must refuse it. Node changes
are kept harmless (keep_the_nodes).
"""
import schemathesis


@schemathesis.hook
def before_call(ctx, case, kwargs):
    query = case.query if isinstance(case.query, dict) else {}
    timeout = query.get("timeout")
    try:
        if timeout is None or 0 <= float(timeout) <= 600:
            query["timeout"] = "0.2"
    except (TypeError, ValueError):
        pass
    if str(query.get("follow", "")).lower() in ("true", "1", "yes"):
        query["follow"] = "false"
    case.query = query
    keep_the_nodes(case)


def keep_the_nodes(case):
    """Node changes stay harmless: a node to add is looked for on a closed
    loopback port (nothing leaves the machine; it is refused as unreachable),
    labels and availability never change a sandbox node, and a removal names
    a node that does not exist."""
    path, method = case.operation.path, case.operation.method.upper()
    body = case.body if isinstance(case.body, dict) else None
    if path == "/nodes" and method == "POST" and body is not None and isinstance(body.get("host"), str):
        body["host"], body["port"] = "127.0.0.1", 9
    elif path == "/nodes/{name}" and method == "PATCH" and body is not None:
        body.pop("labels", None)
        if body.get("availability") == "active":
            body["availability"] = "drain"
    elif path == "/nodes/{name}" and method == "DELETE":
        case.path_parameters = dict(case.path_parameters or {}, name="no-such-node")
