"""The loss curve of a run as a PNG (training loss, per-source loss, eval loss against tokens)."""

from __future__ import annotations

import os
from typing import Any

from mixkit.figures import pyplot, save_png


def plot_loss(records: list[dict[str, Any]], out_path: str | os.PathLike, title: str = "") -> None:
    plt = pyplot()

    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    if train:
        steps = [r["step"] for r in train]
        ax.plot(steps, [r["loss"] for r in train], label="train", color="black", linewidth=1.2)
        names = sorted({n for r in train for n in r.get("source_loss", {})})
        if len(names) > 1:
            for name in names:
                pts = [(r["step"], r["source_loss"][name]) for r in train if name in r.get("source_loss", {})]
                ax.plot(*zip(*pts), label=name, linewidth=0.8, alpha=0.7)
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval", color="tab:red")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title or "training loss")
    ax.grid(alpha=0.3)
    if train or evals:
        ax.legend(fontsize=8)
    save_png(fig, out_path)
