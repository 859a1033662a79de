"""Runs a ``RunConfig``'s stages in order (``run_stages``); the config is ``trainer.stages``,
the files it writes are named and laid out by ``trainer.run_dir``.

Each pretrain/midtrain stage is one ``trainer.train.train`` call with its own output
directory ``RUN/<stage>/``, continuing from the previous stage's final checkpoint. After
it, the final model is evaluated (held-out loss, every task's validation loss). Each
SFT task starts from that model's weights and writes ``RUN/sft-<task>/metrics.jsonl``,
its TensorBoard events and (``save_weights``, the default) the finetuned weights as a
Hugging Face folder's ``config.json`` + ``model.safetensors``, which ``trainer export --sft``
completes with the tokenizer.
``RUN/results.json`` is rewritten (atomically) after every stage, evaluation and task; a
stage evaluation or SFT task whose ``content_key`` is already recorded is not run again.

Under ``torchrun`` every rank runs the same stages in one process group
(``trainer.distributed.process_group``): training is data-parallel (DDP or FSDP, per
``parallelism``), SFT data-parallel (``trainer.sft``) and the evaluations sharded and summed
(``trainer.evaluate``), so every rank holds the same results; rank 0 alone prints and writes
``run.json``, ``results.json``, the metrics and the SFT weights.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from mixkit.errors import MixkitError
from mixkit.mix.stream import MixStream
from mixkit.store import TokenStore
from mixkit.tokenize import load_tokenizer
from trainer import checkpoint as ckpt
from trainer.data import check_stream
from trainer.dcp_files import DCP_DIR
from trainer.distributed import barrier, dist_env, process_group
from trainer.evaluate import heldout_loss, task_loss
from trainer.hf import write_hf_files
from trainer.model import GPTNeoX
from trainer.run_dir import (
    MetricsLog,
    content_key,
    hold_run_dir,
    metrics_path,
    refuse_file_out_dir,
    resume_results,
    sft_dir,
    sft_weights_path,
    stage_dir,
    write_results,
    write_run_config,
)
from trainer.sft import finetune
from trainer.sft_data import load_task
from trainer.stages import RunConfig, SFTStageConfig, TrainStageConfig
from trainer.train import resolve_device, train
from trainer.train_log import TrainLogger, is_main_process


def run_stages(cfg: RunConfig, *, branch_from: str = "", log=print) -> dict[str, Any]:
    """Run every stage of ``cfg`` (skipping finished ones); return the results dict. ``log`` gets
    the progress messages on rank 0 only."""
    return StageRunner(cfg, branch_from=branch_from, log=log if is_main_process() else _quiet).run()


def _quiet(*_: Any) -> None:
    pass


class StageRunner:
    def __init__(self, cfg: RunConfig, branch_from: str = "", log=print):
        self.cfg = cfg
        self.run_dir = Path(cfg.out_dir)
        self.branch_from = branch_from
        self.log = log
        self.device = resolve_device(cfg.device, dist_env()[2])
        self.is_main = is_main_process()
        precision = cfg.precision if cfg.precision != "auto" else ("bf16" if self.device.type == "cuda" else "fp32")
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if precision == "bf16"
                         else contextlib.nullcontext())
        self._tokenizer = None
        self._tasks: dict[str, Any] = {}
        self._heldout = None
        self.train_seq_len = 0  # the pretraining windows: held-out loss is measured with them

    # -- shared resources --------------------------------------------------------------------------

    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer, self._tokinfo = load_tokenizer(self.cfg.tokenizer or None)
        return self._tokenizer

    def task_data(self, name: str, seq_len: int):
        key = (name, seq_len)
        if key not in self._tasks:
            tok = self.tokenizer()
            self._tasks[key] = load_task(self.cfg.tasks[name], tok, self._tokinfo.eos_id or 0, seq_len)
        return self._tasks[key]

    def heldout(self) -> TokenStore | None:
        if self.cfg.heldout and self._heldout is None:
            self._heldout = TokenStore.open(self.cfg.heldout, self.cfg.data_dir or None)
        return self._heldout

    def new_model(self) -> GPTNeoX:
        return GPTNeoX(self.cfg.model.build())

    # -- the run -----------------------------------------------------------------------------------

    def check_inputs(self) -> None:
        """What can be checked before the first stage is: the run folder is a folder, every stage's mix
        opens and fits the model, the held-out store opens (a bad last stage would otherwise be found
        only after the stages before it trained)."""
        refuse_file_out_dir(self.run_dir)
        model_cfg = self.cfg.model.build()
        for stage in self.cfg.stages:
            if isinstance(stage, TrainStageConfig):
                try:
                    check_stream(MixStream.open(stage.mix, self.cfg.data_dir or None), model_cfg)
                except MixkitError as e:
                    raise MixkitError(f"stage {stage.name}: {e.message}") from None
        self.heldout()

    def run(self) -> dict[str, Any]:
        """Every stage, holding the run folder's write lock (rank 0, the one writing it)."""
        self.check_inputs()
        with hold_run_dir(self.run_dir, writer=self.is_main):
            with process_group(self.device):
                results = self._run()
                barrier()  # no rank leaves before rank 0 has written the results
            return results

    def save_results(self, results: dict[str, Any]) -> None:
        if self.is_main:
            write_results(self.run_dir, results)

    def _run(self) -> dict[str, Any]:
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_run_config(self.run_dir, self.cfg.source)
        barrier()
        results = resume_results(self.run_dir, self.cfg.name)
        heldout = self.heldout()
        results["heldout"] = {"store": heldout.name, "documents": min(self.cfg.heldout_docs, len(heldout))} if heldout else None
        previous = self.branch_from
        for stage in self.cfg.stages:
            if isinstance(stage, SFTStageConfig):
                weights = stage.init or previous
                for task in stage.tasks:
                    self.run_sft(stage, task, weights, results)
                continue
            # A stage's own checkpoint `init` wins; otherwise it continues the stage before it
            # (or, for the first stage, the `--from` checkpoint).
            start = stage.init if stage.init and ckpt.is_checkpoint(stage.init) else previous
            final, seq_len = self.run_train_stage(stage, start, results)
            previous, self.train_seq_len = str(final), seq_len
            self.evaluate_stage(stage, final, seq_len, results)
        return results

    def run_train_stage(self, stage: TrainStageConfig, start: str, results: dict[str, Any]) -> tuple[Path, int]:
        out = stage_dir(self.run_dir, stage.name)
        tcfg = self.cfg.train_config(stage, out, start if ckpt.is_checkpoint(start or "") else "")
        self.log(f"[{self.cfg.name}] stage {stage.name} ({stage.kind}) on mix {stage.mix}")
        seq_len = int(MixStream.open(stage.mix, self.cfg.data_dir or None).seq_len)

        def evaluate(model: torch.nn.Module) -> dict[str, Any]:
            losses = self.eval_losses(model, self.cfg.eval_seq_len or seq_len)
            return {f"eval_{k}": v for k, v in losses.items()}

        result = train(tcfg, resume=ckpt.latest_checkpoint(out) is not None, evaluate_fn=evaluate)
        final = ckpt.latest_checkpoint(out)
        if final is None:
            raise MixkitError(f"stage {stage.name}: no checkpoint was written in {out}")
        entry = {"name": stage.name, "kind": stage.kind, "dir": stage.name, "mix": stage.mix,
                 "start_step": result.start_step, "end_step": result.end_step, "final_loss": result.last_loss}
        if start:
            entry["branched_from"] = self.relative(start)
        old = next((s for s in results["stages"] if s["name"] == stage.name), None)
        if old is not None and result.last_loss is None:
            entry = old  # nothing was trained now: keep what the finished stage recorded
        results["stages"] = [s for s in results["stages"] if s["name"] != stage.name] + [entry]
        self.save_results(results)
        return final, int(result.seq_len)

    def relative(self, path: str) -> str:
        """A path as results.json records it: relative to the run directory, so results can move."""
        return os.path.relpath(path, self.run_dir) if path else path

    def _load_model(self, weights: str) -> GPTNeoX:
        model = self.new_model()
        if weights:
            ckpt.load_weights(model, weights)
        return model.to(self.device)

    def eval_losses(self, model: torch.nn.Module, seq_len: int) -> dict[str, Any]:
        """Held-out pretraining loss (when configured) and every task's validation loss."""
        out: dict[str, Any] = {}
        held = self.heldout()
        if held is not None:
            out["heldout_loss"] = heldout_loss(model, held, seq_len, self.cfg.eval_batch, self.device,
                                               self.cfg.heldout_docs, autocast=self.autocast)
        out["task_loss"] = {}
        for name in self.cfg.tasks:
            _, val = self.task_data(name, seq_len)
            out["task_loss"][name] = task_loss(model, val, self.cfg.eval_batch, self.device, autocast=self.autocast)
        return out

    def evaluate_stage(self, stage: TrainStageConfig, final: Path, seq_len: int, results: dict[str, Any]) -> None:
        key = content_key({"checkpoint": str(final), "identity": _weights_identity(str(final)),
                           "heldout": results["heldout"], "tasks": sorted(self.cfg.tasks)})
        if results["evals"].get(stage.name, {}).get("key") == key:
            return
        model = self._load_model(str(final))
        ev: dict[str, Any] = {"key": key, "step": ckpt.read_meta(final).get("step")}
        ev.update(self.eval_losses(model, self.cfg.eval_seq_len or seq_len))
        results["evals"][stage.name] = ev
        self.save_results(results)
        shown = ([f"held-out {ev['heldout_loss']:.4f}"] if "heldout_loss" in ev else []) + [
            f"{t} {v:.4f}" for t, v in ev["task_loss"].items()]
        if shown:
            self.log(f"[{self.cfg.name}] after {stage.name}: " + ", ".join(shown))

    def run_sft(self, stage: SFTStageConfig, task: str, weights: str, results: dict[str, Any]) -> None:
        sft = stage.sft
        # save_weights changes no number: it is not part of the key, but a task recorded without
        # its weights is run again when they are asked for
        numbers = {k: v for k, v in sft.to_dict().items() if k != "save_weights"}
        key = content_key({"weights": weights, "identity": _weights_identity(weights), "sft": numbers, "task": self.cfg.tasks[task].__dict__,
                     "seed": self.cfg.seed, "heldout": results["heldout"]})
        out = sft_dir(self.run_dir, task)
        if results["sft"].get(task, {}).get("key") == key and (not sft.save_weights or sft_weights_path(out).is_file()):
            self.log(f"[{self.cfg.name}] sft {task}: done before, skipped")
            return
        train_set, val_set = self.task_data(task, sft.seq_len)
        for split, data in (("train", train_set), ("validation", val_set)):
            if data.truncated_prompt or data.truncated_answer:
                self.log(f"[{self.cfg.name}] sft {task}: {data.truncated_prompt} {split} prompts and "
                         f"{data.truncated_answer} answers truncated to seq_len {sft.seq_len}")
        model = self._load_model(weights)
        metrics = MetricsLog(metrics_path(out)) if self.is_main else None
        self.log(f"[{self.cfg.name}] sft {task}: {len(train_set)} train / {len(val_set)} validation examples, "
                 f"{sft.steps_for(len(train_set))} steps")
        logger = TrainLogger(self.cfg.logging, out, total=sft.steps_for(len(train_set)), desc=f"sft {task}",
                             enabled=is_main_process())

        def log(record: dict[str, Any]) -> None:
            if metrics is not None:
                metrics.write(record)
            logger.log(record)

        try:
            summary = finetune(model, train_set, val_set, sft, seed=self.cfg.seed, device=self.device,
                               heldout=self.heldout(), heldout_docs=self.cfg.heldout_docs,
                               heldout_seq_len=self.cfg.eval_seq_len or self.train_seq_len or None, log=log, task=task,
                               autocast=self.autocast)
        finally:
            logger.close()
            if metrics is not None:
                metrics.close()
        if sft.save_weights and self.is_main:
            write_hf_files(model, out)
        summary.update(key=key, dir=out.name, weights=self.relative(weights), val_examples_sha256=val_set.fingerprint())
        results["sft"][task] = summary
        self.save_results(results)
        self.log(f"[{self.cfg.name}] sft {task}: validation loss {summary['val_loss']:.4f}"
                 + (f", held-out loss {summary['heldout_loss']:.4f}" if "heldout_loss" in summary else ""))


def _weights_identity(path: str) -> list[Any]:
    """Size and modification time of the weights file: a retrained checkpoint is a new one."""
    if not path:
        return []
    p = Path(path)
    files = [p / ckpt.STATE_FILE] if (p / ckpt.STATE_FILE).exists() else sorted(p.glob("*.safetensors"))
    if not files and (p / DCP_DIR).is_dir():  # a sharded checkpoint: its shard files
        files = sorted((p / DCP_DIR).glob("*.distcp"))
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
