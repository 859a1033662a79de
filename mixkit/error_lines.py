"""Any failure as the one line a command prints: ``Error: ...``, never a traceback.

``MixkitError`` already carries its line. Everything else reaches the command line's top-level
handler (``cli.error_handler``) and is described here:

- an ``OSError`` (or one in the exception's ``__cause__``/``__context__`` chain) by its errno,
  in plain English, naming the path: no space left, a name too long, permission denied, a
  read-only file system, a file where a folder should be (and the reverse), ...;
- ``MemoryError`` as running out of memory;
- anything else is a bug of ours: its type and first line, plus how to see the traceback
  (``MIXKIT_DEBUG=1`` makes the handler re-raise instead, so Python prints it).

The exit status is 1 for these (usage errors and ``MixkitError`` keep click's 2).
"""

from __future__ import annotations

import errno
import os

DEBUG_ENV = "MIXKIT_DEBUG"
DEBUG_HINT = f"run with {DEBUG_ENV}=1 for the traceback"
MAX_DETAIL = 300  # characters of an exception's message kept in the line

_OS_REASONS = {
    errno.ENOSPC: "no space left on the device (free some space or write elsewhere)",
    errno.EDQUOT: "disk quota exceeded (free some space or write elsewhere)",
    errno.ENAMETOOLONG: "a file name is too long (file systems allow 255 bytes per name; choose a shorter name)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "the file system is read-only",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "already exists",
    errno.EFBIG: "the file is too large (a file size limit was reached)",
    errno.EMFILE: "too many open files (raise `ulimit -n`)",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.EXDEV: "cannot move across file systems",
    errno.EIO: "input/output error (the disk or the network file system failed)",
}


def debug_enabled() -> bool:
    """Whether ``MIXKIT_DEBUG`` asks for tracebacks (any value but empty or 0)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _path_text(name: object) -> str:
    if isinstance(name, (str, bytes, os.PathLike)):
        text = os.fsdecode(name)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return str(name)


def exception_detail(e: BaseException) -> str:
    """The first line of ``e``'s message, or its type's name when it has none: what goes in the
    parentheses of a one-line error that wraps a library's exception."""
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."


def os_error_line(e: OSError) -> str:
    """``PATH: reason`` (``PATH -> PATH2: reason`` for a rename or copy) for an OSError."""
    reason = _OS_REASONS.get(e.errno) if e.errno is not None else None
    if reason is None:
        reason = _first_line(e.strerror or str(e)) or type(e).__name__
    paths = [_path_text(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def find_os_error(e: BaseException) -> OSError | None:
    """``e`` itself or the first OSError in its cause/context chain (a library's wrapper of one)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, OSError) and cur.errno is not None:
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def failure_line(e: BaseException) -> str:
    """The one line (without ``Error: ``) for an exception that is not a ``MixkitError``."""
    os_error = find_os_error(e)
    if os_error is not None:
        return os_error_line(os_error)
    if isinstance(e, MemoryError):
        return "out of memory" + (f" ({_first_line(str(e))})" if str(e) else "")
    if isinstance(e, RecursionError):
        return f"input nested too deeply to process ({DEBUG_HINT})"
    detail = _first_line(str(e))
    return f"internal error: {type(e).__name__}" + (f": {detail}" if detail else "") + f" ({DEBUG_HINT})"
