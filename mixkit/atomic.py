"""Atomic file output: a reader sees either the old file or the whole new one.

Every artifact mixkit writes goes through here: write to a temporary name in the
same directory (so the rename cannot cross file systems), flush and fsync, then
``os.replace``. A run killed at any moment leaves at most a ``*.tmp*`` file that
the next run ignores or removes, never a half-written artifact under the real name.
Temporaries are named ``.NAME.PID.RANDOM.tmp`` (``temporary_prefix``): the pid of the
process writing them lets a later run tell a dead writer's leftovers from a live one's
(``mixkit.locks.remove_orphans``).

Permissions: ``tempfile`` creates its files 0600 and folders 0700 whatever the umask
(it must, for files in a shared /tmp); ours are renamed into place as artifacts, so they
are given what ``open`` and ``mkdir`` would have given them: ``0666 & ~umask`` for a file,
``0777 & ~umask`` for a folder (0644/0755 under umask 022, 0664/0775 under 002), which a
shared cluster file system needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux ≥ 4.7's
    ``/proc/self/status``); elsewhere set and restored at once, under a lock."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0666 & ~umask``."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode ``mkdir`` gives a new folder: ``0777 & ~umask``."""
    return 0o777 & ~current_umask()


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (POSIX needs the directory synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_prefix(path: Path) -> str:
    """``.NAME.PID.``: how the temporaries of ``path`` begin (``RANDOM.tmp`` follows)."""
    return f".{path.name}.{os.getpid()}."


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys and a trailing newline, so equal content gives equal bytes."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name and rename it into place on success.

    On any exception the temporary directory is removed and ``path`` is untouched.
    With ``overwrite`` an existing ``path`` is replaced only after the new one is
    complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, dir_mode())
        yield tmp
        if path.exists() and not overwrite:
            raise FileExistsError(path)
        publish_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_dir(tmp: Path, path: Path) -> None:
    """Rename the finished folder ``tmp`` to ``path``, replacing a folder already there.

    A folder cannot be renamed over another, so the old one is first set aside as
    ``.NAME.old`` (a rerun removes it, see ``mixkit.locks``): at every moment ``path`` is
    either the old folder, absent, or the new one, never a mixture.
    """
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    fsync_dir(path.parent)
