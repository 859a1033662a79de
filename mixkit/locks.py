"""Write locks: one writer at a time per store name, mix name and run folder.

A writer holds an advisory ``fcntl.flock`` on a small lock file for the whole write. The
file also says who holds it (JSON: ``pid``, ``host``, ``started`` as local ``HH:MM:SS``
and ISO time, ``command``), so a second writer is refused with one line naming the holder::

    store 'w' is being written by process 1234 (since 12:01:07); wait or pick another name

and exits 1 having touched nothing. Readers do not lock: every artifact appears by an atomic
rename, so a reader sees the old one or the new one.

Stale locks: the kernel drops a ``flock`` when its process dies, however it dies (``kill -9``
included), so a lock file left by a dead writer is simply taken over by the next one; the
JSON it held (the dead owner) is returned to the new holder, which then knows that the
temporaries of that owner are garbage (``remove_orphans``). The lock file is removed on
release; since another process may have opened it just before, the holder checks after
locking that the path still names the file it locked, and starts again if not.

Where the lock files live (named by their owners): ``DATA_DIR/.NAME.lock`` for store
``NAME`` (``mixkit.store.StoreFiles.lock``), ``DATA_DIR/mixes/.NAME.lock`` for mix ``NAME``
(``mixkit.mix.format``), ``RUN/.lock`` for a run folder (``trainer.run_dir``) and a study's
output folder.

Temporaries carry their owner's pid (``.NAME.PID.RANDOM.tmp``, see ``mixkit.atomic``):
``remove_orphans`` deletes those of dead processes (and any ``.NAME.old`` an interrupted
replacement left) by name pattern, so a rerun cleans up after its killed predecessors.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mixkit.errors import MixkitError


class BusyError(MixkitError):
    """Another live process holds the write lock."""


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (``kill(pid, 0)``; EPERM means it exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as e:
        return e.errno != errno.ESRCH
    return True


def _owner_record() -> dict[str, Any]:
    now = time.time()
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%H:%M:%S", time.localtime(now)),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "",
    }


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 1 << 16)
        owner = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _busy_message(what: str, owner: dict[str, Any], advice: str) -> str:
    pid = owner.get("pid", "?")
    host = owner.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    since = f" (since {owner['started']})" if owner.get("started") else ""
    return f"{what} is being written by process {pid}{where}{since}; {advice}"


@contextlib.contextmanager
def write_lock(path: str | os.PathLike, what: str, advice: str = "wait or pick another name") -> Iterator[dict[str, Any]]:
    """Hold the write lock ``path`` for the ``with`` block; ``what`` names the thing in the refusal
    (``"store 'w'"``). Yields the record of a dead previous owner (``{}`` when the lock was free
    and clean). Raises ``BusyError`` at once, without waiting, when a live process holds it."""
    path = Path(path)
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            blocked = next((p for p in [path.parent, *path.parent.parents] if p.exists() and not p.is_dir()), None)
            why = f"{blocked} is a file, not a folder" if blocked is not None else (e.strerror or str(e))
            raise MixkitError(f"cannot write {what}: cannot create its lock file {path} ({why})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise BusyError(_busy_message(what, owner, advice)) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file after we opened it: lock the new one
    try:
        previous = _read_owner(fd)
        record = json.dumps(_owner_record(), sort_keys=True).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        os.fsync(fd)
        stale = previous if previous.get("pid") not in (None, os.getpid()) else {}
        yield stale
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


@contextlib.contextmanager
def write_locks(locks: list[tuple[Path, str]], advice: str = "wait or pick another name") -> Iterator[None]:
    """Several ``write_lock``s at once (a store and its held-out store), taken in order."""
    with contextlib.ExitStack() as stack:
        for path, what in locks:
            stack.enter_context(write_lock(path, what, advice))
        yield


_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def temporary_owner(path: Path) -> int | None:
    """The pid recorded in a temporary's name (``.NAME.PID.RANDOM.tmp``), None when it has none."""
    m = _TMP_NAME.match(path.name)
    return int(m.group("pid")) if m else None


def remove_orphans(directory: str | os.PathLike, name: str, *, pattern: bool = False) -> list[Path]:
    """Remove the temporaries of ``name`` (a glob such as ``step_*`` with ``pattern``) in ``directory``
    whose owner is dead.

    Matches ``.NAME.*.tmp`` (files or folders from ``mixkit.atomic``) and ``.NAME.old`` (an old
    version an interrupted ``atomic_dir`` replacement set aside). A temporary whose name carries
    the pid of a live process other than this one is kept; one without a pid (older versions)
    counts as dead. Call it holding the write lock of ``name``, so no live writer of ours owns them.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    name = name if pattern else glob.escape(name)
    candidates = sorted(set(directory.glob(f".{name}.*.tmp")) | set(directory.glob(f".{name}.old")))
    for p in candidates:
        owner = temporary_owner(p)
        if owner is not None and owner != os.getpid() and pid_alive(owner):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        removed.append(p)
    return removed
