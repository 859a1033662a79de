"""``trainer export``: a run's model as a Hugging Face folder that ``transformers`` and
lm-evaluation-harness load (``AutoTokenizer``, ``AutoModelForCausalLM``, ``lm_eval --model hf``).

The folder::

    OUT/config.json              GPTNeoXForCausalLM's config (``trainer.hf.config_to_hf``), with the
                                 tokenizer's end-of-text id as bos/eos
    OUT/model.safetensors        float32 weights under Hugging Face's names
    OUT/generation_config.json   bos/eos/pad ids, max_length = the model's max_seq_len
    OUT/tokenizer.json           the tokenizer the run's stores were tokenized with, byte for byte
    OUT/tokenizer_config.json    PreTrainedTokenizerFast; bos = eos = unk = the tokenizer's EOS (its
    OUT/special_tokens_map.json  config's eos_token, else ``<|endoftext|>`` as Pythia's);
                                 model_max_length = max_seq_len; no BOS/EOS added

The tokenizer files are written directly (no ``transformers`` import) in the form that
``PreTrainedTokenizerFast(tokenizer_file=..., bos_token=..., eos_token=..., unk_token=...)``
saves, so transformers 4.x and 5.x load them. One difference from our tokenization: the
stores encode the literal text ``<|endoftext|>`` inside a document as plain text, while a
Hugging Face tokenizer maps it to the special token.

What is exported (``export_source``), given:

- a checkpoint folder (``…/checkpoints/step_N``): its weights;
- a staged run folder (``results.json`` / ``run.json``): the newest checkpoint of its last
  pretrain/midtrain stage; with ``stage`` that stage's; with ``sft`` the finetuned weights
  of that SFT task (``RUN/sft-<task>/``);
- a single-mix ``out_dir``: its newest checkpoint.

The tokenizer: ``tokenizer`` when given, else the run's ``tokenizer`` key, else mixkit's
bundled GPT-NeoX-20B tokenizer; when the checkpoint records the sha256 of its stores'
tokenizer (every checkpoint written since it did), a tokenizer with another sha256 is
refused, naming the one the stores were made with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mixkit import atomic
from mixkit.errors import MixkitError
from mixkit.tokenize import load_tokenizer
from trainer import checkpoint as ckpt
from trainer.hf import config_to_hf, from_hf, write_hf_files
from trainer.model import GPTNeoX, ModelConfig
from trainer.run_dir import (
    checkpoints_dir,
    read_json_object,
    results_path,
    run_config_path,
    sft_dir,
    sft_weights_path,
    stage_dir,
    stage_dirs,
)

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
GENERATION_CONFIG_FILE = "generation_config.json"


@dataclass
class ExportSource:
    """What an export reads: the weights (a checkpoint or an SFT folder), the checkpoint whose
    ``meta.json`` names the stores' tokenizer (None when unknown), and the run's tokenizer key."""

    weights: Path
    description: str
    meta_checkpoint: Path | None = None
    run_tokenizer: str = ""


@dataclass
class ExportResult:
    out: Path
    source: ExportSource
    tokenizer: Path
    model_config: ModelConfig


def _newest_checkpoint(folder: Path, what: str) -> Path:
    found = ckpt.latest_checkpoint(folder)
    if found is None:
        raise MixkitError(f"{what} ({folder}) holds no checkpoint")
    return found


def _is_run_dir(path: Path) -> bool:
    return results_path(path).is_file() or run_config_path(path).is_file()


def export_source(path: str | os.PathLike, *, stage: str | None = None, sft: str | None = None) -> ExportSource:
    """Which weights ``trainer export PATH [--stage NAME | --sft TASK]`` exports (module docstring)."""
    path = Path(path)
    if stage and sft:
        raise MixkitError("give --stage or --sft, not both")
    if not path.exists():
        raise MixkitError(f"{path}: no such run folder or checkpoint")
    if ckpt.is_checkpoint(path):
        if stage or sft:
            raise MixkitError(f"{path} is a checkpoint: --stage and --sft choose within a run folder")
        return ExportSource(path, f"checkpoint {path}", path)
    if not _is_run_dir(path):
        if stage or sft:
            raise MixkitError(f"{path} is not a staged run folder (no results.json or run.json): "
                              f"--stage and --sft choose within one")
        if checkpoints_dir(path).is_dir():
            found = _newest_checkpoint(path, "the run")
            return ExportSource(found, f"checkpoint {found}", found)
        raise MixkitError(f"{path}: not a run folder (no results.json, run.json or checkpoints/) nor a checkpoint")

    results = read_json_object(results_path(path)) if results_path(path).is_file() else {}
    run_table = read_json_object(run_config_path(path)) if run_config_path(path).is_file() else {}
    run_tokenizer = str(run_table.get("tokenizer") or "")
    if sft:
        folder = sft_dir(path, sft, results)
        weights = sft_weights_path(folder)
        if not weights.is_file():
            known = sorted(results.get("sft") or {})
            hint = (f"the run's SFT tasks: {', '.join(known)}" if known and sft not in known
                    else "it was finetuned with save_weights = false, or before SFT kept its weights; run it again")
            raise MixkitError(f"{folder}: no finetuned weights ({weights.name}) to export ({hint})")
        entry = (results.get("sft") or {}).get(sft) or {}
        start = Path(os.path.normpath(path / entry["weights"])) if entry.get("weights") else None
        return ExportSource(folder, f"SFT task {sft} ({folder})",
                            start if start is not None and ckpt.is_checkpoint(start) else None, run_tokenizer)
    if stage:
        folder = stage_dir(path, stage)
        if not folder.is_dir():
            names = [d.name for d, _ in stage_dirs(path, results)]
            raise MixkitError(f"{path}: no stage {stage!r} (stages: {', '.join(names) or 'none yet'})")
        found = _newest_checkpoint(folder, f"stage {stage}")
        return ExportSource(found, f"stage {stage}, checkpoint {found.name}", found, run_tokenizer)
    stages = [d for d, _ in stage_dirs(path, results) if checkpoints_dir(d).is_dir()]
    if not stages:
        raise MixkitError(f"{path}: no pretrain or midtrain stage with a checkpoint yet")
    found = _newest_checkpoint(stages[-1], f"stage {stages[-1].name}")
    return ExportSource(found, f"stage {stages[-1].name}, checkpoint {found.name}", found, run_tokenizer)


def load_source_model(source: ExportSource) -> GPTNeoX:
    """The weights of an export source, on the CPU."""
    if ckpt.is_checkpoint(source.weights):
        meta = ckpt.verify_checkpoint(source.weights, weights_only=True)
        model = GPTNeoX(ModelConfig(**meta["model_config"]), init=False)
        ckpt.load_weights(model, source.weights, verify=False)
        return model
    return from_hf(source.weights)


def choose_tokenizer(source: ExportSource, tokenizer: str | os.PathLike | None = None):
    """``(tokenizers.Tokenizer, TokenizerInfo)`` of the export (module docstring)."""
    expected, described = None, {}
    if source.meta_checkpoint is not None:
        meta = ckpt.read_meta(source.meta_checkpoint)
        expected = meta.get("tokenizer_sha256")
        described = meta.get("tokenizer") or {}
    candidate = tokenizer or source.run_tokenizer or None
    tok, info = load_tokenizer(candidate)
    if expected and info.sha256 != expected:
        made_with = described.get("file") or "another tokenizer"
        raise MixkitError(f"the stores of {source.description} were tokenized with {made_with} (sha256 "
                          f"{expected[:12]}), not {info.path} (sha256 {info.sha256[:12]}): pass --tokenizer "
                          f"with that tokenizer.json")
    return tok, info


def tokenizer_files(info: Any, max_seq_len: int) -> dict[str, dict[str, Any]]:
    """The JSON of ``tokenizer_config.json`` and ``special_tokens_map.json`` (module docstring)."""
    special = {k: info.eos_token for k in ("bos_token", "eos_token", "unk_token")} if info.eos_id is not None else {}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "model_max_length": max_seq_len,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
    }
    return {TOKENIZER_CONFIG_FILE: config, SPECIAL_TOKENS_FILE: special}


def export(path: str | os.PathLike, out: str | os.PathLike, *, stage: str | None = None, sft: str | None = None,
           tokenizer: str | os.PathLike | None = None, overwrite: bool = False) -> ExportResult:
    """Write the Hugging Face folder ``out`` (module docstring), whole or not at all."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise MixkitError(f"{out} already exists (pass --overwrite to replace it)")
    source = export_source(path, stage=stage, sft=sft)
    model = load_source_model(source)
    _, info = choose_tokenizer(source, tokenizer)
    cfg = model.cfg
    if info.vocab_size > cfg.vocab_size:
        raise MixkitError(f"tokenizer {info.path} has {info.vocab_size} tokens, more than the model's "
                          f"vocab_size {cfg.vocab_size}")
    ids = {"bos_token_id": info.eos_id, "eos_token_id": info.eos_id}
    with atomic.atomic_dir(out, overwrite=overwrite) as tmp:
        write_hf_files(model, tmp)
        atomic.write_json(tmp / "config.json", {**config_to_hf(cfg), **ids})
        atomic.write_json(tmp / GENERATION_CONFIG_FILE,
                          {**ids, "pad_token_id": info.eos_id, "max_length": cfg.max_seq_len})
        atomic.write_bytes(tmp / TOKENIZER_FILE, Path(info.path).read_bytes())
        for name, table in tokenizer_files(info, cfg.max_seq_len).items():
            atomic.write_json(tmp / name, table)
    return ExportResult(out, source, Path(info.path), cfg)


__all__ = ["export", "export_source", "ExportSource", "ExportResult", "choose_tokenizer", "load_source_model"]
