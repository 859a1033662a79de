"""``mixkit tokenize``, ``merge``, ``info``, ``list``: making and looking at token stores."""

from __future__ import annotations

import click

from mixkit.config import field_default
from mixkit.errors import MixkitError
from mixkit.presets import PRESET_NAMES, TextSpec
from mixkit.store import holdout_name
from mixkit.tokenize import ON_ERROR, TokenizeConfig

DATA_DIR_HELP = "Data directory."
DATA_DIR_DEFAULT = "$MIXKIT_DATA_DIR, else ./mixkit-data"


def _outputs(name: str, holdout_docs: int) -> str:
    """The store(s) a run writes, as the subject of a sentence."""
    return f"stores '{name}' and '{holdout_name(name)}' are" if holdout_docs else f"store '{name}' is"


def _unescape(template: str) -> str:
    """Let shell users write ``--template "{question}\\n{answer}"`` with a literal backslash-n."""
    return template.replace("\\n", "\n").replace("\\t", "\t")


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--name", required=True, help="Store name: writes NAME.bin/.idx/.json in the data dir.")
@click.option("--preset", type=click.Choice(PRESET_NAMES), help="A known dataset's template.")
@click.option("--field", show_default="text", help="The record field holding the text.")
@click.option("--template", help='A template over record fields, e.g. "{question}\\n{answer}".')
@click.option("--tokenizer", show_default="the bundled GPT-NeoX-20B tokenizer",
              help="A tokenizer.json, a tokenizer folder, or a hub id such as EleutherAI/pythia-70m[@REVISION].")
@click.option("--data-dir", type=click.Path(file_okay=False), show_default=DATA_DIR_DEFAULT, help=DATA_DIR_HELP)
@click.option("--workers", type=int, show_default="all cores", help="Encoder processes (fast encoder) or Rust threads (hf).")
@click.option("--encoder", type=click.Choice(["auto", "fast", "hf"]), default=field_default(TokenizeConfig, "encoder"),
              show_default=True,
              help="fast: tiktoken BPE, used only if its self-test matches tokenizers; hf: tokenizers; auto: fast when proven.")
@click.option("--eos/--no-eos", default=field_default(TokenizeConfig, "eos"), show_default=True, help="Append the tokenizer's EOS (its config's eos_token, else <|endoftext|>) after each document.")
@click.option("--split", help="The split to read from datasets with several (a source's own FOLDER:SPLIT or hf://...:SPLIT wins).")
@click.option("--max-docs", type=int, help="Stop after the first N documents (a deterministic prefix of the sources).")
@click.option("--max-tokens", type=int, help="Stop before the first document that would take the store past N tokens (EOS included).")
@click.option("--lines", is_flag=True, help="For .txt sources: one document per line, not one per file.")
@click.option("--on-error", type=click.Choice(ON_ERROR), default=field_default(TokenizeConfig, "on_error"), show_default=True, help="Stop at a bad record, or skip and count it.")
@click.option("--num-shards", type=int, default=field_default(TokenizeConfig, "num_shards"), show_default=True, help="Split the sources into K shards (with --shard-index).")
@click.option("--shard-index", type=int, default=field_default(TokenizeConfig, "shard_index"), show_default=True, help="Tokenize shard i of --num-shards (join the shards with `mixkit merge`).")
@click.option("--holdout-docs", type=int, default=field_default(TokenizeConfig, "holdout_docs"), show_default=True, help="Hold out N random documents as NAME-holdout (never in NAME).")
@click.option("--holdout-seed", type=int, default=field_default(TokenizeConfig, "holdout_seed"), show_default=True,
              help="Seed of the draw of the held-out documents (the same seed and corpus give the same split).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store of the same name.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--batch-bytes", type=int, default=field_default(TokenizeConfig, "batch_bytes"), hidden=True)
@click.option("--checkpoint-seconds", type=float, default=field_default(TokenizeConfig, "checkpoint_seconds"), hidden=True)
def tokenize(sources, name, preset, field, template, tokenizer, data_dir, workers, eos, split, max_docs, max_tokens, lines, on_error, num_shards, shard_index, holdout_docs, holdout_seed, overwrite, quiet, batch_bytes, checkpoint_seconds, encoder):
    """Tokenize SOURCES into a token store.

    A source is a file (JSONL[.gz|.zst], JSON arrays, Parquet, text), a datasets folder
    (FOLDER or FOLDER:SPLIT), a hub dataset (hf://OWNER/NAME[@REVISION][/CONFIG][:SPLIT],
    streamed), or an fsspec URL (s3://, gs://, https://, file://; globs allowed).
    """
    from mixkit.tokenize import tokenize as run

    spec = TextSpec(field=field, template=_unescape(template) if template else None, preset=preset)
    cfg = TokenizeConfig(
        sources=list(sources), name=name, text=spec, tokenizer=tokenizer, data_dir=data_dir, workers=workers,
        eos=eos, lines=lines, on_error=on_error, num_shards=num_shards, shard_index=shard_index,
        overwrite=overwrite, holdout_docs=holdout_docs, holdout_seed=holdout_seed, quiet=quiet,
        batch_bytes=batch_bytes, checkpoint_seconds=checkpoint_seconds, encoder=encoder, split=split,
        max_docs=max_docs, max_tokens=max_tokens,
    )
    m = run(cfg)
    if m.get("already_built"):
        click.echo(f"{_outputs(name, holdout_docs)} already built from these inputs; nothing to do")
        return
    skipped = {k: v for k, v in m["skipped"].items() if v}
    click.echo(
        f"{m['name']}: {m['documents']:,} documents, {m['tokens']:,} tokens ({m['dtype']})"
        + (f", skipped {skipped}" if skipped else "")
        + (" [resumed]" if m.get("resumed") else "")
    )
    if holdout_docs:
        click.echo(f"{holdout_name(m['name'])}: {holdout_docs:,} held-out documents")


@click.command()
@click.argument("name")
@click.argument("parts", nargs=-1, required=True)
@click.option("--data-dir", type=click.Path(file_okay=False), show_default=DATA_DIR_DEFAULT, help=DATA_DIR_HELP)
@click.option("--holdout-docs", type=int, default=0, show_default=True, help="Hold out N random documents as NAME-holdout.")
@click.option("--holdout-seed", type=int, default=field_default(TokenizeConfig, "holdout_seed"), show_default=True,
              help="Seed of the draw of the held-out documents (the same seed and corpus give the same split).")
@click.option("--overwrite", is_flag=True, help="Replace an existing store of the same name.")
def merge(name, parts, data_dir, holdout_docs, holdout_seed, overwrite):
    """Join token stores PARTS (e.g. the shards of one job) into NAME."""
    from mixkit.merge import merge as run

    m = run(name, list(parts), data_dir, overwrite=overwrite, holdout_docs=holdout_docs, holdout_seed=holdout_seed)
    if m.get("already_built"):
        click.echo(f"{_outputs(name, holdout_docs)} already merged from these parts; nothing to do")
        return
    click.echo(f"{m['name']}: {m['documents']:,} documents, {m['tokens']:,} tokens from {len(parts)} parts")


@click.command()
@click.argument("name")
@click.option("--data-dir", type=click.Path(file_okay=False), show_default=DATA_DIR_DEFAULT, help=DATA_DIR_HELP)
@click.option("--no-verify", is_flag=True, help="Skip re-hashing the files against the manifest (the structure is still checked).")
def info(name, data_dir, no_verify):
    """Print a store's summary and check its files against the manifest."""
    from mixkit.store import TokenStore

    store = TokenStore.open(name, data_dir, verify=False)  # the full check follows, whatever the stamp says
    s = store.summary()
    rows = [
        ("documents", f"{s['documents']:,}"),
        ("tokens", f"{s['tokens']:,}"),
        ("mean tokens/doc", f"{s['mean_doc_tokens']:.1f}"),
        ("dtype", s["dtype"]),
        ("tokenizer", s["tokenizer"]),
        ("text", str(s["text"])),
        ("eos", str(s["eos"])),
        ("skipped", str(s["skipped"])),
        ("size", f"{s['size_mb']:.2f} MB"),
        ("fingerprint", s["fingerprint"][:16]),
    ]
    if not no_verify:
        store.verify()
        rows.append(("check", "ok (files match the manifest)"))
    else:
        rows.append(("check", "structure only (--no-verify: content not checked)"))
    width = max(len(k) for k, _ in rows)
    click.echo(f"store {store.name} ({store.prefix})")
    for k, v in rows:
        click.echo(f"  {k:<{width}}  {v}")


@click.command(name="list")
@click.option("--data-dir", type=click.Path(file_okay=False), show_default=DATA_DIR_DEFAULT, help=DATA_DIR_HELP)
def list_cmd(data_dir):
    """List the token stores in the data directory."""
    from mixkit.store import TokenStore, list_stores, resolve_data_dir

    names = list_stores(data_dir)
    if not names:
        click.echo(f"no token stores in {resolve_data_dir(data_dir)}")
        return
    click.echo(f"{'name':<24} {'documents':>10} {'tokens':>13} {'dtype':>7}  tokenizer")
    for n in names:
        try:
            s = TokenStore.open(n, data_dir, verify=False).summary()  # metadata only: no content read
        except MixkitError as e:
            click.echo(f"{n:<24} (broken: {e.message})")
            continue
        click.echo(f"{n:<24} {s['documents']:>10,} {s['tokens']:>13,} {s['dtype']:>7}  {s['tokenizer']}")
