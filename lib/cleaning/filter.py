"""Finding and ranking label issues with confident learning (cleanlab 2.9.0 `filter` and `rank`).

`find_label_issues` returns the same boolean mask as `cleanlab.filter.find_label_issues` for
filter_by in {"prune_by_noise_rate" (default), "prune_by_class", "both", "confident_learning",
"predicted_neq_given"} and the options frac_noise, num_to_remove_per_class,
min_examples_per_class and confident_joint, with cleanlab's defaults:

* prune_by_noise_rate: from the (calibrated) confident joint C, the prune matrix P = C^T with each
  class's diagonal raised to `min_examples_per_class` (taken evenly from its non-zero
  off-diagonals), off-diagonals scaled by `frac_noise`, rows rounded keeping totals; then in every
  class k with more than max(min_examples_per_class, 1) examples and for every other class j, the
  P[j, k] examples labelled k with the largest pred_probs[:, j] - pred_probs[:, k] are flagged;
* prune_by_class: in every such class, the n_k - P[k, k] examples with the smallest
  pred_probs[:, k];
* both: flagged by both rules; confident_learning: the off-diagonal examples of the confident
  joint; predicted_neq_given: argmax(pred_probs) != label;
* finally (every rule) an example is never flagged when its label is the argmax of its row after
  adding 1e-6 to the label's probability (cleanlab's `_reduce_issues`).

The [n, K] work is jitted XLA with static shapes: the confident counting (`confident._core`),
then the class-grouped keys and an exact per-(class, column) top-m selection by bit-by-bit
counting (`_select`), with the [K, K] prune matrix computed on the host in NumPy float64 in
between. No Python loop runs over examples or classes. 1M x 10 takes about half a second on a
2-core CPU (benchmarks/confident_learning.py), a few times faster than cleanlab.

Deviations from cleanlab, all at the boundary or at exact ties:

* Among examples with exactly equal scores at a pruning cut, cleanlab's choice is whatever
  NumPy's unstable quicksort leaves first; here the lowest example index wins (the same holds for
  the order of `rank_label_issues`). Without exact ties the results are identical.
* float64 pred_probs are computed in float64 only when JAX runs with x64 (`jax.enable_x64`);
  otherwise they are rounded to float32 first (JAX's default), which can move examples that sit
  within float32 rounding of a threshold or a cut. float16/bfloat16 input is upcast to float32.
* XLA on CPU flushes subnormal floats (|x| < 1.2e-38 in float32) to zero in arithmetic; a
  difference of two probabilities that small is taken as 0 (a tie) here.
* Invalid input raises ValueError (cleanlab raises assorted errors or proceeds): labels outside
  [0, K), pred_probs not [n, K] with K >= 2, values outside [-1e-6, 1 + 1e-6] or NaN/inf,
  frac_noise outside [0, 1], negative min_examples_per_class. Rows need not sum to 1 (cleanlab
  does not check it either). Labels that use a single class are accepted (cleanlab refuses them
  unless that class is 0). cleanlab's warnings (classes with too few examples, ignored options)
  are not issued.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V
from introspect.cleaning import _select as S
from introspect.cleaning.confident import (
    _check_joint,
    _core,
    calibrate_np,
    floor_diagonal,
    pad,
    prepare,
    round_rows,
)

__all__ = ["FILTERS", "RANKINGS", "find_label_issues", "label_quality_scores", "rank_label_issues"]

FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
)
_PRUNING = FILTERS[:3]
RANKINGS = ("self_confidence", "normalized_margin")


# --------------------------------------------------------------------- prune matrix (host, K x K)


def _scale_off_diagonal(mat: np.ndarray, frac_noise: float) -> np.ndarray:
    """Off-diagonals times frac_noise, the diagonal takes up what they lose (column totals kept),
    truncated to integers (cleanlab filter._reduce_prune_counts)."""
    out = mat * frac_noise
    np.fill_diagonal(out, mat.diagonal())
    np.fill_diagonal(out, mat.diagonal() + np.sum(mat - out, axis=0))
    return out.astype(int)


def _floor_diagonal_counts(pcm: np.ndarray, n_min: int, frac_noise: float) -> np.ndarray:
    """Raise each diagonal to n_min, taking the increase evenly from the column's non-zero
    off-diagonals (cleanlab filter._keep_at_least_n_per_class). pcm is C^T (a transposed view,
    as in cleanlab: the memory order decides the order of the float sums)."""
    diag = np.diagonal(pcm)
    new_diag = np.maximum(diag, n_min)
    raised = new_diag - diag
    nonzero_off = np.maximum(np.count_nonzero(pcm, axis=0) - 1.0, 1.0)
    out = pcm - raised / nonzero_off
    out[out < 0] = 0
    np.fill_diagonal(out, new_diag)
    return round_rows(_scale_off_diagonal(out, frac_noise)).astype(int)


def prune_matrix(
    joint: np.ndarray,
    label_counts: np.ndarray,
    *,
    min_examples_per_class: int,
    frac_noise: float,
    num_to_remove_per_class: np.ndarray | None,
) -> np.ndarray:
    """[K, K] int: entry [j, k] = how many examples labelled k to prune towards class j."""
    pcm = _floor_diagonal_counts(joint.T, min_examples_per_class, frac_noise)
    if num_to_remove_per_class is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            share = pcm / np.sum(pcm, axis=1)
            noise = share.sum(axis=1) - share.diagonal()
            target = (share.T * num_to_remove_per_class / noise).T
            np.fill_diagonal(target, label_counts - num_to_remove_per_class)
            pcm = round_rows(target)
    return pcm


def _targets(pcm: np.ndarray, counts: np.ndarray, min_examples: int):
    """Per (class, column) numbers of examples to select: noise [K, K], by-class [K, 1]."""
    k = counts.shape[0]
    active = counts > max(min_examples, 1)
    noise = pcm.T.astype(np.int64)  # [class k, column j] = pcm[j, k]
    np.fill_diagonal(noise, 0)
    noise = np.where(active[:, None], np.clip(noise, 0, counts[:, None]), 0)
    by_class = np.where(active, np.clip(counts - np.diagonal(pcm), 0, counts), 0)[:, None]
    return noise.astype(np.int32).reshape(k, k), by_class.astype(np.int32)


# ---------------------------------------------------------------------------- selection (device)


@functools.partial(jax.jit, static_argnames=("block",))
def _keys(pred_probs, perm, counts, *, block):
    """Class-grouped layout and the selection keys (0 on padding slots).

    Returns (noise keys [B, NB, K], by-class keys [B, NB, 1], block_class [NB], local [B, NB],
    dest [B, NB] example of each slot, N for padding).
    """
    n = pred_probs.shape[0]
    block_class, local, valid, src = S.layout(perm, counts, block=block)
    probs = pred_probs[src]  # [B, NB, K]
    cls = jnp.minimum(block_class, pred_probs.shape[1] - 1)
    own = jnp.take_along_axis(
        probs, jnp.broadcast_to(cls[None, :, None], probs.shape[:2] + (1,)), axis=2
    )
    zero = jnp.zeros((), jnp.uint32 if probs.dtype.itemsize == 4 else jnp.uint64)
    # np.argsort(-(p[:, j] - p[:, k]))[:m]: largest margin first, the difference taken in the
    # input dtype as in cleanlab; np.argsort(p[:, k])[:m]: smallest probability first.
    noise = jnp.where(valid[..., None], S._uint_key(probs - own), zero)
    by_class = jnp.where(valid[..., None], ~S._uint_key(own), zero)
    return noise, by_class, block_class, local, jnp.where(valid, src, n)


def _prune(core: dict, pred_probs, m_noise, m_class, *, noise: bool, by_class: bool):
    """Flags [N] of the noise-rate rule and of the by-class rule (None when not asked)."""
    size, k = pred_probs.shape
    keys_noise, keys_class, block_class, local, dest = _keys(
        pred_probs, core["perm"], core["counts"], block=S.block_size(size, k)
    )
    flags = []
    for wanted, keys, m in ((noise, keys_noise, m_noise), (by_class, keys_class, m_class)):
        flags.append(
            _chosen(keys, block_class, local, dest, core["counts"], jnp.asarray(m), size=size)
            if wanted
            else None
        )
    return flags


@functools.partial(jax.jit, static_argnames=("size",))
def _chosen(keys, block_class, local, dest, counts, m, *, size):
    """[size] bool: the examples chosen in any column (per class k and column j, the m[k, j]
    largest keys; ties to the lowest index)."""
    chosen = S.select_top(keys, block_class, local, counts, m)
    chosen = functools.reduce(jnp.logical_or, [chosen[..., j] for j in range(chosen.shape[2])])
    return jnp.zeros((size + 1,), bool).at[dest.reshape(-1)].set(chosen.reshape(-1))[:size]


# --------------------------------------------------------------------------------- public API


def _check_removals(value: Any, k: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.shape != (k,) or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(
            f"num_to_remove_per_class: has shape {arr.shape}; expected {k} numbers (one per class)"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError("num_to_remove_per_class: expected non-negative integers")
    return arr.astype(np.int64)


def find_label_issues(
    labels: Any,
    pred_probs: Any,
    *,
    filter_by: str = "prune_by_noise_rate",
    frac_noise: float = 1.0,
    num_to_remove_per_class: Any = None,
    min_examples_per_class: int = 1,
    confident_joint: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Boolean mask of likely label errors (cleanlab `filter.find_label_issues`, same result).

    Args:
      labels: [n] given (possibly noisy) class ids in [0, K).
      pred_probs: [n, K] out-of-sample predicted probabilities.
      filter_by: one of `FILTERS` (see the module docstring).
      frac_noise: in [0, 1]; keep only this fraction of each off-diagonal prune count (pruning
        rules only; ignored by the others, as in cleanlab).
      num_to_remove_per_class: optional [K] non-negative integers, the number of examples to
        flag per class (pruning rules only; approximate for prune_by_noise_rate, as in cleanlab).
      min_examples_per_class: integer >= 0; classes with at most max(this, 1) examples are never
        pruned, and pruning leaves at least this many per class.
      confident_joint: optional [K, K] counts used instead of the calibrated confident joint
        (pruning rules only; cleanlab ignores it for confident_learning too).
      validate: check the inputs (ValueError on bad input); False skips the value checks.
    Returns:
      [n] bool, True = likely label issue.
    """
    V.check_choice(filter_by, "filter_by", FILTERS)
    frac_noise = V.check_float_option(frac_noise, "frac_noise", 0.0, 1.0)
    min_examples = V.check_int_option(min_examples_per_class, "min_examples_per_class", 0)
    y, p = prepare(labels, pred_probs, validate)
    n, k = p.shape
    pruning = filter_by in _PRUNING
    removals = None
    if num_to_remove_per_class is not None:
        if not pruning:
            raise ValueError(
                f"num_to_remove_per_class: not supported with filter_by={filter_by!r}; "
                f"expected one of {_PRUNING}"
            )
        removals = _check_removals(num_to_remove_per_class, k)
    joint_given = None
    if confident_joint is not None and pruning:
        joint_given = _check_joint(confident_joint, k)
    core = _core(p, y)
    if filter_by == "confident_learning":
        issues = core["off_diagonal"]
    elif filter_by == "predicted_neq_given":
        issues = core["neq"]
    else:
        counts = np.asarray(core["counts"]).astype(np.int64)
        if joint_given is None:
            joint = calibrate_np(floor_diagonal(np.asarray(core["raw"])), counts)
        else:
            joint = joint_given
        pcm = prune_matrix(
            joint,
            counts,
            min_examples_per_class=min_examples,
            frac_noise=frac_noise,
            num_to_remove_per_class=removals,
        )
        m_noise, m_class = _targets(pcm, counts, min_examples)
        noise, by_class = _prune(
            core,
            core["probs"],
            m_noise,
            m_class,
            noise=filter_by != "prune_by_class",
            by_class=filter_by != "prune_by_noise_rate",
        )
        issues = noise if by_class is None else by_class if noise is None else noise & by_class
    return trim(_finish(issues, core["kept"]), n)


@jax.jit
def _finish(issues: jax.Array, kept: jax.Array) -> jax.Array:
    return issues & ~kept


def trim(x: jax.Array, n: int) -> jax.Array:
    """The first n entries, sliced on the host (a device slice would compile once per n)."""
    return x if x.shape[0] == n else jnp.asarray(np.asarray(x)[:n])


@functools.partial(jax.jit, static_argnames=("method",))
def _scores(pred_probs: jax.Array, labels: jax.Array, method: str) -> jax.Array:
    k = pred_probs.shape[1]
    own = jnp.take_along_axis(pred_probs, jnp.minimum(labels, k - 1)[:, None], axis=1)[:, 0]
    if method == "self_confidence":
        return own
    others = jnp.where(labels[:, None] == jnp.arange(k)[None, :], -jnp.inf, pred_probs)
    # cleanlab's (self_confidence - max_prob_not_label + 1) / 2, in the input dtype.
    return (own - jnp.max(others, axis=1) + 1) / 2


def label_quality_scores(
    labels: Any, pred_probs: Any, *, method: str = "self_confidence", validate: bool = True
) -> jax.Array:
    """Per-example label quality (cleanlab `rank.get_label_quality_scores`, adjust_pred_probs
    False); lower = more likely mislabelled.

    Args:
      labels: [n] class ids in [0, K); pred_probs: [n, K].
      method: "self_confidence" (pred_probs[i, label]) or "normalized_margin"
        ((pred_probs[i, label] - max_{j != label} pred_probs[i, j] + 1) / 2).
    Returns:
      [n] scores in [0, 1], dtype of pred_probs.
    """
    V.check_choice(method, "method", RANKINGS)
    y, p = prepare(labels, pred_probs, validate)
    return trim(_scores(*pad(y, p)[::-1], method), p.shape[0])


@jax.jit
def _order(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Indices by increasing (score, index) with the masked-in entries first; integer keys so
    that subnormal scores keep their order under flush-to-zero."""
    key = S._uint_key(scores)
    key = jnp.where(mask, key, jnp.asarray(jnp.iinfo(key.dtype).max, key.dtype))
    return jnp.argsort(key, stable=True).astype(jnp.int32)


def rank_label_issues(
    labels: Any,
    pred_probs: Any,
    mask: Any,
    *,
    rank_by: str = "self_confidence",
    validate: bool = True,
) -> jax.Array:
    """Indices of the flagged examples, most likely mislabelled first (cleanlab
    `rank.order_label_issues`, i.e. `find_label_issues(..., return_indices_ranked_by=rank_by)`).

    Args:
      labels: [n] class ids in [0, K); pred_probs: [n, K].
      mask: [n] bool, e.g. from `find_label_issues`.
      rank_by: "self_confidence" or "normalized_margin" (see `label_quality_scores`).
    Returns:
      [number of True in mask] int32 example indices by increasing score; equal scores by
      increasing index (cleanlab: NumPy's unstable order).
    """
    V.check_choice(rank_by, "rank_by", RANKINGS)
    y, p = prepare(labels, pred_probs, validate)
    n = p.shape[0]
    m = np.asarray(V.as_mask(mask, (n,), "mask"))
    y, p = pad(y, p)
    m = np.concatenate([m, np.zeros(p.shape[0] - n, bool)])
    order = _order(_scores(p, y, rank_by), m)
    return trim(order, int(m.sum()))
