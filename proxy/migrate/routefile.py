"""Writing a route file in place: atomically, keeping its mode and symlink, removing temp files an
interrupted write left (``routes import``, ``routes set``, ``routes mode``, ``routes unknown``)."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable
from typing import BinaryIO

# A temp file of an interrupted write (``routes set`` or ``routes import`` killed) is removed by
# the next write once no process holds its lock and it is at least this old.
STALE_TMP_SECONDS = 5.0


def _tmp_prefix(target: str) -> str:
    return f".{os.path.basename(target)}."


def remove_stale_temp_files(target: str, now: float | None = None) -> list[str]:
    """Remove temp files an interrupted write to ``target`` left behind; returns the removed paths.

    A writer holds an exclusive ``flock`` on its temp file until it has renamed it, and the kernel
    drops the lock when the writer dies (``kill -9`` included). So a temp file whose lock can be
    taken belongs to no running writer; the age check only spares one being created this instant
    (between ``mkstemp`` and ``flock``).
    """
    directory = os.path.dirname(target) or "."
    prefix = _tmp_prefix(target)
    now = time.time() if now is None else now
    removed: list[str] = []
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if now - os.fstat(fd).st_mtime < STALE_TMP_SECONDS:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue  # a live writer's
                raise
            os.unlink(path)
            removed.append(path)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def write_routemap_atomic(text: str, path: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a mix (:func:`write_atomic`)."""
    data = text.encode("utf-8")
    write_atomic(path, lambda fh: fh.write(data))


def write_atomic(path: str, write: Callable[[BinaryIO], object], check: Callable[[str], None] | None = None) -> None:
    """Write a file to ``path`` with ``write(fh)`` so readers see the old file or the new one, never a mix.

    A temp file in the same directory is written, fsynced and renamed over the target (rename is
    atomic within one file system). A symlinked target is followed, so the link is kept. The file
    keeps the mode of the file it replaces (else 0644), so a proxy running as another user can
    still read it. Temp files left by an earlier, interrupted write are removed first (see
    :func:`remove_stale_temp_files`); the proxy's watcher reads only ``path`` and never sees them.
    ``check(temp path)`` runs before the rename: whatever it raises leaves the target as it was.
    """
    target = os.path.realpath(path)
    directory = os.path.dirname(target)
    remove_stale_temp_files(target)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_tmp_prefix(target), suffix=".tmp")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until the rename: this temp file has a live writer
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            if check is not None:
                check(tmp)
            os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    except OSError:
        pass
    finally:
        os.close(dir_fd)
