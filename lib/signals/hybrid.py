"""HUQ: hybrid uncertainty, epistemic (density) and aleatoric (softmax) ranks combined.

Vazhentsev et al., "Hybrid Uncertainty Quantification for Selective Text Classification in
Ambiguous Tasks" (ACL 2023). Matched against the authors' code, AIRI-Institute/
hybrid_uncertainty_estimation, `src/ue4nlp/utils_hybrid_ue.py` (`total_uncertainty_linear_step`,
`grid_search_hp`) at commit 70cd6244c57c3946d5acc73c7c8aba01eec2307f:

    r_e, r_a = rank(epistemic), rank(aleatoric)           (average ranks over the batch, 1..n)
    total = (1 - alpha) r_e + alpha r_a
    total[r_e <= floor(n t_min)] = rank of aleatoric WITHIN that subset
    total[r_e <= floor(n t_min) and r_a > floor(n t_max)] = r_a

i.e. the points the density model is surest about (the lowest t_min fraction of epistemic
uncertainty) are ordered among themselves by aleatoric uncertainty and put first, except the
most ambiguous ones (top 1 - t_max of aleatoric), which keep their global aleatoric rank. The
hyper-parameters are chosen on a validation split by `fit_huq`, a grid search minimising the
area under the risk-coverage curve (their `rcc_auc`; here `metrics.aurc`), starting from the
epistemic ranking alone (t_min = 0, t_max = 1, alpha = 0) and moving only on strict improvement.

HUQ is transductive: a rank is relative to the batch scored together. For generation, the
epistemic part is a hidden-state density distance (`signals.density`, Mahalanobis by default)
and the aleatoric part the negated sequence confidence (default "mean_logprob", the sequence
analogue of the classifier's softmax response). Not ported: the authors' seed-level fallbacks
(using pure SR or pure MD when one seed disagrees) and their clipping of the fractions at test
time, which belong to their multi-seed experiment scripts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata


def _pair(epistemic: Any, aleatoric: Any) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(epistemic, np.float64)
    a = np.asarray(aleatoric, np.float64)
    if e.ndim != 1 or e.shape != a.shape or e.size == 0:
        raise ValueError(
            f"epistemic and aleatoric must be [n] of the same n >= 1, got shapes {e.shape} and "
            f"{a.shape}"
        )
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(a))):
        raise ValueError("epistemic and aleatoric uncertainties must be finite")
    return e, a


def _check_fractions(t_min: float, t_max: float, alpha: float) -> None:
    if not 0.0 <= t_min <= 1.0 or not 0.0 <= t_max <= 1.0:
        raise ValueError(f"t_min and t_max must be in [0, 1], got {t_min} and {t_max}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")


def _huq(e: np.ndarray, a: np.ndarray, t_min: float, t_max: float, alpha: float) -> np.ndarray:
    n = e.size
    n_lowest, n_max = int(n * t_min), int(n * t_max)
    r_a, r_e = rankdata(a), rankdata(e)
    total = (1.0 - alpha) * r_e + alpha * r_a
    sure = r_e <= n_lowest
    if sure.any():
        total[sure] = rankdata(a[sure])
    ambiguous = sure & (r_a > n_max)
    total[ambiguous] = r_a[ambiguous]
    return total


def huq(
    epistemic: Any, aleatoric: Any, *, t_min: float = 0.1, t_max: float = 0.9, alpha: float = 0.1
) -> np.ndarray:
    """[n] HUQ total uncertainty (a rank; higher = more uncertain) of a batch.

    Args:
      epistemic: [n] epistemic uncertainties (e.g. Mahalanobis distances).
      aleatoric: [n] aleatoric uncertainties (e.g. 1 - max prob, token entropy).
      t_min: fraction of the batch, by lowest epistemic uncertainty, ranked by aleatoric alone.
      t_max: aleatoric-rank quantile above which those points keep their global aleatoric rank.
      alpha: weight of the aleatoric rank elsewhere.
    Defaults are the authors' `total_uncertainty_linear_step` defaults.
    """
    e, a = _pair(epistemic, aleatoric)
    _check_fractions(t_min, t_max, alpha)
    return _huq(e, a, float(t_min), float(t_max), float(alpha))


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    return np.arange(lo, hi + 0.01, step)


def fit_huq(
    epistemic: Any,
    aleatoric: Any,
    correct: Any,
    *,
    t_min_range: tuple[float, float] = (0.0, 0.15),
    t_max_range: tuple[float, float] = (0.95, 1.0),
    alpha_range: tuple[float, float] = (0.0, 1.0),
) -> dict:
    """HUQ hyper-parameters by grid search on a validation split (the authors' `grid_search_hp`:
    t_min and t_max in steps of 0.05, alpha in steps of 0.1, over the given ranges; defaults are
    their `fit_hybrid_hp_validation` ranges).

    Args:
      epistemic, aleatoric: [n] validation uncertainties.
      correct: [n] 1 = correct answer.
    Returns:
      {"t_min", "t_max", "alpha", "aurc", "aurc_epistemic", "aurc_aleatoric"}: the chosen
      options (pass to `huq`) and the validation AURC of HUQ and of each part alone.
    """
    from introspect import metrics

    e, a = _pair(epistemic, aleatoric)
    y = np.asarray(correct, np.float64)
    if y.shape != e.shape:
        raise ValueError(f"correct must be [n] = {e.shape}, got shape {y.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("correct must be 0/1")
    for name, (lo, hi) in (("t_min", t_min_range), ("t_max", t_max_range), ("alpha", alpha_range)):
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"{name}_range must satisfy 0 <= lo <= hi <= 1, got {(lo, hi)}")

    def risk(u):
        return float(metrics.aurc(-u, y))

    best = {"t_min": 0.0, "t_max": 1.0, "alpha": 0.0, "aurc": risk(e)}
    for t_min in _grid(*t_min_range, 0.05):
        for t_max in _grid(*t_max_range, 0.05):
            for alpha in _grid(*alpha_range, 0.1):
                r = risk(_huq(e, a, float(t_min), float(t_max), float(alpha)))
                if r < best["aurc"]:
                    best = {"t_min": round(float(t_min), 4), "t_max": round(float(t_max), 4),
                            "alpha": round(float(alpha), 4), "aurc": r}  # fmt: skip
    return {**best, "aurc_epistemic": risk(e), "aurc_aleatoric": risk(a)}
