"""Build a mix directory: blend the plan's phases, build each dataset's epochs, write atomically.

The folder's files and ``mix.json`` are described (and named, written, read) in
``mixkit.mix.format``. Only the epochs a dataset actually reaches are built, and more
than one needs ``allow_repeat``: the check runs before anything is written.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mixkit import __version__, atomic, locks
from mixkit.errors import MixkitError
from mixkit.mix import format as mixfmt
from mixkit.mix.indices import (
    blend_into,
    epoch_indices,
    megatron_dataset_sizes,
    megatron_indices,
    megatron_num_epochs,
    num_samples_for,
)
from mixkit.mix.plan import MixPlan
from mixkit.names import check_new_name
from mixkit.store import TokenStore, check_same_tokenizer, resolve_data_dir


def blend_plan(plan: MixPlan, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """``(dataset_index, dataset_sample_index, per-phase sample counts)`` for the whole run."""
    gb = plan.global_batch
    n_total = plan.steps * gb
    ds = np.empty(n_total, dtype=np.int16)
    sn = np.empty(n_total, dtype=np.int64)
    used = np.zeros(len(names), dtype=np.int64)
    phases = []
    for phase, (start, end) in zip(plan.phases, plan.phase_bounds()):
        weights = phase.normalized()
        ids = np.array([names.index(k) for k in weights], dtype=np.int16)
        w = np.array(list(weights.values()), dtype=np.float64)
        if plan.shuffle == "megatron":
            # Megatron normalises a blend's weights twice (its builder, then BlendedDataset), and
            # the second division can move the last bit, which decides near-ties of the blend.
            w = w / np.sum(w)
        lo, hi = start * gb, end * gb
        stream_start = used.copy()
        blend_into(w, ids, used[ids], ds[lo:hi], sn[lo:hi])
        counts = np.bincount(ds[lo:hi], minlength=len(names)).astype(np.int64)
        used += counts
        phases.append(
            {
                "start_step": start,
                "end_step": end,
                "start_sample": lo,
                "end_sample": hi,
                "weights": {k: float(v) for k, v in zip(weights, w)},
                "requested_weights": dict(phase.weights),
                "samples": {names[int(i)]: int(counts[i]) for i in ids},
                "stream_start": {names[int(i)]: int(stream_start[i]) for i in ids},
            }
        )
    return ds, sn, phases


def megatron_layout(
    plan: MixPlan, stores: list[TokenStore], used: np.ndarray
) -> tuple[list[int], list[int], list[int], list[int]]:
    """``(epochs, block_samples, block_documents, megatron_samples)`` of each dataset under
    ``shuffle = "megatron"``: the sample count Megatron builds it for (the run's
    ``steps * global_batch`` for one dataset, as a ``GPTDataset``; ``megatron_dataset_sizes``
    of the phase's weights for a blend, as the ``BlendedDataset`` builder does), the epochs
    that takes, and the size of its one index block (all ``E`` epochs, ``(E*T - 1) // L``
    samples). Refuses, before anything is written, more than one epoch without
    ``allow_repeat`` and a blend that would read past a dataset's index (Megatron's IndexError).
    """
    n_total = plan.steps * plan.global_batch
    weights = list(plan.phases[0].normalized().values())
    megatron_samples = [n_total] if len(stores) == 1 else megatron_dataset_sizes(weights, n_total)
    epochs, block_samples, block_documents = [], [], []
    for k, s in enumerate(stores):
        e = megatron_num_epochs(s.num_tokens, megatron_samples[k], plan.seq_len)
        if e > 1 and not plan.allow_repeat:
            raise MixkitError(
                f"dataset '{s.name}': Megatron's order builds it for {megatron_samples[k]} samples, {e} epochs of "
                f"{(s.num_tokens - 1) // plan.seq_len} (documents repeat, epochs shuffled together); "
                "pass --allow-repeat to accept that"
            )
        total = (e * s.num_tokens - 1) // plan.seq_len
        if used[k] > total:
            raise MixkitError(
                f"dataset '{s.name}': the blend draws {int(used[k])} samples, more than the {total} "
                "Megatron's order builds for it"
            )
        epochs.append(e)
        block_samples.append(total)
        block_documents.append(e * s.num_docs)
    return epochs, block_samples, block_documents, megatron_samples


def build_mix(
    plan: MixPlan,
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Build mix ``name`` from ``plan`` in ``DATA_DIR/mixes/NAME``; return its directory.

    Every check (stores exist and share a tokenizer, each holds a sample, epochs within
    ``allow_repeat``) runs before anything is written; the directory appears whole or not at all.
    One process builds a mix name at a time (its write lock, ``mixkit.locks``, is held throughout);
    the temporary folders of killed builds of the name are removed first.
    """
    check_new_name(name, "mix")
    data_dir = resolve_data_dir(data_dir)
    out = mixfmt.mix_dir(name, data_dir)
    with locks.write_lock(mixfmt.lock_path(out), f"mix '{name}'"):
        locks.remove_orphans(out.parent, name)
        return _build_mix_locked(plan, name, data_dir, out, overwrite)


def _build_mix_locked(plan: MixPlan, name: str, data_dir: Path, out: Path, overwrite: bool) -> Path:
    if out.exists() and not overwrite:
        raise MixkitError(f"mix '{name}' already exists in {out.parent} (use --overwrite to replace it)")
    names = plan.datasets
    stores = [TokenStore.open(n, data_dir) for n in names]
    check_same_tokenizer(stores)
    seq_len = plan.seq_len
    per_epoch = []
    for s in stores:
        n = num_samples_for(s.num_tokens, seq_len) if s.num_tokens > 0 else 0
        if n < 1:
            raise MixkitError(
                f"seq length {seq_len} is larger than store '{s.name}' holds ({s.num_tokens} tokens; "
                f"a sample needs {seq_len + 1})"
            )
        per_epoch.append(n)

    ds, sn, phases = blend_plan(plan, names)
    used = np.zeros(len(names), dtype=np.int64)
    for p in phases:
        for k, v in p["samples"].items():
            used[names.index(k)] += v
    if plan.shuffle == "megatron":
        epochs, block_samples, block_documents, megatron_samples = megatron_layout(plan, stores, used)
    else:
        epochs = [math.ceil(int(u) / s) for u, s in zip(used, per_epoch)]
        block_samples, block_documents = per_epoch, [s.num_docs for s in stores]
        if not plan.allow_repeat:
            for k, e in enumerate(epochs):
                if e > 1:
                    raise MixkitError(
                        f"dataset '{names[k]}' would be read {used[k] / per_epoch[k]:.2f} times ({e} epochs: "
                        f"{int(used[k])} samples, {per_epoch[k]} per epoch); pass --allow-repeat to repeat it "
                        "with a fresh shuffle each epoch"
                    )
    for p in phases:
        p["tokens"] = {k: v * seq_len for k, v in p["samples"].items()}
        p["epochs"] = {k: v / per_epoch[names.index(k)] for k, v in p["samples"].items()}

    first = stores[0]
    datasets = [
        {
            "name": s.name,
            "fingerprint": s.fingerprint,
            "documents": s.num_docs,
            "tokens": s.num_tokens,
            "dtype": s.dtype.name,
            "eos_id": s.eos_id,
            "samples_per_epoch": per_epoch[k],
            "samples": int(used[k]),
            "tokens_trained": int(used[k]) * seq_len,
            "epochs": epochs[k],
            "epochs_fraction": int(used[k]) / per_epoch[k],
            "block_samples": block_samples[k],
            "block_documents": block_documents[k],
            "files": mixfmt.dataset_files(k),
        }
        for k, s in enumerate(stores)
    ]
    if plan.shuffle == "megatron":
        for info, n in zip(datasets, megatron_samples):
            info["megatron_num_samples"] = n
    try:
        with atomic.atomic_dir(out, overwrite=overwrite) as tmp:
            mixfmt.save_array(tmp, mixfmt.DATASET_INDEX, ds)
            mixfmt.save_array(tmp, mixfmt.DATASET_SAMPLE_INDEX, sn)
            del ds, sn
            if plan.shuffle == "megatron":
                for k, s in enumerate(stores):
                    files = mixfmt.dataset_files(k)
                    built = megatron_indices(s.doc_lengths, seq_len, plan.seed, megatron_samples[k])
                    for kind, arr in zip(mixfmt.EPOCH_ARRAYS, built):
                        mixfmt.save_array(tmp, files[kind], arr)
                    del built
            work = [] if plan.shuffle == "megatron" else [(k, e) for k in range(len(stores)) for e in range(epochs[k])]
            arrays: dict[int, dict[str, np.ndarray]] = {}
            for k, s in enumerate(stores if work else []):
                files = mixfmt.dataset_files(k)
                n_docs, n_s = s.num_docs, per_epoch[k]
                biggest = max(n_docs, int(np.max(s.doc_lengths)))
                si_dtype = np.int32 if biggest <= np.iinfo(np.int32).max else np.int64
                sh_dtype = np.uint32 if n_s < np.iinfo(np.uint32).max - 1 else np.int64
                arrays[k] = {
                    "doc_idx": mixfmt.create_array(tmp, files["doc_idx"], np.int32, (epochs[k] * n_docs,)),
                    "sample_idx": mixfmt.create_array(tmp, files["sample_idx"], si_dtype, (epochs[k] * (n_s + 1), 2)),
                    "shuffle_idx": mixfmt.create_array(tmp, files["shuffle_idx"], sh_dtype, (epochs[k] * n_s,)),
                }
            for k, e in tqdm(work, desc=f"build-mix {name}", unit="epoch", disable=None):
                s, n_docs, n_s = stores[k], stores[k].num_docs, per_epoch[k]
                doc_idx, sample_idx, shuffle_idx = epoch_indices(s.doc_lengths, seq_len, plan.seed, s.name, e)
                arrays[k]["doc_idx"][e * n_docs : (e + 1) * n_docs] = doc_idx
                arrays[k]["sample_idx"][e * (n_s + 1) : (e + 1) * (n_s + 1)] = sample_idx
                arrays[k]["shuffle_idx"][e * n_s : (e + 1) * n_s] = shuffle_idx
            for group in arrays.values():
                for arr in group.values():
                    arr.flush()
            del arrays
            manifest = {
                "name": name,
                "plan": plan.to_json(),
                "num_steps": plan.steps,
                "seq_len": seq_len,
                "global_batch": plan.global_batch,
                "num_samples": plan.steps * plan.global_batch,
                "tokens_per_sample": seq_len,
                "seed": plan.seed,
                "allow_repeat": plan.allow_repeat,
                "shuffle": plan.shuffle,
                "source_names": names,
                "datasets": datasets,
                "phases": phases,
                "tokenizer": first.manifest["tokenizer"],
                "vocab_size": first.vocab_size,
                "tokenizer_sha256": first.tokenizer_sha256,
                "eos_id": first.eos_id,
                "files": mixfmt.file_sha256s(tmp),
                "mixkit_version": __version__,
            }
            mixfmt.write_manifest(tmp, manifest)
    except FileExistsError:
        raise MixkitError(f"mix '{name}' already exists in {out.parent} (use --overwrite to replace it)") from None
    return out
