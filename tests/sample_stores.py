"""Token stores made from real text with the GPT-NeoX tokenizer, for the counts/distance tests.

Documents are rendered like ``mixkit tokenize --preset`` renders them and end with
EOS id 0, so the stores look like what users measure.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from mixkit.samples import DEFAULT_TOKENIZER, sample_path
from mixkit.store import TokenStore, write_store

RENDER: dict[str, Callable[[dict], str]] = {
    "c4": lambda r: r["text"],
    "gsm8k_train": lambda r: f"Question: {r['question']}\nAnswer: {r['answer']}",
    "math": lambda r: f"Problem: {r['problem']}\nSolution: {r['solution']}",
    "code": lambda r: r["text"],
}
STORE_NAMES = {"c4": "c4", "gsm8k_train": "gsm8k", "math": "math", "code": "code"}


def tokenizer_description(path: Path = DEFAULT_TOKENIZER) -> dict:
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "vocab_size": 50277}


def read_jsonl(path: Path) -> Iterable[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def encode_store(prefix: Path, texts: list[str], tokenizer_path: Path = DEFAULT_TOKENIZER) -> TokenStore:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    docs = [np.append(np.asarray(e.ids, dtype=np.int64), 0) for e in tok.encode_batch(texts)]
    return write_store(prefix, docs, vocab_size=50277, tokenizer=tokenizer_description(tokenizer_path))


def bundled_store(data_dir: Path, sample: str) -> TokenStore:
    """The bundled ``sample`` rendered, tokenized and written as store ``STORE_NAMES[sample]``."""
    texts = [RENDER[sample](r) for r in read_jsonl(sample_path(sample))]
    return encode_store(data_dir / STORE_NAMES[sample], texts)
