"""HTTP helpers shared by the API's routes: JSON errors, query parameters, bodies."""
import json
import re

import bottle

MAX_BODY = 1024 * 1024
MAX_TAIL = 100000


class HTTPError(Exception):
    def __init__(self, status, message, errors=None, **extra):
        super().__init__(message)
        self.status, self.message, self.errors, self.extra = status, message, errors, extra

    def body(self):
        body = dict(self.extra, message=self.message)
        if self.errors:
            body["errors"] = self.errors
        return body


def json_answer(status, payload):
    bottle.response.status = status
    bottle.response.content_type = "application/json"
    return json.dumps(payload, indent=None)


def read_body():
    length = bottle.request.content_length
    if length > MAX_BODY:
        raise HTTPError(413, f"request body larger than {MAX_BODY} bytes")
    raw = bottle.request.body.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise HTTPError(413, f"request body larger than {MAX_BODY} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HTTPError(400, f"body is not valid JSON: {e}") from None
    except RecursionError:
        raise HTTPError(400, "body is nested too deeply") from None


def query_flag(name, default=True):
    value = bottle.request.query.get(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise HTTPError(400, f"query parameter {name} must be true or false")


def query_timeout(default):
    value = bottle.request.query.get("timeout")
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise HTTPError(400, "query parameter timeout must be a number of seconds") from None
    if not 0 <= seconds <= 600:
        raise HTTPError(400, "query parameter timeout must be 0-600 seconds")
    return seconds


def query_int(name, default, low=0, high=MAX_TAIL, allow_all=False):
    value = bottle.request.query.get(name)
    if value is None:
        return default
    if allow_all and value == "all":
        return None
    try:
        number = int(value)
    except ValueError:
        raise HTTPError(400, f"query parameter {name} must be a whole number") from None
    if not low <= number <= high:
        raise HTTPError(400, f"query parameter {name} must be {low}-{high}")
    return number


SINCE = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?|[0-9]{1,6}[smh]|\d{4}-\d\d-\d\dT[0-9:.]{2,18}(Z|[+-]\d\d:\d\d)?")


def query_since():
    """docker accepts RFC 3339 times, Unix times and durations like 10m; nothing else reaches it."""
    value = bottle.request.query.get("since")
    if value is not None and not SINCE.fullmatch(value):
        raise HTTPError(400, "query parameter since must be a Unix time, an RFC 3339 time or a duration like 10m")
    return value
