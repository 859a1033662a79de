"""Disk space: checked before large writes whose size is known, and a full disk as one line.

Why: a full disk used to surface as ``Bus error`` (a memory-mapped write into a sparse
file has no block to land in: SIGBUS, no message) or as chained ``OSError`` tracebacks.
Writers whose output size is known in advance (a mix's arrays, a checkpoint, an index)
call ``ensure_free_space`` first; files that are filled through a memory map are
reserved with ``preallocate`` (``posix_fallocate``: the blocks exist before the first
store, so the map cannot fault); and ``disk_errors`` turns the ``OSError``s of a full
disk or a file-size limit met anyway into ``MixkitError``::

    not enough disk space for the mix arrays of 'big': needs 1.9 TiB, 41.2 GiB free in /data/mixes

``free_bytes`` is the one probe of free space (tests replace it to simulate a full disk).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from mixkit.errors import MixkitError
from mixkit.integrity import human_bytes

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def existing_parent(path: str | os.PathLike) -> Path:
    """``path`` or its nearest ancestor that exists (where the space will be taken from)."""
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes available to this user on the file system that holds ``path`` (or would)."""
    return int(shutil.disk_usage(existing_parent(path)).free)


def ensure_free_space(path: str | os.PathLike, need_bytes: int, what: str) -> None:
    """Refuse, before writing, ``need_bytes`` of ``what`` at ``path`` that the disk cannot hold.

    ``what`` names the output in the message (``"the mix arrays of 'm'"``).
    """
    free = free_bytes(path)
    if need_bytes > free:
        raise MixkitError(
            f"not enough disk space for {what}: needs {human_bytes(need_bytes)}, "
            f"{human_bytes(free)} free in {existing_parent(path)}"
        )


def disk_full_error(e: OSError, path: str | os.PathLike, what: str) -> MixkitError:
    """The one-line error of a write of ``what`` to ``path`` that failed with ``e`` (a full disk or limit)."""
    reason = "the file size limit was reached" if e.errno == errno.EFBIG else "no space left on the device"
    try:
        free = f", {human_bytes(free_bytes(path))} free"
    except OSError:
        free = ""
    return MixkitError(f"writing {what} to {path} failed: {reason}{free}")


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn a full disk (``ENOSPC``, ``EDQUOT``) or a file-size limit (``EFBIG``) inside the block
    into ``disk_full_error``; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(e, path, what) from None
        raise


def preallocate(fd: int, size: int, path: str | os.PathLike, what: str) -> None:
    """Reserve ``size`` bytes of the open file ``fd`` (``posix_fallocate``) so that writes through a
    memory map cannot meet a full disk; a full disk here is ``disk_full_error``. Where the file
    system cannot preallocate (``EOPNOTSUPP``/``EINVAL``) nothing is reserved."""
    if size <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(e, path, what) from None
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
