"""``mixkit merge``: join token stores into one, indices rebased, manifests combined.

When the parts are the shards of one ``mixkit tokenize --num-shards K`` job (each part
records the full source list and its shard index), documents are put back in the
order of the original source list, and within a source split between shards
(``mixkit.sharding``) in shard order, so the merged ``.bin``/``.idx`` are byte-identical
to tokenizing everything in one run; the parts of a source become one source entry
again (documents, tokens and records summed). Other stores are concatenated in the
order given.

The output's write lock (and ``NAME-holdout``'s) is held for the whole merge
(``mixkit.locks``). A merge keeps no checkpoint: a killed one is run again, and the rerun
first removes what the killed one left (partial files, temporaries); a merge that fails on
bad input leaves nothing. A rerun that finds the output already merged from the same parts
(by content fingerprint) and split has nothing to do (``_already_merged``); any other
existing output needs ``--overwrite``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from mixkit import __version__, locks
from mixkit.errors import MixkitError
from mixkit.holdout import finish_with_holdout, holdout_record
from mixkit.names import check_new_name
from mixkit.store import StoreFiles, StoreWriter, TokenStore, check_same_tokenizer, resolve_data_dir


def _are_shards_of_one_job(stores: list[TokenStore]) -> bool:
    ms = [s.manifest for s in stores]
    if not all("shard" in m and "all_sources" in m for m in ms):
        return False
    counts = {m["shard"]["count"] for m in ms}
    if len(counts) != 1:
        return False
    (k,) = counts
    if k < 2 or sorted(m["shard"]["index"] for m in ms) != list(range(k)):
        return False
    return all(m["all_sources"] == ms[0]["all_sources"] and m.get("text") == ms[0].get("text") for m in ms)


def _segments(stores: list[TokenStore]) -> list[tuple[TokenStore, int, int, dict[str, Any]]]:
    """(store, first doc, end doc, source entry) for every source part, in global order:
    by source, then by shard (a source's part in shard i precedes its part in shard i + 1)."""
    segs = []
    for s in stores:
        first = 0
        for src in s.manifest["sources"]:
            segs.append((s, first, first + src["documents"], src))
            first += src["documents"]
        if first != s.num_docs:
            raise MixkitError(f"store '{s.name}': its sources account for {first} documents, it has {s.num_docs}")
    segs.sort(key=lambda t: (t[3]["index"], t[0].manifest["shard"]["index"]))
    return segs


def _joined_sources(segments: list[tuple[TokenStore, int, int, dict[str, Any]]], expected: int) -> list[dict[str, Any]]:
    """One entry per source, its parts' counts summed and ``shard_part`` dropped: the entry one run writes.

    The identity is the first part's (a local file's sha256: later parts record its size and
    mtime instead, see ``mixkit.tokenize.describe_source``); the parts must agree on the path
    and the size, and on every identity key they share."""
    joined: dict[int, dict[str, Any]] = {}
    counts = ("documents", "tokens", "records")
    for store, _, _, src in segments:
        entry = {k: v for k, v in src.items() if k != "shard_part"}
        have = joined.get(src["index"])
        if have is None:
            joined[src["index"]] = entry
            continue
        shared = (set(have) & set(entry)) - set(counts)
        if any(have[k] != entry[k] for k in shared):
            raise MixkitError(f"store '{store.name}': source {src['path']} differs from the other shards' (changed between shards?)")
        for k in counts:
            have[k] += entry[k]
    missing = sorted(set(range(expected)) - set(joined))
    if missing:
        raise MixkitError(f"the shards hold no part of source {missing[0]} (of {expected}): a shard of another job?")
    return [joined[i] for i in sorted(joined)]


def _already_merged(files: StoreFiles, stores: list[TokenStore], holdout_docs: int, holdout_seed: int) -> dict[str, Any] | None:
    """The manifest of the merged store in place when it records this very merge, else None.

    This merge: ``merged_from`` (each part's name and content fingerprint, in order) as the
    parts are now, and the same split (``holdout``: count, seed, names; none without
    ``--holdout-docs``), with ``NAME-holdout`` the other half of that split; and the
    output(s) open checked. A merge is a pure function of these, so a rerun has nothing to do.
    """
    manifest = files.published_manifest()
    if manifest is None or manifest.get("merged_from") != [{"name": s.name, "fingerprint": s.fingerprint} for s in stores]:
        return None
    split = holdout_record(files, holdout_docs, holdout_seed) if holdout_docs else None
    if manifest.get("holdout") != split:
        return None
    try:
        outputs = [TokenStore.open(f.name, f.prefix.parent) for f in ([files, files.holdout] if holdout_docs else [files])]
    except MixkitError:
        return None
    if holdout_docs and (manifest.get("holdout_fingerprint") != outputs[1].fingerprint or outputs[1].manifest.get("holdout") != split):
        return None
    return {**manifest, "already_built": True}


def merge(
    name: str,
    parts: list[str],
    data_dir: str | Path | None = None,
    overwrite: bool = False,
    holdout_docs: int = 0,
    holdout_seed: int = 0,
) -> dict[str, Any]:
    """Merge the stores ``parts`` into a new store ``name``; return its manifest."""
    if len(parts) < 1:
        raise MixkitError("merge needs at least one part")
    check_new_name(name, "store")
    seen: dict[Path, str] = {}
    for part in parts:
        where = StoreFiles.of(part, data_dir).prefix.resolve()
        if where in seen:
            raise MixkitError(f"merge: part {part!r} is named twice (as {seen[where]!r} and {part!r}); "
                              f"each store can be merged once")
        seen[where] = part
    files = StoreFiles(resolve_data_dir(data_dir) / name)
    outputs = [files, files.holdout] if holdout_docs else [files]
    with locks.write_locks([(f.lock, f"store '{f.name}'") for f in outputs]):
        for f in outputs:
            locks.remove_orphans(f.prefix.parent, f.name)
            for path in f.partials():
                path.unlink(missing_ok=True)
        try:
            return _merge_locked(files, parts, data_dir, overwrite, holdout_docs, holdout_seed)
        except MixkitError:
            for f in outputs:
                for path in f.partials():
                    path.unlink(missing_ok=True)
            raise


def _merge_locked(
    files: StoreFiles, parts: list[str], data_dir: str | Path | None, overwrite: bool, holdout_docs: int, holdout_seed: int
) -> dict[str, Any]:
    name = files.name
    stores = [TokenStore.open(p, data_dir) for p in parts]
    check_same_tokenizer(stores)
    first = stores[0]
    for s in stores[1:]:
        if s.dtype != first.dtype:
            raise MixkitError(f"stores '{first.name}' and '{s.name}' have different dtypes ({first.dtype}, {s.dtype})")
        if s.manifest.get("eos") != first.manifest.get("eos"):
            raise MixkitError(f"stores '{first.name}' and '{s.name}' have different EOS policies")
    if files.exists() and not overwrite:
        built = _already_merged(files, stores, holdout_docs, holdout_seed)
        if built is None:
            raise MixkitError(f"store '{name}' already exists in {files.prefix.parent} (use --overwrite to replace it)")
        return built
    sharded = _are_shards_of_one_job(stores)
    if sharded:
        segments = _segments(stores)
        sources = _joined_sources(segments, len(first.manifest["all_sources"]))
    else:
        segments = [(s, 0, s.num_docs, None) for s in stores]
        sources = [dict(src, part=s.name) for s in stores for src in s.manifest.get("sources", [])]

    writer = StoreWriter(files.prefix, first.dtype)
    try:
        for store, lo, hi, _ in segments:
            for start in range(lo, hi, 4096):
                writer.add_many(store[i] for i in range(start, min(hi, start + 4096)))
    except BaseException:
        writer.abort()
        raise
    skipped: Counter = Counter()
    for s in stores:
        skipped.update(s.manifest.get("skipped", {}))
    manifest = {
        "tokenizer": first.manifest["tokenizer"],
        "eos": first.manifest.get("eos"),
        "text": first.manifest.get("text") if sharded else [s.manifest.get("text") for s in stores],
        "lines": first.manifest.get("lines"),
        "sources": sources,
        "all_sources": first.manifest.get("all_sources") if sharded else [p for s in stores for p in s.manifest.get("all_sources", [])],
        "shard": {"index": 0, "count": 1},
        "skipped": dict(sorted(skipped.items())),
        "on_error": first.manifest.get("on_error"),
        "merged_from": [{"name": s.name, "fingerprint": s.fingerprint} for s in stores],
        "mixkit_version": __version__,
    }
    if holdout_docs:
        return finish_with_holdout(writer, manifest, holdout_docs, holdout_seed, overwrite)
    return writer.finish(manifest, overwrite=overwrite)

