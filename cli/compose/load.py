"""Reading a Compose file as `docker compose` reads it: YAML, the `.env`
file beside it (the shell's environment wins over it), interpolation, then
the Compose specification's own JSON schema (compose-spec.json, the
compose-spec project's schema file, Apache-2.0), so that a file Compose
rejects is rejected here too, with the same path to the bad key.
"""
import datetime
import json
import os
import re
from dataclasses import dataclass, field

import jsonschema
from dotenv import dotenv_values
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from cli.compose.interpolate import InterpolationError, interpolate_tree

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compose-spec.json")
PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]*")
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def default_file(folder="."):
    """The Compose file Compose itself would pick in `folder`."""
    for name in DEFAULT_FILES:
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise ComposeError(f"no Compose file here ({', '.join(DEFAULT_FILES)}): give one with -f")


class ComposeError(Exception):
    """A Compose file that cannot be deployed: one line that says where and why."""


@dataclass
class ComposeFile:
    """A Compose file, interpolated and valid against the schema."""
    data: dict
    project: str
    folder: str                     # relative paths in the file are relative to it
    env: dict                       # what ${VAR} and `environment: [VAR]` read
    unset: set = field(default_factory=set)     # variables used but not set (blank, as Compose does)


def load(path, project=None, environ=None):
    environ = os.environ if environ is None else environ
    folder = os.path.dirname(os.path.abspath(path))
    raw = _plain(_yaml(path), path, "")
    env = dict(_dotenv(os.path.join(folder, ".env")), **environ)
    unset = set()
    try:
        data = interpolate_tree(raw, env, unset)
    except InterpolationError as e:
        raise ComposeError(f"{path}: {e}") from None
    check_schema(data, path)
    return ComposeFile(data, project_name(project or env.get("COMPOSE_PROJECT_NAME"), data, folder), folder, env,
                       unset)


def _yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = YAML(typ="safe", pure=True).load(f)
    except OSError as e:
        raise ComposeError(f"cannot read {path}: {e.strerror}") from None
    except (YAMLError, UnicodeDecodeError) as e:
        raise ComposeError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ComposeError(f"{path}: a Compose file is a mapping with a `services` key")
    return data


def _plain(value, path, where):
    """The parsed tree as Compose sees it: keys are strings, and a date stays
    the text it was (YAML would make it a date object)."""
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ComposeError(f"{path}: {where or '(top level)'}: the key {bad[0]!r} must be a string (quote it)")
        return {k: _plain(v, path, f"{where}.{k}".lstrip(".")) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, path, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def _dotenv(path):
    if not os.path.exists(path):
        return {}
    try:
        return {k: v for k, v in dotenv_values(path, encoding="utf-8").items() if v is not None}
    except UnicodeDecodeError:
        raise ComposeError(f"{path} is not UTF-8 text") from None


def check_schema(data, path):
    with open(SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(data), key=lambda e: list(map(str, e.path)))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ComposeError(f"{path}: {where}: {_message(first)}{more}")


def _message(error):
    """jsonschema's message, or Compose's wording for a key the schema lacks."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return error.message
    patterns = list((error.schema.get("patternProperties") or {}))
    extra = sorted(k for k in error.instance if k not in (error.schema.get("properties") or {})
                   and not any(re.search(p, k) for p in patterns))
    return f"additional property {extra[0]!r} is not allowed" if extra else error.message


def project_name(given, data, folder):
    """--project, else the file's `name`, else its folder's name, as Compose
    normalizes it (lower case; letters, digits, '_' and '-')."""
    name = given or data.get("name") or os.path.basename(folder)
    normal = re.sub(r"[^a-z0-9_-]", "", name.lower())
    if not PROJECT.fullmatch(normal):
        raise ComposeError(f"project name {name!r} has no letter or digit to start with: give --project")
    return normal
