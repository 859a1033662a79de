"""``mixkit build-mix`` and ``mixkit inspect``: make a mix from token stores, and look at one."""

from __future__ import annotations

from pathlib import Path

import click

from cli.verify_option import no_verify_option
from mixkit.config import field_default
from mixkit.mix.plan import SHUFFLES, MixPlan, plan_from_options


@click.command("build-mix")
@click.option("--name", required=True, help="Mix name: written to DATA_DIR/mixes/NAME.")
@click.option("--base", help="The pretraining store (simple form).")
@click.option("--add", help="The store mixed in from --start-step on (simple form).")
@click.option("--ratio", type=float, help="Share of --add from --start-step on, in [0, 1] (1.0: --add alone).")
@click.option("--start-step", type=int, show_default="0", help="Step at which --add joins (simple form).")
@click.option("--phase", "phases", multiple=True, metavar="START:NAME=W,...", help="A phase (repeatable), e.g. 6000:c4=0.8,code=0.2.")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False, path_type=Path), help="TOML file of [[phase]] tables.")
@click.option("--steps", type=int, help="Training steps (required unless the plan file gives it).")
@click.option("--seq-len", type=int, show_default=str(field_default(MixPlan, "seq_len")), help="Tokens per sample's inputs.")
@click.option("--global-batch", type=int, show_default=str(field_default(MixPlan, "global_batch")), help="Samples per step.")
@click.option("--seed", type=int, show_default=str(field_default(MixPlan, "seed")), help="Shuffle seed.")
@click.option("--world-size", type=int, default=field_default(MixPlan, "world_size"), show_default=True, help="Check the global batch splits over this many ranks.")
@click.option("--shuffle", type=click.Choice(SHUFFLES), show_default=str(field_default(MixPlan, "shuffle")), help="Sample order of each dataset: mixkit's per-epoch shuffles, or megatron.core GPTDataset/BlendedDataset's (one-phase plans).")
@click.option("--allow-repeat", is_flag=True, help="Allow reading a dataset more than once (fresh shuffle each epoch).")
@click.option("--overwrite", is_flag=True, help="Replace an existing mix of that name.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), show_default="$MIXKIT_DATA_DIR, else ./mixkit-data", help="Data directory.")
@no_verify_option
def build_mix(name, base, add, ratio, start_step, phases, plan_file, steps, seq_len, global_batch, seed, world_size, shuffle, allow_repeat, overwrite, data_dir):
    """Build a deterministic mixed sample stream, readable at any step in O(1).

    \b
    Simple form:  --base c4 --add code --ratio 0.2 --start-step 6000
    General form: --phase "0:c4=1" --phase "6000:c4=0.8,code=0.2"   or   --plan plan.toml
    """
    from mixkit.mix.build import build_or_find_mix
    from mixkit.mix.inspect import report
    from mixkit.mix.stream import MixStream

    plan = plan_from_options(
        base=base, add=add, ratio=ratio, start_step=start_step, phases=phases, plan_file=plan_file, steps=steps,
        seq_len=seq_len, global_batch=global_batch, seed=seed, allow_repeat=allow_repeat, world_size=world_size,
        shuffle=shuffle,
    )
    out, already_built = build_or_find_mix(plan, name, data_dir, overwrite=overwrite)
    if already_built:
        click.echo(f"mix '{name}' is already built from this plan and these stores; nothing to do")
        return
    click.echo(f"wrote mix '{name}' to {out}")
    click.echo(report(MixStream.open(out, data_dir)))


@click.command("inspect")
@click.argument("name")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), show_default="the mix directory's shares.png", help="Where to write the PNG.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), show_default="$MIXKIT_DATA_DIR, else ./mixkit-data", help="Data directory.")
@no_verify_option
def inspect(name, plot_path, data_dir):
    """Planned vs realised shares, samples, tokens and epochs per phase; a cumulative-share plot."""
    from mixkit.mix.inspect import plot_shares, report
    from mixkit.mix.stream import MixStream

    stream = MixStream.open(name, data_dir)
    click.echo(report(stream))
    out = plot_shares(stream, plot_path)
    click.echo(f"plot: {out}")
