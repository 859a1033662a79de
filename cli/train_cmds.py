"""``trainer train``: train a GPT-NeoX (Pythia) model on a mix stream, or through stages."""

from __future__ import annotations

import click

from mixkit.toml_file import read_toml


def _is_staged(config_path: str | None) -> bool:
    return bool(config_path) and "stages" in read_toml(config_path)


@click.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="TOML run config: one mix (see trainer.config) or [[stages]] (see trainer.stages).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optim.lr=1e-3 --set model.n_layer=2 "
                   "--set stages.sft.lr=1e-4 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in out_dir.")
@click.option("--from", "branch_from", type=click.Path(file_okay=False), default=None,
              help="Continue a checkpoint of another run (model, optimizer, schedule, step) on this config's mix.")
def train(config_path: str | None, overrides: tuple[str, ...], resume: bool, branch_from: str | None) -> None:
    """Train on a mix stream; writes checkpoints, metrics.jsonl and loss.png under out_dir.

    With [[stages]] in the config: pretrain → midtrain → SFT, with evaluations, into
    out_dir/results.json (finished stages are skipped when run again).

    Run with `torchrun --nproc_per_node N $(which trainer) train ...` for data parallelism.
    """
    if _is_staged(config_path):
        from trainer.stage_runner import run_stages
        from trainer.stages import load_run_config

        cfg = load_run_config(config_path, overrides)
        results = run_stages(cfg, branch_from=branch_from or "", log=lambda m: click.echo(m, err=True))
        for task, r in results["sft"].items():
            held = f", held-out loss {r['heldout_loss']:.4f}" if "heldout_loss" in r else ""
            click.echo(f"{task}: SFT validation loss {r['val_loss']:.4f}{held}")
        click.echo(f"results: {cfg.out_dir}/results.json", err=True)
        return

    from trainer.config import load_config
    from trainer.train import train as run_training

    if branch_from:
        overrides = (*overrides, f'branch_from="{branch_from}"')
    cfg = load_config(config_path, overrides)
    result = run_training(cfg, resume=resume)
    if result.last_loss is not None:
        click.echo(f"trained steps {result.start_step}..{result.end_step}: final loss {result.last_loss:.4f}; "
                   f"outputs in {result.out_dir}", err=True)
    else:
        click.echo(f"nothing to do: {result.out_dir} is already at step {result.end_step}", err=True)
