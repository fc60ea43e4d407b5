"""API tokens: the token file, and which token kind may call what.

The file holds one token of each kind, {"admin": ..., "read": ...}. It is
created with mode 0600 by the first master that starts; masters that start
at the same moment all end up with the one file that won.
The CLI reads the same file to find its token.

Rules (pure): /health is open; GET and HEAD need a read or admin token;
every other method needs the admin token. A token comes as
`Authorization: Bearer TOKEN`, or as the password of HTTP Basic auth so a
browser can open the dashboard.
"""
import base64
import binascii
import hmac
import json
import secrets

from files import create_private

ADMIN, READ = "admin", "read"
OPEN_PATHS = frozenset({"/health"})
READ_METHODS = frozenset({"GET", "HEAD"})


class TokenFileError(Exception):
    pass


def required(method, path):
    """The token kind a request needs: None (open), READ or ADMIN."""
    if path in OPEN_PATHS:
        return None
    return READ if method.upper() in READ_METHODS else ADMIN


def presented(header):
    """The token in an Authorization header value, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def kind_of(token, tokens):
    """ADMIN, READ or None for a presented token; compared in constant time."""
    if not token:
        return None
    found = None
    for kind in (ADMIN, READ):
        expected = tokens.get(kind)
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            found = kind
    return found


def allows(have, need):
    """May a token of kind `have` (or None) make a request that needs `need`?"""
    if need is None:
        return True
    if need == READ:
        return have in (READ, ADMIN)
    return have == ADMIN


def new_tokens():
    return {ADMIN: "bicycle-admin-" + secrets.token_urlsafe(32),
            READ: "bicycle-read-" + secrets.token_urlsafe(32)}


def load(path):
    """The tokens in `path`; TokenFileError when missing or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no token file (the first `bicycle.py up` creates it)") from None
    except (OSError, ValueError) as e:
        raise TokenFileError(f"{path}: cannot read the token file: {e}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and len(data[k]) >= 16
                                             for k in (ADMIN, READ)):
        raise TokenFileError(f"{path}: the token file must hold an admin and a read token")
    return {ADMIN: data[ADMIN], READ: data[READ]}


def load_or_create(path):
    """The tokens in `path`, created (mode 0600) when the file does not exist."""
    create_private(path, json.dumps(new_tokens(), indent=1))
    return load(path)
