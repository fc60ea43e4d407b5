"""Bicycle's rules around every route: the token check first, Bicycle's
errors answered through one table, every answer counted.

A handler returns (status, payload): a dict or a list is sent as JSON;
anything else (a stream of lines, metrics text, the dashboard) as it is.
"""
import bottle

from master import auth
from master.api.http import HTTPError, json_answer
from master.node_changes import NodeRefused
from master.replication import NotLeader
from master.validate import Invalid
from store.state import Conflict, Missing

# Bicycle's errors as HTTP answers: the error, its status, its JSON body.
# (An HTTPError carries its own; anything else is a 500.)
ERRORS = {
    NotLeader: (503, lambda e: {"message": f"not acknowledged, outcome unknown (retry the same request): {e}"}),
    Invalid: (422, lambda e: {"message": f"invalid {e.what}", "errors": e.errors}),
    NodeRefused: (422, lambda e: dict(e.seen, message=str(e))),
    Conflict: (409, lambda e: {"message": str(e)}),
    Missing: (404, lambda e: {"message": str(e)}),
}


def error_answer(e):
    """(status, JSON body) of an HTTPError or of an error of the ERRORS table."""
    if isinstance(e, HTTPError):
        return e.status, e.body()
    status, body = next(answer for kind, answer in ERRORS.items() if isinstance(e, kind))
    return status, body(e)


class Router:
    def __init__(self, app, tokens, requests):
        """tokens: {"admin": ..., "read": ...}; requests: the counter of answers
        by method, route and status."""
        self.app, self.tokens, self.requests = app, tokens, requests

    def route(self, path, method="GET"):
        """A decorator: `fn(**path parameters) -> (status, payload)` answers `method path`."""
        def wrap(fn):
            def handler(**kw):
                try:
                    self._authorize(method)
                    status, payload = fn(**kw)
                except (HTTPError, *ERRORS) as e:
                    status, payload = error_answer(e)
                self.requests.labels(method, path, str(status)).inc()
                if isinstance(payload, (dict, list)):
                    return json_answer(status, payload)
                bottle.response.status = status
                return payload
            self.app.route(path, method, handler)
            return fn
        return wrap

    def _authorize(self, method):
        """401 without a valid token, 403 when a read token tries to write."""
        need = auth.required(method, bottle.request.path)
        have = auth.kind_of(auth.presented(bottle.request.get_header("Authorization")), self.tokens)
        if auth.allows(have, need):
            return
        if have is None:
            bottle.response.add_header("WWW-Authenticate", 'Bearer realm="bicycle"')
            bottle.response.add_header("WWW-Authenticate", 'Basic realm="bicycle"')
            raise HTTPError(401, "a valid API token is required: Authorization: Bearer TOKEN "
                                 "(the token file is settings.api.tokens)")
        raise HTTPError(403, "this token may only read; writes need the admin token")
