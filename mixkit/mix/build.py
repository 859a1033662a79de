"""Build a mix directory: blend the plan's phases, build each dataset's epochs, write atomically.

The folder's files and ``mix.json`` are described (and named, written, read) in
``mixkit.mix.format``. Only the epochs a dataset actually reaches are built, and more
than one needs ``allow_repeat``: the check runs before anything is written.

Before anything is allocated, each dataset's samples are bounded from the plan alone
(the blend keeps ``w_k n - (K - 1) < c_k(n) < w_k n + 1``, ``mixkit.mix.indices``): a
dataset that certainly needs a second epoch is refused without ``allow_repeat``, and the
arrays' size (at most their upper bound) must fit the free disk space
(``mixkit.resources``). The global arrays are then blended straight into preallocated
files, so a run of any length takes no more memory than its page cache, and a full disk
is a one-line error, not a ``Bus error``; the exact repeat check follows the blend.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

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
from mixkit.mix.stream import MixStream
from mixkit.names import check_new_name
from mixkit.resources import ensure_free_space
from mixkit.store import TokenStore, check_same_tokenizer, resolve_data_dir

NPY_HEADER_BYTES = 128  # a .npy header of these arrays (numpy pads it to 64 bytes; 128 is a bound)


def blend_plan(
    plan: MixPlan, names: list[str], ds: np.ndarray | None = None, sn: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """``(dataset_index, dataset_sample_index, per-phase sample counts)`` for the whole run,
    into ``ds`` (int16) and ``sn`` (int64) of ``steps * global_batch`` entries when given."""
    gb = plan.global_batch
    n_total = plan.steps * gb
    ds = np.empty(n_total, dtype=np.int16) if ds is None else ds
    sn = np.empty(n_total, dtype=np.int64) if sn is None else sn
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


def sample_bounds(plan: MixPlan, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``: bounds on the samples each dataset gives the whole run, from the plan
    alone (no blend): per phase of ``n`` samples and ``K`` datasets, ``w_k n - (K - 1) < c_k < w_k n + 1``."""
    low = np.zeros(len(names), dtype=np.float64)
    high = np.zeros(len(names), dtype=np.float64)
    for phase, (start, end) in zip(plan.phases, plan.phase_bounds()):
        weights = phase.normalized()
        n = (end - start) * plan.global_batch
        for k, w in weights.items():
            i = names.index(k)
            low[i] += max(0.0, w * n - len(weights))
            high[i] += w * n + 2  # one for the blend's overshoot, one for rounding
    return np.floor(low).astype(np.int64), np.ceil(high).astype(np.int64)


def array_bytes(plan: MixPlan, stores: list[TokenStore], epochs: list[int], block_samples: list[int]) -> int:
    """An upper bound on the bytes of a mix's arrays (8-byte entries where the dtype is chosen later)."""
    n_total = plan.steps * plan.global_batch
    total = n_total * (2 + 8) + 2 * NPY_HEADER_BYTES
    for s, e, per in zip(stores, epochs, block_samples):
        blocks = 1 if plan.shuffle == "megatron" else e
        docs = e * s.num_docs if plan.shuffle == "megatron" else s.num_docs
        total += blocks * (4 * docs + 16 * (per + 1) + 8 * per) + 3 * NPY_HEADER_BYTES
    return int(total)


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


class MixBuild(NamedTuple):
    """What ``build_or_find_mix`` did: the mix directory, and whether it was already there,
    built from the same plan and input stores (then nothing was written)."""

    path: Path
    already_built: bool


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
    the temporary folders of killed builds of the name are removed first. A mix already in place
    that ``mix.json`` says was built from this plan and these stores (``mix_built_from``) is kept
    as it is; any other needs ``overwrite``.
    """
    return build_or_find_mix(plan, name, data_dir, overwrite=overwrite).path


def build_or_find_mix(
    plan: MixPlan,
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
) -> MixBuild:
    """``build_mix``, saying whether the mix was already built (a finished build run again)."""
    check_new_name(name, "mix")
    data_dir = resolve_data_dir(data_dir)
    out = mixfmt.mix_dir(name, data_dir)
    with locks.write_lock(mixfmt.lock_path(out), f"mix '{name}'"):
        locks.remove_orphans(out.parent, name)
        if out.exists() and not overwrite:
            if mix_built_from(out, plan, data_dir):
                return MixBuild(out, True)
            raise MixkitError(f"mix '{name}' already exists in {out.parent} (use --overwrite to replace it)")
        return MixBuild(_build_mix_locked(plan, name, data_dir, out, overwrite), False)


def mix_built_from(out: Path, plan: MixPlan, data_dir: Path) -> bool:
    """Whether the mix at ``out`` is the one ``plan`` builds (as ``out.name``) from the stores now in ``data_dir``.

    A mix is a pure function of its plan (``MixPlan.to_json``: phases, weights, steps, shape,
    seed, shuffle) and its input stores' content: ``mix.json`` records both (``plan``,
    ``source_names``, each dataset's ``fingerprint``). ``MixStream.open`` checks the rest: the
    manifest's own fingerprint, the stores' fingerprints against it, the arrays' structure and,
    on first use, their sha256s. Any difference, or a mix that does not open, is False.
    """
    try:
        manifest = mixfmt.read_manifest(out)
        if manifest.get("name") != out.name or manifest.get("plan") != json.loads(json.dumps(plan.to_json())) or manifest.get("source_names") != plan.datasets:
            return False
        MixStream.open(out, data_dir)
    except MixkitError:
        return False
    return True


def _build_mix_locked(plan: MixPlan, name: str, data_dir: Path, out: Path, overwrite: bool) -> Path:
    """Build under the mix's write lock; the caller has dealt with a mix already in place."""
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

    # Before anything is allocated: the repeat check where the plan alone decides it, and the disk space.
    low, high = sample_bounds(plan, names)
    if plan.shuffle == "megatron":
        epochs, block_samples, _, _ = megatron_layout(plan, stores, np.zeros(len(names), dtype=np.int64))
    else:
        check_repeats(plan, names, low, per_epoch, about=True)
        epochs = [max(1, math.ceil(int(h) / s)) for h, s in zip(high, per_epoch)]
        block_samples = per_epoch
    ensure_free_space(out.parent, array_bytes(plan, stores, epochs, block_samples), f"the arrays of mix '{name}'")
    try:
        with atomic.atomic_dir(out, overwrite=overwrite) as tmp:
            n_total = plan.steps * plan.global_batch
            ds = mixfmt.create_array(tmp, mixfmt.DATASET_INDEX, np.int16, (n_total,))
            sn = mixfmt.create_array(tmp, mixfmt.DATASET_SAMPLE_INDEX, np.int64, (n_total,))
            _, _, phases = blend_plan(plan, names, ds, sn)
            ds.flush()
            sn.flush()
            del ds, sn
            _write_rest(plan, name, stores, names, per_epoch, phases, tmp)
    except FileExistsError:
        raise MixkitError(f"mix '{name}' already exists in {out.parent} (use --overwrite to replace it)") from None
    return out


def check_repeats(plan: MixPlan, names: list[str], used: np.ndarray, per_epoch: list[int], about: bool = False) -> None:
    """Refuse, without ``allow_repeat``, a dataset whose ``used`` samples take more than one epoch
    (``about``: ``used`` is a lower bound from the plan, the blend not yet run)."""
    if plan.allow_repeat:
        return
    for k in range(len(names)):
        e = math.ceil(int(used[k]) / per_epoch[k])
        if e > 1:
            count = f"{'at least ' if about else ''}{int(used[k])} samples"
            raise MixkitError(
                f"dataset '{names[k]}' would be read {used[k] / per_epoch[k]:.2f} times ({e} epochs: "
                f"{count}, {per_epoch[k]} per epoch); pass --allow-repeat to repeat it "
                "with a fresh shuffle each epoch"
            )


def _write_rest(
    plan: MixPlan, name: str, stores: list[TokenStore], names: list[str], per_epoch: list[int],
    phases: list[dict[str, Any]], tmp: Path,
) -> None:
    """Everything after the global arrays, into the temporary folder ``tmp``: the exact repeat
    check, each dataset's index arrays, ``mix.json``."""
    seq_len = plan.seq_len
    used = np.zeros(len(names), dtype=np.int64)
    for p in phases:
        for k, v in p["samples"].items():
            used[names.index(k)] += v
    if plan.shuffle == "megatron":
        epochs, block_samples, block_documents, megatron_samples = megatron_layout(plan, stores, used)
    else:
        epochs = [math.ceil(int(u) / s) for u, s in zip(used, per_epoch)]
        block_samples, block_documents = per_epoch, [s.num_docs for s in stores]
        check_repeats(plan, names, used, per_epoch)
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
