"""SFT data: answer-only labels, truncation from the prompt side, deterministic splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import Tokenizer

from mixkit.config import Where, from_table
from mixkit.errors import MixkitError
from trainer.sft_data import IGNORE_INDEX, SFTSet, TaskConfig, collate, encode_pairs, load_task, split_indices


@pytest.fixture(scope="module")
def tok(tokenizer_path):
    return Tokenizer.from_file(str(tokenizer_path))


def test_labels_cover_exactly_the_answer():
    data = SFTSet([np.array([5, 6, 7, 8, 9, 0]), np.array([3, 4, 0])], np.array([3, 1]))
    inputs, labels = collate(data, np.array([0, 1]), pad_id=0)
    np.testing.assert_array_equal(inputs, [[5, 6, 7, 8, 9], [3, 4, 0, 0, 0]])
    # row 0: prompt 5 6 7, answer 8 9 EOS → targets 6 7 8 9 0, answer targets from position 2
    np.testing.assert_array_equal(labels[0], [IGNORE_INDEX, IGNORE_INDEX, 8, 9, 0])
    # row 1: prompt 3, answer 4 EOS → targets 4 0; then padding
    np.testing.assert_array_equal(labels[1], [4, 0, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX])


def test_truncation_cuts_the_prompt_start_and_is_counted(tok):
    long_prompt = "word " * 100
    data = encode_pairs([(long_prompt, " short answer"), ("Q:", " A")], tok, eos_id=0, seq_len=16)
    assert data.truncated_prompt == 1 and data.truncated_answer == 0
    assert len(data.tokens[0]) == 17
    answer = tok.encode(" short answer", add_special_tokens=False).ids + [0]
    assert data.tokens[0][-len(answer):].tolist() == answer
    assert int(data.answer_start[0]) == 17 - len(answer)
    assert len(data.tokens[1]) < 17


def test_answer_longer_than_window_is_cut_at_its_end_and_counted(tok):
    data = encode_pairs([("Q:", " a" * 50)], tok, eos_id=0, seq_len=8)
    assert data.truncated_answer == 1
    assert len(data.tokens[0]) == 9 and data.answer_start[0] >= 1


def test_split_is_deterministic_and_disjoint():
    a = split_indices(100, seed=7, val_size=10, val_fraction=0.1)
    b = split_indices(100, seed=7, val_size=10, val_fraction=0.1)
    c = split_indices(100, seed=8, val_size=10, val_fraction=0.1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert set(a[0]).isdisjoint(a[1]) and len(a[0]) + len(a[1]) == 100


def test_load_task_uses_the_datasets_own_split(tmp_path, tok):
    for split, n in (("train", 12), ("test", 4)):
        with open(tmp_path / f"{split}.jsonl", "w") as f:
            for i in range(n):
                f.write(json.dumps({"question": f"{split} q{i}?", "answer": f"a{i}"}) + "\n")
    cfg = TaskConfig("gsm8k", train=[str(tmp_path / "train.jsonl")], val=[str(tmp_path / "test.jsonl")])
    train, val = load_task(cfg, tok, 0, 64)
    assert len(train) == 12 and len(val) == 4
    cfg = TaskConfig("gsm8k", train=[str(tmp_path / "train.jsonl")], val_size=3)
    train, val = load_task(cfg, tok, 0, 64)
    assert len(train) == 9 and len(val) == 3


def task(name, table):
    return from_table(TaskConfig, table, Where("run.toml", f"tasks.{name}"), name=name)


def test_bad_task_config():
    with pytest.raises(MixkitError, match=r"run.toml: \[tasks.mytask\] preset: name one of"):
        task("mytask", {"train": "x.jsonl"})
    with pytest.raises(MixkitError, match=r"run.toml: \[tasks.gsm8k\] bogus: unknown key"):
        task("gsm8k", {"train": "x", "bogus": 1})
    with pytest.raises(MixkitError, match=r"\[tasks.gsm8k\] val_fraction: must be in \(0, 1\)"):
        task("gsm8k", {"train": "x", "val_fraction": 1.5})
    assert task("gsm8k", {"train": "x"}).preset == "gsm8k", "a task named like a preset uses it"
    assert task("gsm8k", {"train": "x", "val": ["a", "b"]}).train == ["x"], "one source or a list"


def test_templates_instead_of_a_preset(tmp_path, tok):
    with open(tmp_path / "t.jsonl", "w") as f:
        for i in range(6):
            f.write(json.dumps({"q": f"question {i}", "a": f"answer {i}"}) + "\n")
    cfg = task("mine", {"train": str(tmp_path / "t.jsonl"), "prompt": "Q: {q}\nA:", "answer": " {a}", "val_size": 2})
    train, val = load_task(cfg, tok, 0, 64)
    assert len(train) == 4 and len(val) == 2
    decoded = [tok.decode(t[int(s):-1].tolist()) for t, s in zip(train.tokens, train.answer_start)]
    assert all(d.startswith(" answer ") for d in decoded)
    with pytest.raises(MixkitError, match=r"\[tasks.mine\] answer: give both prompt and answer"):
        task("mine", {"train": "x", "prompt": "{q}"})


def test_the_split_is_the_tasks_not_the_runs(tmp_path, tok):
    """Two runs with different seeds score the same validation examples: the split has its own seed."""
    with open(tmp_path / "t.jsonl", "w") as f:
        for i in range(40):
            f.write(json.dumps({"question": f"q{i}?", "answer": f"a{i}"}) + "\n")
    cfg = task("gsm8k", {"train": str(tmp_path / "t.jsonl"), "val_size": 8})
    runs = [load_task(cfg, tok, 0, 64) for _seed in (1234, 1235)]
    assert runs[0][1].fingerprint() == runs[1][1].fingerprint()
    other = load_task(task("gsm8k", {"train": str(tmp_path / "t.jsonl"), "val_size": 8, "split_seed": 1}), tok, 0, 64)
    assert other[1].fingerprint() != runs[0][1].fingerprint(), "the fingerprint tells different splits apart"
    assert len(runs[0][1]) == 8
