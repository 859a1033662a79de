"""Tracebacks-never: every input the issue's hostile tester used ends in one ``Error:`` line.

Each row of ``CASES`` is a command on a bad input (damaged files, absurd names, hostile JSON, a
config that is not UTF-8, ...). Run through the real command groups (``cli.mixkit_cli.main``,
``cli.trainer_cli.main``, with their top-level handler), each must exit 1 or 2 with exactly
one ``Error:`` line on stderr naming what is wrong, no ``Traceback`` anywhere in the output,
and the folder it would have written to unchanged (no partial output).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from cli.error_handler import OneLineErrorGroup
from cli.mixkit_cli import main as mixkit_main
from cli.trainer_cli import main as trainer_main
from mixkit.error_lines import failure_line
from mixkit.integrity import manifest_checksum
from mixkit.names import RESERVED_SUFFIXES, check_new_name
from mixkit.store import write_store
from tests.support import random_docs

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "mix=python:tests.support:tiny_stream", "--set", "model.name=tiny", "--set", "steps=4",
        "--set", "micro_batch=2", "--set", "logging.tensorboard=false"]


# -- the folder every case starts from ---------------------------------------------------------------


def copy_store(data: Path, src: str, dst: str) -> None:
    for suffix in (".bin", ".idx"):
        shutil.copy(data / f"{src}{suffix}", data / f"{dst}{suffix}")
    manifest = json.loads((data / f"{src}.json").read_text())
    manifest["name"] = dst
    if "manifest_checksum" in manifest:  # a copy as mixkit would write it: the renamed manifest's own checksum
        manifest["manifest_checksum"] = manifest_checksum(manifest)
    (data / f"{dst}.json").write_text(json.dumps(manifest))


def damage_index(data: Path, name: str, array: str, doc: int, value: int) -> None:
    """Set one entry of the .idx's lengths (int32) or pointers (int64) arrays, same file size."""
    path = data / f"{name}.idx"
    raw = bytearray(path.read_bytes())
    n = int(np.frombuffer(bytes(raw[18:26]), "<i8")[0])
    offset = 34 + (0 if array == "lengths" else 4 * n)
    dtype = "<i4" if array == "lengths" else "<i8"
    values = np.frombuffer(bytes(raw), dtype, count=n, offset=offset).copy()
    values[doc] = value
    raw[offset : offset + values.nbytes] = values.tobytes()
    path.write_bytes(bytes(raw))


def fake_checkpoint(run: Path, files: dict[str, bytes], meta: dict | None = None) -> Path:
    """A checkpoint folder holding ``files`` and a meta.json (not a made one: its digest will not match)."""
    step = run / "checkpoints" / "step_00000002"
    step.mkdir(parents=True)
    for name, data in files.items():
        (step / name).write_bytes(data)
    (step / "meta.json").write_text(json.dumps(meta or {"step": 2, "files": {n: "0" * 64 for n in files}}))
    return step


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """``data/`` with stores ``c4`` and ``code``, and bad inputs beside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIXKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("MIXKIT_DEBUG", raising=False)
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    write_store(data / "c4", random_docs(rng, 60, 500, max_len=80), vocab_size=500)
    write_store(data / "code", random_docs(rng, 40, 500, max_len=80), vocab_size=500)
    return tmp_path


# -- the cases ----------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    cli: str  # "mixkit" or "trainer"
    args: list[str]
    expect: str | None  # a substring of the Error line (None: any one line; see the row's comment)
    code: int  # 1: a failure (bad input, the system, a bug); 2: a usage error (options); 0: either
    setup: Callable[[Path], None] = lambda d: None
    watch: list[str] = field(default_factory=lambda: ["data"])  # folders (or files) that must not change


def jsonl_line(text: str) -> Callable[[Path], None]:
    return lambda d: (d / "bad.jsonl").write_text(text + "\n", encoding="utf-8")


DEEP = "[" * 100_000 + "]" * 100_000

CASES = [
    Case("lone-surrogate", "mixkit", ["tokenize", "bad.jsonl", "--name", "t", "--workers", "1", "--quiet"],
         "lone surrogate", 1, jsonl_line('{"text": "a\\ud800b"}')),
    Case("deep-nesting", "mixkit", ["tokenize", "bad.jsonl", "--name", "t", "--workers", "1", "--quiet"],
         "nested too deeply", 1, jsonl_line('{"text": ' + DEEP + "}")),
    Case("deep-nesting-json-array", "mixkit", ["tokenize", "bad.json", "--name", "t", "--workers", "1", "--quiet"],
         "nested too deeply", 1, lambda d: (d / "bad.json").write_text('[{"text": ' + DEEP + "}]")),
    Case("5000-digit-integer", "mixkit", ["tokenize", "bad.jsonl", "--name", "t", "--workers", "1", "--quiet"],
         "integer longer than", 1, jsonl_line('{"text": "a", "n": ' + "7" * 5000 + "}")),
    Case("300-character-name", "mixkit", ["tokenize", "bad.jsonl", "--name", "n" * 300, "--workers", "1"],
         "300 bytes long", 1, jsonl_line('{"text": "fine"}')),
    Case("reserved-suffix-counts", "mixkit", ["tokenize", "bad.jsonl", "--name", "x.counts", "--workers", "1"],
         "'.counts'", 1, jsonl_line('{"text": "fine"}')),
    Case("reserved-suffix-holdout", "mixkit", ["merge", "c4-holdout", "c4"], "'-holdout'", 1),
    Case("reserved-suffix-mix", "mixkit", ["build-mix", "--name", "m.tmp", "--base", "c4", "--steps", "2",
                                           "--seq-len", "8", "--global-batch", "2"], "'.tmp'", 1),
    Case("data-dir-name-too-long", "mixkit", ["tokenize", "bad.jsonl", "--name", "t", "--workers", "1",
                                              "--data-dir", "d" * 300], "file name is too long", 1,
         jsonl_line('{"text": "fine"}'), watch=["."]),
    Case("data-dir-under-a-file", "mixkit", ["tokenize", "bad.jsonl", "--name", "t", "--workers", "1",
                                             "--data-dir", "afile/data"], "afile", 1,
         lambda d: (jsonl_line('{"text": "fine"}')(d), (d / "afile").write_text("x")), watch=["."]),
    # The structural verification of stores (mixkit.integrity) names the .idx.
    Case("damaged-idx-lengths-build-mix", "mixkit", ["build-mix", "--name", "m", "--base", "dl", "--steps", "2",
                                                     "--seq-len", "8", "--global-batch", "2"], "dl.idx", 1,
         lambda d: (copy_store(d / "data", "c4", "dl"), damage_index(d / "data", "dl", "lengths", 5, -7))),
    Case("damaged-idx-pointer-count", "mixkit", ["count", "dp", "--quiet"], "dp.idx", 1,
         lambda d: (copy_store(d / "data", "c4", "dp"), damage_index(d / "data", "dp", "pointers", 5, 10**12))),
    Case("damaged-idx-pointer-distance", "mixkit", ["distance", "dp", "code", "--quiet"], "dp.idx", 1,
         lambda d: (copy_store(d / "data", "c4", "dp"), damage_index(d / "data", "dp", "pointers", 5, 10**12))),
    Case("manifest-without-bin-bytes", "mixkit", ["count", "nb", "--quiet"], "'bin_bytes' is missing", 1,
         lambda d: (copy_store(d / "data", "c4", "nb"), (d / "data" / "nb.json").write_text(json.dumps(
             {k: v for k, v in json.loads((d / "data" / "nb.json").read_text()).items() if k != "bin_bytes"})))),
    Case("manifest-not-utf8", "mixkit", ["info", "iu"], "iu.json", 1,
         lambda d: (copy_store(d / "data", "c4", "iu"), (d / "data" / "iu.json").write_bytes(b'{"format": "\xff"}'))),
    Case("merge-name-is-a-path", "mixkit", ["merge", "../m4", "c4", "code"], "not a valid store name", 1, watch=["."]),
    Case("merge-part-named-twice", "mixkit", ["merge", "m", "c4", "c4"], "named twice", 1),
    Case("start-step-without-add", "mixkit", ["build-mix", "--name", "m", "--base", "c4", "--start-step", "1",
                                              "--steps", "2", "--seq-len", "8", "--global-batch", "2"],
         "--start-step needs --add", 2),
    Case("plan-not-utf8", "mixkit", ["build-mix", "--name", "m", "--plan", "plan.toml"], "not valid UTF-8", 1,
         lambda d: (d / "plan.toml").write_bytes(b"steps = 2\n# caf\xe9\n")),
    Case("out-dir-is-a-file", "trainer", ["train", *TINY, "--set", "out_dir=afile"], "is a file, not a folder", 1,
         lambda d: (d / "afile").write_text("mine"), watch=["afile"]),
    Case("config-not-utf8", "trainer", ["train", "--config", "run.toml"], "not valid UTF-8", 1,
         lambda d: (d / "run.toml").write_bytes(b'mix = "m"\nout_dir = "o"\n# caf\xe9\n'), watch=["."]),
    Case("set-optim-to-a-number", "trainer", ["train", *TINY, "--set", "out_dir=o", "--set", "optim=3"], "[optim]", 1,
         watch=["."]),
    Case("garbage-weights-resume", "trainer", ["train", *TINY, "--set", "out_dir=run", "--resume"],
         "no intact checkpoint", 1,
         lambda d: fake_checkpoint(d / "run", {"model.safetensors": b"\x00garbage" * 64}), watch=["run"]),
    Case("garbage-state-pt-resume", "trainer", ["train", *TINY, "--set", "out_dir=run", "--resume"], "older format", 1,
         lambda d: fake_checkpoint(d / "run", {"state.pt": b"\x80\x04garbage"}, {"step": 2}), watch=["run"]),
    Case("garbage-state-pt-from", "trainer", ["train", *TINY, "--set", "out_dir=o", "--from",
                                              "run/checkpoints/step_00000002"], "older format", 1,
         lambda d: fake_checkpoint(d / "run", {"state.pt": b"\x80\x04garbage"}, {"step": 2}), watch=["run", "."]),
    Case("garbage-weights-export", "trainer", ["export", "run/checkpoints/step_00000002", "--out", "hf"], "meta.json", 1,
         lambda d: fake_checkpoint(d / "run", {"model.safetensors": b"\x00garbage" * 64}), watch=["run", "."]),
]


def snapshot(root: Path, watch: list[str]) -> dict[str, tuple[int, bytes | None]]:
    """Every file under the watched folders (hidden ones too) with its size, and small files' bytes
    (an empty folder made on the way, such as ``data/mixes/``, is not output)."""
    seen: dict[str, tuple[int, bytes | None]] = {}
    for w in watch:
        top = root / w
        for p in [top] if top.is_file() else (top.rglob("*") if top.exists() else []):
            if p.is_file() or p.is_symlink():
                size = p.lstat().st_size
                seen[str(p.relative_to(root))] = (size, p.read_bytes() if p.is_file() and size < 4096 else None)
    return seen


def invoke(cli: str, args: list[str]):
    main = mixkit_main if cli == "mixkit" else trainer_main
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_error_line(folder, case):
    case.setup(folder)
    before = snapshot(folder, case.watch)
    result = invoke(case.cli, case.args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    expected_codes = (case.code,) if case.code else (1, 2)
    assert result.exit_code in expected_codes, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if case.expect is not None:
        assert case.expect in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert snapshot(folder, case.watch) == before, "the command left output behind"


@pytest.mark.parametrize("line,reason", [
    ('{"text": "a\\ud800b"}', "lone surrogate"),
    ('{"text": ' + DEEP + "}", "nested too deeply"),
    ('{"text": "a", "n": ' + "7" * 5000 + "}", "integer too long"),
])
def test_on_error_skip_skips_and_counts_the_record(folder, line, reason):
    (folder / "mixed.jsonl").write_text('{"text": "a good document"}\n' + line + "\n" + '{"text": "another"}\n',
                                        encoding="utf-8")
    result = invoke("mixkit", ["tokenize", "mixed.jsonl", "--name", "t", "--workers", "1", "--quiet",
                               "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert "2 documents" in result.stdout and f"'{reason}': 1" in result.stdout


def test_reserved_names_protect_the_files_of_other_stores(folder):
    """`mixkit count x` writes x.counts.*: a store called x.counts could be destroyed by it, so it cannot exist."""
    for suffix in RESERVED_SUFFIXES:
        with pytest.raises(click.ClickException, match="not a valid store name"):
            check_new_name("x" + suffix)
    assert check_new_name("x.counted") == "x.counted" and check_new_name("c4-holdouts") == "c4-holdouts"
    assert check_new_name("é" * 100) == "é" * 100  # 200 bytes: at the limit


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_data_dir(folder):
    (folder / "good.jsonl").write_text('{"text": "fine"}\n')
    data = folder / "data"
    data.chmod(0o555)
    try:
        result = invoke("mixkit", ["tokenize", "good.jsonl", "--name", "t", "--workers", "1", "--quiet"])
    finally:
        data.chmod(0o755)
    assert result.exit_code == 1 and "permission denied" in result.stderr and str(data) in result.stderr
    assert "Traceback" not in result.output


# -- the top-level handler itself ---------------------------------------------------------------------


def failing_group(exc: BaseException) -> click.Group:
    @click.group(cls=OneLineErrorGroup)
    def group() -> None:
        pass

    @group.command()
    def go() -> None:
        raise exc

    return group


@pytest.mark.parametrize("exc,line", [
    (OSError(errno.ENOSPC, "No space left on device", "/big/out.npy"), "/big/out.npy: no space left on the device"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/d/" + "n" * 300), "a file name is too long"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/c4.bin"), "/data/c4.bin: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/c4.bin"), "/ro/c4.bin: the file system is read-only"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/x"), "/f/x: a part of this path is a file, not a folder"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/d"), "/d: is a folder, not a file"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), "/a -> /b: cannot move across file systems"),
    (RuntimeError("Error while serializing") .with_traceback(None), "internal error: RuntimeError"),
    (ValueError("could not broadcast input array\nsecond line"), "internal error: ValueError: could not broadcast"),
    (KeyError("bin_bytes"), "internal error: KeyError: 'bin_bytes'"),
    (MemoryError("Unable to allocate 1.86 TiB"), "out of memory (Unable to allocate 1.86 TiB)"),
])
def test_handler_turns_any_exception_into_one_line(monkeypatch, exc, line):
    monkeypatch.delenv("MIXKIT_DEBUG", raising=False)
    result = CliRunner().invoke(failing_group(exc), ["go"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("Error: ")
    assert line in result.stderr
    if "internal error" in line:
        assert result.stderr.rstrip().endswith("(run with MIXKIT_DEBUG=1 for the traceback)")
    assert isinstance(result.exception, SystemExit)


def test_an_os_error_wrapped_by_a_library_is_found_in_the_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/ckpt/model.safetensors")
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc:672]") from inner
    except RuntimeError as outer:
        assert failure_line(outer) == "/ckpt/model.safetensors: no space left on the device (free some space or write elsewhere)"


def test_mixkit_debug_lets_the_traceback_through(monkeypatch):
    monkeypatch.setenv("MIXKIT_DEBUG", "1")
    result = CliRunner().invoke(failing_group(RuntimeError("boom")), ["go"])
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "boom"


SCRIPT = """
import sys
import click
from cli.{module} import main

@main.command("boom")
def boom():
    raise RuntimeError("boom")

sys.argv = ["{module}", "boom"]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("module", ["mixkit_cli", "trainer_cli"])
def test_the_installed_commands_print_one_line_or_with_mixkit_debug_the_traceback(tmp_path, module):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("MIXKIT_DEBUG", None)
    code = SCRIPT.format(module=module)
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert quiet.returncode == 1
    assert quiet.stderr.strip() == "Error: internal error: RuntimeError: boom (run with MIXKIT_DEBUG=1 for the traceback)"
    loud = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env=dict(env, MIXKIT_DEBUG="1"))
    assert loud.returncode == 1 and "Traceback" in loud.stderr and "RuntimeError: boom" in loud.stderr


@pytest.mark.slow
def test_a_real_command_in_a_subprocess(folder):
    """The installed entry point, end to end: a damaged manifest read by `mixkit count`."""
    copy_store(folder / "data", "c4", "nb")
    manifest = json.loads((folder / "data" / "nb.json").read_text())
    del manifest["bin_bytes"]
    (folder / "data" / "nb.json").write_text(json.dumps(manifest))
    proc = subprocess.run([str(Path(sys.executable).with_name("mixkit")), "count", "nb"], capture_output=True,
                          text=True, cwd=folder, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert proc.returncode == 1 and proc.stderr.count("Error:") == 1 and "bin_bytes" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


# -- a config is checked whole before the first stage ----------------------------------------------------


def test_a_staged_run_checks_every_stage_before_the_first(folder):
    """The midtrain mix's seq_len is above the model's max_seq_len: refused before pretraining starts."""
    from mixkit.mix import build_mix
    from mixkit.mix.plan import plan_from_options

    data = folder / "data"
    for name, seq_len in (("short", 8), ("long", 32)):
        build_mix(plan_from_options(base="c4", steps=4, seq_len=seq_len, global_batch=2), name, data)
    (folder / "run.toml").write_text(f"""
name = "r"
out_dir = "{folder / 'run'}"
data_dir = "{data}"
micro_batch = 2
[model]
name = "tiny"
max_seq_len = 16
[[stages]]
kind = "pretrain"
name = "pretrain"
mix = "short"
[[stages]]
kind = "midtrain"
name = "midtrain"
mix = "long"
""")
    result = invoke("trainer", ["train", "--config", "run.toml"])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        "Error: stage midtrain: the mix's seq_len 32 exceeds model.max_seq_len 16"]
    assert not (folder / "run").exists(), "nothing trained, nothing written"


@pytest.mark.parametrize("section,key", [("schedule", "seq_len"), ("train", "eval_seq_len"), ("sft", "seq_len")])
def test_a_study_config_checks_sequence_lengths_at_load(tmp_path, section, key):
    from lab.config import load_study
    from tests.support import shortened_quickstart, toml_text, tomllib

    table = tomllib.loads(shortened_quickstart(tmp_path).read_text())
    table[section][key] = 1000  # the model's max_seq_len is 64
    path = tmp_path / "bad.toml"
    path.write_text(toml_text(table))
    with pytest.raises(click.ClickException, match=rf"\[{section}\] {key}: 1000 is above the model's max_seq_len 64"):
        load_study(path)
