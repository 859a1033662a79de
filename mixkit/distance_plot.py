"""Heatmap of a distance matrix, with each value written in its cell.

A matrix of five or more datasets is read faster as colours than as numbers; the
numbers stay in the cells so the picture can be quoted. Drawn with matplotlib's Agg
backend (no display needed) and written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from mixkit.figures import pyplot, save_png


def plot_distance_matrix(
    matrix: np.ndarray, labels: Sequence[str], metric: str, path: str | os.PathLike, *, title: str | None = None
) -> None:
    """Write ``matrix`` (rows/columns named by ``labels``) as a labelled heatmap PNG to ``path``."""
    plt = pyplot()
    n = len(labels)
    size = max(4.0, 0.9 * n + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    try:
        finite = matrix[np.isfinite(matrix)]
        vmax = float(finite.max()) if finite.size else 1.0
        im = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
        ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
        ax.set_yticks(range(n), labels=list(labels))
        for i in range(n):
            for j in range(n):
                v = matrix[i, j]
                light = np.isfinite(v) and v > 0.6 * vmax
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="black" if light else "white")
        fig.colorbar(im, ax=ax, label=metric)
        ax.set_title(title or f"{metric} between unigram distributions")
        save_png(fig, path, dpi=120)
    finally:
        plt.close(fig)  # also when drawing failed
