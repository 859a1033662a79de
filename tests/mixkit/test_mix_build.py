"""build_mix + MixStream: batches equal the slow reference, shared prefixes, epochs, determinism."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mixkit
from mixkit.errors import MixkitError
from mixkit.mix import MixPlan, MixStream, Phase, build_mix
from mixkit.store import write_store
from tests.support import ReferenceStream, random_docs, reference_rows

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=12, deadline=None)


@pytest.fixture
def stores(make_store):
    rng = np.random.default_rng(7)
    return {
        "c4": make_store("c4", random_docs(rng, 120, 1000, 80)),
        "code": make_store("code", random_docs(rng, 60, 1000, 40)),
        "math": make_store("math", random_docs(rng, 40, 1000, 30)),
    }


def all_rows(stream: MixStream) -> tuple[np.ndarray, np.ndarray]:
    batches = [stream.batch(t) for t in range(stream.num_steps)]
    sources = [stream.sources(t) for t in range(stream.num_steps)]
    return np.concatenate(sources), np.concatenate(batches)


@fixture_ok
@given(
    seq_len=st.integers(2, 24),
    global_batch=st.sampled_from([1, 2, 4, 6]),
    steps=st.integers(2, 12),
    w=st.lists(st.sampled_from([0.0, 1e-6, 0.1, 0.5, 1.0]), min_size=3, max_size=3).filter(lambda w: sum(w) > 0),
    start=st.integers(1, 11),
    seed=st.integers(0, 2**40),
)
@example(seq_len=2, global_batch=1, steps=6, w=[0.1, 1.0, 0.1], start=1, seed=0)  # equal weights tie: lowest id wins
@example(seq_len=9, global_batch=6, steps=12, w=[0.0, 0.0, 1e-6], start=1, seed=0)  # math into its second epoch
def test_batches_equal_slow_reference(data_dir, stores, seq_len, global_batch, steps, w, start, seed):
    start = min(start, steps - 1)
    phases = [(0, {"c4": 1.0}), (start, {"c4": w[0], "code": w[1], "math": w[2]})]
    plan = MixPlan([Phase(s, ws) for s, ws in phases], steps=steps, seq_len=seq_len, global_batch=global_batch,
                   seed=seed, allow_repeat=True)  # long plans on small stores run into later epochs
    build_mix(plan, "m", data_dir, overwrite=True)
    stream = MixStream.open("m")
    names, ref_sources, ref_samples = reference_rows(stores, phases, steps, global_batch, seq_len, seed)
    assert stream.source_names == names
    sources, rows = all_rows(stream)
    assert rows.dtype == np.int64 and rows.shape == (steps * global_batch, seq_len + 1)
    assert np.array_equal(sources, ref_sources)
    assert np.array_equal(rows, ref_samples)
    # Any single step read on its own (as a resumed run does) gives the same rows.
    t = steps - 1
    assert np.array_equal(stream.batch(t), ref_samples[t * global_batch : (t + 1) * global_batch])


@fixture_ok
@given(ratio=st.sampled_from([0.0, 1e-6, 0.2, 0.5, 1.0]), start=st.integers(0, 19), seed=st.integers(0, 1000))
def test_mid_mix_shares_prefix_and_continues_base_order(data_dir, stores, ratio, start, seed):
    steps, gb, seq_len = 20, 4, 8
    base = MixPlan([Phase(0, {"c4": 1.0})], steps=steps, seq_len=seq_len, global_batch=gb, seed=seed)
    phases = [Phase(0, {"c4": 1.0 - ratio, "code": ratio})] if start == 0 else [
        Phase(0, {"c4": 1.0}), Phase(start, {"c4": 1.0 - ratio, "code": ratio})
    ]
    if ratio == 1.0 and start == 0:
        phases = [Phase(0, {"code": 1.0})]
    mid = MixPlan(phases, steps=steps, seq_len=seq_len, global_batch=gb, seed=seed)
    build_mix(base, "base", data_dir, overwrite=True)
    build_mix(mid, "mid", data_dir, overwrite=True)
    b, m = MixStream.open("base"), MixStream.open("mid")
    b_src, b_rows = all_rows(b)
    m_src, m_rows = all_rows(m)
    cut = start * gb
    assert np.array_equal(m_rows[:cut], b_rows[:cut])  # identical up to the start step
    c4 = m.source_names.index("c4") if "c4" in m.source_names else None
    mid_c4 = m_rows[cut:][m_src[cut:] == c4] if c4 is not None else m_rows[:0]
    # after it, the mid mix's c4 samples are the base mix's next samples, in order
    assert np.array_equal(mid_c4, b_rows[cut : cut + len(mid_c4)])
    assert np.all(b_src == 0)


def test_rank_slices_tile_the_global_batch(data_dir, stores):
    plan = MixPlan([Phase(0, {"c4": 0.7, "code": 0.3})], steps=5, seq_len=16, global_batch=12, seed=3)
    build_mix(plan, "r", data_dir)
    s = MixStream.open("r")
    for world in (1, 2, 3, 4, 6, 12):
        for step in (0, 4):
            parts = [s.batch(step, r, world) for r in range(world)]
            assert all(p.shape == (12 // world, 17) for p in parts)
            assert np.array_equal(np.concatenate(parts), s.batch(step))
            assert np.array_equal(np.concatenate([s.sources(step, r, world) for r in range(world)]), s.sources(step))
    with pytest.raises(MixkitError, match="not divisible"):
        s.batch(0, 0, 5)
    with pytest.raises(MixkitError, match="outside"):
        s.batch(5)
    with pytest.raises(MixkitError, match="rank"):
        s.batch(0, 2, 2)


def test_stream_contract_metadata(data_dir, stores):
    plan = MixPlan([Phase(0, {"c4": 1.0}), Phase(3, {"c4": 0.8, "code": 0.2})], steps=10, seq_len=16, global_batch=8, seed=5)
    path = build_mix(plan, "meta", data_dir)
    s = mixkit.MixStream.open(path)  # by path, and through the lazy export
    assert (s.num_steps, s.seq_len, s.global_batch, s.seed) == (10, 16, 8, 5)
    assert s.source_names == ["c4", "code"]
    assert s.tokens_seen(0) == 0 and s.tokens_seen(3) == 3 * 8 * 16
    assert s.vocab_size == 1000 and s.tokenizer_sha256 == stores["c4"].tokenizer_sha256 and s.eos_id == 0
    m = json.loads((path / "mix.json").read_text())
    assert s.fingerprint == m["fingerprint"] == s.manifest["fingerprint"]
    assert {d["name"]: d["fingerprint"] for d in m["datasets"]} == {k: stores[k].fingerprint for k in ("c4", "code")}
    assert [p["samples"] for p in m["phases"]] == [{"c4": 24}, {"c4": 45, "code": 11}]
    assert m["phases"][1]["tokens"] == {"c4": 45 * 16, "code": 11 * 16}
    assert m["plan"]["phases"][1] == {"start_step": 3, "end_step": 10, "weights": {"c4": 0.8, "code": 0.2}}
    assert m["datasets"][0]["epochs"] == 1
    assert s.sources(0).dtype.kind == "i" and s.sources(0).shape == (8,)
    s.verify()


def test_same_inputs_give_same_bytes(tmp_path):
    rng = np.random.default_rng(11)
    docs = {"a": random_docs(rng, 50, 500, 60), "b": random_docs(rng, 30, 500, 60)}
    plan = MixPlan([Phase(0, {"a": 1}), Phase(2, {"a": 0.6, "b": 0.4})], steps=8, seq_len=12, global_batch=4, seed=42, allow_repeat=True)
    outs = []
    for where in ("one", "two"):
        d = tmp_path / where
        for k, v in docs.items():
            write_store(d / k, v, vocab_size=500)
        outs.append(build_mix(plan, "same", d))
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == sorted(p.name for p in outs[1].iterdir())
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    other = MixPlan(plan.phases, steps=8, seq_len=12, global_batch=4, seed=43, allow_repeat=True)
    build_mix(other, "seed43", tmp_path / "one")
    assert not np.array_equal(MixStream.open(tmp_path / "one" / "mixes" / "seed43").batch(0), MixStream.open(outs[0]).batch(0))


def test_repeat_needs_allow_repeat_and_reshuffles(data_dir, stores):
    per_epoch = (stores["math"].num_tokens - 1) // 8
    steps = (2 * per_epoch + per_epoch // 2) // 4 + 1  # math alone for 2.5+ epochs
    plan = MixPlan([Phase(0, {"math": 1})], steps=steps, seq_len=8, global_batch=4, seed=9)
    with pytest.raises(MixkitError, match=r"'math' would be read .* \(3 epochs.*--allow-repeat"):
        build_mix(plan, "rep", data_dir)
    assert not (data_dir / "mixes").exists() or not any((data_dir / "mixes").iterdir())  # nothing written
    plan = MixPlan(plan.phases, steps=steps, seq_len=8, global_batch=4, seed=9, allow_repeat=True)
    path = build_mix(plan, "rep", data_dir)
    m = json.loads((path / "mix.json").read_text())
    assert m["datasets"][0]["epochs"] == 3
    assert m["datasets"][0]["epochs_fraction"] == pytest.approx(steps * 4 / per_epoch)
    _, rows = all_rows(MixStream.open("rep"))
    ref = ReferenceStream(stores["math"], 9, 8)
    windows = [{ref.window(e, j).tobytes() for j in range(per_epoch)} for e in range(2)]
    # each epoch serves each of that epoch's windows once (no silent wrap), in a fresh order
    assert {r.tobytes() for r in rows[:per_epoch]} == windows[0]
    assert {r.tobytes() for r in rows[per_epoch : 2 * per_epoch]} == windows[1]
    assert not np.array_equal(rows[:per_epoch], rows[per_epoch : 2 * per_epoch])


def test_changed_store_refuses_to_load(data_dir, stores):
    build_mix(MixPlan([Phase(0, {"c4": 0.5, "code": 0.5})], steps=3, seq_len=8, global_batch=2), "fp", data_dir)
    write_store(data_dir / "code", random_docs(np.random.default_rng(99), 60, 1000, 40), vocab_size=1000, overwrite=True)
    with pytest.raises(MixkitError, match="input store 'code' changed"):
        MixStream.open("fp")


def test_existing_mix_needs_overwrite(data_dir, stores):
    plan = MixPlan([Phase(0, {"c4": 1})], steps=3, seq_len=8, global_batch=2, seed=1)
    path = build_mix(plan, "ow", data_dir)
    before = (path / "mix.json").read_bytes()
    with pytest.raises(MixkitError, match="already exists"):
        build_mix(MixPlan([Phase(0, {"code": 1})], steps=3, seq_len=8, global_batch=2), "ow", data_dir)
    assert (path / "mix.json").read_bytes() == before
    build_mix(MixPlan([Phase(0, {"code": 1})], steps=3, seq_len=8, global_batch=2), "ow", data_dir, overwrite=True)
    assert MixStream.open("ow").source_names == ["code"]
    assert sorted(p.name for p in (data_dir / "mixes").iterdir()) == ["ow"]  # no temporary leftovers


def test_open_unknown_mix(data_dir):
    with pytest.raises(MixkitError, match="no mix named 'nope'"):
        MixStream.open("nope")
    with pytest.raises(MixkitError, match="no mix named"):
        MixStream.open(Path(tempfile.gettempdir()) / "definitely-not-a-mix-dir")


def test_mixed_token_dtypes_and_out_buffer(data_dir):
    """Stores of one tokenizer in different dtypes take the per-dataset path; out= fills a buffer."""
    rng = np.random.default_rng(5)
    a = write_store(data_dir / "a", random_docs(rng, 80, 1000, 50), vocab_size=1000)
    b = write_store(data_dir / "b", random_docs(rng, 80, 1000, 50), vocab_size=1000, dtype="int32")
    assert a.dtype != b.dtype
    phases = [(0, {"a": 0.5, "b": 0.5})]
    build_mix(MixPlan([Phase(0, phases[0][1])], steps=6, seq_len=10, global_batch=4, seed=2), "mixed", data_dir)
    s = MixStream.open("mixed")
    assert s._packed is None
    _, _, ref = reference_rows({"a": a, "b": b}, phases, 6, 4, 10, 2)
    _, rows = all_rows(s)
    assert np.array_equal(rows, ref)
    buf = np.full((2, 11), -1, dtype=np.int64)
    assert s.batch(3, 1, 2, out=buf) is buf and np.array_equal(buf, ref[14:16])
    with pytest.raises(MixkitError, match="out must be"):
        s.batch(3, out=np.empty((4, 10), dtype=np.int64))


def test_out_buffer_on_the_packed_path(data_dir, stores):
    build_mix(MixPlan([Phase(0, {"c4": 0.6, "code": 0.4})], steps=4, seq_len=12, global_batch=6, seed=8), "buf", data_dir)
    s = MixStream.open("buf")
    assert s._packed is not None
    buf = np.empty((3, 13), dtype=np.int64)
    for step in range(4):
        assert np.array_equal(s.batch(step, 1, 2, out=buf), s.batch(step)[3:])
    for bad in (
        np.empty((6, 13), dtype=np.int32),
        np.empty((6, 13), dtype=np.float64),  # the same strides as a right buffer
        np.empty((6, 13), dtype=np.int64, order="F"),
        np.empty((6, 26), dtype=np.int64)[:, ::2],
        np.empty((5, 13), dtype=np.int64),
    ):
        with pytest.raises(MixkitError, match="out must be"):
            s.batch(0, out=bad)
    one = np.empty((2, 13), dtype=np.int64)[:1]  # one row: C-contiguous whatever its first stride
    assert np.array_equal(s.batch(2, 5, 6, out=one), s.batch(2)[5:])
