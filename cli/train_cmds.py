"""``trainer train``: train a GPT-NeoX (Pythia) model on a mix stream, or through stages."""

from __future__ import annotations

import click

from cli.verify_option import no_verify_option
from mixkit.toml_file import read_toml


def _is_staged(config_path: str | None) -> bool:
    return bool(config_path) and "stages" in read_toml(config_path)


@click.command("train", short_help="Train a GPT-NeoX model on a mix, or through pretrain/midtrain/SFT stages.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML run config: one mix (keys in trainer/config.py) or [[stages]] (trainer/stages.py). "
                   "[default: none; every key then comes from --set]")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optim.lr=1e-3 --set model.n_layer=2 "
                   "--set stages.sft.lr=1e-4 --set logging.log_interval=50 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue a single-mix run from the newest checkpoint in out_dir "
                                              "(a staged run always continues where it stopped).")
@click.option("--from", "branch_from", type=click.Path(file_okay=False), default=None, metavar="CHECKPOINT",
              help="Continue a checkpoint of another run (model, optimizer, schedule, step) on this config's mix.")
@no_verify_option
def train(config_path: str | None, overrides: tuple[str, ...], resume: bool, branch_from: str | None) -> None:
    """Train a GPT-NeoX (Pythia) model on a mix stream, or through stages.

    One mix: checkpoints/, metrics.jsonl, loss.png and tensorboard/ under out_dir.
    With [[stages]] in the config: pretrain → midtrain → SFT, with evaluations, into
    out_dir/results.json (finished stages are skipped when run again); each SFT task
    keeps its weights in out_dir/sft-TASK/ for `trainer export --sft TASK`.

    Progress: a bar on a terminal, else one line every logging.log_interval steps
    (10 by default); TensorBoard events in each stage folder (logging.tensorboard,
    on by default); Weights & Biases with logging.wandb = true (needs wandb).
    init_from = a Hugging Face folder or hub id (with init_revision) starts from
    pretrained weights.

    Run with `torchrun --nproc_per_node N $(which trainer) train ...` for data
    parallelism (rank 0 prints and logs).
    """
    from trainer.train_log import is_main_process

    def say(message: str) -> None:
        if is_main_process():
            click.echo(message, err=True)

    if _is_staged(config_path):
        from trainer.stage_runner import run_stages
        from trainer.stages import load_run_config

        cfg = load_run_config(config_path, overrides)
        results = run_stages(cfg, branch_from=branch_from or "", log=say)
        if is_main_process():
            for task, r in results["sft"].items():
                held = f", held-out loss {r['heldout_loss']:.4f}" if "heldout_loss" in r else ""
                click.echo(f"{task}: SFT validation loss {r['val_loss']:.4f}{held}")
        say(f"results: {cfg.out_dir}/results.json")
        return

    from trainer.config import load_config
    from trainer.train import train as run_training

    if branch_from:
        overrides = (*overrides, f'branch_from="{branch_from}"')
    cfg = load_config(config_path, overrides)
    result = run_training(cfg, resume=resume)
    if result.last_loss is not None:
        say(f"trained steps {result.start_step}..{result.end_step}: final loss {result.last_loss:.4f}; "
            f"outputs in {result.out_dir}")
    else:
        say(f"nothing to do: {result.out_dir} is already at step {result.end_step}")
