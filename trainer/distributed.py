"""The process group of a ``torchrun`` launch, and the few collectives the stages use.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; a plain ``python``/``trainer``
process has none and is world size 1. ``process_group`` joins the group (NCCL on CUDA, gloo
on CPU) for the length of a ``with`` block and leaves it only if it joined it, so a staged
run holds one group across every stage while ``trainer.train.train`` called alone still
manages its own.

Data parallelism without a wrapper (SFT, evaluations): every rank computes sums over its
share of the examples and ``all_reduce_sum`` adds them, so a mean is
``Σ_ranks sum / Σ_ranks count``: the same number as one process up to float summation order.
``sum_gradients`` is DDP's gradient all-reduce done by hand once per optimizer step; it
needs no equal number of micro-batches per rank, which the last, partial batch of an SFT
epoch does not give.

FSDP (``parallelism = "fsdp"``): ``shard_model`` applies PyTorch's ``fully_shard`` (FSDP2)
to every transformer block and then to the whole model, whose own parameters (embedding,
final LayerNorm, output head) form the last group. Each rank then holds ``1 / world`` of
every parameter, gradient and AdamW moment; parameters are all-gathered block by block
for the forward and backward passes and gradients reduce-scattered. Works on CPU with gloo.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

PARALLELISMS = ("ddp", "fsdp")


def dist_env() -> tuple[int, int, int]:
    """``(world_size, rank, local_rank)`` from ``torchrun``'s environment (1, 0, 0 without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    """Whether this process is one rank of a joined group of more than one."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the ``torchrun`` process group for the block (when ``WORLD_SIZE > 1`` and not
    joined yet); leave it at the end only if this call joined it."""
    world, _, _ = dist_env()
    joined = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        joined = True
    try:
        yield
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks, in place (unchanged in a single process)."""
    if is_distributed():
        dist.all_reduce(values)
    return values


def rank_share(n: int) -> np.ndarray:
    """This rank's positions of ``n`` items: the ``np.array_split`` block of its rank, contiguous
    and at most one item longer than another rank's (possibly empty when ``n < world``)."""
    if not is_distributed():
        return np.arange(n)
    return np.array_split(np.arange(n), dist.get_world_size())[dist.get_rank()]


def strided_share(n: int) -> range:
    """Items ``rank, rank + world, ...`` of ``n``: evaluation batches dealt round-robin."""
    if not is_distributed():
        return range(n)
    return range(dist.get_rank(), n, dist.get_world_size())


def sum_gradients(model: torch.nn.Module) -> None:
    """Add every parameter's gradient over the ranks in one flat all-reduce (a rank whose share
    was empty contributes zeros)."""
    if not is_distributed():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        summed = flat[offset : offset + n].view_as(p)
        if p.grad is None:
            p.grad = summed.clone()
        else:
            p.grad.copy_(summed)
        offset += n


def shard_model(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2 over the joined group: each block a unit, the rest of the model the root unit.
    ``model`` itself is changed (``fully_shard`` works in place) and returned."""
    from torch.distributed.fsdp import fully_shard

    for layer in model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model`` is an FSDP2 module (its parameters are DTensors)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_tensor(value: Any) -> torch.Tensor:
    """A DTensor (an FSDP gradient norm, a shard) as the whole tensor; a tensor unchanged."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value
