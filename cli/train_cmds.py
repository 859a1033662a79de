"""``trainer train``: train a GPT-NeoX (Pythia) model on a mix stream."""

from __future__ import annotations

import click


@click.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML run config (see trainer.config for the keys).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optim.lr=1e-3 --set model.n_layer=2 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in out_dir.")
def train(config_path: str | None, overrides: tuple[str, ...], resume: bool) -> None:
    """Train on a mix stream; writes checkpoints, metrics.jsonl and loss.png under out_dir.

    Run with `torchrun --nproc_per_node N $(which trainer) train ...` for data parallelism.
    """
    from trainer.config import load_config
    from trainer.train import train as run_training

    cfg = load_config(config_path, overrides)
    result = run_training(cfg, resume=resume)
    if result.last_loss is not None:
        click.echo(f"trained steps {result.start_step}..{result.end_step}: final loss {result.last_loss:.4f}; "
                   f"outputs in {result.out_dir}", err=True)
    else:
        click.echo(f"nothing to do: {result.out_dir} is already at step {result.end_step}", err=True)
