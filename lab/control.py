"""The scale guard and the unigram control: what a model that learned only token frequencies would score.

A small model trained briefly may learn little beyond the unigram distribution of its
training stream; then its losses, and every benefit computed from them, mostly measure
token frequencies — and a proximity advantage measured between unigram distributions
predicts such a benefit almost by construction. Two numbers guard the report against that:

- the **unigram cross-entropy** of the held-out pretraining documents under a smoothed
  unigram model of the baseline's training stream::

      H = −Σ_t c_eval(t) · ln p̂(t) / Σ_t c_eval(t),   p̂(t) = (T · p(t) + α) / (T + α · V)

  with p the stream's token distribution, T its token count (the run's steps × sequence ×
  batch), V the vocabulary and α = 1 (add-one smoothing of the stream's expected counts).
  When the baseline's held-out loss is not at least ``GUARD_MARGIN_NATS`` below H, the
  models have not learned beyond token frequencies and no verdict is interpretable;
- the **unigram benefit** of each variant on each task: the same cross-entropy on the
  task's validation answers under the variant's stream (the pretraining corpus for its
  first S steps, its mixture for the remaining N − S: p_v = (S/N) p_pre + (1 − S/N) Σ_d w_d p_d)
  against the baseline's, as a relative benefit ``(U_base − U_v) / U_base``. The measured
  benefit's excess over it is what the model learned beyond frequencies.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

GUARD_MARGIN_NATS = 0.5
SMOOTHING = 1.0


def smoothed_unigram(probs: np.ndarray, tokens: float, alpha: float = SMOOTHING) -> np.ndarray:
    """``(T · p + α) / (T + α · V)``: add-α smoothing of a stream's expected token counts."""
    p = np.asarray(probs, dtype=np.float64)
    if tokens <= 0 or alpha <= 0:
        raise ValueError("smoothed_unigram: tokens and alpha must be positive")
    return (tokens * p + alpha) / (tokens * p.sum() + alpha * p.size)


def cross_entropy(model: np.ndarray, eval_counts: np.ndarray) -> float:
    """``−Σ_t c(t) · ln model(t) / Σ_t c(t)`` in nats per token (the model must be positive where c > 0)."""
    c = np.asarray(eval_counts, dtype=np.float64)
    total = c.sum()
    if total <= 0:
        raise ValueError("cross_entropy: no tokens to evaluate")
    nz = c > 0
    return float(-(c[nz] * np.log(np.asarray(model, dtype=np.float64)[nz])).sum() / total)


def stream_distribution(pretrain: np.ndarray, mixture: Mapping[str, float], corpora: Mapping[str, np.ndarray],
                        start_step: int, steps: int) -> np.ndarray:
    """The token distribution of a run that reads the pretraining corpus for ``start_step`` of its
    ``steps`` and the mixture (shares summing to 1) after: ``(S/N) p_pre + (1 − S/N) Σ_d w_d p_d``."""
    if not 0 <= start_step <= steps or steps <= 0:
        raise ValueError(f"stream_distribution: start step {start_step} outside 0..{steps}")
    later = sum(w * np.asarray(corpora[d], dtype=np.float64) for d, w in mixture.items())
    f = start_step / steps
    return f * np.asarray(pretrain, dtype=np.float64) + (1 - f) * later


def unigram_benefit(base_ce: float, variant_ce: float) -> float:
    """``(U_base − U_v) / U_base``: the relative benefit a frequency-only model would show."""
    return (base_ce - variant_ce) / base_ce


def guard(baseline_heldout_loss: float | None, unigram_heldout_ce: float | None,
          margin: float = GUARD_MARGIN_NATS) -> tuple[bool | None, str]:
    """Whether the baseline learned clearly beyond token frequencies (None: cannot be checked), and why."""
    if baseline_heldout_loss is None or unigram_heldout_ce is None:
        return None, "the unigram control was not measured, so the scale guard cannot be applied"
    below = unigram_heldout_ce - baseline_heldout_loss
    if below >= margin:
        return True, (f"the baseline's held-out C4 loss {baseline_heldout_loss:.3f} is {below:.2f} nats below the "
                      f"unigram cross-entropy {unigram_heldout_ce:.3f} (margin {margin:g})")
    return False, (f"the models have not learned beyond token frequencies: the baseline's held-out C4 loss "
                   f"{baseline_heldout_loss:.3f} is {'only ' + format(below, '.2f') + ' nats below' if below > 0 else format(-below, '.2f') + ' nats above'} "
                   f"the unigram cross-entropy {unigram_heldout_ce:.3f} (margin {margin:g})")
