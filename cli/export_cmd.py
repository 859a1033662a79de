"""``trainer export``: a run's model as a Hugging Face folder (``trainer.export``)."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("source", metavar="RUN_OR_CHECKPOINT", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="The Hugging Face folder to write (config.json, model.safetensors, generation_config.json, "
                   "tokenizer.json, tokenizer_config.json, special_tokens_map.json).")
@click.option("--stage", default=None, metavar="NAME",
              help="Export the newest checkpoint of this pretrain/midtrain stage of the run. "
                   "[default: the last stage]")
@click.option("--sft", "sft_task", default=None, metavar="TASK",
              help="Export the finetuned weights of this SFT task of the run (RUN/sft-TASK/).")
@click.option("--tokenizer", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The tokenizer.json to ship; it must be the one the run's stores were tokenized with. "
                   "[default: the run's tokenizer, else mixkit's bundled GPT-NeoX-20B tokenizer]")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists (only once the new folder is complete).")
def export(source: str, out: str, stage: str | None, sft_task: str | None, tokenizer: str | None,
           overwrite: bool) -> None:
    """Export a run's model for transformers and lm-evaluation-harness.

    RUN_OR_CHECKPOINT is a staged run folder (its last pretrain/midtrain stage's newest
    checkpoint, or what --stage / --sft choose), a single-mix run's out_dir (its newest
    checkpoint) or one checkpoint folder. Then, e.g.:
    lm_eval --model hf --model_args pretrained=OUT --tasks lambada_openai
    """
    from trainer.export import export as run_export

    result = run_export(source, out, stage=stage, sft=sft_task, tokenizer=tokenizer, overwrite=overwrite)
    click.echo(f"exported {result.source.description} with tokenizer {result.tokenizer.name} to {result.out}")
