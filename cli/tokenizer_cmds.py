"""``mixkit train-tokenizer``: a byte-level BPE trained on the corpora it will encode."""

from __future__ import annotations

import click

from cli.tokenize_cmds import _unescape
from mixkit.errors import MixkitError


@click.command(name="train-tokenizer")
@click.argument("sources", nargs=-1)
@click.option("--vocab-size", type=int, required=True, help="Tokens in all: <|endoftext|> and extra specials, 256 bytes, merges.")
@click.option("--out", required=True, type=click.Path(), help="The tokenizers JSON file to write (for `mixkit tokenize --tokenizer`).")
@click.option("--preset", type=click.Choice(["c4", "gsm8k", "math", "code", "instructions", "qa"]), help="A known dataset's template.")
@click.option("--field", show_default="text", help="The record field holding the text.")
@click.option("--template", help='A template over record fields, e.g. "{question}\\n{answer}".')
@click.option("--max-docs", type=int, help="Train on a uniform random sample of M documents (seeded), not all.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --max-docs sample.")
@click.option("--special-token", "special_tokens", multiple=True, help="An extra special token (ids 1, 2, ... in order); repeatable.")
@click.option("--lines", is_flag=True, help="For .txt sources: one document per line, not one per file.")
@click.option("--on-error", type=click.Choice(["raise", "skip"]), default="raise", show_default=True, help="Stop at a bad record, or skip and count it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def train_tokenizer(sources, vocab_size, out, preset, field, template, max_docs, seed, special_tokens, lines, on_error, overwrite):
    """Train a byte-level BPE tokenizer (GPT-NeoX layout, <|endoftext|> = id 0) on SOURCES."""
    from mixkit.presets import TextSpec
    from mixkit.tokenizer_training import train_tokenizer as run

    if not sources:
        raise MixkitError("no input sources given (pass files, globs or datasets folders)")
    try:
        spec = TextSpec(field=field, template=_unescape(template) if template else None, preset=preset)
    except ValueError as e:
        raise MixkitError(str(e)) from None
    t = run(
        list(sources), vocab_size, out, spec, max_docs=max_docs, seed=seed, special_tokens=special_tokens,
        lines=lines, on_error=on_error, overwrite=overwrite,
    )
    skipped = {k: v for k, v in t.skipped.items() if v}
    click.echo(
        f"{t.path}: {t.vocab_size:,} tokens from {t.documents:,} documents ({t.bytes:,} bytes)"
        + (f", skipped {skipped}" if skipped else "")
        + f", sha256 {t.sha256}"
    )
    if t.vocab_size < t.requested_vocab_size:
        click.echo(f"note: the corpus ran out of pairs to merge before {t.requested_vocab_size:,} tokens")
