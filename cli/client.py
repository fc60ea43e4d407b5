"""A small client of the master's REST API for the CLI (and the tests).

It sends the API token on every call and keeps it when a standby answers
307 with the leader's address: plain requests drops the Authorization
header when a redirect changes host, and the leader needs it as much.
"""
import requests


class ClientError(Exception):
    """One line for the user; the CLI prints it and exits non-zero."""


class TokenSession(requests.Session):
    """requests with `Authorization: Bearer TOKEN` on every request; token is a
    string or a function that returns one (read when the request is made)."""

    def __init__(self, token=None, verify=True):
        super().__init__()
        self.token, self.verify, self.max_redirects = token, verify, 3

    def request(self, method, url, *args, **kw):
        token = self.token() if callable(self.token) else self.token
        headers = dict(kw.pop("headers", None) or {})
        if token:
            headers.setdefault("Authorization", f"Bearer {token}")
        kw.setdefault("verify", self.verify)      # explicit: REQUESTS_CA_BUNDLE must not replace it
        return super().request(method, url, *args, headers=headers, **kw)

    def rebuild_auth(self, prepared_request, response):
        pass          # keep the token on a redirect from a standby to the leader


class Client:
    def __init__(self, api, timeout=90.0, token=None, scheme="http", verify=True):
        self.base = api if api.startswith(("http://", "https://")) else f"{scheme}://{api}"
        self.api = api
        self.timeout = timeout
        self.session = TokenSession(token, verify)

    def _request(self, method, path, **kw):
        try:
            return self.session.request(method, self.base + path, **kw)
        except requests.exceptions.SSLError as e:
            raise ClientError(f"TLS with the master at {self.api} failed: {e}") from None
        except requests.TooManyRedirects:
            raise ClientError(f"too many redirects from the masters at {self.api}") from None
        except requests.ConnectionError:
            raise ClientError(f"no master answers at {self.api} (start one with: bicycle.py up)") from None
        except requests.Timeout:
            raise ClientError(f"the master at {self.api} did not answer within {self.timeout:.0f}s") from None
        except requests.RequestException as e:
            raise ClientError(f"cannot call the master at {self.api}: {type(e).__name__}") from None

    def call(self, method, path, body=None, params=None, ok=(200, 201, 202)):
        r = self._request(method, path, json=body, params=params, timeout=self.timeout)
        try:
            payload = r.json()
        except ValueError:
            raise ClientError(f"the master at {self.api} answered {r.status_code} without JSON") from None
        if r.status_code not in ok:
            raise ClientError(_error_line(r, payload))
        return r.status_code, payload

    def lines(self, path, params=None):
        """A streamed text answer, line by line (logs, followed events)."""
        r = self._request("GET", path, params=params, stream=True, timeout=(5, None))
        with r:
            if r.status_code != 200:
                try:
                    payload = r.json()
                except ValueError:
                    payload = None
                raise ClientError(_error_line(r, payload))
            try:
                for line in r.iter_lines(decode_unicode=True):
                    yield line
            except requests.ConnectionError:
                raise ClientError(f"the master at {self.api} closed the stream") from None


def _error_line(r, payload):
    message = payload.get("message", r.reason) if isinstance(payload, dict) else r.reason
    details = payload.get("errors") if isinstance(payload, dict) else None
    if details:
        message += ": " + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in details)
    return f"error {r.status_code}: {message}"
