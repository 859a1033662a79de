"""Interchange with Hugging Face ``transformers``' ``GPTNeoXForCausalLM`` (Pythia checkpoints).

Our parameter names are Hugging Face's without the ``gpt_neox.`` prefix, and the head is
``embed_out`` (the name Pythia checkpoints and ``save_pretrained`` use; a live
``transformers`` 5 model calls it ``lm_head``). Shapes and the fused ``[q|k|v]``-per-head
layout are identical, so conversion is renaming only.

A saved directory is read and written without importing ``transformers``: ``config.json``
plus ``model.safetensors`` (or a sharded ``model.safetensors.index.json``), or the older
``pytorch_model.bin`` (or its sharded index), which Pythia's intermediate checkpoints on the
hub still use. ``resolve_pretrained(name, revision)`` turns a hub id and revision
(``EleutherAI/pythia-70m``, ``step100000``) into such a folder through ``huggingface_hub``'s
cache (``HF_HOME``; ``HF_HUB_OFFLINE=1`` reads the cache only). The rotary
settings are written both the old way (``rotary_pct``, ``rotary_emb_base``) and the new
(``rope_parameters``), so transformers 4.x and 5.x read the same directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from mixkit import atomic
from mixkit.config import Invalid
from mixkit.error_lines import exception_detail
from mixkit.errors import MixkitError
from trainer.model import GPTNeoX, ModelConfig

_IGNORED_SUFFIXES = ("attention.bias", "attention.masked_bias", "rotary_emb.inv_freq")


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """Our ``ModelConfig`` from a Hugging Face GPT-NeoX ``config.json`` dict (v4 or v5 layout)."""
    if hf.get("model_type", "gpt_neox") != "gpt_neox":
        raise MixkitError(f"not a GPT-NeoX checkpoint (model_type {hf.get('model_type')!r})")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise MixkitError(f"unsupported hidden_act {hf.get('hidden_act')!r} (only exact 'gelu')")
    if hf.get("tie_word_embeddings", False):
        raise MixkitError("tied input/output embeddings are not GPT-NeoX's layout (tie_word_embeddings = true)")
    if not hf.get("attention_bias", True):
        raise MixkitError("attention_bias = false is not supported (GPT-NeoX uses biases)")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise MixkitError(f"unsupported rope_type {rope.get('rope_type')!r}")
    rotary_pct = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", hf.get("rotary_pct", 0.25)))
    rotary_base = rope.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10_000)))
    d = int(hf["hidden_size"])
    try:
        return ModelConfig(
            n_layer=int(hf["num_hidden_layers"]),
            d_model=d,
            n_head=int(hf["num_attention_heads"]),
            vocab_size=int(hf["vocab_size"]),
            d_ff=0 if int(hf.get("intermediate_size", 4 * d)) == 4 * d else int(hf["intermediate_size"]),
            rotary_pct=float(rotary_pct),
            rotary_base=float(rotary_base),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
            parallel_residual=bool(hf.get("use_parallel_residual", True)),
            max_seq_len=int(hf.get("max_position_embeddings", 2048)),
        )
    except Invalid as e:
        raise MixkitError(f"the GPT-NeoX config gives an unusable model ({e})") from None


def config_to_hf(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.ffn_dim,
        "hidden_act": "gelu",
        "rotary_pct": cfg.rotary_pct,
        "rotary_emb_base": cfg.rotary_base,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base, "partial_rotary_factor": cfg.rotary_pct},
        "layer_norm_eps": cfg.layer_norm_eps,
        "use_parallel_residual": cfg.parallel_residual,
        "max_position_embeddings": cfg.max_seq_len,
        "attention_bias": True,
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def _rename_from_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.endswith(_IGNORED_SUFFIXES):
            continue
        if key in ("lm_head.weight", "embed_out.weight"):
            out["embed_out.weight"] = value
        elif key.startswith("gpt_neox."):
            out[key[len("gpt_neox.") :]] = value
        else:
            raise MixkitError(f"unexpected parameter '{key}' in the GPT-NeoX checkpoint")
    return out


# The weight files a Hugging Face folder may hold, in the order they are looked for.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _load_weight_file(f: Path) -> dict[str, torch.Tensor]:
    if f.suffix == ".safetensors":
        return load_file(str(f))
    try:  # tensors only: a pickle from the hub must not run code
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MixkitError(f"{f}: unreadable PyTorch weights ({exception_detail(e)})") from None


def _load_dir_state(path: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        f = path / name
        if not f.exists():
            continue
        if not name.endswith(".index.json"):
            return _load_weight_file(f)
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(json.loads(f.read_text())["weight_map"].values())):
            state.update(_load_weight_file(path / shard))
        return state
    raise MixkitError(f"{path}: no weights to load (looked for {', '.join(WEIGHT_FILES)})")


def is_hub_id(name: str) -> bool:
    """``owner/name`` that is not a local path: a Hugging Face hub model id."""
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
            and not Path(name).exists() and not any(p in (".", "..") for p in parts))


def resolve_pretrained(name: str | os.PathLike, revision: str = "") -> Path:
    """The local folder of a pretrained model: ``name`` itself when it is a folder, else the
    hub id's snapshot at ``revision`` (``""`` = main) in the Hugging Face cache, downloaded
    when missing unless ``HF_HUB_OFFLINE`` is set. Only the config and weight files are fetched."""
    path = Path(name)
    if path.is_dir():
        if revision:
            raise MixkitError(f"{name} is a local folder: a revision ({revision!r}) applies to hub ids only")
        return path
    if not is_hub_id(str(name)):
        raise MixkitError(f"{name}: no such folder (and not a hub id like EleutherAI/pythia-70m)")
    from huggingface_hub import snapshot_download

    patterns = ["config.json", *WEIGHT_FILES, "model-*.safetensors", "pytorch_model-*.bin"]
    try:
        return Path(snapshot_download(str(name), revision=revision or None, allow_patterns=patterns))
    except Exception as e:  # offline without a cached copy, unknown repo or revision, no network
        first = exception_detail(e)
        raise MixkitError(f"cannot get {name}{'@' + revision if revision else ''} from the Hugging Face hub or its "
                          f"cache ({type(e).__name__}: {first})") from None


def from_hf(model_or_dir: Any) -> GPTNeoX:
    """A ``GPTNeoX`` with the weights of a ``GPTNeoXForCausalLM`` object or its saved directory."""
    if isinstance(model_or_dir, (str, os.PathLike)):
        path = Path(model_or_dir)
        if not (path / "config.json").exists():
            raise MixkitError(f"{path}: not a Hugging Face model directory (no config.json)")
        cfg = config_from_hf(json.loads((path / "config.json").read_text()))
        state = _load_dir_state(path)
    elif isinstance(model_or_dir, nn.Module) and hasattr(model_or_dir, "config"):
        cfg = config_from_hf(model_or_dir.config.to_dict())
        state = model_or_dir.state_dict()
    else:
        raise MixkitError(f"from_hf expects a GPTNeoXForCausalLM or a directory, got {type(model_or_dir).__name__}")
    model = GPTNeoX(cfg, init=False)
    state = _rename_from_hf(state)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        raise MixkitError(f"checkpoint does not fit the config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def write_hf_files(model: GPTNeoX, folder: str | os.PathLike) -> None:
    """``config.json`` + ``model.safetensors`` (float32, Hugging Face names) into ``folder``,
    each file atomically; other files of the folder are left as they are."""
    state = {}
    for key, value in model.state_dict().items():
        name = key if key == "embed_out.weight" else f"gpt_neox.{key}"
        state[name] = value.detach().to("cpu", torch.float32).contiguous()
    atomic.write_bytes(Path(folder) / "model.safetensors", save(state, metadata={"format": "pt"}))
    atomic.write_json(Path(folder) / "config.json", config_to_hf(model.cfg))


def to_hf(model: GPTNeoX, out_dir: str | os.PathLike, overwrite: bool = True) -> None:
    """Write ``config.json`` + ``model.safetensors`` that ``GPTNeoXForCausalLM.from_pretrained`` loads
    (the folder built whole under a temporary name, then renamed into place)."""
    with atomic.atomic_dir(out_dir, overwrite=overwrite) as tmp:
        write_hf_files(model, tmp)


__all__ = ["from_hf", "to_hf", "write_hf_files", "config_from_hf", "config_to_hf", "resolve_pretrained", "is_hub_id"]
