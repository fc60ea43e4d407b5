"""A TinyDB storage that never leaves a torn file.

Every write replaces the file through files.replace_private: a temporary file
in the same folder, fsynced, renamed over the old file, and the folder
fsynced, so a crash leaves the old or the new file, mode 0600. Reads are
served from memory after the first load (the text last written, parsed again
for each read: a fresh copy that TinyDB may change, cheaper than a deep
copy): this process is the file's only writer, so temporary files of its own
name found at start are leftovers of a crash and go.
"""
import glob
import json
import os

from tinydb.storages import Storage

from files import replace_private, temporary_prefix


class AtomicJSONStorage(Storage):
    def __init__(self, path, **_):
        self.path = os.path.abspath(path)
        folder = os.path.dirname(self.path)
        os.makedirs(folder, exist_ok=True)
        prefix = temporary_prefix(self.path)
        for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
            os.unlink(stale)               # left by a write that a crash interrupted
        self._text = None              # the file's text, once read or written

    def read(self):
        if self._text is None:
            try:
                with open(self.path, encoding="utf-8") as f:
                    self._text = f.read()
            except FileNotFoundError:
                return None
        return json.loads(self._text) if self._text.strip() else None

    def write(self, data):
        text = json.dumps(data, sort_keys=True)
        replace_private(self.path, text)
        self._text = text              # only once the file holds it: a failed write changes nothing

    def close(self):
        pass
