"""What a new store or mix may be called: one place for the rules and the reserved suffixes.

A store ``NAME`` is a family of files beside each other in the data directory (``NAME.bin``,
``NAME.idx``, ``NAME.json``, and while or after it is written ``NAME.bin.partial``,
``NAME.tokenize-state.json``, ``NAME.counts.npy``, ``NAME-holdout.*``, ``.NAME.*.tmp``; see
``mixkit.store.StoreFiles``); a mix is the folder ``DATA_DIR/mixes/NAME``. So a new name must
be a plain file name (no path separator, no leading dot, no control characters), short
enough that the longest of those files still fits the file system's 255 bytes, and must not
end with a suffix that mixkit gives its own files: a store called ``x.counts`` would be
the counts cache of store ``x`` (``mixkit count x`` would overwrite it), and ``c4-holdout``
is where ``c4``'s held-out documents go.
"""

from __future__ import annotations

import os

from mixkit.errors import MixkitError

# Suffixes mixkit appends to a store's or mix's name for its own files.
RESERVED_SUFFIXES = (
    ".bin", ".idx", ".json", ".npy",  # a store's files (a name ending so is read as a path to one)
    ".partial", ".lengths", ".detached",  # a store's files while it is written
    ".tokenize-state",  # mixkit tokenize's resume checkpoint
    ".counts",  # cached unigram counts
    "-holdout",  # the documents held out of a store
    ".tmp", ".old", ".lock",  # atomic writes' temporaries, replaced folders, locks
)

# The longest addition to a name among the files above (".NAME.XXXXXXXX.tmp" temporaries of
# "NAME-holdout.detached.lengths.partial"), rounded up: a name of at most this many bytes
# leaves every file name within 255 bytes.
MAX_NAME_BYTES = 200


def check_new_name(name: str, kind: str = "store") -> str:
    """``name`` if a new ``kind`` ("store" or "mix") may be called so, else a ``MixkitError`` saying why."""
    if not isinstance(name, str) or not name:
        raise MixkitError(f"the {kind} name is empty")
    shown = name if len(name) <= 60 else name[:57] + "..."

    def refuse(reason: str) -> MixkitError:
        return MixkitError(f"{shown!r} is not a valid {kind} name ({reason})")

    if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
        raise refuse("a plain name, not a path: it is created in the data directory")
    if name.startswith("."):
        raise refuse("it must not start with '.': hidden names are mixkit's temporaries")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise refuse("it contains a control character")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise refuse("it is not valid Unicode: a lone surrogate") from None
    if size > MAX_NAME_BYTES:
        raise refuse(f"{size} bytes long; names are limited to {MAX_NAME_BYTES} bytes, as mixkit adds suffixes "
                     f"and a file name may have 255")
    for suffix in RESERVED_SUFFIXES:
        if name.endswith(suffix):
            raise refuse(f"it ends with {suffix!r}, which mixkit reserves for its own files; "
                         f"reserved: {' '.join(RESERVED_SUFFIXES)}")
    return name
