"""Private files written so that a crash never leaves a torn one.

`replace_private` and `create_private` write mode-0600 files through a
temporary file in the same folder, fsync it, move it into place and fsync the
folder. The store, the pinned host keys, the token file and the secrets key
all use them. A leaf: it imports nothing of Bicycle's, so any layer may use it.
"""
import os
import tempfile


def temporary_prefix(path):
    """Temporary files of `path` are named .NAME.tmp-XXXX beside it."""
    return f".{os.path.basename(path)}.tmp-"


def replace_private(path, text):
    """Replace `path` by `text` so that a crash leaves the old or the new file:
    a temporary file in the same folder (mode 0600), fsync, rename, fsync of
    the folder."""
    _replace(path, text, 0o600)


def replace_keeping_mode(path, text):
    """replace_private, but the new file keeps the old one's permissions
    (an inventory the user edits and other tools read)."""
    _replace(path, text, os.stat(path).st_mode & 0o7777)


def _replace(path, text, mode):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), dir=folder)     # mode 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_folder(folder)


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
    fsync_folder(folder)
    return True


def fsync_folder(folder):
    """Make a rename or a new link in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
