"""AdamW with GPT-NeoX's weight-decay groups and a cosine schedule with linear warmup.

Weight decay applies to weight matrices and embeddings (every parameter with 2+ dims) and
not to biases or LayerNorm scales/shifts (1-D), as GPT-NeoX does.

Learning rate at step s (0-based) of S total, W warmup steps, from ``lr`` to ``min_lr``::

    s < W:   lr · (s + 1) / W
    s >= W:  min_lr + (lr − min_lr) · ½ · (1 + cos(π · (s − W) / max(1, S − 1 − W)))

so the first post-warmup step uses ``lr`` and the last step uses exactly ``min_lr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mixkit.config import invalid


@dataclass
class OptimConfig:
    """The ``[optim]`` table: AdamW and the cosine-with-warmup schedule (GPT-NeoX / Pythia
    defaults, the paper's LR range). ``warmup`` < 1 is a fraction of the steps, >= 1 a count."""

    lr: float = 3e-4
    min_lr: float = 1e-6
    warmup: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise invalid("lr", f"must be positive, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise invalid("min_lr", f"must be in [0, lr], got {self.min_lr}")
        if not self.warmup >= 0:
            raise invalid("warmup", f"must be >= 0 (a fraction < 1 or a step count), got {self.warmup}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise invalid(name, f"must be in [0, 1), got {getattr(self, name)}")
        for name in ("eps", "grad_clip"):
            if not getattr(self, name) > 0:
                raise invalid(name, f"must be positive, got {getattr(self, name)}")
        if not self.weight_decay >= 0:
            raise invalid("weight_decay", f"must be >= 0, got {self.weight_decay}")

    def warmup_steps(self, total_steps: int) -> int:
        return int(round(self.warmup * total_steps)) if self.warmup < 1 else int(self.warmup)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: 2-D+ parameters decayed, 1-D ones (biases, LayerNorm) not."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        fused=on_cuda or None,
        foreach=None if on_cuda else True,
    )


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """The schedule in the module docstring."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` whose factor is ``lr_at(step) / lr``; step it once after each optimizer step."""
    warmup = cfg.warmup_steps(total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, total_steps, warmup, cfg.lr, cfg.min_lr) / cfg.lr
    )
