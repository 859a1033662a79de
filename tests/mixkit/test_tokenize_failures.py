"""Bad input gives one clear line naming the place and leaves no output; kills resume exactly."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import outputs, run_cli, run_cli_fail, write_jsonl

GOOD = [{"text": f"good document {i}"} for i in range(5)]


def _with_bad_line(tmp_path: Path, bad: bytes) -> Path:
    path = tmp_path / "in.jsonl"
    lines = [json.dumps(r).encode() for r in GOOD]
    lines.insert(3, bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message", "reason"),
    [
        (b'{"text": "unterminated', "line 4: malformed JSON", "malformed JSON"),
        (b'{"body": "no text field"}', "line 4: record has no field 'text'", "missing field"),
        (b'{"text": 42}', "line 4: field 'text' is int, expected a string", "non-string field"),
        (b'{"text": "bad \xff\xfe bytes"}', "line 4: invalid UTF-8", "invalid UTF-8"),
    ],
)
def test_bad_record_errors_then_skips(tmp_path, bad, message, reason):
    src = _with_bad_line(tmp_path, bad)
    d = tmp_path / "d"
    out = run_cli_fail("tokenize", str(src), "--name", "x", "--data-dir", str(d), "--quiet")
    assert f"{src}:{message}" in out
    assert "Traceback" not in out
    assert outputs(d) == [], "nothing half-written is left"
    out = run_cli("tokenize", str(src), "--name", "x", "--data-dir", str(d), "--quiet", "--on-error", "skip")
    assert "5 documents" in out and reason in out
    manifest = json.loads((d / "x.json").read_text())
    assert manifest["skipped"][reason] == 1


def test_template_missing_field(tmp_path):
    src = write_jsonl(tmp_path / "q.jsonl", [{"question": "q?"}])
    out = run_cli_fail("tokenize", str(src), "--name", "x", "--template", "{question}\\n{answer}", "--data-dir", str(tmp_path / "d"))
    assert "line 1: record has no field 'answer' (fields: question)" in out


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_truncated_compressed_file(tmp_path, kind):
    import zstandard

    raw = b"".join(json.dumps({"text": f"document {i} " * 20}).encode() + b"\n" for i in range(2000))
    data = gzip.compress(raw) if kind == "gz" else zstandard.ZstdCompressor().compress(raw)
    src = tmp_path / f"cut.jsonl.{kind}"
    src.write_bytes(data[: len(data) // 2])
    d = tmp_path / "d"
    out = run_cli_fail("tokenize", str(src), "--name", "x", "--data-dir", str(d), "--quiet")
    assert f"{src}: truncated or corrupt" in out
    assert outputs(d) == []


def test_empty_source_list_and_unmatched_glob(tmp_path):
    assert "no input sources" in run_cli_fail("tokenize", "--name", "x", "--data-dir", str(tmp_path))
    assert "no input files match" in run_cli_fail("tokenize", str(tmp_path / "*.jsonl"), "--name", "x", "--data-dir", str(tmp_path))


def test_unreadable_tokenizer(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", GOOD)
    bad_tok = tmp_path / "tok.json"
    bad_tok.write_text("{not a tokenizer")
    d = tmp_path / "d"
    out = run_cli_fail("tokenize", str(src), "--name", "x", "--tokenizer", str(bad_tok), "--data-dir", str(d))
    assert f"cannot read tokenizer {bad_tok}" in out
    assert outputs(d) == []


def test_empty_documents_are_skipped_and_counted(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", [{"text": "a"}, {"text": ""}, {"text": "   \n"}, {"text": "b"}])
    run_cli("tokenize", str(src), "--name", "x", "--data-dir", str(tmp_path / "d"), "--quiet")
    m = json.loads((tmp_path / "d" / "x.json").read_text())
    assert m["documents"] == 2 and m["skipped"]["empty"] == 2


def _tokenize_proc(src: Path, d: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "cli.mixkit_cli", "tokenize", str(src), "--name", "big", "--data-dir", str(d),
            "--quiet", "--workers", "1", "--batch-bytes", "4000", "--checkpoint-seconds", "0"]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_then_resume_is_byte_identical(tmp_path, samples_dir):
    src = samples_dir / "c4.jsonl.gz"
    ref = tmp_path / "ref"
    p = _tokenize_proc(src, ref)
    assert p.wait() == 0, p.stderr.read()
    total = (ref / "big.bin").stat().st_size
    for frac in (0.15, 0.5, 0.85):
        d = tmp_path / f"kill{frac}"
        p = _tokenize_proc(src, d)
        state = d / "big.tokenize-state.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            try:
                if json.loads(state.read_text())["bin_bytes"] >= frac * total:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.005)
        if p.poll() is not None:
            pytest.fail(f"run finished before the kill at {frac}")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert not (d / "big.json").exists(), "a killed run leaves no finished-looking store"
        p = _tokenize_proc(src, d)
        out, err = p.communicate()
        assert p.returncode == 0, err
        assert "[resumed]" in out
        for ext in (".bin", ".idx"):
            assert (d / f"big{ext}").read_bytes() == (ref / f"big{ext}").read_bytes()
        assert sorted(x.name for x in d.iterdir()) == ["big.bin", "big.idx", "big.json"]
