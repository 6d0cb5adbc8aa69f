"""Choosing one answer among N samples: by score, majority vote, or Borda vote."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def borda_vote(answers: Sequence[str | None], scores, *, power: float = 0.5) -> str | None:
    """Borda vote with power p (Scalable Best-of-N via Self-Certainty).

    The N samples are ranked by score (r = 1 is the highest; equal scores keep their input order);
    sample r gets weight (N - r + 1)^power, weights of equal answers are pooled and the answer with
    the largest total wins. power = 0 is a majority vote. A tie between totals goes to the answer
    whose best sample ranks highest. Unparsable answers (None) take part in the ranking but never
    win; None is returned only when every answer is None.

    Args:
      answers: [N] extracted answers of one question.
      scores: [N] confidence of each sample (higher = more confident), e.g. self-certainty.
      power: p >= 0.
    Returns:
      the winning answer.
    """
    scores = np.asarray(scores, np.float64)
    if scores.shape != (len(answers),):
        raise ValueError(
            f"borda_vote: scores has shape {scores.shape}, expected "
            f"({len(answers)},) to match answers"
        )
    if len(answers) == 0:
        raise ValueError("borda_vote: answers is empty")
    if not np.all(np.isfinite(scores)):
        raise ValueError("borda_vote: scores contain NaN or inf")
    if power < 0:
        raise ValueError(f"borda_vote: power must be >= 0, got {power}")
    n = len(answers)
    order = np.argsort(-scores, kind="stable")  # rank 1 first
    totals: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    for rank, i in enumerate(order, start=1):
        a = answers[i]
        if a is None:
            continue
        totals[a] = totals.get(a, 0.0) + float(n - rank + 1) ** power
        best_rank.setdefault(a, rank)
    if not totals:
        return None
    return max(totals, key=lambda a: (totals[a], -best_rank[a]))


def majority_vote(answers: Sequence[str | None]) -> str | None:
    """Most frequent non-None answer; ties go to the answer seen first."""
    return borda_vote(answers, -np.arange(len(answers), dtype=np.float64), power=0.0)


def select_by_score(answers: Sequence[str | None], scores) -> str | None:
    """The answer of the highest-scoring sample (first on ties)."""
    scores = np.asarray(scores, np.float64)
    if scores.shape != (len(answers),) or len(answers) == 0:
        raise ValueError(
            f"select_by_score: need N >= 1 answers and [N] scores, got "
            f"{len(answers)} and {scores.shape}"
        )
    return answers[int(np.argmax(scores))]
