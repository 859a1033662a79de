"""Throughput, MFU and the ``metrics.jsonl`` log.

MFU = achieved FLOPs / peak FLOPs, with training FLOPs per token 6N + 12·L·H·Q·T (N the
non-embedding parameters, L layers, H heads, Q head dim, T sequence length; PaLM's formula)
and peak the per-device dense bf16 (or TF32 for fp32) tensor throughput. Peak FLOPs come from
the config's ``peak_flops`` or a table of known CUDA GPUs; on CPU there is none and MFU is
not shown.

``metrics.jsonl`` holds one JSON object per line: per training step ``{step, loss, lr,
grad_norm, tokens_seen, tokens_per_s, mfu?, source_loss: {name: loss}}``, and per evaluation
``{step, eval_loss}``. Lines are appended and flushed as they come (a killed run can leave a
partial last line); resuming rewrites the file atomically, keeping only the records of steps
before the checkpoint, so the log of a resumed run equals that of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mixkit import atomic

# Dense peak FLOP/s per device: (bf16, tf32). Substrings of torch.cuda.get_device_name().
PEAK_FLOPS = {
    "H200": (989e12, 494e12),
    "H100 PCIe": (756e12, 378e12),
    "H100": (989e12, 494e12),
    "A100": (312e12, 156e12),
    "A10G": (70e12, 35e12),
    "L40S": (362e12, 183e12),
    "L4": (121e12, 60e12),
    "RTX 4090": (165e12, 82.6e12),
    "RTX 3090": (71e12, 35.6e12),
}


def peak_flops(device: torch.device, precision: str, configured: float = 0.0) -> float | None:
    """Per-device peak FLOP/s for MFU: the configured value, a known CUDA GPU, else None."""
    if configured > 0:
        return configured
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, tf32) in PEAK_FLOPS.items():
        if key in name:
            return bf16 if precision == "bf16" else tf32
    return None


class MetricsLog:
    """Append-only JSON lines, truncated to ``step < start_step`` when a run resumes."""

    def __init__(self, path: str | os.PathLike, start_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_metrics(self.path) if r["step"] < start_step] if start_step else []
        atomic.write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        self._f = open(self.path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a ``metrics.jsonl`` (a partial last line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
