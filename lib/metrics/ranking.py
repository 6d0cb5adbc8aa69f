"""Ranking and selective-prediction metrics: AUROC, AUPRC, risk-coverage, AURC, PRR, Spearman.

All functions take 1-D arrays `[n]` and an optional boolean `mask` `[n]` (False = padding, ignored).
Ties in the scores are handled exactly: AUROC and AUPRC group tied scores into one threshold as
scikit-learn does; the selective-prediction metrics (risk-coverage, AURC, selective accuracy, PRR)
use the expectation over a random order inside each tie, which does not depend on the input order
and equals the usual per-sample definition when there are no ties.

Inside `jit`/`vmap`, degenerate input that validation would reject (one class only, nothing to
rank) gives NaN instead of a ValueError.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V
from introspect._sorting import (
    from_order_key,
    group_sum,
    sign_mode,
    sort_binary_ascending,
    sort_payload,
    tie_groups,
)

__all__ = [
    "RiskCoverageCurve",
    "auroc",
    "auprc",
    "risk_coverage_curve",
    "aurc",
    "excess_aurc",
    "selective_accuracy",
    "prr",
    "spearman",
]


# ----------------------------------------------------------------------------- input handling


_KINDS = {"binary": "binary", "unit": "unit", "real": "finite"}


def _prepare_pair(
    scores: Any,
    labels: Any,
    mask: Any,
    *,
    names: tuple[str, str],
    validate: bool,
    labels_kind: str,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(scores as float [n], labels [n], valid [n] bool or None) after the boundary checks.

    labels_kind: "binary" (0/1), "unit" (real in [0, 1]) or "real" (finite).
    """
    return V.prepare_pair(
        scores,
        labels,
        mask,
        names=names,
        kinds=("finite", _KINDS[labels_kind]),
        validate=validate,
    )


def _prepare_selective(confidences: Any, correct: Any, mask: Any, validate: bool):
    """The selective-prediction inputs: real confidences [n], correctness in [0, 1] [n]."""
    return _prepare_pair(
        confidences,
        correct,
        mask,
        names=("confidences", "correct"),
        validate=validate,
        labels_kind="unit",
    )


def _check_both_classes(labels: jax.Array, mask, name: str, metric: str) -> None:
    if not V.is_concrete(labels, mask):
        return
    xp, y = V.host_or_device(labels)
    m = True if mask is None else V.host_or_device(mask)[1]
    pos = int(xp.sum((y != 0) & m))
    tot = int(xp.sum(xp.broadcast_to(m, y.shape)))
    if pos == 0 or pos == tot:
        only = "1 (positive)" if pos else "0 (negative)"
        raise ValueError(
            f"{name}: only one class present (every label is {only}); {metric} needs both "
            "positives and negatives"
        )


def _count_positive(labels, mask) -> int:
    xp, y = V.host_or_device(labels)
    m = True if mask is None else V.host_or_device(mask)[1]
    return int(xp.sum((y != 0) & m))


def _host_values(x, mask):
    """The (unmasked) values of concrete `x` as a numpy array."""
    xn = np.asarray(x)
    return xn if mask is None else xn[np.asarray(mask)]


# ----------------------------------------------------------------------------- AUROC / AUPRC


@functools.partial(jax.jit, static_argnames=("mode",))
def _auroc(scores: jax.Array, labels: jax.Array, valid: jax.Array, mode: str = "auto"):
    valid = V.valid_or_ones(valid, scores.shape)
    fdt = scores.dtype
    tie_key, lab, in_front = sort_binary_ascending(scores, labels, valid, mode)
    gid, _ = tie_groups(tie_key, in_front)
    n = scores.shape[0]
    pos = jnp.sum(lab).astype(fdt)
    neg = jnp.sum(in_front.astype(jnp.int32)).astype(fdt) - pos
    # Inside a tie, negatives precede positives, so the sorted index of a positive counts the
    # positives below it, the negatives strictly below it and every negative tied with it.
    rank_sum = jnp.sum(jnp.where(lab == 1, jnp.arange(n, dtype=fdt), 0))
    pos_g = group_sum(lab, gid).astype(fdt)
    cnt_g = group_sum(in_front.astype(jnp.int32), gid).astype(fdt)
    ties = jnp.sum(pos_g * (cnt_g - pos_g))
    u = rank_sum - pos * (pos - 1) / 2 - ties / 2
    return u / (pos * neg)


def auroc(scores: Any, labels: Any, *, mask: Any = None, validate: bool = True) -> jax.Array:
    """Area under the ROC curve; higher = scores rank positives above negatives better.

    Equals the probability that a random positive scores above a random negative, ties counted
    one half; identical to `sklearn.metrics.roc_auc_score` (ties grouped into one threshold).

    Args:
      scores: [n] real scores, higher = more likely positive (e.g. confidence).
      labels: [n] binary labels, 1 = positive (e.g. the answer was correct), 0 = negative.
      mask: optional [n] bool, False = padding (ignored).
      validate: check the input at the boundary (see module docstring).
    Returns:
      [] AUROC in [0, 1] (0.5 = chance).
    Raises:
      ValueError: bad shapes, NaN/inf, labels not 0/1, empty input or a single class.
    """
    s, y, m = _prepare_pair(
        scores, labels, mask, names=("scores", "labels"), validate=validate, labels_kind="binary"
    )
    if validate:
        _check_both_classes(y, m, "labels", "AUROC")
    return _auroc(s, y, m, sign_mode(s, m))


@functools.partial(jax.jit, static_argnames=("mode",))
def _auprc(scores: jax.Array, labels: jax.Array, valid: jax.Array, mode: str = "auto"):
    valid = V.valid_or_ones(valid, scores.shape)
    fdt = scores.dtype
    tie_key, lab, in_front = sort_binary_ascending(scores, labels, valid, mode)
    gid, _ = tie_groups(tie_key, in_front)
    pos_g = group_sum(lab, gid).astype(fdt)
    cnt_g = group_sum(in_front.astype(jnp.int32), gid).astype(fdt)
    # Threshold at group g (scores >= score of g): counts of everything at or above it.
    pos_ge = jnp.cumsum(pos_g[::-1])[::-1]
    cnt_ge = jnp.cumsum(cnt_g[::-1])[::-1]
    precision = pos_ge / jnp.maximum(cnt_ge, 1)
    return jnp.sum(jnp.where(cnt_g > 0, pos_g * precision, 0)) / jnp.sum(pos_g)


def auprc(scores: Any, labels: Any, *, mask: Any = None, validate: bool = True) -> jax.Array:
    """Average precision (area under the precision-recall curve); higher = better ranking.

    AP = sum over distinct thresholds of (R_k - R_{k-1}) * P_k, without interpolation; identical
    to `sklearn.metrics.average_precision_score`.

    Args:
      scores: [n] real scores, higher = more likely positive.
      labels: [n] binary labels, 1 = positive.
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] average precision in [0, 1] (chance = share of positives).
    Raises:
      ValueError: bad shapes, NaN/inf, labels not 0/1, empty input or no positive label.
    """
    s, y, m = _prepare_pair(
        scores, labels, mask, names=("scores", "labels"), validate=validate, labels_kind="binary"
    )
    if validate and V.is_concrete(y, m) and _count_positive(y, m) == 0:
        raise ValueError("labels: no positive label; average precision needs at least one 1")
    return _auprc(s, y, m, sign_mode(s, m))


# ----------------------------------------------------------------------------- selective prediction


def _prefix_means(
    scores: jax.Array, quality: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Expected mean quality of the k most confident samples, for every k = 1..n.

    Returns (mean_quality [n] at k = index + 1, sorted tie keys [n], valid [n], n_valid []).
    Inside a tie the expectation is over a uniformly random order of the tied samples.
    """
    fdt = scores.dtype
    valid = V.valid_or_ones(valid, scores.shape)
    q = quality.astype(fdt)
    tie_key, (q_sorted,), in_front = sort_payload(scores, (q,), valid, descending=True)
    q_sorted = jnp.where(in_front, q_sorted, 0)
    gid, _ = tie_groups(tie_key, in_front)
    cnt_g = group_sum(in_front.astype(fdt), gid)
    q_g = group_sum(q_sorted, gid)
    cum_cnt = jnp.cumsum(cnt_g)
    cum_q = jnp.cumsum(q_g)
    cnt_before = (cum_cnt - cnt_g)[gid]
    q_before = (cum_q - q_g)[gid]
    mean_in_group = (q_g / jnp.maximum(cnt_g, 1))[gid]
    k = jnp.arange(1, scores.shape[0] + 1, dtype=fdt)
    expected = (q_before + (k - cnt_before) * mean_in_group) / k
    n_valid = jnp.sum(in_front.astype(fdt))
    return jnp.where(in_front, expected, 0), tie_key, in_front, n_valid


class RiskCoverageCurve(NamedTuple):
    """Risk-coverage curve at every coverage k/n (entries with valid False are padding).

    coverage: [n] share of samples kept, k / n_valid, ascending.
    risk: [n] expected error rate (1 - mean correctness) of the k most confident samples.
    threshold: [n] confidence of the k-th most confident sample (keep samples >= threshold).
    valid: [n] bool.
    """

    coverage: jax.Array
    risk: jax.Array
    threshold: jax.Array
    valid: jax.Array


@jax.jit
def _risk_coverage(conf: jax.Array, correct: jax.Array, valid: jax.Array) -> RiskCoverageCurve:
    mean_q, tie_key, in_front, n_valid = _prefix_means(conf, correct, valid)
    fdt = conf.dtype
    k = jnp.arange(1, conf.shape[0] + 1, dtype=fdt)
    threshold = from_order_key(~tie_key, fdt)
    return RiskCoverageCurve(
        coverage=jnp.where(in_front, k / n_valid, 0),
        risk=jnp.where(in_front, 1 - mean_q, 0),
        threshold=jnp.where(in_front, threshold, 0),
        valid=in_front,
    )


def risk_coverage_curve(
    confidences: Any, correct: Any, *, mask: Any = None, validate: bool = True
) -> RiskCoverageCurve:
    """Risk (error rate) of the k most confident samples against coverage k/n, for all k.

    Args:
      confidences: [n] real confidence scores, higher = more confident.
      correct: [n] correctness in [0, 1], 1 = correct (graded quality allowed).
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      RiskCoverageCurve of [n] arrays (padding at the end, valid False).
    """
    c, y, m = _prepare_selective(confidences, correct, mask, validate)
    return _risk_coverage(c, y, m)


@jax.jit
def _aurc(conf: jax.Array, correct: jax.Array, valid: jax.Array) -> jax.Array:
    mean_q, _, in_front, n_valid = _prefix_means(conf, correct, valid)
    return jnp.sum(jnp.where(in_front, 1 - mean_q, 0)) / n_valid


def aurc(confidences: Any, correct: Any, *, mask: Any = None, validate: bool = True) -> jax.Array:
    """Area under the risk-coverage curve, mean over k of the risk of the k most confident.

    Lower = better (confidence puts errors last). Geifman et al. (2019) AURC.

    Args:
      confidences: [n] real confidences, higher = more confident.
      correct: [n] correctness in [0, 1], 1 = correct.
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] AURC in [0, 1].
    """
    c, y, m = _prepare_selective(confidences, correct, mask, validate)
    return _aurc(c, y, m)


def excess_aurc(
    confidences: Any, correct: Any, *, mask: Any = None, validate: bool = True
) -> jax.Array:
    """Excess AURC (E-AURC): AURC minus the AURC of the oracle that ranks by correctness.

    Lower = better, 0 = the confidences order samples as well as the correctness itself. The
    oracle is computed on the same finite sample (not the continuous approximation
    r + (1 - r) log(1 - r)).

    Args:
      confidences: [n] real confidences, higher = more confident.
      correct: [n] correctness in [0, 1], 1 = correct.
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] E-AURC >= 0.
    """
    c, y, m = _prepare_selective(confidences, correct, mask, validate)
    return _aurc(c, y, m) - _aurc(V.as_float(y).astype(c.dtype), y, m)


@jax.jit
def _selective_accuracy(
    conf: jax.Array, correct: jax.Array, valid: jax.Array, coverage: jax.Array
) -> jax.Array:
    mean_q, _, _, n_valid = _prefix_means(conf, correct, valid)
    target = coverage * n_valid
    k = jnp.ceil(target - 1e-6 * jnp.maximum(target, 1.0))
    k = jnp.clip(k, 1, n_valid).astype(jnp.int32)
    return mean_q[k - 1]


def selective_accuracy(
    confidences: Any,
    correct: Any,
    *,
    coverage: float,
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Accuracy of the ceil(coverage * n) most confident samples; higher = better.

    Args:
      confidences: [n] real confidences, higher = more confident.
      correct: [n] correctness in [0, 1], 1 = correct.
      coverage: share of samples to keep, in (0, 1].
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] mean correctness of the kept samples (expected over random order inside ties).
    """
    cov = V.check_float_option(coverage, "coverage", 0.0, 1.0, lo_open=True)
    c, y, m = _prepare_selective(confidences, correct, mask, validate)
    return _selective_accuracy(c, y, m, jnp.asarray(cov, dtype=c.dtype))


@functools.partial(jax.jit, static_argnames=("max_rejection",))
def _prr(conf: jax.Array, quality: jax.Array, valid: jax.Array, max_rejection: float):
    fdt = conf.dtype
    valid = V.valid_or_ones(valid, conf.shape)
    q = quality.astype(fdt)
    mean_q, _, in_front, n_valid = _prefix_means(conf, q, valid)
    oracle_q, _, _, _ = _prefix_means(q, q, valid)
    num_rej = jnp.floor(max_rejection * n_valid + 1e-9)
    k = jnp.arange(1, conf.shape[0] + 1, dtype=fdt)
    window = in_front & (k > n_valid - num_rej)
    method = jnp.sum(jnp.where(window, mean_q, 0)) / num_rej
    oracle = jnp.sum(jnp.where(window, oracle_q, 0)) / num_rej
    random = jnp.sum(jnp.where(in_front, q, 0)) / n_valid
    return (method - random) / (oracle - random)


def prr(
    confidences: Any,
    quality: Any,
    *,
    max_rejection: float = 1.0,
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Prediction rejection ratio, as in LM-Polygraph; higher = better, 1 = oracle, 0 = random.

    The prediction-rejection area of a ranking is the mean, over rejection rates 0, 1/n, ...,
    up to `max_rejection`, of the mean quality of the samples kept (the most confident ones).
    PRR = (area(method) - area(random)) / (area(oracle) - area(random)); with risk = 1 - quality
    this is (random - method) / (random - oracle) in risk-coverage area. The random area is its
    exact expectation (the mean quality); the oracle ranks by quality itself.

    Args:
      confidences: [n] real confidences, higher = more confident (LM-Polygraph's uncertainty is
        the negative of this).
      quality: [n] real quality of each answer, higher = better (e.g. correctness 0/1, ROUGE).
      max_rejection: largest rejection rate in the area, in (0, 1]; the number of rejection
        levels is floor(max_rejection * n) as in LM-Polygraph.
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] PRR (can be negative when the ranking is worse than random).
    Raises:
      ValueError: bad input, all qualities equal (the oracle equals random), or
        max_rejection * n < 1.
    """
    mr = V.check_float_option(max_rejection, "max_rejection", 0.0, 1.0, lo_open=True)
    c, y, m = _prepare_pair(
        confidences,
        quality,
        mask,
        names=("confidences", "quality"),
        validate=validate,
        labels_kind="real",
    )
    if validate and V.is_concrete(y, m):
        vals = _host_values(y, m)
        n_valid = vals.size
        if int(mr * n_valid + 1e-9) < 1:
            raise ValueError(
                f"max_rejection: {mr} * {n_valid} samples rounds down to 0 rejection levels; "
                "expected max_rejection * n >= 1"
            )
        if bool(np.all(vals == vals[0])):
            raise ValueError("quality: all values are equal; PRR needs at least two quality levels")
    return _prr(c, y, m, mr)


# ----------------------------------------------------------------------------- rank correlation


def _midranks(x: jax.Array, valid: jax.Array) -> jax.Array:
    """1-based ranks [n] of `x` among the valid entries, ties given their average rank."""
    fdt = x.dtype
    n = x.shape[0]
    tie_key, (perm,), in_front = sort_payload(
        x, (jnp.arange(n, dtype=jnp.int32),), valid, descending=False
    )
    gid, _ = tie_groups(tie_key, in_front)
    cnt_g = group_sum(in_front.astype(fdt), gid)
    before = jnp.cumsum(cnt_g) - cnt_g
    mid = (before + (cnt_g + 1) / 2)[gid]
    return jnp.zeros((n,), fdt).at[perm].set(jnp.where(in_front, mid, 0))


@jax.jit
def _spearman(x: jax.Array, y: jax.Array, valid: jax.Array) -> jax.Array:
    valid = V.valid_or_ones(valid, x.shape)
    rx = _midranks(x, valid)
    ry = _midranks(y.astype(x.dtype), valid)
    w = valid.astype(x.dtype)
    nv = jnp.sum(w)
    dx = (rx - jnp.sum(w * rx) / nv) * w
    dy = (ry - jnp.sum(w * ry) / nv) * w
    return jnp.sum(dx * dy) / jnp.sqrt(jnp.sum(dx * dx) * jnp.sum(dy * dy))


def spearman(x: Any, y: Any, *, mask: Any = None, validate: bool = True) -> jax.Array:
    """Spearman rank correlation (Pearson correlation of midranks); higher = more concordant.

    Ties get their average rank, as in `scipy.stats.spearmanr`.

    Args:
      x: [n] real values (e.g. confidences).
      y: [n] real values (e.g. quality).
      mask: optional [n] bool, False = padding.
      validate: check the input at the boundary.
    Returns:
      [] correlation in [-1, 1].
    Raises:
      ValueError: bad input, fewer than 2 samples, or a constant x or y.
    """
    xa, ya, m = _prepare_pair(x, y, mask, names=("x", "y"), validate=validate, labels_kind="real")
    if validate and V.is_concrete(xa, ya, m):
        if _host_values(xa, m).size < 2:
            raise ValueError("x: fewer than 2 (unmasked) samples; Spearman needs at least 2")
        for name, arr in (("x", xa), ("y", ya)):
            vals = _host_values(arr, m)
            if bool(np.all(vals == vals[0])):
                raise ValueError(f"{name}: is constant; the rank correlation is undefined")
    return _spearman(xa, ya, m)
