"""Paths of the bundled sample data (see README.md in this folder for sources and licenses)."""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
DEFAULT_TOKENIZER = SAMPLES_DIR / "gpt-neox-20b.json"


def sample_path(name: str) -> Path:
    """``sample_path("c4")`` → the bundled ``c4.jsonl.gz``."""
    path = SAMPLES_DIR / f"{name}.jsonl.gz"
    if not path.exists():
        known = sorted(p.name.removesuffix(".jsonl.gz") for p in SAMPLES_DIR.glob("*.jsonl.gz"))
        raise FileNotFoundError(f"no bundled sample {name!r}; bundled: {', '.join(known)}")
    return path
