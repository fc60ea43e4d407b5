"""A small client of the master's REST API for the CLI."""
import requests


class ClientError(Exception):
    """One line for the user; the CLI prints it and exits non-zero."""


class Client:
    def __init__(self, api, timeout=90.0):
        self.base = f"http://{api}"
        self.api = api
        self.timeout = timeout

    def call(self, method, path, body=None, params=None, ok=(200, 201, 202)):
        try:
            r = requests.request(method, self.base + path, json=body, params=params, timeout=self.timeout)
        except requests.ConnectionError:
            raise ClientError(f"no master answers at {self.api} (start one with: bicycle.py up)") from None
        except requests.Timeout:
            raise ClientError(f"the master at {self.api} did not answer within {self.timeout:.0f}s") from None
        try:
            payload = r.json()
        except ValueError:
            raise ClientError(f"the master at {self.api} answered {r.status_code} without JSON") from None
        if r.status_code not in ok:
            message = payload.get("message", r.reason) if isinstance(payload, dict) else r.reason
            details = payload.get("errors") if isinstance(payload, dict) else None
            if details:
                message += ": " + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in details)
            raise ClientError(f"error {r.status_code}: {message}")
        return r.status_code, payload

    def lines(self, path, params=None):
        """A streamed text answer, line by line (logs, followed events)."""
        try:
            with requests.get(self.base + path, params=params, stream=True, timeout=(5, None)) as r:
                if r.status_code != 200:
                    try:
                        message = r.json().get("message", r.reason)
                    except ValueError:
                        message = r.reason
                    raise ClientError(f"error {r.status_code}: {message}")
                for line in r.iter_lines(decode_unicode=True):
                    yield line
        except requests.ConnectionError:
            raise ClientError(f"no master answers at {self.api} (start one with: bicycle.py up)") from None
