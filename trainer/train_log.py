"""Where training progress goes besides ``metrics.jsonl``: the terminal, a job log, TensorBoard, W&B.

- On a terminal (stderr a TTY) a tqdm bar; anywhere else (``trainer train ... 2>&1 | cat``,
  a Slurm job log) one plain line every ``log_interval`` steps and at the last step::

      pretrain step 120/600 | loss 3.4521 | lr 2.95e-04 | 12,345 tok/s | MFU 31.2% | ETA 4m10s

  (MFU only where the peak FLOP/s are known; ETA = remaining steps × the mean step time so far).
- TensorBoard event files (``torch.utils.tensorboard``) in the stage folder's ``tensorboard/``
  (named by ``trainer.run_dir``), on by default: every numeric field of every record,
  nested ones flattened with ``/`` (``source_loss/web``), at the record's ``step``. A resumed
  run purges the events from its first step on, so the curve has no doubled stretch.
- Weights & Biases only with ``wandb = true`` and the ``wandb`` package installed; ``wandb``
  itself reads ``WANDB_MODE`` (``offline`` on a machine without network), and a failure to
  start it is reported and training goes on: it is never required.

Only rank 0 prints and logs (``is_main_process``); on other ranks the logger does nothing.

The ``[logging]`` table of a run config::

    [logging]
    log_interval = 10       # steps between plain progress lines when stderr is not a terminal
    tensorboard = true      # event files in the stage folder's tensorboard/
    wandb = false           # also log to Weights & Biases (needs `pip install wandb`)
    wandb_project = "mixkit"
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from mixkit.config import invalid
from mixkit.error_lines import exception_detail
from trainer.run_dir import tensorboard_dir


@dataclass
class LoggingConfig:
    """The ``[logging]`` table (module docstring)."""

    log_interval: int = 10
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "mixkit"

    def __post_init__(self) -> None:
        if self.log_interval <= 0:
            raise invalid("log_interval", f"must be positive, got {self.log_interval}")


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` launch (or the only process): the one that prints and logs."""
    return int(os.environ.get("RANK", "0")) == 0


def format_duration(seconds: float) -> str:
    """``4m10s``, ``1h02m``, ``12s``: short enough for a progress line."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def flatten_scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a record, nested tables flattened to ``outer/inner``; ``step`` and
    strings (``stage``) left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key == "step" and not prefix:
            continue
        if isinstance(value, dict):
            out.update(flatten_scalars(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def progress_line(desc: str, done: int, total: int, record: dict[str, Any], eta_s: float | None) -> str:
    """One plain progress line (module docstring)."""
    parts = [f"{desc} step {done}/{total}", f"loss {record['loss']:.4f}", f"lr {record['lr']:.2e}"]
    if "tokens_per_s" in record:
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if "mfu" in record:
        parts.append(f"MFU {100 * record['mfu']:.1f}%")
    if eta_s is not None:
        parts.append(f"ETA {format_duration(eta_s)}")
    return " | ".join(parts)


class TrainLogger:
    """Progress (bar or lines), TensorBoard and W&B for one stage folder, on rank 0 only.

    ``log(record)`` takes the records ``metrics.jsonl`` gets: one with a ``loss`` is a
    training step and moves the progress; every one goes to TensorBoard and W&B.
    """

    def __init__(self, cfg: LoggingConfig, folder: str | os.PathLike, *, total: int, initial: int = 0,
                 desc: str = "train", enabled: bool = True, config: dict[str, Any] | None = None,
                 stream: TextIO | None = None):
        self.cfg, self.total, self.desc, self.enabled = cfg, total, desc, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.initial, self._t0, self._steps = initial, time.perf_counter(), 0
        self._bar = None
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        if _isatty(self.stream):
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=self.stream)
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            _after_earlier_event_files(tensorboard_dir(folder))
            self._tb = SummaryWriter(str(tensorboard_dir(folder)), purge_step=initial, flush_secs=30)
        if cfg.wandb:
            self._wandb = _start_wandb(cfg, Path(folder), desc, config, self.say)

    def say(self, message: str) -> None:
        """A line on stderr that does not break the bar."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        step = int(record.get("step", 0))
        scalars = flatten_scalars(record)
        if self._tb is not None:
            for tag, value in scalars.items():
                self._tb.add_scalar(tag, value, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)
        if "loss" in record and "lr" in record:
            self._progress(step + 1, record)

    def _progress(self, done: int, record: dict[str, Any]) -> None:
        self._steps += 1
        if self._bar is not None:
            postfix = {"loss": f"{record['loss']:.4f}", "lr": f"{record['lr']:.2e}"}
            if "tokens_per_s" in record:
                postfix["tok/s"] = f"{record['tokens_per_s']:,.0f}"
            if "mfu" in record:
                postfix["mfu"] = f"{100 * record['mfu']:.1f}%"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(done - self._bar.n)
            return
        if done % self.cfg.log_interval == 0 or done >= self.total:
            per_step = (time.perf_counter() - self._t0) / self._steps
            self.say(progress_line(self.desc, done, self.total, record, per_step * (self.total - done)))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        self._bar = self._tb = self._wandb = None


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _start_wandb(cfg: LoggingConfig, folder: Path, name: str, config: dict[str, Any] | None, say) -> Any:
    """A W&B run, or None (with one line saying why) when the package is missing or will not start."""
    try:
        import wandb
    except ImportError:
        say("wandb = true but the wandb package is not installed (pip install wandb): not logging to W&B")
        return None
    try:
        return wandb.init(project=cfg.wandb_project, name=name, dir=str(folder), config=config or {})
    except Exception as e:  # network, login, a bad WANDB_MODE: never worth stopping a training run
        first = exception_detail(e)
        say(f"wandb did not start ({first}); set WANDB_MODE=offline on a machine without network: not logging to W&B")
        return None


def _after_earlier_event_files(folder: Path) -> None:
    """Wait, if needed, until the clock's second is past every event file already in ``folder``.

    TensorBoard reads a run's event files in the order of their names,
    ``events.out.tfevents.SECOND.HOST.PID.COUNTER``: a resumed run's file opened within the
    same second as the previous one's can sort before it (counter 10 < 9 as text), and its
    purge of the redone steps is then undone by the older file, losing the new steps. A new
    file from a later second always sorts last.
    """
    seconds = [int(p.name.split(".")[3]) for p in Path(folder).glob("events.out.tfevents.*")
               if len(p.name.split(".")) > 3 and p.name.split(".")[3].isdigit()]
    while seconds and time.time() < max(seconds) + 1:
        time.sleep(0.05)
