"""How the reports write numbers and tables (one place, so every section reads the same)."""

from __future__ import annotations

import math
from collections.abc import Sequence

MISSING = "—"
NOT_SIGNIFICANT = "†"


def pct(v: float | None) -> str:
    """A signed percentage, ``+1.23%``; ``—`` for None or NaN."""
    return MISSING if v is None or not math.isfinite(v) else f"{100 * v:+.2f}%"


def pp(v: float | None) -> str:
    """Percentage points, ``1.23 pp``; ``—`` for None or NaN."""
    return MISSING if v is None or not math.isfinite(v) else f"{100 * v:.2f} pp"


def spread_text(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def ci_text(ci: tuple[float, float] | None, fmt: str | None = None) -> str:
    """A 95% interval, ``[+1.20%, +3.40%]`` (percentages unless ``fmt`` is given); ``—`` when none."""
    if ci is None:
        return MISSING
    show = (lambda v: fmt.format(v)) if fmt else pct
    return f"[{show(ci[0])}, {show(ci[1])}]"


def p_text(p: float | None) -> str:
    """A p-value to three significant digits, ``< 0.001`` below that; ``—`` when not tested."""
    if p is None or not math.isfinite(p):
        return MISSING
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def loss_text(v: float | None) -> str:
    return MISSING if v is None else f"{v:.4f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> list[str]:
    """A GitHub pipe table; ``align`` has one 'l' or 'r' per column."""
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return lines

