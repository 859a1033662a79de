"""``shuffle = "megatron"``: a mix equals megatron.core's GPTDataset / BlendedDataset sample for sample.

The stores here are held out: random documents drawn for these tests only, and the bundled
samples tokenized. Megatron's datasets are built the way Megatron-LM builds them for
training (``BlendedMegatronDatasetBuilder`` over the train split, ``split="100,0,0"``), so
its own sample counts, surplus and weight normalisation are what the mix must match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixkit.errors import MixkitError
from mixkit.mix import MixPlan, MixStream, Phase, build_mix
from mixkit.mix.indices import megatron_indices, megatron_num_epochs
from mixkit.mix.plan import load_plan_file
from mixkit.store import write_store
from tests.support import bundled_store, random_docs, run_cli, run_cli_fail

pytest.importorskip("torch")
gpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
builder = pytest.importorskip("megatron.core.datasets.blended_megatron_dataset_builder")
from megatron.core.datasets.indexed_dataset import IndexedDataset  # noqa: E402
from megatron.core.datasets.utils import Split  # noqa: E402

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=20, deadline=None)


class StubTokenizer:
    """What Megatron's datasets read of a tokenizer: the vocabulary size, the end-of-document id
    and identifiers for their cache key. No ``pad``: Megatron then pads with -1, never a token."""

    vocab_size = 1000
    eod = 0
    unique_identifiers = {"class": "StubTokenizer"}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """Three stores of different sizes (documents of 1 to 90 tokens), written once for the module:
    Megatron caches its indices next to a store, keyed by path and settings, so a store's
    content must not change under one path."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(20251201)
    write_store(d / "web", random_docs(rng, 90, 1000, 90), vocab_size=1000)
    write_store(d / "code", random_docs(rng, 50, 1000, 60), vocab_size=1000)
    write_store(d / "math", random_docs(rng, 25, 1000, 30), vocab_size=1000)
    return d


def sequence_lengths(prefix: Path) -> np.ndarray:
    """The document lengths as Megatron reads them (a copy: the reader unmaps its file when dropped)."""
    indexed = IndexedDataset(str(prefix), mmap=True)
    return np.array(indexed.sequence_lengths)


def megatron_config(seed: int, seq_len: int, blend=None, tokenizer=None):
    return gpt.GPTDatasetConfig(
        random_seed=seed, sequence_length=seq_len, blend=blend, split="100,0,0" if blend else None,
        tokenizer=tokenizer or StubTokenizer(), reset_position_ids=False, reset_attention_mask=False,
        eod_mask_loss=False, create_attention_mask=False,
    )


def megatron_train(data: Path, names: list[str], weights: list[float] | None, seed: int, seq_len: int, num_samples: int,
                   tokenizer=None):
    """Megatron's train dataset of ``num_samples`` samples over the stores ``names`` (``weights``
    None: one store, a ``GPTDataset``; else a ``BlendedDataset``), as Megatron-LM builds it."""
    config = megatron_config(seed, seq_len, ([str(data / n) for n in names], weights), tokenizer)
    return builder.BlendedMegatronDatasetBuilder(gpt.GPTDataset, [num_samples, 0, 0], lambda: True, config).build()[0]


def assert_rows_equal_megatron(stream: MixStream, dataset) -> None:
    """Every row of the mix is Megatron's sample at the same index: inputs its ``tokens``,
    targets its ``labels`` (and, for a blend, the dataset its ``dataset_id``)."""
    rows = stream.samples(0, stream.num_samples)
    sources = np.concatenate([stream.sources(t) for t in range(stream.num_steps)])
    assert len(dataset) >= stream.num_samples
    for n in range(stream.num_samples):
        item = dataset[n]
        assert np.array_equal(rows[n, :-1], item["tokens"].numpy()), n
        assert np.array_equal(rows[n, 1:], item["labels"].numpy()), n
        if "dataset_id" in item:
            assert sources[n] == item["dataset_id"], n


def build(data: Path, phases: dict[str, float], *, steps: int, global_batch: int, seq_len: int, seed: int, **kw) -> MixStream:
    plan = MixPlan([Phase(0, phases)], steps=steps, global_batch=global_batch, seq_len=seq_len, seed=seed,
                   shuffle="megatron", allow_repeat=True, **kw)
    build_mix(plan, "m", data, overwrite=True)
    return MixStream.open("m", data)


# -- the index arrays -----------------------------------------------------------------------------


@fixture_ok
@given(
    name=st.sampled_from(["web", "code", "math"]),
    seq_len=st.integers(1, 40),
    epochs_wanted=st.floats(0.01, 4.5),
    seed=st.one_of(st.integers(0, 2**32 - 1), st.just(1234)),
)
def test_indices_equal_gpt_dataset_arrays(held_out, name, seq_len, epochs_wanted, seed):
    """``megatron_indices`` is ``GPTDataset``'s document, sample and shuffle index, dtypes
    included: one epoch, several (shuffled together) and a separate final epoch."""
    indexed = IndexedDataset(str(held_out / name), mmap=True)
    lengths = indexed.sequence_lengths
    per_epoch = (int(lengths.sum()) - 1) // seq_len
    num_samples = max(1, int(epochs_wanted * per_epoch))
    theirs = gpt.GPTDataset(indexed, str(held_out / name), np.arange(len(lengths), dtype=np.int32), num_samples,
                            Split.train, megatron_config(seed, seq_len))
    ours = megatron_indices(lengths, seq_len, seed, num_samples)
    for mine, their in zip(ours, (theirs.document_index, theirs.sample_index, theirs.shuffle_index)):
        assert mine.dtype == their.dtype
        assert np.array_equal(mine, their)
    assert megatron_num_epochs(int(lengths.sum()), num_samples, seq_len) * len(lengths) == len(theirs.document_index)


def test_indices_cover_the_separate_final_epoch(held_out):
    """Both sides of Megatron's 80% rule: a short final epoch is shuffled apart (its documents
    and samples after all the others'), a long one together with the rest."""
    lengths = sequence_lengths(held_out / "web")
    tokens, seq_len = int(lengths.sum()), 8
    per_epoch = (tokens - 1) // seq_len
    short = megatron_indices(lengths, seq_len, 1234, per_epoch + per_epoch // 10)  # 2 epochs, final one 10% used
    doc_idx, _, shuffle_idx = short
    assert np.array_equal(np.sort(doc_idx[lengths.size:]), np.arange(lengths.size))
    first = (2 * tokens - tokens - 1) // seq_len
    assert shuffle_idx[:first].max() < first <= shuffle_idx[first:].min()
    doc_idx, _, shuffle_idx = megatron_indices(lengths, seq_len, 1234, 2 * per_epoch)  # final epoch fully used
    assert not np.array_equal(np.sort(doc_idx[lengths.size:]), np.arange(lengths.size))


# -- whole mixes against Megatron's datasets ------------------------------------------------------


@fixture_ok
@given(
    name=st.sampled_from(["web", "code", "math"]),
    seq_len=st.sampled_from([2, 7, 16, 33]),
    global_batch=st.sampled_from([1, 3, 8]),
    steps=st.integers(1, 60),
    seed=st.one_of(st.just(1234), st.integers(0, 2**32 - 1)),
)
def test_one_dataset_mix_equals_gpt_dataset(held_out, name, seq_len, global_batch, steps, seed):
    stream = build(held_out, {name: 1.0}, steps=steps, global_batch=global_batch, seq_len=seq_len, seed=seed)
    dataset = megatron_train(held_out, [name], None, seed, seq_len, steps * global_batch)
    assert type(dataset).__name__ == "GPTDataset"
    assert_rows_equal_megatron(stream, dataset)


@fixture_ok
@given(
    weights=st.lists(st.sampled_from([1, 2, 3, 0.5, 0.05, 7.25]), min_size=2, max_size=3),
    seq_len=st.sampled_from([3, 8, 21]),
    global_batch=st.sampled_from([2, 5, 16]),
    steps=st.integers(1, 40),
    seed=st.one_of(st.just(1234), st.integers(0, 2**32 - 1)),
)
def test_blend_equals_blended_dataset(held_out, weights, seq_len, global_batch, steps, seed):
    names = ["web", "code", "math"][: len(weights)]
    stream = build(held_out, dict(zip(names, weights)), steps=steps, global_batch=global_batch, seq_len=seq_len, seed=seed)
    dataset = megatron_train(held_out, names, [float(w) for w in weights], seed, seq_len, steps * global_batch)
    assert type(dataset).__name__ == "BlendedDataset"
    assert_rows_equal_megatron(stream, dataset)


@pytest.mark.parametrize(("seed", "seq_len"), [(1234, 32), (7, 64)])
def test_bundled_samples_equal_megatron(tmp_path, seed, seq_len):
    """Real text: two bundled samples tokenized, alone (``GPTDataset``) and blended 3:1."""
    c4, code = bundled_store(tmp_path, "c4"), bundled_store(tmp_path, "code")

    class Tokenizer(StubTokenizer):
        vocab_size = c4.vocab_size
        eod = c4.eos_id

    stream = build(tmp_path, {"c4": 1.0}, steps=20, global_batch=4, seq_len=seq_len, seed=seed)
    assert_rows_equal_megatron(stream, megatron_train(tmp_path, ["c4"], None, seed, seq_len, 80, Tokenizer()))
    stream = build(tmp_path, {"c4": 3.0, "code": 1.0}, steps=20, global_batch=4, seq_len=seq_len, seed=seed)
    assert_rows_equal_megatron(stream, megatron_train(tmp_path, ["c4", "code"], [3.0, 1.0], seed, seq_len, 80, Tokenizer()))
    assert {c4.name, code.name} == set(stream.source_names)


# -- the option itself ----------------------------------------------------------------------------


def test_default_order_is_mixkit_and_recorded(held_out, tmp_path):
    """The default is unchanged and both orders say which they are in mix.json (and so in the
    fingerprint); the two differ at the same seed."""
    plan = MixPlan([Phase(0, {"web": 1.0})], steps=10, global_batch=4, seq_len=8, seed=1234)
    assert plan.shuffle == "mixkit" and plan.to_json()["shuffle"] == "mixkit"
    build_mix(plan, "ours", held_out, overwrite=True)
    ours = MixStream.open("ours", held_out)
    theirs = build(held_out, {"web": 1.0}, steps=10, global_batch=4, seq_len=8, seed=1234)
    assert ours.manifest["shuffle"] == "mixkit" and theirs.manifest["shuffle"] == "megatron"
    assert theirs.manifest["plan"]["shuffle"] == "megatron"
    assert ours.fingerprint != theirs.fingerprint
    assert not np.array_equal(ours.samples(0, 40), theirs.samples(0, 40))
    again = build(held_out, {"web": 1.0}, steps=10, global_batch=4, seq_len=8, seed=1234)
    assert again.fingerprint == theirs.fingerprint, "same inputs, same bytes"


def test_refusals_are_one_line(held_out):
    two_phases = [Phase(0, {"web": 1.0}), Phase(5, {"web": 0.5, "code": 0.5})]
    with pytest.raises(MixkitError, match="one-phase plan"):
        MixPlan(two_phases, steps=10, shuffle="megatron")
    with pytest.raises(MixkitError, match="below 2\\*\\*32"):
        MixPlan([Phase(0, {"web": 1.0})], steps=10, seed=2**32, shuffle="megatron")
    with pytest.raises(MixkitError, match="shuffle: expected 'mixkit' or 'megatron'"):
        MixPlan([Phase(0, {"web": 1.0})], steps=10, shuffle="random")
    lengths = sequence_lengths(held_out / "math")
    per_epoch = (int(lengths.sum()) - 1) // 8
    plan = MixPlan([Phase(0, {"math": 1.0})], steps=per_epoch + 1, global_batch=1, seq_len=8, shuffle="megatron")
    with pytest.raises(MixkitError, match="2 epochs .*--allow-repeat") as e:
        build_mix(plan, "too-long", held_out)
    assert "\n" not in str(e.value)
    assert not (held_out / "mixes" / "too-long").exists()


def test_plan_file_and_command_line(held_out, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXKIT_DATA_DIR", str(held_out))
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text('steps = 6\nseq_len = 8\nglobal_batch = 4\nshuffle = "megatron"\n'
                         "[[phase]]\nstart = 0\nweights = { web = 2, code = 1 }\n")
    assert load_plan_file(plan_file).shuffle == "megatron"
    assert load_plan_file(plan_file, shuffle="mixkit").shuffle == "mixkit", "the command line wins"
    run_cli("build-mix", "--name", "from-file", "--plan", str(plan_file))
    run_cli("build-mix", "--name", "from-cli", "--phase", "0:web=2,code=1", "--steps", "6", "--seq-len", "8",
            "--global-batch", "4", "--shuffle", "megatron")
    a, b = MixStream.open("from-file"), MixStream.open("from-cli")
    assert a.manifest["shuffle"] == b.manifest["shuffle"] == "megatron"
    assert np.array_equal(a.samples(0, 24), b.samples(0, 24))
    assert_rows_equal_megatron(b, megatron_train(held_out, ["web", "code"], [2.0, 1.0], 1234, 8, 24))
    bad = tmp_path / "bad.toml"
    bad.write_text('steps = 6\nshuffle = "numpy"\n[[phase]]\nstart = 0\nweights = { web = 1 }\n')
    assert "shuffle" in run_cli_fail("build-mix", "--name", "bad", "--plan", str(bad))
    out = run_cli_fail("build-mix", "--name", "x", "--phase", "0:web=1", "--phase", "3:code=1", "--steps", "6",
                       "--shuffle", "megatron")
    assert "one-phase plan" in out and "Traceback" not in out
