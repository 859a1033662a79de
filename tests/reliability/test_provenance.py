"""A source's sha256 and size in the manifest are those of the bytes tokenized; a source that
changes while it is read is detected and nothing is published."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

import mixkit.tokenize as tokenize_module
from mixkit.errors import MixkitError
from mixkit.readers import SourceDigest, read_records
from mixkit.tokenize import TokenizeConfig, tokenize
from tests.support import write_jsonl

DOCS = [{"text": f"document {i} " + "and more words " * (i % 9 + 1)} for i in range(40)]


def _config(sources: list[Path], d: Path, **kw) -> TokenizeConfig:
    return TokenizeConfig([str(s) for s in sources], "w", data_dir=str(d), quiet=True, workers=1, encoder="hf",
                          batch_bytes=2000, **kw)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_prepass(monkeypatch, sources: list[Path]) -> None:
    """Make hashing a source file with a separate pass an error: its sha256 must come from the read."""
    real = tokenize_module.sha256_file
    names = {str(s) for s in sources}

    def guarded(path, *args, **kwargs):
        assert str(path) not in names, f"{path} was hashed by a separate pass"
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tokenize_module, "sha256_file", guarded)


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "txt"])
def test_manifest_sha256_is_that_of_the_bytes_read(tmp_path, monkeypatch, kind):
    src = tmp_path / f"in.{kind}"
    if kind == "jsonl":
        write_jsonl(src, DOCS)
    elif kind == "jsonl.gz":
        write_jsonl(src, DOCS, opener=gzip.open)
    elif kind == "json":
        src.write_text(json.dumps(DOCS) + "\n\n  ")  # bytes after the array count too
    else:
        src.write_text("one document of plain text\n")
    _no_prepass(monkeypatch, [src])
    manifest = tokenize(_config([src], tmp_path / "d"))
    (entry,) = manifest["sources"]
    assert entry["sha256"] == _sha256(src) and entry["bytes"] == src.stat().st_size
    # and that digest is what the reader fed from the bytes it took
    digest = SourceDigest()
    for _ in read_records(src, digest=digest):
        pass
    assert digest.bytes == src.stat().st_size and digest.hexdigest() == _sha256(src)


def test_resumed_run_keeps_the_sha256_of_sources_read_before_the_kill(tmp_path, monkeypatch):
    """Sources finished before a kill are not read again: their digest travels in the checkpoint."""
    a, b = write_jsonl(tmp_path / "a.jsonl", DOCS), write_jsonl(tmp_path / "b.jsonl", DOCS[::-1])
    reference = tokenize(_config([a, b], tmp_path / "ref"))

    class Killed(BaseException):
        pass

    real_read = tokenize_module.read_records
    d = tmp_path / "d"

    def read_then_die(source, *args, **kwargs):
        for n, record in enumerate(real_read(source, *args, **kwargs), 1):
            yield record
            if Path(source) == b and n == 20:
                # a batch holding the end of a.jsonl has been checkpointed: die here, in b.jsonl
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if "sha256" in json.loads((d / "w.tokenize-state.json").read_text())["per_source"]["0"]:
                            break
                    except (OSError, ValueError, KeyError):
                        pass
                    time.sleep(0.01)
                raise Killed

    monkeypatch.setattr(tokenize_module, "read_records", read_then_die)
    with pytest.raises(Killed):
        tokenize(_config([a, b], d, checkpoint_seconds=0.0))
    state = json.loads((d / "w.tokenize-state.json").read_text())
    assert state["per_source"]["0"]["sha256"] == _sha256(a)
    monkeypatch.setattr(tokenize_module, "read_records", real_read)
    resumed = tokenize(_config([a, b], d, checkpoint_seconds=0.0))
    assert resumed["resumed"] and resumed["sources"] == reference["sources"]
    assert [s["sha256"] for s in resumed["sources"]] == [_sha256(a), _sha256(b)]


def _appending_reader(monkeypatch, target: Path, after_records: int, when_reading: Path | None = None) -> None:
    """Append a document to ``target`` once ``after_records`` records of ``when_reading`` (default:
    ``target``) have been read, as a writer still producing the file would."""
    real_read = tokenize_module.read_records
    when_reading = when_reading or target

    def read(source, *args, **kwargs):
        for n, record in enumerate(real_read(source, *args, **kwargs), 1):
            yield record
            if Path(source) == when_reading and n == after_records:
                with open(target, "a") as f:
                    f.write(json.dumps({"text": "a late document"}) + "\n")

    monkeypatch.setattr(tokenize_module, "read_records", read)


def test_source_appended_while_read_is_detected(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    d = tmp_path / "d"
    _appending_reader(monkeypatch, src, after_records=3)
    with pytest.raises(MixkitError, match=r"a\.jsonl: changed while it was read \(\d+ bytes before reading, \d+ read\)"):
        tokenize(_config([src], d))
    assert sorted(p.name for p in d.iterdir()) == [], "nothing published, nothing half-written left"


def test_source_appended_after_it_was_read_is_detected(tmp_path, monkeypatch):
    """Appended once read (while the next source is read): caught by the size/time check at the end."""
    a, b = write_jsonl(tmp_path / "a.jsonl", DOCS), write_jsonl(tmp_path / "b.jsonl", DOCS)
    d = tmp_path / "d"
    _appending_reader(monkeypatch, a, after_records=2, when_reading=b)
    with pytest.raises(MixkitError, match=r"a\.jsonl: changed while it was read \(size \d+ -> \d+ bytes\)"):
        tokenize(_config([a, b], d))
    assert sorted(p.name for p in d.iterdir()) == []


def test_source_rewritten_in_place_same_size_is_detected(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    real_read = tokenize_module.read_records

    def read(source, *args, **kwargs):
        yield from real_read(source, *args, **kwargs)
        data = src.read_bytes()
        src.write_bytes(data.replace(b"document 1 ", b"DOCUMENT 1 "))
        st = src.stat()
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a coarse clock still moves

    monkeypatch.setattr(tokenize_module, "read_records", read)
    with pytest.raises(MixkitError, match="changed while it was read"):
        tokenize(_config([src], tmp_path / "d"))


def test_cli_reports_a_changed_source_in_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cli.mixkit_cli import main

    src = write_jsonl(tmp_path / "a.jsonl", DOCS)
    _appending_reader(monkeypatch, src, after_records=1)
    result = CliRunner().invoke(main, ["tokenize", str(src), "--name", "w", "--data-dir", str(tmp_path / "d"),
                                       "--workers", "1", "--encoder", "hf", "--quiet"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {src}: changed while it was read")
