"""Isotonic regression calibration (pool-adjacent-violators), as scikit-learn's
IsotonicRegression(out_of_bounds="clip").

Fit: sort by score; average the labels of tied scores (weighted), then pool adjacent blocks while
their means decrease (PAVA, a stack scan: O(n) merges). Apply: linear interpolation between the
fitted points, clipped to the end values outside the fitted range.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from introspect import _checks as V
from introspect._sorting import from_order_key, group_sum, sort_payload, tie_groups
from introspect.calibrators import _common as C

__all__ = ["IsotonicParams", "fit", "apply", "pava"]


@struct.dataclass
class IsotonicParams:
    """x: [n] ascending thresholds; y: [n] fitted values (the tail repeats the last point)."""

    x: jax.Array
    y: jax.Array


def pava(y: jax.Array, w: jax.Array) -> jax.Array:
    """Non-decreasing least-squares fit of `y` [n] with weights `w` [n] (in the given order).

    Entries with w == 0 are skipped (they take the value of the block before them, or of the
    first block). Returns the fitted values [n].
    """
    n = y.shape[0]
    dt = y.dtype

    def push(i, st):
        def add(st):
            sums, wts, starts, top = st
            sums = sums.at[top].set(w[i] * y[i])
            wts = wts.at[top].set(w[i])
            starts = starts.at[top].set(i)
            top = top + 1

            def violated(st):
                sums, wts, _, top = st
                a, b = jnp.maximum(top - 2, 0), jnp.maximum(top - 1, 0)
                return (top >= 2) & (sums[a] * wts[b] > sums[b] * wts[a])

            def merge(st):
                sums, wts, starts, top = st
                sums = sums.at[top - 2].add(sums[top - 1])
                wts = wts.at[top - 2].add(wts[top - 1])
                return sums, wts, starts, top - 1

            return lax.while_loop(violated, merge, (sums, wts, starts, top))

        return lax.cond(w[i] > 0, add, lambda st: st, st)

    init = (jnp.zeros((n,), dt), jnp.zeros((n,), dt), jnp.zeros((n,), jnp.int32), 0)
    sums, wts, starts, top = lax.fori_loop(0, n, push, init)
    idx = jnp.arange(n, dtype=jnp.int32)
    starts = jnp.where(idx < top, starts, n)
    block = jnp.clip(jnp.searchsorted(starts, idx, side="right") - 1, 0, jnp.maximum(top - 1, 0))
    means = sums / jnp.where(wts > 0, wts, 1)
    return means[block]


@functools.partial(jax.jit, static_argnames=("increasing",))
def _fit(x, y, w, valid, increasing: bool):
    valid = valid & (w > 0)
    yy = y if increasing else -y
    tie_key, (ys, ws), in_front = sort_payload(x, (yy, w), valid, descending=False)
    ws = jnp.where(in_front, ws, 0)
    gid, num_groups = tie_groups(tie_key, in_front)
    sw = group_sum(ws, gid)
    swy = group_sum(ws * jnp.where(in_front, ys, 0), gid)
    xs = from_order_key(tie_key, x.dtype)
    xg = jax.ops.segment_min(
        jnp.where(in_front, xs, jnp.inf), gid, num_segments=x.shape[0], indices_are_sorted=True
    )
    yg = swy / jnp.where(sw > 0, sw, 1)
    fitted = pava(yg, sw)
    if not increasing:
        fitted = -fitted
    g = jnp.arange(x.shape[0])
    last = jnp.maximum(num_groups - 1, 0)
    return jnp.where(g < num_groups, xg, xg[last]), jnp.where(g < num_groups, fitted, fitted[last])


def fit(
    scores: Any,
    labels: Any,
    *,
    sample_weight: Any = None,
    increasing: bool = True,
    mask: Any = None,
    validate: bool = True,
) -> IsotonicParams:
    """Fits a monotone map from scores to labels by isotonic regression.

    Args:
      scores: [n] real scores.
      labels: [n] targets (0/1 correctness for calibration; any finite values allowed).
      sample_weight: optional [n] weights >= 0.
      increasing: fit a non-decreasing (True) or non-increasing (False) map.
      mask: optional [n] bool, False = padding.
      validate: check the input.
    Returns:
      IsotonicParams.
    """
    s, y, m = C.prepare_scores(scores, labels, mask, validate, unit=False, labels_kind="real")
    if sample_weight is None:
        w = jnp.ones_like(s)
    else:
        w = V.as_array(sample_weight, "sample_weight")
        if validate:
            V.check_same_shape(s, w, "scores", "sample_weight")
            V.check_range(w, "sample_weight", 0.0, jnp.inf, m, what="weights >= 0")
            if V.is_concrete(w, m) and not bool(jnp.any((w > 0) & m)):
                raise ValueError("sample_weight: all (unmasked) weights are 0")
        w = jnp.where(m, w.astype(s.dtype), 0)
    x_thr, y_thr = _fit(s, y, w, m, bool(increasing))
    return IsotonicParams(x=x_thr, y=y_thr)


def apply(params: IsotonicParams, scores: Any, *, validate: bool = True) -> jax.Array:
    """Calibrated values: linear interpolation of the fitted points (clipped at the ends).

    Args:
      params: from `fit`.
      scores: [...] real scores.
      validate: check the input.
    Returns:
      [...] calibrated values (probabilities when fit on 0/1 labels); monotone in scores.
    """
    s = C.check_apply_scores(scores, validate, unit=False)
    dt = jnp.result_type(s.dtype, params.y.dtype)
    return jnp.interp(s.astype(dt), params.x.astype(dt), params.y.astype(dt))
