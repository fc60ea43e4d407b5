"""A TinyDB storage that never leaves a torn file.

Every write goes to a temporary file in the same folder, is fsynced, renamed
over the old file, and the folder is fsynced: a crash leaves the old or the
new file. The file is created with mode 0600. Reads are served from memory
after the first load (the text last written, parsed again for each read: a
fresh copy that TinyDB may change, cheaper than a deep copy): this process is
the file's only writer, so temporary files of its own name found at start are
leftovers of a crash and go.
"""
import glob
import json
import os
import tempfile

from tinydb.storages import Storage


def temporary_prefix(path):
    """Temporary files of `path` are named .NAME.tmp-XXXX beside it."""
    return f".{os.path.basename(path)}.tmp-"


def replace_private(path, text):
    """Replace `path` by `text` so that a crash leaves the old or the new file:
    a temporary file in the same folder (mode 0600), fsync, rename, fsync of
    the folder."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), dir=folder)     # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def create_private(path, text):
    """Write `text` to `path` with mode 0600 unless `path` exists; True if this
    call created it. Made under a temporary name, fsynced, then hard-linked
    into place, so processes racing to create it all end with the one winner."""
    if os.path.exists(path):
        return False
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".new-", dir=folder)       # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    _fsync_folder(folder)
    return True


def _fsync_folder(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
