"""Reading TOML config files with one clear error for a missing or malformed file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from mixkit.errors import MixkitError


def read_toml(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise MixkitError(f"{what} {p} does not exist")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise MixkitError(f"cannot read {what} {p}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise MixkitError(f"{p}: not valid UTF-8 (byte {e.start}, line {line}); TOML files are UTF-8 text") from None
    except RecursionError:
        raise MixkitError(f"{p}: invalid TOML (nested too deeply)") from None
    except tomllib.TOMLDecodeError as e:
        raise MixkitError(f"{p}: invalid TOML ({e})") from None
