"""PACE-LM's two-score combination (Zhang et al. 2023, "PACE-LM: Prompting and Augmentation for
Calibrated Confidence Estimation with GPT-4 in Cloud Incident Root Cause Analysis",
arXiv 2309.05833).

PACE-LM scores a prediction in two phases: a confidence-of-evaluation score (how grounded the
estimator is in the retrieved references for this case) and a score of the prediction itself
against the references; "an optimization step combines these two scores for a final confidence".

Formula: the paper's exact combination was not available to us (no public code; the text could
not be retrieved here), so this is ours, documented: a logistic model on the two scores' logits,

    P(correct) = sigmoid(w_e logit(s_e) + w_j logit(s_j) + b)

fit by NLL on held-out (score, score, correct) triples through `probes.fit_probe` (a logistic
probe on the two features, no standardisation; `l2` adds a ridge term). It contains both
single-score Platt scalings (w_j = 0 or w_e = 0) and the product-of-odds rule (w_e = w_j = 1,
b = 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect.heads import _common as C


def pace_features(evidence_score: Any, judge_score: Any) -> np.ndarray:
    """[n, 2] float32 logits of the two scores (each in [0, 1], clipped to [1e-7, 1 - 1e-7])."""
    a = C.check_unit(C.as_1d(evidence_score, "evidence_score"), "evidence_score")
    b = C.check_unit(C.as_1d(judge_score, "judge_score", n=a.shape[0]), "judge_score")
    return np.stack([C.logit(a), C.logit(b)], axis=1).astype(np.float32)


def pace_combine(
    evidence_score: Any,
    judge_score: Any,
    *,
    evidence_weight: float,
    judge_weight: float,
    bias: float = 0.0,
) -> jax.Array:
    """sigmoid(w_e logit(s_e) + w_j logit(s_j) + b) [n] (pure; scores in [0, 1])."""
    x = jnp.asarray(pace_features(evidence_score, judge_score))
    return jax.nn.sigmoid(evidence_weight * x[:, 0] + judge_weight * x[:, 1] + bias)


@dataclasses.dataclass
class PaceFit:
    """evidence_weight, judge_weight, bias: the fitted combination; probe: the ProbeFit."""

    evidence_weight: float
    judge_weight: float
    bias: float
    probe: Any


def fit_pace(
    evidence_score: Any,
    judge_score: Any,
    correct: Any,
    *,
    workdir: str,
    l2: float = 0.0,
    train_config=None,
    meta: Mapping[str, Any] | None = None,
) -> PaceFit:
    """Fit the combination on held-out records (the "optimization step").

    Args:
      evidence_score, judge_score: [n] the two scores in [0, 1].
      correct: [n] 0/1, whether the scored prediction was right.
      workdir: the training loop's workdir.
      l2: ridge strength on (w_e, w_j) (scikit-learn's C = 1 / (l2 n)).
      train_config: loop fields (default: 300 full-batch Adam steps, lr 0.05).
    """
    from introspect import probes

    x = pace_features(evidence_score, judge_score)
    y = C.as_1d(correct, "correct", dtype=np.float32, n=x.shape[0])
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("correct must hold 0/1 labels")
    if y.min() == y.max():
        raise ValueError("fitting the combination needs both correct and wrong records")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    probe = {"name": "logistic", "standardize": False, "class_balanced": False, "l2": float(l2)}
    cfg = C.full_batch(train_config, x.shape[0], C.head_train_config)
    fit = probes.fit_probe(probe, cfg, {"features": x, "label": y}, workdir=workdir,
                           meta={"head": "pace", **dict(meta or {})})  # fmt: skip
    out = fit.variables["params"]["out"]
    w = np.asarray(out["kernel"], np.float64)[:, 0]
    return PaceFit(float(w[0]), float(w[1]), float(np.asarray(out["bias"])[0]), fit)


def pace_confidence(fit: PaceFit, evidence_score: Any, judge_score: Any) -> np.ndarray:
    """[n] combined confidence of a fitted PACE-LM combination."""
    return np.asarray(
        pace_combine(
            evidence_score,
            judge_score,
            evidence_weight=fit.evidence_weight,
            judge_weight=fit.judge_weight,
            bias=fit.bias,
        ),
        np.float32,
    )
