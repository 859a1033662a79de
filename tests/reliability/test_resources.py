"""Resources: a full disk, a huge --steps, as one-line errors before (or instead of) the damage.

A full disk is simulated two ways: the free-space probe made to report a small figure
(``mixkit.resources.free_bytes``), and a real write limit in a subprocess (``RLIMIT_FSIZE``:
writes past it fail with ``EFBIG``, which CPython's ignored ``SIGXFSZ`` leaves to the
caller, as ``ENOSPC`` is on a full disk).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cli.mixkit_cli import main as mixkit_main
from mixkit import encoders, resources
from mixkit.errors import MixkitError
from mixkit.mix.build import array_bytes, sample_bounds
from mixkit.mix.plan import MixPlan, Phase
from mixkit.samples import DEFAULT_TOKENIZER, sample_path
from mixkit.store import StoreWriter, TokenStore, write_store
from tests.reliability.test_damage import one_line_error
from tests.support import random_docs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def stores(data_dir):
    rng = np.random.default_rng(0)
    write_store(data_dir / "web", random_docs(rng, 200, 500, max_len=80), vocab_size=500)
    write_store(data_dir / "math", random_docs(rng, 200, 500, max_len=80), vocab_size=500)
    return data_dir


def build_mix_args(data_dir: Path, *extra: str) -> list[str]:
    return ["build-mix", "--name", "m", "--base", "web", "--add", "math", "--ratio", "0.3", "--seq-len", "16",
            "--global-batch", "4", "--data-dir", str(data_dir), *extra]


def leftovers(data_dir: Path) -> list[str]:
    mixes = data_dir / "mixes"
    return sorted(p.name for p in mixes.iterdir()) if mixes.exists() else []


def test_too_little_free_space_is_refused_before_writing(stores, monkeypatch):
    monkeypatch.setattr(resources, "free_bytes", lambda path: 1000)
    result = CliRunner().invoke(mixkit_main, build_mix_args(stores, "--steps", "50"))
    assert result.exit_code != 0
    line = one_line_error(result.output)
    assert "not enough disk space for the arrays of mix 'm': needs" in line and "1000 B free in" in line, line
    assert leftovers(stores) == []


def test_ensure_free_space_names_the_need_and_the_free_space(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "free_bytes", lambda path: 3 * 2**30)
    resources.ensure_free_space(tmp_path / "not" / "yet", 2**30, "a checkpoint")
    with pytest.raises(MixkitError, match=r"not enough disk space for a checkpoint: needs 4\.0 GiB, 3\.0 GiB free in .*"):
        resources.ensure_free_space(tmp_path / "not" / "yet", 4 * 2**30, "a checkpoint")


def test_huge_steps_are_refused_before_anything_is_allocated(stores, monkeypatch):
    """--steps 1e9 used to fail allocating 1.86 TiB before the repeat check; now the plan's bounds decide."""
    result = CliRunner().invoke(mixkit_main, build_mix_args(stores, "--steps", "1000000000"))
    line = one_line_error(result.output)
    assert "would be read" in line and "at least" in line and "--allow-repeat" in line, line
    # With --allow-repeat the repeat is accepted, and the arrays' size (over 40 GB) meets the free space
    # (a fixed figure, so that no machine starts preallocating them).
    monkeypatch.setattr(resources, "free_bytes", lambda path: 20 * 2**30)
    result = CliRunner().invoke(mixkit_main, build_mix_args(stores, "--steps", "1000000000", "--allow-repeat"))
    line = one_line_error(result.output)
    assert "not enough disk space for the arrays of mix 'm': needs" in line and "20.0 GiB free in" in line, line
    assert leftovers(stores) == []


def test_sample_bounds_hold_the_blend(stores):
    """The bounds the pre-allocation checks use contain what the blend really draws."""
    from mixkit.mix.build import blend_plan

    for weights, steps in (({"web": 0.7, "math": 0.3}, 97), ({"web": 0.5, "math": 0.5}, 8), ({"web": 0.999, "math": 0.001}, 333)):
        plan = MixPlan([Phase(0, {"web": 1.0}), Phase(5, weights)], steps=steps, seq_len=16, global_batch=4)
        names = plan.datasets
        low, high = sample_bounds(plan, names)
        _, _, phases = blend_plan(plan, names)
        used = np.array([sum(p["samples"].get(n, 0) for p in phases) for n in names])
        assert (low <= used).all() and (used <= high).all(), (low, used, high)
        stores_ = [TokenStore.open(n, stores) for n in names]
        assert array_bytes(plan, stores_, [1, 1], [10, 10]) >= steps * 4 * 10


RUN_UNDER_LIMIT = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from cli.mixkit_cli import main
sys.argv = ["mixkit", *sys.argv[2:]]
main()
"""


def run_under_file_limit(limit: int, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", RUN_UNDER_LIMIT, str(limit), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_disk_full_during_build_mix_is_one_line_and_leaves_nothing(stores):
    """The arrays are preallocated, so the limit is met before any write through the memory map:
    an error line, not ``Bus error``; the temporary folder is removed."""
    r = run_under_file_limit(64 * 1024, *build_mix_args(stores, "--steps", "20000", "--allow-repeat"))
    assert r.returncode not in (0, -7, 135), (r.returncode, r.stderr)  # -7 / 135: SIGBUS
    line = one_line_error(r.stdout + r.stderr)
    assert "writing mix array" in line and "the file size limit was reached" in line, line
    assert leftovers(stores) == []


WRITE_UNDER_LIMIT = """
import resource, sys
import numpy as np
from mixkit.errors import MixkitError
from mixkit.store import StoreWriter
resource.setrlimit(resource.RLIMIT_FSIZE, (32 * 1024, 32 * 1024))
w = StoreWriter(sys.argv[1], np.uint16)
try:
    for _ in range(100):
        w.add(np.ones(1000, dtype=np.uint16))
    w.flush()
except MixkitError as e:
    print("Error:", e.message)
    sys.exit(1)
"""


def test_disk_full_while_writing_a_store_is_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", WRITE_UNDER_LIMIT, str(tmp_path / "s")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    line = one_line_error(r.stdout + r.stderr)
    assert "writing store 's' to" in line and "s.bin.partial" in line and "file size limit" in line, line


def test_the_index_write_checks_free_space(tmp_path, monkeypatch):
    w = StoreWriter(tmp_path / "s", np.uint16)
    w.add(np.ones(10, dtype=np.uint16))
    monkeypatch.setattr(resources, "free_bytes", lambda path: 10)
    with pytest.raises(MixkitError, match=r"not enough disk space for the index of store 's': needs 62 B, 10 B free"):
        w.finish({"tokenizer": {"sha256": "x", "vocab_size": 10}})


# -- one huge document ----------------------------------------------------------------------------------

HF = encoders.HFEncoder.from_file(DEFAULT_TOKENIZER)
FAST = encoders.FastEncoder.from_file(DEFAULT_TOKENIZER)

PIECE_FRAGMENTS = st.one_of(
    st.integers(1, 30).map(lambda n: " " * n),
    st.sampled_from(["\t", "\n", "\r\n", "\u00a0", " \n", "\n ", "e\u0301", "\u212b", "\u1100\u1161\u11a8", "o\u0308\u0304"]),
    st.sampled_from(["<|endoftext|>", "'s", "'ll", "123", "½", "🎉", "中文", "Ελλ", "x", "Word", "def", ".", "'"]),
    st.characters(categories=["Mn", "Mc"]),
    st.text(max_size=8),
)


def sample_text(max_chars: int = 400_000) -> str:
    """The bundled C4 and code samples joined into one document (web text, code, whitespace runs)."""
    parts = []
    for name in ("c4", "code"):
        with gzip.open(sample_path(name), "rt", encoding="utf-8") as f:
            parts += [json.loads(line)["text"] for line in f if line.strip()]
    return "\n\n".join(parts)[:max_chars]


@given(st.lists(PIECE_FRAGMENTS, max_size=40).map("".join), st.integers(2, 40))
def test_pieces_give_the_ids_of_the_whole_text(text, max_chars):
    """Encoding a text in pieces (any piece size) gives the ids of encoding it whole, with both encoders."""
    pieces = encoders.encoding_pieces(text, max_chars)
    assert "".join(pieces) == text
    for enc in (FAST, HF):
        assert encoders.encode_in_pieces(enc.encode_whole, [text, "a b"], max_chars) == enc.encode_whole([text, "a b"])


class Spy:
    """An encoder whose ``encode_whole`` records the length of every text it is given."""

    def __init__(self, enc):
        self.whole, self.lengths = enc.encode_whole, []

    def encode_whole(self, texts):
        self.lengths += [len(t) for t in texts]
        return self.whole(texts)


def test_a_huge_document_is_encoded_in_bounded_pieces_with_the_same_ids(monkeypatch):
    """The bundled corpora as one document: ``encode_batch`` cuts it into pieces of at most
    MAX_PIECE_CHARS (here 4,000 characters) and its ids equal those of encoding it whole."""
    text = sample_text()
    monkeypatch.setattr(encoders, "MAX_PIECE_CHARS", 4000)
    pieces = encoders.encoding_pieces(text)
    assert len(pieces) > 20 and max(len(p) for p in pieces) <= 4000
    assert HF.cuttable
    for enc in (FAST, HF):
        spy = Spy(enc)
        monkeypatch.setattr(enc, "encode_whole", spy.encode_whole)
        got = enc.encode_batch([text, "short"])
        monkeypatch.undo()
        monkeypatch.setattr(encoders, "MAX_PIECE_CHARS", 4000)
        assert max(spy.lengths) <= 4000, "no encoder call saw more than one piece"
        assert got == enc.encode_whole([text, "short"])
