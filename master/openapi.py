"""The OpenAPI 3.0 description of the REST API, served at /openapi.json."""
from master import validate, validate_update
from scheduler import constraints
from master.inventory import HOST, USER
from model import FAILURE_ACTIONS, MODES, NODE_STATUSES, PULL_POLICIES, REPLICATED, RESTART_POLICIES, UPDATE_ORDERS


ERROR = {"type": "object", "required": ["message"], "properties": {
    "message": {"type": "string"},
    "errors": {"type": "array", "items": {"type": "object", "properties": {
        "field": {"type": "string"}, "message": {"type": "string"}}}}}}

PORT = {"oneOf": [
    {"type": "string", "pattern": r"^\d{1,5}:\d{1,5}(/(tcp|udp))?$", "example": "8080:80"},
    {"type": "object", "additionalProperties": False, "required": ["published", "target"], "properties": {
        "published": {"type": "integer", "minimum": 1, "maximum": 65535},
        "target": {"type": "integer", "minimum": 1, "maximum": 65535},
        "protocol": {"type": "string", "enum": ["tcp", "udp"]}}}]}

# Strings, keys and sizes as master/validate.py checks them (one definition):
# what the document calls valid, the API takes.
TEXT = {"type": "string", "maxLength": validate.MAX_STRING, "pattern": "^[^\\x00]*$"}
LINE = {"type": "string", "maxLength": validate.MAX_STRING, "pattern": "^[^\\x00\\r\\n]*$"}


def _pattern(regex):
    return "^(" + regex.pattern + ")$"


def _mapping(key, value, **extra):
    """An object of at most MAX_ITEMS keys matching `key` (JSON Schema's
    propertyNames: schemathesis and other generators honour it)."""
    return {"type": "object", "maxProperties": validate.MAX_ITEMS,
            "propertyNames": {"pattern": _pattern(key)}, "additionalProperties": value, **extra}


DURATION = {"oneOf": [{"type": "number", "minimum": 0, "maximum": validate_update.MAX_SECONDS},
                      {"type": "string", "pattern": _pattern(validate_update.DURATION), "example": "5s"}]}
HEALTHCHECK = {"type": "object", "additionalProperties": False, "nullable": True,
               "description": "the engine's health check (none: the image's own); disable: true turns that off",
               "properties": {"test": {"oneOf": [LINE, {"type": "array", "minItems": 1, "items": LINE}],
                                       "description": "a shell line, [\"CMD-SHELL\", line] or [\"NONE\"]"},
                              "interval": DURATION, "timeout": DURATION, "start_period": DURATION,
                              "retries": {"type": "integer", "minimum": 1, "maximum": 100},
                              "disable": {"type": "boolean"}}}


def _update(actions, what):
    return {"type": "object", "additionalProperties": False, "description": what, "properties": {
        "parallelism": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 1,
                        "description": "slots replaced at once (0: all)"},
        "delay": DURATION, "monitor": DURATION,
        "order": {"type": "string", "enum": list(UPDATE_ORDERS), "default": "start-first"},
        "failure_action": {"type": "string", "enum": list(actions)},
        "max_failure_ratio": {"type": "number", "minimum": 0, "maximum": 1, "default": 0}}}


ROLLOUT_FIELDS = {
    "constraints": {"type": "array", "maxItems": validate.MAX_ITEMS,
                    "items": {"type": "string", "pattern": _pattern(constraints.CONSTRAINT), "example": "node.labels.zone==a"},
                    "description": "placement: node.labels.KEY==VALUE, node.labels.KEY!=VALUE, node.name==N, node.name!=N"},
    "update": _update(FAILURE_ACTIONS, "how a change of spec rolls over the slots, and what a failure does"),
    "rollback": _update(("pause", "continue"), "how a rollback rolls"),
}


AMOUNTS = {"type": "object", "additionalProperties": False, "properties": {
    "cpus": {"oneOf": [{"type": "number", "minimum": 0.01, "maximum": 1024}, {"type": "string"}], "example": 0.5},
    "memory": {"oneOf": [{"type": "integer", "minimum": 6291456}, {"type": "string"}], "example": "256m"}}}
VOLUME = {"oneOf": [
    {"type": "string", "example": "data:/var/lib/data", "description": "SOURCE:TARGET[:ro|rw] or TARGET"},
    {"type": "object", "additionalProperties": False, "required": ["target"], "properties": {
        "source": {"type": "string", "pattern": "^(" + validate.VOLUME_NAME.pattern + "|" + validate.NODE_PATH.pattern + ")?$"},
        "target": {"type": "string", "pattern": _pattern(validate.NODE_PATH)},
        "read_only": {"type": "boolean"}}}]}

SPEC_FIELDS = {
    "image": {"type": "string", "maxLength": 400, "pattern": _pattern(validate.IMAGE), "example": "bicycle/demo:1"},
    "replicas": {"type": "integer", "minimum": 0, "maximum": validate.MAX_REPLICAS, "default": 1,
                 "description": "not with mode global"},
    "command": {"oneOf": [{"type": "string"},
                          {"type": "array", "maxItems": validate.MAX_ITEMS, "items": TEXT}]},
    "env": _mapping(validate.ENV_KEY, TEXT),
    "ports": {"type": "array", "maxItems": validate.MAX_ITEMS, "items": PORT},
    "labels": _mapping(validate.LABEL_KEY, TEXT),
    "restart": {"type": "string", "enum": list(RESTART_POLICIES), "default": "always"},
    "pull": {"type": "string", "enum": list(PULL_POLICIES), "default": "missing",
             "description": "when the engine pulls the image; never: it must be on the node (bicycle.py image push)"},
    "secrets": _mapping(validate.ENV_KEY, LINE,
                        description="NAME -> value, given to the containers as environment; shown masked"),
    "healthcheck": HEALTHCHECK,
    "resources": {"type": "object", "additionalProperties": False,
                  "description": "limits go to the engine; reservations to placement (a node takes a replica "
                                 "only while its replicas' reservations fit in what its engine has)",
                  "properties": {"limits": AMOUNTS, "reservations": AMOUNTS}},
    "entrypoint": {"oneOf": [{"type": "string"}, {"type": "array", "maxItems": validate.MAX_ITEMS, "items": TEXT}],
                   "nullable": True, "description": "replaces the image's entrypoint ([]: none; null: the image's)"},
    "volumes": {"type": "array", "maxItems": validate.MAX_ITEMS, "items": VOLUME,
                "description": "named volumes of the node's engine (made where a replica runs) or paths on the node"},
}
NAME = {"type": "string", "pattern": _pattern(validate.NAME)}

CONTAINER = {"type": "object", "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "service": {"type": "string"},
    "slot": {"type": "integer"}, "node": {"type": "string"}, "image": {"type": "string"},
    "status": {"type": "string"}, "last_status": {"type": "string"}, "created_at": {"type": "string"},
    "started_at": {"type": "string", "nullable": True}, "uptime_s": {"type": "number", "nullable": True},
    "health": {"type": "string", "nullable": True},
    "spec": {"type": "string", "enum": ["current", "previous", "older"]}}}

MODE = {"type": "string", "enum": list(MODES), "default": REPLICATED,
        "description": "global: one replica on every eligible node (no replicas); set at creation only"}
SERVICE = {"type": "object", "required": ["name", "spec", "version", "status", "replicas"], "properties": {
    "name": NAME,
    "spec": {"type": "object"},
    "version": {"type": "integer"},
    "state": {"type": "string", "enum": ["NEW", "RUNNING", "DELETE"]},
    "status": {"type": "string", "enum": ["converging", "running", "failed", "deleting", "paused"]},
    "update": {"type": "object", "description": "the latest change of spec: its state (updating, paused, "
                                                "rolling back, completed, rolled back), why, its slots"},
    "mode": {"type": "string", "enum": list(MODES)},
    "constraints": {"type": "array", "items": {"type": "string"}},
    "replicas": {"type": "object", "properties": {"desired": {"type": "integer"}, "running": {"type": "integer"}}},
    "created_at": {"type": "string", "nullable": True},
    "updated_at": {"type": "string", "nullable": True},
    "error": {"type": "string"},
    "backoff": {"type": "array", "items": {"type": "object", "properties": {
        "slot": {"type": "integer"}, "kind": {"type": "string", "enum": ["place", "crash"]},
        "failures": {"type": "integer"}, "retry_in_s": {"type": "number"}, "message": {"type": "string"}}}},
    "plan": {"type": "array", "items": {"type": "object", "properties": {
        "kind": {"type": "string", "enum": ["place", "stop", "replace", "keep"]}, "slot": {"type": "integer"},
        "node": {"type": "string", "nullable": True}, "reason": {"type": "string"}}}},
    "containers": {"type": "array", "items": CONTAINER}}}

NODE = {"type": "object", "properties": {
    "name": {"type": "string"}, "address": {"type": "string"}, "user": {"type": "string"},
    "labels": {"type": "object"},
    "status": {"type": "string", "enum": list(NODE_STATUSES)},
    "availability": {"type": "string", "enum": ["active", "drain"]},
    "last_seen": {"type": "string", "nullable": True}, "error": {"type": "string", "nullable": True},
    "containers": {"type": "integer"}}}

DOCTOR = {"type": "object", "required": ["node", "ok", "checks"], "properties": {
    "node": {"type": "string"}, "ok": {"type": "boolean"},
    "checks": {"type": "array", "items": {"type": "object", "required": ["check", "ok", "detail", "hint"], "properties": {
        "check": {"type": "string"}, "ok": {"type": "boolean"}, "detail": {"type": "string"},
        "hint": {"type": "string", "description": "how to fix a failure; empty when it passes"}}}}}}

NEW_NODE = {"type": "object", "required": ["name", "host"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "pattern": _pattern(validate.NAME)},
    "host": {"type": "string", "pattern": _pattern(HOST), "example": "127.0.0.14"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 22},
    "user": {"type": "string", "pattern": _pattern(USER), "default": "root"},
    "key": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "private key file on the master"},
    "labels": _mapping(validate.LABEL_KEY, TEXT),
    "fingerprint": {"type": "string", "pattern": _pattern(validate.FINGERPRINT),
                    "description": "pin the host key only if it has this fingerprint"},
    "trust": {"type": "boolean", "default": False, "description": "pin the key presented now (trust on first use)"}}}
NODE_CHANGE = {"type": "object", "additionalProperties": False, "properties": {
    "labels": _mapping(validate.LABEL_KEY, TEXT),
    "availability": {"type": "string", "enum": list(validate.AVAILABILITY)}}}
REFUSED = {"type": "object", "required": ["message"], "properties": {
    "message": {"type": "string"}, "fingerprint": {"type": "string", "nullable": True},
    "checks": {"type": "array", "items": {"type": "object"}}, "errors": {"type": "array", "items": {"type": "object"}}}}

STATE = {"type": "object", "required": ["master", "nodes", "services", "containers"], "properties": {
    "master": {"type": "object", "properties": {
        "name": {"type": "string"}, "pid": {"type": "integer"}, "api": {"type": "string"},
        "started_at": {"type": "string"}, "uptime_s": {"type": "number"}, "role": {"type": "string"}}},
    "nodes": {"type": "array", "items": NODE},
    "services": {"type": "array", "items": SERVICE},
    "containers": {"type": "array", "items": CONTAINER}}}


def _json(schema):
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes):
    text = {400: "malformed request", 401: "no or bad token", 403: "a read token may not write",
            404: "no such service", 409: "name taken or conflicting change",
            413: "body larger than 1 MiB", 422: "invalid fields",
            503: "not acknowledged: no leader can take writes now, or the write did not reach a majority of "
                 "nodes under the epoch it was made in. The outcome is unknown (the change may still be "
                 "applied later): retry the same request (a create of the same spec answers 200)"}
    return {str(c): dict(description=text[c], **_json(ERROR)) for c in codes}


WAIT = [{"name": "wait", "in": "query", "schema": {"type": "boolean", "default": True},
         "description": "wait until converged (bounded); false answers 202 at once"},
        {"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 600}}]
PATH_NAME = {"name": "name", "in": "path", "required": True, "schema": NAME}
NODE_OK = {"200": dict(description="the node", **_json(NODE))}
LOG_PARAMS = [
    {"name": "tail", "in": "query", "schema": {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "enum": ["all"]}]},
     "description": "lines per container (default 100)"},
    {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "Unix time, RFC 3339 time or 10m"},
    {"name": "timestamps", "in": "query", "schema": {"type": "boolean"}},
    {"name": "follow", "in": "query", "schema": {"type": "boolean"}, "description": "stream until the client leaves"}]
STATS = {"type": "object", "properties": {
    "containers": {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "service": {"type": "string"},
        "slot": {"type": "integer"}, "node": {"type": "string"},
        "cpu_percent": {"type": "number", "nullable": True}, "memory_bytes": {"type": "integer", "nullable": True},
        "memory_limit_bytes": {"type": "integer", "nullable": True},
        "memory_percent": {"type": "number", "nullable": True}}}},
    "errors": {"type": "object", "additionalProperties": {"type": "string"}}}}
EVENT = {"type": "object", "properties": {
    "id": {"type": "integer"}, "time": {"type": "string"}, "kind": {"type": "string"}, "message": {"type": "string"},
    "service": {"type": "string"}, "node": {"type": "string"}, "command": {"type": "array", "items": {"type": "string"}}}}


SECURITY = {"bearer": {"type": "http", "scheme": "bearer",
                       "description": "settings.api.tokens: the admin token writes, the read token reads"},
            "basic": {"type": "http", "scheme": "basic",
                      "description": "any user name, a token as password (for browsers)"}}
REDIRECT = {"307": {"description": "a standby: the leader's address is in Location",
                    "headers": {"Location": {"schema": {"type": "string"}}}, **_json(ERROR)}}


def _secured(paths):
    """Every operation but /health needs a token (401); writes need the admin
    token (403) and the leader (307 from a standby, 503 without a majority)."""
    for path, item in paths.items():
        for method, op in item.items():
            if method == "parameters":
                continue
            if path == "/health":
                op["security"] = []
                continue
            op["responses"].update(_errors(401))
            if method != "get":
                op["responses"].update(_errors(403, 503))
                op["responses"].update(REDIRECT)
    return paths


def document():
    create = {"type": "object", "additionalProperties": False, "required": ["name", "image"],
              "properties": dict(SPEC_FIELDS, name=NAME, mode=MODE, **ROLLOUT_FIELDS)}
    patch = {"type": "object", "additionalProperties": False, "properties": dict(SPEC_FIELDS, **ROLLOUT_FIELDS)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Bicycle", "version": "1.0",
                 "description": "Agentless Docker orchestrator: desired services over SSH-driven engines."},
        "components": {"securitySchemes": SECURITY},
        "security": [{"bearer": []}, {"basic": []}],
        "paths": _secured({
            "/health": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}},
            "/state": {"get": {"summary": "the whole cluster from the master's memory",
                               "responses": {"200": dict(description="cluster state", **_json(STATE))}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}},
            "/service": {
                "get": {"summary": "list services",
                        "responses": {"200": dict(description="services", **_json({"type": "array", "items": SERVICE}))}},
                "post": {"summary": "create a service and wait until it converged",
                         "parameters": WAIT,
                         "requestBody": {"required": True, **_json(create)},
                         "responses": {"200": dict(description="the service already exists with this spec and "
                                                               "replicas (a retried create): it, as it is",
                                                   **_json(SERVICE)),
                                       "201": dict(description="converged or failed", **_json(SERVICE)),
                                       "202": dict(description="accepted, still converging", **_json(SERVICE)),
                                       **_errors(400, 409, 413, 422)}}},
            "/service/{name}": {
                "parameters": [PATH_NAME],
                "get": {"summary": "one service with its containers",
                        "responses": {"200": dict(description="service", **_json(SERVICE)), **_errors(404, 422)}},
                "patch": {"summary": "change replicas or spec",
                          "parameters": WAIT,
                          "requestBody": {"required": True, **_json(patch)},
                          "responses": {"200": dict(description="converged", **_json(SERVICE)),
                                        "202": dict(description="still converging", **_json(SERVICE)),
                                        **_errors(400, 404, 409, 413, 422)}},
                "delete": {"summary": "remove a service and its containers",
                           "parameters": WAIT,
                           "responses": {"200": dict(description="deleted", **_json(ERROR)),
                                         "202": dict(description="deleting", **_json(SERVICE)),
                                         **_errors(400, 404, 409, 422)}}},
            "/service/{name}/rollback": {
                "parameters": [PATH_NAME],
                "post": {"summary": "return to the previous spec, rolled under the rollback settings",
                         "parameters": WAIT,
                         "responses": {"200": dict(description="rolled back", **_json(SERVICE)),
                                       "202": dict(description="still rolling back", **_json(SERVICE)),
                                       **_errors(400, 404, 409, 422)}}},
            "/nodes": {"get": {"summary": "nodes with health and availability",
                               "responses": {"200": dict(description="nodes", **_json({"type": "array", "items": NODE}))}},
                       "post": {"summary": "add a node: pin its host key, check its engine; it joins and takes work",
                                "requestBody": {"required": True, **_json(NEW_NODE)},
                                "responses": {"201": dict(description="the node, a member now", **_json(NODE)),
                                              "422": dict(description="invalid, or the node cannot join",
                                                          **_json(REFUSED)),
                                              **_errors(400, 409, 413)}}},
            "/nodes/{name}": {"parameters": [PATH_NAME],
                              "get": {"summary": "one node", "responses": dict(NODE_OK, **_errors(404, 422))},
                              "patch": {"summary": "set the node's labels or availability (active, drain)",
                                        "requestBody": {"required": True, **_json(NODE_CHANGE)},
                                        "responses": dict(NODE_OK, **_errors(400, 404, 413, 422))},
                              "delete": {"summary": "drain the node until empty, then forget it (force: at once)",
                                         "parameters": [{"name": "force", "in": "query",
                                                         "schema": {"type": "boolean", "default": False}}] + WAIT[1:],
                                         "responses": {"200": dict(description="removed", **_json(ERROR)),
                                                       **_errors(400, 404, 409, 422)}}},
            "/nodes/{name}/drain": {"parameters": [PATH_NAME],
                                    "post": {"summary": "move the node's containers away (start-first); no new work",
                                             "parameters": WAIT,
                                             "responses": dict(NODE_OK, **{"202": dict(description="still moving", **_json(NODE))},
                                                               **_errors(400, 404, 422))}},
            "/nodes/{name}/doctor": {"parameters": [PATH_NAME], "get": {
                "summary": "check the node: SSH, host key, engine, docker access, flock, ~/.bicycle, disk, clock, images",
                "responses": {"200": dict(description="the check list", **_json(DOCTOR)), **_errors(404, 422)}}},
            "/nodes/{name}/activate": {"parameters": [PATH_NAME],
                                       "post": {"summary": "the node takes work again",
                                                "responses": dict(NODE_OK, **_errors(404, 422))}},
            "/service/{name}/logs": {"parameters": [PATH_NAME], "get": {
                "summary": "merged logs of the service's containers, prefixed service.slot@node |",
                "parameters": LOG_PARAMS,
                "responses": {"200": {"description": "lines", "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_errors(400, 404, 422)}}},
            "/nodes/{name}/logs": {"parameters": [PATH_NAME], "get": {
                "summary": "merged logs of every Bicycle container on the node",
                "parameters": LOG_PARAMS,
                "responses": {"200": {"description": "lines", "content": {"text/plain": {"schema": {"type": "string"}}}},
                              **_errors(400, 404, 422)}}},
            "/service/{name}/stats": {"parameters": [PATH_NAME], "get": {
                "summary": "CPU and memory per container, from the engines",
                "responses": {"200": dict(description="stats", **_json(STATS)), **_errors(404, 422)}}},
            "/nodes/{name}/stats": {"parameters": [PATH_NAME], "get": {
                "summary": "CPU and memory per Bicycle container on the node",
                "responses": {"200": dict(description="stats", **_json(STATS)), **_errors(404, 422)}}},
            "/events": {"get": {
                "summary": "the timeline of decisions; follow=true streams one JSON object a line",
                "parameters": [{"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                               {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                               {"name": "follow", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {"200": dict(description="events", **_json({"type": "array", "items": EVENT})),
                              **_errors(400)}}},
            "/metrics": {"get": {"summary": "Prometheus text format",
                                 "responses": {"200": {"description": "metrics",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/": {"get": {"summary": "the dashboard",
                          "responses": {"200": {"description": "HTML",
                                                "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        }),
    }
