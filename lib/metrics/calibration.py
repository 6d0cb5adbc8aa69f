"""Calibration metrics: ECE (and ACE, MCE, RMSCE), top-label and class-wise ECE, reliability
curves, Brier score and negative log-likelihood.

Binning. `binning="uniform"`: num_bins equal-width bins on [0, 1]; edge e_i = i / num_bins, bin i
holds e_i <= c < e_{i+1}, and the last bin also holds c = 1 (the left-closed bins of torchmetrics'
CalibrationError, except that torchmetrics gives c == 1.0 a bin of its own).
`binning="quantile"`: sort the confidences and split them into num_bins groups of (nearly) equal
size as `np.array_split` does; tied confidences all go to the bin of the first of them, so the
result does not depend on the input order (adaptive calibration error, ACE).

Norms, with n_b the samples in bin b, acc_b their accuracy, conf_b their mean confidence:
  l1  (ECE):   sum_b n_b / n * |acc_b - conf_b|
  l2  (RMSCE): sqrt(sum_b n_b / n * (acc_b - conf_b)^2)
  max (MCE):   max over non-empty bins of |acc_b - conf_b|
Per-bin sums are accumulated as (correct - confidence), which keeps float32 results accurate.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V
from introspect._sorting import from_order_key, group_sum, sort_payload, tie_groups

__all__ = [
    "ReliabilityCurve",
    "ece",
    "ace",
    "mce",
    "rmsce",
    "top_label_ece",
    "classwise_ece",
    "reliability_curve",
    "brier_score",
    "nll",
]

BINNINGS = ("uniform", "quantile")
NORMS = ("l1", "l2", "max")


class ReliabilityCurve(NamedTuple):
    """Per-bin statistics of a reliability diagram.

    edges: [num_bins + 1] bin edges (for quantile binning: the smallest confidence in each bin,
      then the largest confidence; edges of empty bins repeat the next edge).
    accuracy: [num_bins] mean correctness per bin (0 for empty bins; check `count`).
    confidence: [num_bins] mean confidence per bin (0 for empty bins).
    count: [num_bins] number of samples per bin.
    """

    edges: jax.Array
    accuracy: jax.Array
    confidence: jax.Array
    count: jax.Array


# ----------------------------------------------------------------------------- binning core


def _uniform_index(conf: jax.Array, num_bins: int) -> tuple[jax.Array, jax.Array]:
    """Bin index [n] int32 of each confidence and the edges [num_bins + 1] (i / num_bins)."""
    # Host-side division: correctly rounded i / num_bins (XLA may divide via a reciprocal).
    np_dtype = np.dtype(conf.dtype)
    np_edges = np.arange(num_bins + 1, dtype=np_dtype) / np_dtype.type(num_bins)
    edges = jnp.asarray(np_edges)
    if num_bins <= 64:
        # Count the inner edges at or below each confidence: exact and fused into one pass.
        idx = jnp.zeros(conf.shape, jnp.int32)
        for e in np_edges[1:-1]:
            idx = idx + (conf >= e).astype(jnp.int32)
        return idx, edges
    idx = jnp.clip(jnp.floor(conf * num_bins).astype(jnp.int32), 0, num_bins - 1)
    # conf * num_bins can round across an integer; one correction step makes the index exact
    # with respect to the rounded edges.
    idx = idx - (conf < edges[idx]).astype(jnp.int32)
    up = (idx + 1 < num_bins) & (conf >= edges[jnp.minimum(idx + 1, num_bins)])
    return jnp.clip(idx + up.astype(jnp.int32), 0, num_bins - 1), edges


def _split_bin(rank: jax.Array, n: jax.Array, num_bins: int) -> jax.Array:
    """Bin of 0-based `rank` among `n` items split like np.array_split(..., num_bins)."""
    q = n // num_bins
    rem = n % num_bins
    big = rem * (q + 1)
    return jnp.where(rank < big, rank // (q + 1), rem + (rank - big) // jnp.maximum(q, 1))


def _bin_stats(
    conf: jax.Array, correct: jax.Array, valid: jax.Array | None, num_bins: int, binning: str
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(count [B], sum of correct [B], sum of correct - conf [B], edges [B + 1]) per bin."""
    valid = V.valid_or_ones(valid, conf.shape)
    fdt = conf.dtype
    y = correct.astype(fdt)
    if binning == "uniform":
        c = jnp.where(valid, conf, 0)
        idx, edges = _uniform_index(c, num_bins)
        w = valid.astype(fdt)
        count = jax.ops.segment_sum(w, idx, num_segments=num_bins)
        sum_y = jax.ops.segment_sum(jnp.where(valid, y, 0), idx, num_segments=num_bins)
        sum_d = jax.ops.segment_sum(jnp.where(valid, y - c, 0), idx, num_segments=num_bins)
        return count, sum_y, sum_d, edges
    # quantile binning, in sorted order
    tie_key, (ys,), in_front = sort_payload(conf, (y,), valid, descending=False)
    cs = jnp.where(in_front, from_order_key(tie_key, fdt), 0)
    ys = jnp.where(in_front, ys, 0)
    gid, _ = tie_groups(tie_key, in_front)
    cnt_g = group_sum(in_front.astype(jnp.int32), gid)
    first_rank = (jnp.cumsum(cnt_g) - cnt_g)[gid]
    n_valid = jnp.sum(in_front.astype(jnp.int32))
    idx = jnp.clip(_split_bin(first_rank, n_valid, num_bins), 0, num_bins - 1)
    w = in_front.astype(fdt)
    count = jax.ops.segment_sum(w, idx, num_segments=num_bins)
    sum_y = jax.ops.segment_sum(ys, idx, num_segments=num_bins)
    sum_d = jax.ops.segment_sum(ys - cs, idx, num_segments=num_bins)
    lo = jax.ops.segment_min(jnp.where(in_front, cs, jnp.inf), idx, num_segments=num_bins)
    hi = jnp.max(jnp.where(in_front, cs, -jnp.inf))
    # Empty bins take the next bin's lower edge (zero width).
    lo = jax.lax.cummin(jnp.where(count > 0, lo, jnp.inf), reverse=True)
    lo = jnp.where(jnp.isfinite(lo), lo, hi)
    return count, sum_y, sum_d, jnp.concatenate([lo, hi[None]]).astype(fdt)


@functools.partial(jax.jit, static_argnames=("num_bins", "binning"))
def _ece_stats(conf, correct, valid, num_bins: int, binning: str):
    count, _, sum_d, _ = _bin_stats(conf, correct, valid, num_bins, binning)
    return count, sum_d


@functools.partial(jax.jit, static_argnames=("norm",))
def _ece_reduce(count: jax.Array, sum_d: jax.Array, norm: str) -> jax.Array:
    n = jnp.sum(count)
    gap = jnp.abs(sum_d) / jnp.maximum(count, 1)
    if norm == "l1":
        return jnp.sum(jnp.abs(sum_d)) / n
    if norm == "l2":
        return jnp.sqrt(jnp.sum(count * gap**2) / n)
    return jnp.max(jnp.where(count > 0, gap, 0))


def _ece(conf, correct, valid, num_bins: int, binning: str, norm: str) -> jax.Array:
    # Two jitted parts: the norm only recompiles the tiny reduction over the bins.
    count, sum_d = _ece_stats(conf, correct, valid, num_bins, binning)
    return _ece_reduce(count, sum_d, norm)


# ----------------------------------------------------------------------------- input handling


def _check_options(num_bins: Any, binning: Any, norm: Any | None = None) -> int:
    nb = V.check_int_option(num_bins, "num_bins", 1)
    V.check_choice(binning, "binning", BINNINGS)
    if norm is not None:
        V.check_choice(norm, "norm", NORMS)
    return nb


def _prepare_binary(
    confidences: Any, correct: Any, mask: Any, validate: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    return V.prepare_pair(
        confidences,
        correct,
        mask,
        names=("confidences", "correct"),
        kinds=("probability", "binary"),
        validate=validate,
    )


# ----------------------------------------------------------------------------- public API


def ece(
    confidences: Any,
    correct: Any,
    *,
    num_bins: int = 15,
    binning: str = "uniform",
    norm: str = "l1",
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Expected calibration error of binary-outcome confidences; lower = better calibrated.

    `norm="l1"` is ECE, `"l2"` RMSCE, `"max"` MCE; `binning="quantile"` gives adaptive (equal-mass)
    bins (ACE). See the module docstring for the bin edges.

    Args:
      confidences: [n] confidence that each answer is correct, in [0, 1].
      correct: [n] 1 if the answer was correct, else 0.
      num_bins: number of bins, >= 1.
      binning: "uniform" or "quantile".
      norm: "l1", "l2" or "max".
      mask: optional [n] bool, False = padding (ignored).
      validate: check the input at the boundary (value checks are skipped on tracers).
    Returns:
      [] calibration error in [0, 1].
    Raises:
      ValueError: bad options, shapes, NaN/inf, confidences outside [0, 1], correct not 0/1,
        empty input.
    """
    nb = _check_options(num_bins, binning, norm)
    c, y, m = _prepare_binary(confidences, correct, mask, validate)
    return _ece(c, y, m, nb, binning, norm)


def ace(confidences: Any, correct: Any, *, num_bins: int = 15, **kwargs: Any) -> jax.Array:
    """Adaptive calibration error: `ece(..., binning="quantile")`; lower = better. Shapes as ece."""
    return ece(confidences, correct, num_bins=num_bins, binning="quantile", **kwargs)


def mce(confidences: Any, correct: Any, *, num_bins: int = 15, **kwargs: Any) -> jax.Array:
    """Maximum calibration error: `ece(..., norm="max")`; lower = better. Shapes as ece."""
    return ece(confidences, correct, num_bins=num_bins, norm="max", **kwargs)


def rmsce(confidences: Any, correct: Any, *, num_bins: int = 15, **kwargs: Any) -> jax.Array:
    """Root-mean-square calibration error: `ece(..., norm="l2")`; lower = better."""
    return ece(confidences, correct, num_bins=num_bins, norm="l2", **kwargs)


def top_label_ece(
    probs: Any,
    labels: Any,
    *,
    num_bins: int = 15,
    binning: str = "uniform",
    norm: str = "l1",
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Top-label (confidence) ECE of class probabilities; lower = better calibrated.

    The confidence is max_k p_k and the outcome is argmax_k p_k == label (first maximum on
    ties), as torchmetrics' multiclass CalibrationError.

    Args:
      probs: [n, num_classes] probability vectors (rows sum to 1).
      labels: [n] integer class indices.
      num_bins, binning, norm, mask, validate: as `ece`.
    Returns:
      [] calibration error.
    """
    nb = _check_options(num_bins, binning, norm)
    p, y, m = V.prepare_labelled(probs, labels, mask, validate=validate)
    conf = jnp.max(p, axis=-1)
    correct = jnp.argmax(p, axis=-1) == y.astype(jnp.int32)
    return _ece(conf, correct, m, nb, binning, norm)


@functools.partial(jax.jit, static_argnames=("num_bins", "binning", "norm"))
def _classwise(p, y, valid, num_bins: int, binning: str, norm: str) -> jax.Array:
    valid = V.valid_or_ones(valid, p.shape[:1])
    k = p.shape[1]
    onehot = y.astype(jnp.int32)[:, None] == jnp.arange(k)[None, :]
    per_class = jax.vmap(lambda c, t: _ece(c, t, valid, num_bins, binning, norm), in_axes=(1, 1))(
        p, onehot
    )
    return jnp.mean(per_class)


def classwise_ece(
    probs: Any,
    labels: Any,
    *,
    num_bins: int = 15,
    binning: str = "uniform",
    norm: str = "l1",
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Class-wise ECE: mean over classes k of the ECE of p_k against 1[label == k].

    Lower = better. With `binning="quantile"` this is the ACE of Nixon et al. (2019).

    Args:
      probs: [n, num_classes] probability vectors.
      labels: [n] integer class indices.
      num_bins, binning, norm, mask, validate: as `ece`.
    Returns:
      [] mean class-wise calibration error.
    """
    nb = _check_options(num_bins, binning, norm)
    p, y, m = V.prepare_labelled(probs, labels, mask, validate=validate)
    return _classwise(p, y, m, nb, binning, norm)


@functools.partial(jax.jit, static_argnames=("num_bins", "binning"))
def _reliability(conf, correct, valid, num_bins: int, binning: str) -> ReliabilityCurve:
    count, sum_y, sum_d, edges = _bin_stats(conf, correct, valid, num_bins, binning)
    denom = jnp.maximum(count, 1)
    acc = sum_y / denom
    return ReliabilityCurve(
        edges=edges, accuracy=acc, confidence=(sum_y - sum_d) / denom, count=count
    )


def reliability_curve(
    confidences: Any,
    correct: Any,
    *,
    num_bins: int = 15,
    binning: str = "uniform",
    mask: Any = None,
    validate: bool = True,
) -> ReliabilityCurve:
    """Per-bin accuracy, mean confidence and count (the data of a reliability diagram).

    Args:
      confidences: [n] confidences in [0, 1].
      correct: [n] 1 if correct, else 0.
      num_bins, binning, mask, validate: as `ece`.
    Returns:
      ReliabilityCurve(edges [num_bins + 1], accuracy [num_bins], confidence [num_bins],
      count [num_bins]).
    """
    nb = _check_options(num_bins, binning)
    c, y, m = _prepare_binary(confidences, correct, mask, validate)
    return _reliability(c, y, m, nb, binning)


def _weighted_mean(x: jax.Array, valid: jax.Array | None) -> jax.Array:
    if valid is None:
        return jnp.mean(x)
    return jnp.sum(jnp.where(valid, x, 0)) / jnp.sum(valid.astype(x.dtype))


@jax.jit
def _brier_binary(p, y, valid):
    return _weighted_mean((p - y.astype(p.dtype)) ** 2, valid)


@jax.jit
def _brier_multi(p, y, valid):
    onehot = jax.nn.one_hot(y.astype(jnp.int32), p.shape[1], dtype=p.dtype)
    return _weighted_mean(jnp.sum((p - onehot) ** 2, axis=-1), valid)


def brier_score(probs: Any, labels: Any, *, mask: Any = None, validate: bool = True) -> jax.Array:
    """Brier score (mean squared error of probabilities); lower = better.

    Binary: probs [n] = P(label = 1), labels [n] in {0, 1}: mean (p - y)^2, as
    `sklearn.metrics.brier_score_loss`. Multiclass: probs [n, num_classes], labels [n] class
    indices: mean over samples of sum_k (p_k - 1[y = k])^2 (range [0, 2]).

    Args:
      probs: [n] or [n, num_classes] probabilities.
      labels: [n] binary labels or class indices.
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] Brier score.
    """
    p, y, m = V.prepare_labelled(probs, labels, mask, allow_binary=True, validate=validate)
    return (_brier_multi if p.ndim == 2 else _brier_binary)(p, y, m)


def _clip_eps(dtype, eps):
    return float(jnp.finfo(dtype).eps) if eps is None else float(eps)


@functools.partial(jax.jit, static_argnames=("eps",))
def _nll_binary(p, y, valid, eps: float):
    p = jnp.clip(p, eps, 1 - eps)
    yf = y.astype(p.dtype)
    return -_weighted_mean(yf * jnp.log(p) + (1 - yf) * jnp.log1p(-p), valid)


@functools.partial(jax.jit, static_argnames=("eps",))
def _nll_multi(p, y, valid, eps: float):
    p = jnp.clip(p, eps, 1 - eps)
    py = jnp.take_along_axis(p, y.astype(jnp.int32)[:, None], axis=1)[:, 0]
    return -_weighted_mean(jnp.log(py), valid)


def nll(
    probs: Any,
    labels: Any,
    *,
    eps: float | None = None,
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Mean negative log-likelihood (log loss) of the labels; lower = better.

    Binary: probs [n] = P(label = 1), labels [n] in {0, 1}. Multiclass: probs [n, num_classes],
    labels [n] class indices. Probabilities are clipped to [eps, 1 - eps] first, as
    `sklearn.metrics.log_loss` does (eps defaults to the machine epsilon of the dtype), so a
    zero probability gives a large finite loss.

    Args:
      probs: [n] or [n, num_classes] probabilities.
      labels: [n] binary labels or class indices.
      eps: clipping constant in [0, 0.5); None = machine epsilon.
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] mean NLL in nats.
    """
    if eps is not None:
        V.check_float_option(eps, "eps", 0.0, 0.5, hi_open=True)
    p, y, m = V.prepare_labelled(probs, labels, mask, allow_binary=True, validate=validate)
    return (_nll_multi if p.ndim == 2 else _nll_binary)(p, y, m, _clip_eps(p.dtype, eps))
