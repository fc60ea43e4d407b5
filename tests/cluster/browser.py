"""A headless Chromium driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: commands in on fd 3, answers out on fd 4, JSON
messages ended by NUL), so a test can load the dashboard once and watch its
DOM change without reloading it. No driver or extra package: the protocol's
three calls used here are small."""
import json
import os
import select
import subprocess
import time

from conftest import API, token, wait_for

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Browser:
    def __init__(self, profile):
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()
        script = f'exec "$0" "$@" 3<&{to_browser} 4>&{from_browser}'
        self.proc = subprocess.Popen(["bash", "-c", script, "chromium", *FLAGS, "--remote-debugging-pipe",
                                      f"--user-data-dir={profile}", "about:blank"],
                                     pass_fds=(to_browser, from_browser),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id, self.session = b"", 0, None

    def call(self, method, params=None, timeout=30):
        """Send one command (to the page once `open` attached one) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def _read(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._answers], [], [], left)[0]:
                raise TimeoutError("the browser did not answer")
            chunk = os.read(self._answers, 1 << 16)
            if not chunk:
                raise RuntimeError(f"the browser exited ({self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url):
        """Open `url` in a new page; later calls go to that page."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def js(self, expression):
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        os.close(self._commands)
        os.close(self._answers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# -- the dashboard's page ------------------------------------------------------

RED = "rgb(197, 48, 48)"      # the dashboard's colour of trouble (down, failed, untrusted ...)


def dashboard(browser):
    """Open the sandbox master's dashboard once; the browser signs in with
    HTTP Basic auth, the read token as password. Returns once the first
    refresh drew the nodes."""
    browser.open(f"http://viewer:{token('read')}@{API}/")
    wait_for(lambda: browser.js("document.querySelectorAll('#nodes tr[data-node]').length") == 3, 20)


def row(browser, table, key, name):
    """[cell texts] of the row of `name` in `table`, or None."""
    return browser.js(f"""(() => {{ const tr = document.querySelector('#{table} tr[data-{key}="{name}"]');
                                     return tr && [...tr.cells].map(td => td.textContent); }})()""")


def status_colour(browser, node):
    return browser.js(f"""getComputedStyle(document.querySelector(
        '#nodes tr[data-node="{node}"]').cells[2]).color""")
