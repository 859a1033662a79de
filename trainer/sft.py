"""Supervised finetuning on one task: answer-only loss, fresh AdamW, its own schedule.

One optimizer step takes ``micro_batch * grad_accum`` examples in a seeded per-epoch
order; its loss is the *token-weighted* mean over every answer token in the step
(sum of NLL / number of answer tokens, across micro-batches), so a long answer counts
by its length, as in the validation loss. Prompt and padding positions are -100 and
take no part.

The schedule is ``constant`` (after a linear warmup) or ``cosine`` (warmup, then
cosine to ``min_lr``). The last, partial batch of an epoch is kept, never dropped:
small task sets have few examples to spare.

Data-parallel under ``torchrun``: the examples of a step are the same whatever the world
size; each rank takes its contiguous share of them (``trainer.distributed.rank_share``),
the answer-token count of the whole step is summed over the ranks first, each rank
back-propagates ``Σ_its NLL / N_step``, and the gradients are summed over the ranks
(``sum_gradients``, DDP's all-reduce done by hand: a rank's share may be one micro-batch
shorter, or empty, in the last partial batch of an epoch). Every rank then takes the same
AdamW step on the same gradient, so the replicas stay equal and the losses are those of
one process up to float summation order. The evaluations are sharded
(``trainer.evaluate``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch

from mixkit.config import invalid
from mixkit.errors import MixkitError
from trainer.config import require_non_negative, require_positive
from trainer.distributed import all_reduce_sum, rank_share, sum_gradients
from trainer.evaluate import heldout_loss, masked_nll, task_loss
from trainer.optim import lr_at, param_groups
from trainer.sft_data import SFTSet, collate, epoch_order


@dataclass
class SFTConfig:
    """An SFT stage's hyperparameters (the keys of a ``[[stages]]`` table of ``kind = "sft"``,
    or a table of its own). ``warmup`` < 1 is a fraction of the steps, >= 1 a count;
    ``max_steps = 0``: as many as ``epochs`` take; ``eval_interval = 0``: evaluate at the end only;
    ``save_weights``: keep the finetuned weights in ``RUN/sft-<task>/`` (for ``trainer export --sft``)."""

    lr: float = 1e-4
    min_lr: float = 0.0
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup: float = 0.03
    epochs: int = 1
    micro_batch: int = 8
    grad_accum: int = 1
    seq_len: int = 512
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_interval: int = 0
    eval_batch: int = 16
    max_steps: int = 0
    save_weights: bool = True

    def __post_init__(self) -> None:
        require_positive(self, "lr", "epochs", "micro_batch", "grad_accum", "seq_len", "eval_batch", "grad_clip")
        if not 0 <= self.min_lr <= self.lr:
            raise invalid("min_lr", f"must be in [0, lr], got {self.min_lr}")
        require_non_negative(self, "warmup", "weight_decay", "eval_interval", "max_steps")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def steps_for(self, n_examples: int) -> int:
        per_epoch = math.ceil(n_examples / (self.micro_batch * self.grad_accum))
        total = per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps else total

    def lr_at(self, step: int, total: int) -> float:
        """Linear warmup, then constant or the pretraining cosine (``trainer.optim.lr_at``)."""
        warm = int(round(self.warmup * total)) if self.warmup < 1 else int(self.warmup)
        if self.schedule == "constant" and step >= warm:
            return self.lr
        return lr_at(step, total, warm, self.lr, self.min_lr)


def _step_indices(n: int, cfg: SFTConfig, seed: int) -> list[np.ndarray]:
    """The examples of every optimizer step, epoch after epoch (seeded order per epoch)."""
    per_step = cfg.micro_batch * cfg.grad_accum
    steps = []
    for epoch in range(cfg.epochs):
        order = epoch_order(n, seed, epoch)
        steps.extend(order[i : i + per_step] for i in range(0, n, per_step))
    return steps[: cfg.steps_for(n)]


def finetune(
    model: torch.nn.Module,
    train_set: SFTSet,
    val_set: SFTSet,
    cfg: SFTConfig,
    *,
    seed: int,
    device: torch.device,
    heldout: Any = None,
    heldout_docs: int | None = None,
    heldout_seq_len: int | None = None,
    log=None,
    task: str = "",
    pad_id: int = 0,
    autocast: Any = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Finetune ``model`` in place; return the final evaluations and what was truncated."""
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
    steps = _step_indices(len(train_set), cfg, seed)
    total = len(steps)
    model.train()

    def evaluate() -> dict[str, float]:
        out = {"val_loss": task_loss(model, val_set, cfg.eval_batch, device, pad_id, autocast)}
        if heldout is not None:
            out["heldout_loss"] = heldout_loss(model, heldout, heldout_seq_len or cfg.seq_len, cfg.eval_batch, device,
                                               heldout_docs, pad_id, autocast)
        return out

    for step, idx in enumerate(steps):
        lr = cfg.lr_at(step, total)
        for g in optimizer.param_groups:
            g["lr"] = lr
        mine = idx[rank_share(len(idx))]
        micro = [collate(train_set, mine[i : i + cfg.micro_batch], pad_id) for i in range(0, len(mine), cfg.micro_batch)]
        n_local = sum(int((labels != -100).sum()) for _, labels in micro)
        n_tokens = int(all_reduce_sum(torch.tensor([n_local], dtype=torch.int64, device=device)).item())
        total_nll = 0.0
        for inputs, labels in micro:
            x, y = torch.from_numpy(inputs).to(device), torch.from_numpy(labels).to(device)
            if autocast is not None:
                with autocast:
                    s, _ = masked_nll(model, x, y)
            else:
                s, _ = masked_nll(model, x, y)
            (s / max(1, n_tokens)).backward()
            total_nll += float(s.detach().double().item())
        sum_gradients(model)
        total_nll = float(all_reduce_sum(torch.tensor([total_nll], dtype=torch.float64, device=device)).item())
        loss = total_nll / max(1, n_tokens)
        if not math.isfinite(loss):
            raise MixkitError(f"sft {task}: non-finite loss at step {step} (lower the sft lr)")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip).item())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"stage": f"sft:{task}", "step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "answer_tokens": n_tokens}
        if cfg.eval_interval and (step + 1) % cfg.eval_interval == 0 and step + 1 < total:
            record.update({f"eval_{k}": v for k, v in evaluate().items()})
        if log is not None:
            log(record)
        if progress is not None:
            progress(step + 1, total, loss)
    final = evaluate()
    if log is not None:
        log({"stage": f"sft:{task}", "step": total, **{f"eval_{k}": v for k, v in final.items()}})
    return {
        **final,
        "steps": total,
        "train_examples": len(train_set),
        "val_examples": len(val_set),
        "truncated": {
            "train_prompt": train_set.truncated_prompt, "train_answer": train_set.truncated_answer,
            "val_prompt": val_set.truncated_prompt, "val_answer": val_set.truncated_answer,
        },
    }
