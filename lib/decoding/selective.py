"""Selective answering and cascades: act on a confidence threshold."""

from __future__ import annotations

import numpy as np


def selective_answer(confidence, *, threshold: float) -> np.ndarray:
    """[n] bool: answer (True) when confidence >= threshold, else abstain."""
    confidence = np.asarray(confidence, np.float64)
    if confidence.ndim != 1 or not np.all(np.isfinite(confidence)):
        raise ValueError("selective_answer: confidence must be a finite [n] array")
    return confidence >= threshold


def cascade(small_answers, small_confidence, large_answers, *, threshold: float):
    """Answer with the small model when its confidence >= threshold, else defer to the large one.

    Args:
      small_answers, large_answers: [n] answers (large_answers may hold None where the large
        model was not run; a deferred None is an abstention).
      small_confidence: [n] confidence of the small model.
    Returns:
      (answers [n] list, deferred [n] bool).
    """
    keep = selective_answer(small_confidence, threshold=threshold)
    if not len(small_answers) == len(large_answers) == len(keep):
        raise ValueError(
            f"cascade: lengths differ: {len(small_answers)}, {len(keep)}, {len(large_answers)}"
        )
    answers = [s if k else g for s, g, k in zip(small_answers, large_answers, keep, strict=True)]
    return answers, ~keep
