"""Throughput and MFU (model FLOPs utilisation) of a training step.

MFU = achieved FLOPs / peak FLOPs, with training FLOPs per token 6N + 12·L·H·Q·T (N the
non-embedding parameters, L layers, H heads, Q head dim, T sequence length; PaLM's formula)
and peak the per-device dense bf16 (or TF32 for fp32) tensor throughput. Peak FLOPs come from
the config's ``peak_flops`` or a table of known CUDA GPUs; on CPU there is none and MFU is
not shown.

The training loop logs one record per step to ``metrics.jsonl`` (written and read by
``trainer.run_dir``): ``{step, loss, lr, grad_norm, tokens_seen, tokens_per_s, mfu?,
source_loss: {name: loss}}``, and per evaluation ``{step, eval_loss}``.
"""

from __future__ import annotations

import torch

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
