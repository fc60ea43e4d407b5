"""schemathesis hooks for the fuzz test (loaded through SCHEMATHESIS_HOOKS).

Requests stay bounded in time: right before each call (every phase), a wait
for convergence is cut to a fraction of a second and a stream is never
followed (a followed stream only ends when the client leaves). A malformed
value of either is sent as generated: the API must refuse it.
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
