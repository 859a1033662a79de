"""The README's main job on the bundled samples: tokenize every sample corpus into stores.

Each bundled corpus becomes a store named after its role in the research (``c4``,
``gsm8k``, ``code``, ``math``, ``instructions``, ``qa``), with its preset; ``c4``
holds out 100 documents as ``c4-holdout`` for measuring forgetting. Stores that
already exist with the same content are reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mixkit.errors import MixkitError
from mixkit.presets import TextSpec
from mixkit.samples import sample_path
from mixkit.store import TokenStore
from mixkit.tokenize import TokenizeConfig, tokenize

SAMPLE_STORES: list[tuple[str, str, str, int]] = [
    # store name, bundled sample, preset, held-out documents
    ("c4", "c4", "c4", 100),
    ("gsm8k", "gsm8k_train", "gsm8k", 0),
    ("code", "code", "code", 0),
    ("math", "math", "math", 0),
    ("instructions", "instructions", "instructions", 0),
    ("qa", "qa", "qa", 0),
]


def tokenize_samples(data_dir: str | Path, quiet: bool = True) -> list[dict[str, Any]]:
    """Tokenize the bundled samples into ``data_dir``; return each store's summary."""
    out = []
    for name, sample, preset, holdout in SAMPLE_STORES:
        try:
            store = TokenStore.open(name, data_dir)
        except MixkitError:
            tokenize(TokenizeConfig([str(sample_path(sample))], name, TextSpec(preset=preset), data_dir=str(data_dir),
                                    holdout_docs=holdout, quiet=quiet, overwrite=True))
            store = TokenStore.open(name, data_dir)
        out.append(store.summary())
    return out
