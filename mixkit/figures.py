"""Saving matplotlib figures: the Agg backend, and PNGs written atomically and reproducibly.

Every plot the project writes goes through ``save_png``: the figure is rendered into
memory, closed (so long runs do not accumulate figures), and written with
``mixkit.atomic``; the "Software" PNG tag is dropped so equal figures give equal bytes.
"""

from __future__ import annotations

import io
import os

from mixkit import atomic


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed).

    Imported here, on the first plot, because matplotlib is heavy and most commands draw nothing.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | os.PathLike, dpi: int | None = None, tight: bool = True) -> None:
    """Render ``fig`` to ``path`` and close it; ``tight=False`` keeps a layout the caller set."""
    plt = pyplot()
    try:
        if tight:
            fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    finally:
        plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())
