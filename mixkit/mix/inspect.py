"""What a mix really serves: planned vs realised shares per phase, and a cumulative-share plot.

Realised numbers are counted from ``dataset_index`` itself (not copied from ``mix.json``),
so the report checks the built arrays against the plan. Per phase and dataset::

    planned share   normalised weight w_k
    realised share  c_k / (phase samples)
    samples, tokens c_k and c_k * seq_len
    epochs          the dataset's stream position at the phase end / samples per epoch

The plot shows, for each dataset, ``(samples of k up to step t) / (samples up to t)``
against ``t``, with the phase starts marked.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numba import njit

from mixkit.figures import pyplot, save_png
from mixkit.mix import format as mixfmt
from mixkit.mix.stream import MixStream

MAX_POINTS = 2000


@njit(cache=True)
def _bucket_counts(dataset_index, samples_per_bucket, n_datasets):
    """``counts[b, k]``: samples of dataset ``k`` in bucket ``b`` (consecutive runs of samples)."""
    n_buckets = (dataset_index.size + samples_per_bucket - 1) // samples_per_bucket
    counts = np.zeros((n_buckets, n_datasets), dtype=np.int64)
    for n in range(dataset_index.size):
        counts[n // samples_per_bucket, dataset_index[n]] += 1
    return counts


def phase_counts(stream: MixStream) -> list[np.ndarray]:
    """Per phase, samples of each source counted from ``dataset_index``."""
    ds = mixfmt.load_array(stream.path / mixfmt.DATASET_INDEX)
    k = len(stream.source_names)
    return [
        np.bincount(np.asarray(ds[p["start_sample"] : p["end_sample"]]), minlength=k)[:k]
        for p in stream.manifest["phases"]
    ]


def report(stream: MixStream) -> str:
    """A plain-text table of the mix (see the module docstring)."""
    m = stream.manifest
    names = stream.source_names
    info = {d["name"]: d for d in m["datasets"]}
    lines = [
        f"mix {m['name']}  fingerprint {m['fingerprint'][:16]}",
        f"{stream.num_steps} steps x {stream.global_batch} samples x {stream.seq_len}+1 tokens, seed {stream.seed}, "
        f"{stream.tokens_seen(stream.num_steps):,} tokens",
    ]
    position = dict.fromkeys(names, 0)
    header = f"  {'dataset':<20} {'planned':>8} {'realised':>9} {'samples':>12} {'tokens':>16} {'epochs':>8}"
    for p, counts in zip(m["phases"], phase_counts(stream)):
        total = p["end_sample"] - p["start_sample"]
        lines.append(f"phase steps [{p['start_step']}, {p['end_step']}): {total:,} samples")
        lines.append(header)
        for k, name in enumerate(names):
            planned = p["weights"].get(name, 0.0)
            c = int(counts[k])
            if planned == 0.0 and c == 0:
                continue
            position[name] += c
            epochs = position[name] / info[name]["samples_per_epoch"]
            lines.append(
                f"  {name:<20} {planned:>8.4f} {c / total:>9.4f} {c:>12,} {c * stream.seq_len:>16,} {epochs:>8.3f}"
            )
    lines.append("datasets: " + ", ".join(
        f"{d['name']} ({d['samples']:,} samples, {d['epochs_fraction']:.3f} epochs of {d['samples_per_epoch']:,})"
        for d in m["datasets"]
    ))
    return "\n".join(lines)


def cumulative_shares(stream: MixStream, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, shares[len(steps), n_sources])``: cumulative share of each source at those steps."""
    ds = mixfmt.load_array(stream.path / mixfmt.DATASET_INDEX)
    steps_per_bucket = max(1, -(-stream.num_steps // max_points))
    counts = _bucket_counts(ds, steps_per_bucket * stream.global_batch, len(stream.source_names))
    cum = np.cumsum(counts, axis=0)
    ends = np.minimum(np.arange(1, cum.shape[0] + 1) * steps_per_bucket, stream.num_steps)
    return ends, cum / cum.sum(axis=1, keepdims=True)


def plot_shares(stream: MixStream, path: str | os.PathLike | None = None) -> Path:
    """Write the cumulative-share PNG to ``path`` (atomically; default: the mix folder's
    ``shares.png``); return the path."""
    plt = pyplot()

    steps, shares = cumulative_shares(stream)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for k, name in enumerate(stream.source_names):
        ax.plot(steps, shares[:, k], label=name, linewidth=1.5)
    for p in stream.manifest["phases"][1:]:
        ax.axvline(p["start_step"], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("cumulative share of samples")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, stream.num_steps)
    ax.set_title(f"mix {stream.manifest['name']}: cumulative share per dataset")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    path = Path(path) if path is not None else stream.path / mixfmt.SHARES_PLOT
    save_png(fig, path)
    return path
