"""Split conformal regression: absolute residuals and conformalised quantile regression (CQR).

Calibrate with `quantile(scores, alpha=...)` on the scores below, then build intervals; for
covariate shift use `weighted_quantile`, for groups `mondrian_quantiles`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from introspect import _checks as V


def _pair(a, b, na, nb, validate):
    if validate:
        a = V.as_float_array(a, na)
        b = V.as_float_array(b, nb)
        V.check_same_shape(a, b, na, nb)
        V.check_no_nan(a, na)
        V.check_no_nan(b, nb)
    return jnp.asarray(a), jnp.asarray(b)


def residual_scores(y: jax.Array, pred: jax.Array, *, validate: bool = True) -> jax.Array:
    """Absolute-residual nonconformity s = |y - pred|.

    Guarantee (with `residual_intervals` and qhat = `quantile(s_cal, alpha=a)`):
    P(y in [pred - qhat, pred + qhat]) >= 1 - a for an exchangeable test point.

    Args:
      y: [...] targets; pred: [...] point predictions (same shape).
    Returns:
      [...] scores.
    """
    y, pred = _pair(y, pred, "y", "pred", validate)
    return jnp.abs(y - pred)


def residual_intervals(
    pred: jax.Array, qhat: jax.Array | float, *, validate: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Intervals [pred - qhat, pred + qhat] (see `residual_scores` for the guarantee).

    Args:
      pred: [...] point predictions; qhat: scalar or broadcastable threshold.
    Returns:
      (lower, upper), each [...].
    """
    if validate:
        pred = V.as_float_array(pred, "pred")
        qhat = V.as_float_array(qhat, "qhat")
        V.check_no_nan(qhat, "qhat")
    return pred - qhat, pred + qhat


def cqr_scores(
    y: jax.Array, lower: jax.Array, upper: jax.Array, *, validate: bool = True
) -> jax.Array:
    """Conformalised quantile regression score s = max(lower - y, y - upper) (Romano et al. 2019).

    `lower` / `upper` are a quantile regressor's alpha/2 and 1 - alpha/2 predictions.
    Guarantee (with `cqr_intervals` and qhat = `quantile(s_cal, alpha=a)`):
    P(y in [lower - qhat, upper + qhat]) >= 1 - a for an exchangeable test point.

    Args:
      y, lower, upper: [...] arrays of one shape.
    Returns:
      [...] scores (negative when y is strictly inside the band).
    """
    y, lower = _pair(y, lower, "y", "lower", validate)
    _, upper = _pair(y, upper, "y", "upper", validate)
    return jnp.maximum(lower - y, y - upper)


def cqr_intervals(
    lower: jax.Array, upper: jax.Array, qhat: jax.Array | float, *, validate: bool = True
) -> tuple[jax.Array, jax.Array]:
    """CQR intervals [lower - qhat, upper + qhat] (see `cqr_scores` for the guarantee).

    Returns:
      (lower, upper), each [...]. With a negative qhat an interval can be empty (lower > upper);
      it then contains nothing, consistently with the score.
    """
    lower, upper = _pair(lower, upper, "lower", "upper", validate)
    if validate:
        qhat = V.as_float_array(qhat, "qhat")
        V.check_no_nan(qhat, "qhat")
    return lower - qhat, upper + qhat


def interval_summary(
    lower: jax.Array, upper: jax.Array, y: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Mean width (and coverage of `y`) of intervals. All inputs [...] of one shape."""
    lower, upper = jnp.asarray(lower), jnp.asarray(upper)
    V.check_same_shape(lower, upper, "lower", "upper")
    out = {"mean_width": jnp.mean(jnp.maximum(upper - lower, 0))}
    if y is not None:
        y = jnp.asarray(y)
        V.check_same_shape(y, lower, "y", "lower")
        fdt = jnp.result_type(float)
        out["coverage"] = jnp.mean(((lower <= y) & (y <= upper)).astype(fdt))
    return out
