"""Evaluation losses: answer-only task loss, and forgetting as held-out pretraining loss.

Both are token-weighted means of the next-token negative log-likelihood over the
positions that carry a label (``label != -100``): every scored token counts once,
whatever batch it lands in, so the value does not depend on the batch size.

Only the labelled positions go through the output layer (``hidden[mask] @ W.T``):
SFT answers are a small part of each row, and the vocabulary projection is the most
expensive matrix in a small model.

Held-out loss: each held-out document (with its EOS) is cut into consecutive windows
of ``seq_len + 1`` tokens, each window scored on its own (a document's first token
has no context and is never a target). The paper measured forgetting on 1,000
held-out C4 documents; ``max_docs`` takes the first N of the held-out store, the same
documents for every run.

Under ``torchrun`` both are sharded: the batches are dealt to the ranks round-robin (batch
``i`` to rank ``i mod world``), each rank sums the NLL and counts the scored tokens of its
own, and one ``all_reduce`` adds the two sums, so every rank returns
``Σ NLL / Σ tokens`` over all batches: the number one process computes, up to float
summation order. Every rank must call them together.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from trainer.distributed import all_reduce_sum, strided_share
from trainer.sft_data import IGNORE_INDEX, SFTSet, collate


def masked_nll(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum of NLL over labelled positions, number of labelled positions); differentiable."""
    h = model.hidden(inputs)
    mask = labels != IGNORE_INDEX
    n = int(mask.sum().item())
    if n == 0:
        return h.sum() * 0.0, 0
    logits = model.embed_out(h[mask]).float()
    return F.cross_entropy(logits, labels[mask], reduction="sum"), n


@torch.no_grad()
def _mean_loss(model: torch.nn.Module, batches, device: torch.device, autocast: Any = None) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for inputs, labels in batches:
            x = torch.from_numpy(inputs).to(device)
            y = torch.from_numpy(labels).to(device)
            if autocast is not None:
                with autocast:
                    s, n = masked_nll(model, x, y)
            else:
                s, n = masked_nll(model, x, y)
            total += float(s.double().item())
            count += n
    finally:
        model.train(was_training)
    sums = all_reduce_sum(torch.tensor([total, float(count)], dtype=torch.float64, device=device))
    total, count = float(sums[0]), int(sums[1])
    return total / count if count else float("nan")


def task_loss(model: torch.nn.Module, data: SFTSet, batch_size: int, device: torch.device, pad_id: int = 0,
              autocast: Any = None) -> float:
    """Mean answer-token loss over a task's examples (validation loss of the paper's tables)."""
    order = np.arange(len(data))
    starts = range(0, len(data), batch_size)
    batches = (collate(data, order[starts[i] : starts[i] + batch_size], pad_id) for i in strided_share(len(starts)))
    return _mean_loss(model, batches, device, autocast)


def heldout_windows(store: Any, seq_len: int, max_docs: int | None = None) -> list[np.ndarray]:
    """The held-out documents cut into windows of at most ``seq_len + 1`` tokens."""
    n = len(store) if max_docs is None else min(max_docs, len(store))
    windows = []
    for i in range(n):
        doc = np.asarray(store[i], dtype=np.int64)
        for s in range(0, len(doc) - 1, seq_len):
            windows.append(doc[s : s + seq_len + 1])
    return windows


def _window_batches(windows: list[np.ndarray], batch_size: int, pad_id: int):
    """This rank's batches of ``batch_size`` windows, padded to the longest (labels -100 past it)."""
    starts = range(0, len(windows), batch_size)
    for b in strided_share(len(starts)):
        rows = windows[starts[b] : starts[b] + batch_size]
        width = max(len(r) for r in rows) - 1
        inputs = np.full((len(rows), width), pad_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        for b, r in enumerate(rows):
            inputs[b, : len(r) - 1] = r[:-1]
            labels[b, : len(r) - 1] = r[1:]
        yield inputs, labels


def heldout_loss(model: torch.nn.Module, store: Any, seq_len: int, batch_size: int, device: torch.device,
                 max_docs: int | None = None, pad_id: int = 0, autocast: Any = None) -> float:
    """Mean next-token loss on held-out pretraining documents: the forgetting measure."""
    windows = heldout_windows(store, seq_len, max_docs)
    return _mean_loss(model, _window_batches(windows, batch_size, pad_id), device, autocast)
