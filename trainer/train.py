"""The training loop, as one function you can read (and step through) top to bottom.

One optimizer step at step s:

1. read this rank's rows of the mix stream's batch s (``batch(s, rank, world_size)``), split
   into ``grad_accum`` micro-batches;
2. forward + backward each micro-batch with loss / grad_accum (DDP averages gradients over
   ranks on the last one), so the gradient is that of the mean loss over the global batch;
3. all-reduce the loss and per-source loss sums; stop on a non-finite loss;
4. clip the gradient norm, AdamW step, LR schedule step;
5. log (``metrics.jsonl``; progress, TensorBoard and W&B through ``trainer.train_log``);
   every ``checkpoint_interval`` steps (and at the end) save a checkpoint.

Distributed: launched by ``torchrun`` (``WORLD_SIZE > 1``) it joins a process group (NCCL on
CUDA, gloo on CPU; ``trainer.distributed``) and, with ``parallelism = "ddp"`` (the default),
wraps the model in DistributedDataParallel; with ``parallelism = "fsdp"`` it shards model,
gradients and optimizer state with FSDP2's ``fully_shard`` and checkpoints through
``torch.distributed.checkpoint`` (``trainer.distributed_checkpoint``: every rank writes its
shards; loadable at any world size). The rows of a step are the mix's global batch: each rank
takes ``global_batch / world_size`` of them in micro-batches of at most ``micro_batch`` rows
(``trainer.data.plan_accumulation``), so the world size changes no number. Rank 0 alone
prints and writes logs and metrics (and, under DDP, checkpoints). A 2-process run computes
the same losses as a 1-process run with the same global batch (up to float summation order).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from mixkit.errors import MixkitError
from trainer import checkpoint as ckpt
from trainer import distributed_checkpoint as dist_ckpt
from trainer.config import TrainConfig
from trainer.data import check_stream, micro_batches, open_stream, plan_accumulation
from trainer.distributed import dist_env, full_tensor, process_group, shard_model
from trainer.hf import from_hf, resolve_pretrained
from trainer.metrics import peak_flops
from trainer.model import GPTNeoX, ModelConfig
from trainer.optim import make_optimizer, make_scheduler
from trainer.plot import plot_loss
from trainer.run_dir import (
    MetricsLog,
    hold_run_dir,
    loss_plot_path,
    metrics_path,
    read_metrics,
    refuse_file_out_dir,
)
from trainer.train_log import TrainLogger


@dataclass
class TrainResult:
    out_dir: Path
    start_step: int
    end_step: int
    last_loss: float | None
    seq_len: int = 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` is the local CUDA device when there is one, else the CPU."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise MixkitError("device = cuda but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _build_model(cfg: TrainConfig) -> GPTNeoX:
    """A fresh model, or the weights of ``init_from``: one of our checkpoints, a Hugging Face
    folder, or a hub id at ``init_revision``."""
    mcfg = cfg.model_config()
    if not cfg.init_from:
        return GPTNeoX(mcfg)
    if ckpt.is_checkpoint(cfg.init_from):
        meta = ckpt.verify_checkpoint(cfg.init_from, weights_only=True)
        model = GPTNeoX(ModelConfig(**meta["model_config"]), init=False)
        ckpt.load_weights(model, cfg.init_from, verify=False)
    else:
        model = from_hf(resolve_pretrained(cfg.init_from, cfg.init_revision))
    if model.cfg != mcfg:
        diff = [k for k, v in mcfg.to_dict().items() if model.cfg.to_dict()[k] != v]
        raise MixkitError(f"init_from {cfg.init_from}: its model.{diff[0]} differs from the config's")
    return model


def evaluate(model: torch.nn.Module, stream: Any, batches: int, rank: int, world: int, device: torch.device,
             autocast: contextlib.AbstractContextManager) -> float:
    """Mean loss over the first ``batches`` steps of ``stream`` (all ranks together)."""
    model.eval()
    total = torch.zeros(1, dtype=torch.float64, device=device)
    with torch.no_grad():
        for i in range(batches):
            mb = micro_batches(stream, i % stream.num_steps, rank, world, 1, device)[0]
            with autocast:
                loss, _ = model(mb.inputs, mb.targets)
            total += loss.double()
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return float(total.item()) / (batches * world)


def train(cfg: TrainConfig, *, resume: bool = False, stream: Any = None, eval_stream: Any = None,
          evaluate_fn: Any = None) -> TrainResult:
    """Train per ``cfg``; ``stream`` (a MixStream-like object) replaces ``cfg.mix`` when given.

    ``evaluate_fn(model) -> dict``, every ``eval_interval`` steps, is called on every rank (the
    evaluations are sharded over the ranks; an FSDP run passes an unsharded copy of the model)
    and rank 0 logs it to ``metrics.jsonl`` as ``{"step", **dict}``: how stages report held-out
    and task losses.

    Rank 0, which writes ``out_dir``, holds its write lock throughout (``trainer.run_dir.hold_run_dir``):
    a second run into the same folder is refused before anything is read or written, and the
    temporary folders of checkpoint saves that a kill interrupted are removed.
    """
    world, rank, local_rank = dist_env()
    refuse_file_out_dir(cfg.out_dir)
    device = resolve_device(cfg.device, local_rank)
    with hold_run_dir(cfg.out_dir, writer=rank == 0):
        with process_group(device):
            return _train(cfg, resume, stream, eval_stream, world, rank, device, evaluate_fn)


def _train(cfg: TrainConfig, resume: bool, stream: Any, eval_stream: Any, world: int, rank: int,
           device: torch.device, evaluate_fn: Any = None) -> TrainResult:
    # -- data -----------------------------------------------------------------------------------------
    mcfg = cfg.model_config()
    stream = open_stream(stream if stream is not None else cfg.mix, cfg.resolved_data_dir())
    check_stream(stream, mcfg, cfg.tokenizer_sha256)
    if eval_stream is None and cfg.eval_mix:
        eval_stream = open_stream(cfg.eval_mix, cfg.resolved_data_dir())
    if eval_stream is not None:
        check_stream(eval_stream, mcfg, cfg.tokenizer_sha256)
    total_steps = cfg.steps or int(stream.num_steps)
    if total_steps > stream.num_steps:
        raise MixkitError(f"steps = {total_steps} but the mix has only {stream.num_steps} steps")
    stop = cfg.stop_step or total_steps
    if stop > total_steps:
        raise MixkitError(f"stop_step = {stop} is past the schedule's {total_steps} steps")
    grad_accum = plan_accumulation(int(stream.global_batch), world, cfg.micro_batch, cfg.grad_accum)
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    # -- model, optimizer, schedule -------------------------------------------------------------------
    _seed_everything(cfg.seed)
    model = _build_model(cfg).to(device)
    sharded = cfg.parallelism == "fsdp" and world > 1
    if sharded:
        shard_model(model)  # before the optimizer: it must hold the sharded parameters
    optimizer = make_optimizer(model, cfg.optim)
    scheduler = make_scheduler(optimizer, cfg.optim, total_steps)
    out_dir = Path(cfg.out_dir)
    meta = {"config": cfg.to_dict(), "model_config": mcfg.to_dict(), "mix_fingerprint": stream.fingerprint,
            "source_names": list(stream.source_names), "world_size": world, "total_steps": total_steps,
            "tokenizer_sha256": getattr(stream, "tokenizer_sha256", None),
            "tokenizer": (getattr(stream, "manifest", None) or {}).get("tokenizer")}

    start_step = 0
    latest = ckpt.latest_checkpoint(out_dir)
    if latest is not None and not resume:
        raise MixkitError(f"{out_dir} already holds checkpoints of a run; pass --resume to continue it "
                          f"or choose another out_dir")
    branch = Path(cfg.branch_from) if cfg.branch_from and latest is None else None
    if branch is not None:
        # Continue another run's checkpoint on this mix: same model, optimizer and schedule, and
        # this mix must have served the same samples before the branch step.
        old = ckpt.verify_checkpoint(branch)  # meta.json and every file against their sha256
        ckpt.check_branchable(old, meta, branch)
        step = int(old["step"])
        if step > stop:
            raise MixkitError(f"branch_from {branch} is at step {step}, past this run's stop step {stop}")
        digest = old.get("last_batch_sha256")
        if digest and step > 0 and _batch_digest(stream, step - 1) != digest:
            raise MixkitError(f"cannot continue {branch} on this mix: its batch at step {step - 1} differs from the one "
                              f"the checkpoint was trained on (build both mixes from the same stores, seed and shape)")
    if latest is not None:
        # the newest checkpoint whose files match their sha256 (a damaged newer one is named and passed over)
        latest = ckpt.latest_intact_checkpoint(out_dir, say=None if rank == 0 else lambda line: None)
    if latest is not None or branch is not None:
        source = latest if latest is not None else branch
        old = ckpt.read_meta(source)
        if latest is not None:
            ckpt.check_compatible(old, meta, latest)
        start_step = int(old["step"])
        if ckpt.is_weights_only(old) and start_step < stop:
            # written at the end of the schedule: there is nothing left to train
            raise MixkitError(f"{source} holds the weights only: it cannot be continued to step {stop}")
        if sharded or dist_ckpt.is_dcp_checkpoint(source):
            dist_ckpt.load_training_state(source, model, None if ckpt.is_weights_only(old) else optimizer, scheduler)
        else:
            state = ckpt.load_state(source, device, verify=False)  # verified above
            ckpt.load_model_state(model, state["model"], source / ckpt.MODEL_FILE)
            if not ckpt.is_weights_only(old):
                ckpt.load_training_state(optimizer, scheduler, state, source / ckpt.TRAIN_STATE_FILE)

    train_model: torch.nn.Module = model
    if world > 1 and not sharded:
        ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if cfg.compile:
        train_model = torch.compile(train_model)
    model.train()

    # -- logging ----------------------------------------------------------------------------------------
    is_main = rank == 0
    log = MetricsLog(metrics_path(out_dir), start_step) if is_main else None
    names = list(stream.source_names)
    tokens_per_step = int(stream.global_batch) * int(stream.seq_len)
    flops_per_token = model.flops_per_token(int(stream.seq_len))
    peak = peak_flops(device, precision, cfg.peak_flops)
    logger = TrainLogger(cfg.logging, out_dir, total=stop, initial=start_step, desc=out_dir.name or "train",
                         enabled=is_main and start_step < stop, config=meta["config"])

    def emit(record: dict[str, Any]) -> None:
        if log is not None:
            log.write(record)
        logger.log(record)

    last_loss = None
    last_saved = latest

    try:
        for step in range(start_step, stop):
            t0 = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            stats = torch.zeros(1 + 2 * len(names), dtype=torch.float64, device=device)
            mbs = micro_batches(stream, step, rank, world, grad_accum, device)
            for i, mb in enumerate(mbs):
                sync = world == 1 or i == grad_accum - 1
                if sharded:  # FSDP: reduce-scatter the gradients on the last micro-batch only
                    model.set_requires_gradient_sync(sync)
                with (contextlib.nullcontext() if sync or sharded else train_model.no_sync()), autocast:
                    loss, per_token = train_model(mb.inputs, mb.targets)
                (loss / grad_accum).backward()
                stats[0] += loss.detach().double() / grad_accum
                row_loss = per_token.detach().double().mean(dim=1)
                stats[1 : 1 + len(names)].index_add_(0, mb.sources, row_loss)
                stats[1 + len(names) :].index_add_(0, mb.sources, torch.ones_like(row_loss))
            if world > 1:
                dist.all_reduce(stats)
            step_loss = float(stats[0].item()) / world
            if not math.isfinite(step_loss):
                where = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written"
                raise MixkitError(f"non-finite loss ({step_loss}) at step {step}: training stopped; {where} "
                                  f"(lower optim.lr or check the data)")
            grad_norm = float(full_tensor(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)).item())
            if not math.isfinite(grad_norm):
                where = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written"
                raise MixkitError(f"non-finite gradient norm at step {step} (loss {step_loss:.4f}): training stopped; "
                                  f"{where} (lower optim.lr or check the data)")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            last_loss = step_loss

            tok_s = tokens_per_step / dt
            record = {"step": step, "loss": step_loss, "lr": lr, "grad_norm": grad_norm,
                      "tokens_seen": int(stream.tokens_seen(step + 1)), "tokens_per_s": tok_s}
            counts = stats[1 + len(names) :]
            record["source_loss"] = {n: float(stats[1 + j] / counts[j]) for j, n in enumerate(names) if counts[j] > 0}
            if peak:
                record["mfu"] = flops_per_token * tok_s / (peak * world)
            emit(record)

            done = step + 1
            if eval_stream is not None and cfg.eval_interval and done % cfg.eval_interval == 0:
                eval_loss = evaluate(train_model, eval_stream, cfg.eval_batches, rank, world, device, autocast)
                if is_main:
                    emit({"step": step, "eval_loss": eval_loss})
            if evaluate_fn is not None and cfg.eval_interval and done % cfg.eval_interval == 0 and done < stop:
                evaluated = evaluate_fn(_unsharded_copy(model) if sharded else model)
                if is_main:
                    emit({"step": step, **evaluated})
                if world > 1:
                    dist.barrier()
            if done % cfg.checkpoint_interval == 0 or done == stop or done in cfg.keep_steps:
                # At the stop step only the final checkpoint (and keep_steps) stay; at the end of
                # the schedule nothing can continue it, so it holds the weights only.
                meta["last_batch_sha256"] = _batch_digest(stream, step)
                saving = dict(model=model, optimizer=optimizer, scheduler=scheduler, meta=meta,
                              keep=1 if done == stop else cfg.keep_last, keep_steps=cfg.keep_steps,
                              full=done < total_steps or done in cfg.keep_steps)
                if cfg.parallelism == "fsdp":  # every rank writes its shards
                    last_saved = dist_ckpt.save_sharded_checkpoint(out_dir, done, **saving)
                elif is_main:
                    last_saved = ckpt.save_checkpoint(out_dir, done, **saving)
                if world > 1:
                    dist.barrier()
    finally:
        logger.close()
        if log is not None:
            log.close()

    if is_main:
        plot_loss(read_metrics(metrics_path(out_dir)), loss_plot_path(out_dir), title=f"{mcfg.n_layer}-layer d{mcfg.d_model} on {stream.fingerprint[:12]}")
    return TrainResult(out_dir, start_step, stop, last_loss, int(stream.seq_len))


def _unsharded_copy(model: GPTNeoX) -> GPTNeoX:
    """An FSDP model's whole weights in a plain model on every rank (a collective): what the
    stage evaluations run on."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
    copy = GPTNeoX(model.cfg, init=False).to(next(iter(state.values())).device)
    copy.load_state_dict(state)
    return copy


def _batch_digest(stream: Any, step: int) -> str:
    """sha256 of the global batch at ``step``: the evidence that two mixes agree before a branch point."""
    return hashlib.sha256(np.ascontiguousarray(stream.batch(step)).tobytes()).hexdigest()
