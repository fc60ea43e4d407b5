"""Progress of work on several nodes at once, for `image push`.

On a terminal one line is redrawn in place (each node's bytes and rate), at
most every REDRAW seconds; elsewhere (a pipe, a log) nothing is drawn until
the end, where each node gets its own line."""
import sys
import threading
import time

REDRAW = 0.2


def size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class NodesProgress:
    def __init__(self, nodes, out=sys.stderr):
        self.state = {n: "waiting" for n in nodes}
        self.out, self.live = out, out.isatty()
        self.lock, self.drawn = threading.Lock(), 0.0

    def update(self, node, sent, seconds):
        """Called from each node's thread as bytes go."""
        with self.lock:
            self.state[node] = f"{size(sent)} {size(sent / seconds if seconds else 0)}/s"
            if self.live and time.monotonic() - self.drawn >= REDRAW:
                self.drawn = time.monotonic()
                self.out.write("\r\x1b[K" + "  |  ".join(f"{n} {s}" for n, s in self.state.items()))
                self.out.flush()

    def done(self):
        if self.live and self.drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
