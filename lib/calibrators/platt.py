"""Platt scaling: p = sigmoid(a * s + b) for a real score s, fit by (smoothed) cross-entropy.

With `smooth_targets=True` (Platt, 1999) the targets are (N+ + 1) / (N+ + 2) for positives and
1 / (N- + 2) for negatives, as scikit-learn's sigmoid calibration; note scikit-learn writes
p = 1 / (1 + exp(A s + B)), i.e. A = -a, B = -b. Fit by damped Newton (the loss is convex).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from introspect import _checks as V
from introspect.calibrators import _common as C
from introspect.calibrators._optim import newton_minimize

__all__ = ["PlattParams", "fit", "apply"]


@struct.dataclass
class PlattParams:
    """slope: [] a; intercept: [] b (calibrated p = sigmoid(a * score + b))."""

    slope: jax.Array
    intercept: jax.Array


@functools.partial(jax.jit, static_argnames=("smooth_targets", "max_iter"))
def _fit(s, y, m, smooth_targets: bool, max_iter: int):
    w = m.astype(s.dtype)
    if smooth_targets:
        n_pos = jnp.sum(w * y)
        n_neg = jnp.sum(w * (1 - y))
        t = jnp.where(y > 0.5, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    else:
        t = y
    # Work on a standardised score for conditioning; map back afterwards.
    mu = jnp.sum(w * s) / jnp.sum(w)
    sd = jnp.sqrt(jnp.sum(w * (s - mu) ** 2) / jnp.sum(w))
    sd = jnp.where(sd > 0, sd, 1)
    u = (s - mu) / sd

    def loss(theta):
        x = theta[0] * u + theta[1]
        ce = -(t * jax.nn.log_sigmoid(x) + (1 - t) * jax.nn.log_sigmoid(-x))
        return jnp.sum(w * ce) / jnp.sum(w)

    theta = newton_minimize(loss, jnp.zeros((2,), s.dtype), max_iter=max_iter)
    a = theta[0] / sd
    return a, theta[1] - a * mu


def fit(
    scores: Any,
    labels: Any,
    *,
    smooth_targets: bool = True,
    mask: Any = None,
    max_iter: int = 100,
    validate: bool = True,
) -> PlattParams:
    """Fits slope and intercept of a logistic map from scores to P(label = 1).

    Args:
      scores: [n] real scores (e.g. a logit or an uncalibrated confidence), higher = more
        likely positive.
      labels: [n] 1 = positive/correct, 0 = negative.
      smooth_targets: Platt's target smoothing (see module docstring).
      mask: optional [n] bool, False = padding.
      max_iter: Newton iterations.
      validate: check the input.
    Returns:
      PlattParams.
    """
    it = V.check_int_option(max_iter, "max_iter", 1)
    s, y, m = C.prepare_scores(scores, labels, mask, validate, unit=False)
    a, b = _fit(s, y, m, bool(smooth_targets), it)
    return PlattParams(slope=a, intercept=b)


def apply(params: PlattParams, scores: Any, *, validate: bool = True) -> jax.Array:
    """Calibrated probabilities sigmoid(a * scores + b).

    Args:
      params: from `fit`.
      scores: [...] real scores.
      validate: check the input.
    Returns:
      [...] probabilities.
    """
    s = C.check_apply_scores(scores, validate, unit=False)
    return jax.nn.sigmoid(params.slope.astype(s.dtype) * s + params.intercept.astype(s.dtype))
