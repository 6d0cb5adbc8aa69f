"""Confident learning: per-class thresholds, the confident joint, its calibration, the noise joint.

The definitions are cleanlab 2.9.0's (`cleanlab/count.py`: `get_confident_thresholds`,
`compute_confident_joint`, `calibrate_confident_joint`, `estimate_joint`; Northcutt et al., JAIR
2021), reproduced exactly, including the floating-point details that decide borderline examples:

* threshold of class k: the mean of pred_probs[i, k] over the examples labelled k, summed in
  NumPy's pairwise order in the dtype of `pred_probs` (`_pairwise.segment_sums`), floored at 2e-6;
  a class that no example is labelled with gets no threshold (nothing is counted into it);
* example i is confident for class k when pred_probs[i, k] >= threshold[k] - 1e-6, in the
  precision cleanlab happens to use: the thresholds' dtype (float32 for float32 input) when every
  class has examples, float64 when one has none (see `_cuts`; emulated exactly in float32 when
  JAX runs without x64);
* a confident example is counted in row labels[i] and in column: its only confident class, or,
  when several classes are confident, argmax(pred_probs[i]) (the first of tied maxima); examples
  with no confident class are not counted;
* every diagonal entry is raised to at least 1, then (`calibrate=True`, cleanlab's default) the
  rows are rescaled to the class counts, the whole to n, and each row is rounded to integers
  keeping its total (NumPy float64 on the host: a [K, K] computation, with cleanlab's memory
  order and NumPy's own argsort so that even exactly tied roundings fall the same way).

The [n, K] work (grouping by class, thresholds, counting) is two jitted XLA programs over static
shapes; only the [K, K] calibration runs on the host. Inputs are padded to a few sizes per octave
below 65536 rows (`bucket`), so that similar sizes share compiled programs. These functions
return concrete arrays and are not meant to be called inside `jit`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V
from introspect.cleaning._pairwise import segment_sums

__all__ = [
    "calibrated_joint",
    "confident_joint",
    "confident_thresholds",
    "estimate_joint",
]

# cleanlab.internal.constants
FLOAT_TOLERANCE = 1e-6  # FLOATING_POINT_COMPARISON
THRESHOLD_FLOOR = 2e-6  # CONFIDENT_THRESHOLDS_LOWER_BOUND
TINY = 1e-100  # TINY_VALUE


# ------------------------------------------------------------------------------ input handling


def prepare(labels: Any, pred_probs: Any, validate: bool) -> tuple[jax.Array, jax.Array]:
    """(labels [n] int32, pred_probs [n, K] float) after the boundary checks.

    Checks: pred_probs is [n, K] with n >= 1 and K >= 2, finite, within [-1e-6, 1 + 1e-6]
    (cleanlab's own tolerance; rows are not required to sum to 1, as in cleanlab); labels is [n]
    with integer class ids in [0, K).
    """
    probs = V.as_array(pred_probs, "pred_probs")
    if validate:
        V.check_rank(probs, "pred_probs", 2, "a 2-D array [n, K] of predicted probabilities")
        V.check_not_empty(probs, "pred_probs")
        if probs.shape[1] < 2:
            raise ValueError(
                f"pred_probs: has {probs.shape[1]} column(s) (shape {tuple(probs.shape)}); "
                "expected K >= 2 classes"
            )
    probs = V.as_float(probs)
    if not validate:
        return jnp.asarray(labels, jnp.int32), probs
    V.check_range(
        probs,
        "pred_probs",
        -FLOAT_TOLERANCE,
        1.0 + FLOAT_TOLERANCE,
        what="probabilities in [0, 1] (cleanlab's tolerance 1e-6)",
    )
    y = V.as_class_labels(labels, "labels", probs.shape[1])
    V.check_leading(probs, y, "pred_probs", "labels")
    return y, probs


_EXACT_SHAPES = 1 << 16  # from this many examples on, compile for the exact n (no padding copy)


def bucket(n: int) -> int:
    """Padded number of examples: n rounded up to 4, 5, 6, 7 or 8 times a power of two (at least
    64), so that calls with similar n share one compiled program; n itself for large inputs."""
    if n >= _EXACT_SHAPES:
        return n
    e = max(n.bit_length() - 3, 0)
    return max(64, -(-n // (1 << e)) << e)


def pad(labels: jax.Array, pred_probs: jax.Array) -> tuple[Any, Any]:
    """Appends rows up to `bucket(n)`: label K (no class: excluded from every count, grouped
    last, never flagged) and zero probabilities. Callers slice results back to n."""
    n, k = pred_probs.shape
    extra = bucket(n) - n
    if not extra:
        return labels, pred_probs
    xp = np if isinstance(pred_probs, np.ndarray) and isinstance(labels, np.ndarray) else jnp
    y = xp.concatenate([xp.asarray(labels, np.int32), xp.full((extra,), k, np.int32)])
    p = xp.concatenate([pred_probs, xp.zeros((extra, k), pred_probs.dtype)])
    return y, p


def _x64() -> bool:
    return jnp.result_type(float) == jnp.float64


# --------------------------------------------------------------------------- thresholds (device)


def _ceil_f32(x: float) -> np.float32:
    c = np.float32(x)
    return c if float(c) >= x else np.nextafter(c, np.float32(np.inf))


def _floor_f32(x: float) -> np.float32:
    c = np.float32(x)
    return c if float(c) <= x else np.nextafter(c, np.float32(-np.inf))


# p32 >= float64(t) - 1e-6 is decided in float32 without float64: p32 >= X iff p32 >= ceil32(X).
_FLOOR_F32 = _ceil_f32(THRESHOLD_FLOOR)  # t32 < 2e-6 (real)  iff  t32 < this
_FLOORED_CUT_F32 = _ceil_f32(THRESHOLD_FLOOR - FLOAT_TOLERANCE)
_TOL_DOWN_F32 = _floor_f32(FLOAT_TOLERANCE)  # d32 <= 1e-6 (real)  iff  d32 <= this
_TOL_F32 = np.float32(FLOAT_TOLERANCE)


def _cut_f32(t: jax.Array) -> jax.Array:
    """ceil32(float64(max(t, 2e-6)) - 1e-6) for float32 t [K], in float32 arithmetic.

    For t >= 2e-6 the candidate v = t - 1e-6 (float32) is within an ulp of the answer; the
    smallest of v - 2 ulp ... v + 2 ulp with t - v' <= 1e-6 is it (t - v' is exact: Sterbenz).
    The float64 rounding of t - 1e-6 cannot fall on a float32 (1e-6 is not that close to a
    multiple of any float32 ulp in range), so `>=` against the rounded and the exact value agree.
    """
    v = t - _TOL_F32
    cands = [v]
    lo = hi = v
    for _ in range(2):
        lo = jnp.nextafter(lo, jnp.float32(-jnp.inf))
        hi = jnp.nextafter(hi, jnp.float32(jnp.inf))
        cands = [lo, *cands, hi]
    cut = jnp.full_like(t, jnp.inf)
    for c in reversed(cands):
        cut = jnp.where(t - c <= _TOL_DOWN_F32, c, cut)
    return jnp.where(t < _FLOOR_F32, _FLOORED_CUT_F32, cut)


def group_by_label(labels: jax.Array, num_classes: int) -> jax.Array:
    """Stable permutation [n] that groups the examples by label (class 0 first, index order within,
    padding rows with label K last).

    One single-operand integer sort of (label, index) packed in 32 (or, with x64, 64) bits.
    """
    n = labels.shape[0]
    ib = max(1, (n - 1).bit_length())
    kb = max(1, num_classes.bit_length())  # label K marks padding
    for udt, width in ((jnp.uint32, 32), (jnp.uint64, 64)):
        if ib + kb <= width and (width == 32 or _x64()):
            key = (labels.astype(udt) << udt(ib)) | jnp.arange(n, dtype=udt)
            return (jnp.sort(key) & udt((1 << ib) - 1)).astype(jnp.int32)
    return jnp.argsort(labels, stable=True).astype(jnp.int32)


def _means(pred_probs: jax.Array, labels: jax.Array, perm: jax.Array, counts: jax.Array):
    """Per-class mean self-confidence [K], bit for bit NumPy's np.mean (dtype of pred_probs)."""
    n, k = pred_probs.shape
    self_conf = jnp.take_along_axis(pred_probs, jnp.minimum(labels, k - 1)[:, None], axis=1)[:, 0]
    starts = jnp.cumsum(counts) - counts
    sums = segment_sums(self_conf[perm], starts.astype(jnp.int32), counts)
    # np.mean divides the float32 sum by an intp count in float64 and rounds back: the same as a
    # float32 division (double rounding is innocuous for division). Exact for counts < 2**24.
    return sums / jnp.maximum(counts, 1).astype(pred_probs.dtype)


def _cuts(means: jax.Array, present: jax.Array) -> jax.Array:
    """[K] cuts: pred_probs[:, k] >= cut[k] iff cleanlab's pred_probs >= thresholds - 1e-6 holds;
    +inf for absent classes.

    cleanlab's thresholds are `np.clip([mean_0, ..., mean_{K-1}], 2e-6)`. The dtype of that array
    is the means' (float32 for float32 input) when every class is present, but float64 as soon
    as one is absent (its entry is the Python int 2), and the subtraction and the comparison are
    then done in float64. Both cases are reproduced: the float64 one exactly in float32
    arithmetic when JAX runs without x64.
    """
    f32 = np.float32
    if means.dtype == jnp.float64:  # float64 input (x64 on): float64 throughout
        cut = jnp.maximum(means, THRESHOLD_FLOOR) - FLOAT_TOLERANCE
        return jnp.where(present, cut, jnp.inf)
    narrow = jnp.maximum(means, f32(THRESHOLD_FLOOR)) - f32(FLOAT_TOLERANCE)  # all present
    if _x64():
        wide = jnp.maximum(means.astype(jnp.float64), THRESHOLD_FLOOR) - FLOAT_TOLERANCE
        narrow = narrow.astype(jnp.float64)
    else:
        wide = _cut_f32(means)
    cut = jnp.where(jnp.all(present), narrow, wide)
    return jnp.where(present, cut, jnp.inf)


@jax.jit
def _stats(pred_probs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(counts [K] int32, perm [n] grouping by label, cut [K]: an example is confident for class
    k when pred_probs[:, k] >= cut[k]; float64 under x64, else float32; +inf for absent classes)."""
    k = pred_probs.shape[1]
    counts = _class_sizes(labels, k)
    perm = group_by_label(labels, k)
    means = _means(pred_probs, labels, perm, counts)
    return counts, perm, _cuts(means, counts > 0)


def _class_sizes(labels: jax.Array, k: int) -> jax.Array:
    return jnp.bincount(labels, length=k + 1)[:k].astype(jnp.int32)  # label K = padding


@jax.jit
def _count(pred_probs: jax.Array, labels: jax.Array, cut: jax.Array) -> dict:
    """The [n, K] pass: confident counts and the per-example flags (see `_core`)."""
    n, k = pred_probs.shape
    p = pred_probs.astype(cut.dtype)  # exact: float32 -> float64 when x64 is on
    confident = p >= cut[None, :]
    num_confident = jnp.sum(confident, axis=1, dtype=jnp.int32)
    top = jnp.argmax(pred_probs, axis=1).astype(jnp.int32)
    guess = jnp.where(num_confident > 1, top, jnp.argmax(confident, axis=1).astype(jnp.int32))
    counted = (num_confident > 0) & (labels < k)
    cell = jnp.where(counted, labels * k + guess, k * k)
    raw = jnp.bincount(cell, length=k * k + 1)[: k * k].reshape(k, k).astype(jnp.int32)
    onehot = labels[:, None] == jnp.arange(k, dtype=jnp.int32)[None, :]
    bumped = jnp.where(onehot, pred_probs + FLOAT_TOLERANCE, pred_probs)
    return {
        "raw": raw,
        "off_diagonal": counted & (guess != labels),
        "kept": jnp.argmax(bumped, axis=1).astype(jnp.int32) == labels,
        "neq": top != labels,
    }


def _core(pred_probs: Any, labels: Any) -> dict:
    """Everything cleanlab computes over the [n, K] array.

    Two XLA programs: the per-class statistics, then the counting pass (separate so that the [K]
    cut is materialised once instead of being recomputed inside the [n, K] loop by fusion).
    The arrays are padded to N = bucket(n) rows (see `pad`). Returns a dict: n, probs [N, K] and
    labels [N] (padded, on the device), counts [K],
    cut [K], perm [N] (grouping by label), raw [K, K] (confident counts before the diagonal floor
    and the calibration), off_diagonal [N] (counted with a guess != label), kept [N] (cleanlab's
    `_reduce_issues`: the label is the argmax once its probability gets + 1e-6), neq [N]
    (argmax != label).
    """
    n = pred_probs.shape[0]
    labels, pred_probs = (jax.device_put(a) for a in pad(labels, pred_probs))  # one transfer
    counts, perm, cut = _stats(pred_probs, labels)
    out = _count(pred_probs, labels, cut)
    out.update(counts=counts, perm=perm, cut=cut, n=n, probs=pred_probs, labels=labels)
    return out


# ------------------------------------------------------------------------ calibration (host, K x K)


def _round_row(x: np.ndarray) -> np.ndarray:
    """Integers with the row's rounded total: the entries whose rounding lost (or gained) the
    most are moved by one (cleanlab.internal.util.round_preserving_sum)."""
    ints = x.round()
    target = np.sum(x).round()
    total = np.sum(ints).round()
    while abs(total - target) > FLOAT_TOLERANCE:
        diff = np.round(target - total)
        step = -1 if diff < 0 else 1
        # NumPy's own argsort (same kind as cleanlab's), so that ties fall the same way.
        order = np.argsort(x - ints)[::-step][: min(int(abs(diff)), len(x))]
        ints[order] += step
        total = np.sum(ints).round()
    return ints.astype(int)


def round_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise rounding that preserves each row's (rounded) total; [K, K] float -> int."""
    x = np.asarray(x, dtype=float)
    return np.stack([_round_row(np.ascontiguousarray(row)) for row in x]).astype(int)


def calibrate_np(raw: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """Calibrated joint counts (host float64): rows rescaled to the class counts, the whole to n,
    rows rounded keeping their totals. raw [K, K] int, label_counts [K] int -> [K, K] int."""
    raw = np.asarray(raw, dtype=np.int64)  # keeps the memory order (see `floor_diagonal`)
    label_counts = np.asarray(label_counts, dtype=np.int64)
    rows = np.clip(raw.sum(axis=1), TINY, None)
    # Same elementwise operations, and the same memory order for the full sum, as cleanlab.
    scaled = (raw.T / rows * label_counts).T
    scaled = scaled / np.clip(np.sum(scaled), TINY, None) * int(label_counts.sum())
    return round_rows(scaled)


def floor_diagonal(raw: Any) -> np.ndarray:
    """The confident counts as cleanlab holds them: every diagonal entry at least 1, int64, in
    Fortran order (cleanlab's joint is the transpose of scikit-learn's confusion matrix; the
    memory order decides the order of the float sums in the calibration, hence its rounding)."""
    out = np.asfortranarray(np.asarray(raw), dtype=np.int64)
    np.fill_diagonal(out, np.maximum(out.diagonal(), 1))
    return out


# --------------------------------------------------------------------------------- public API


def confident_thresholds(labels: Any, pred_probs: Any, *, validate: bool = True) -> jax.Array:
    """Per-class confident thresholds (cleanlab `count.get_confident_thresholds`).

    Args:
      labels: [n] given class ids in [0, K).
      pred_probs: [n, K] predicted probabilities (out-of-sample).
      validate: check the inputs (see `find_label_issues`).
    Returns:
      [K] thresholds in the dtype of pred_probs: the mean predicted probability of class k over
      the examples labelled k, floored at 2e-6 (cleanlab's float64 values rounded to that dtype);
      2.0 for a class that no example is labelled with (nothing is counted into it).
    """
    y, p = prepare(labels, pred_probs, validate)
    return _thresholds(*pad(y, p)[::-1])


@jax.jit
def _thresholds(pred_probs: jax.Array, labels: jax.Array) -> jax.Array:
    k = pred_probs.shape[1]
    counts = _class_sizes(labels, k)
    means = _means(pred_probs, labels, group_by_label(labels, k), counts)
    t = jnp.maximum(means, jnp.asarray(THRESHOLD_FLOOR, pred_probs.dtype))
    return jnp.where(counts > 0, t, jnp.asarray(2.0, pred_probs.dtype))


def confident_joint(
    labels: Any, pred_probs: Any, *, calibrate: bool = True, validate: bool = True
) -> jax.Array:
    """The confident joint C[given label, true label] (cleanlab `count.compute_confident_joint`).

    Args:
      labels: [n] given (possibly noisy) class ids in [0, K).
      pred_probs: [n, K] out-of-sample predicted probabilities.
      calibrate: cleanlab's default True: return the calibrated joint (rows sum to the class
        counts, the whole to n); False: the confident counts with the diagonal floored at 1.
      validate: check the inputs.
    Returns:
      [K, K] int32 counts, equal to cleanlab's.
    """
    y, p = prepare(labels, pred_probs, validate)
    out = _core(p, y)
    raw = floor_diagonal(np.asarray(out["raw"]))
    if calibrate:
        raw = calibrate_np(raw, np.asarray(out["counts"]))
    return jnp.asarray(raw, dtype=jnp.int32)


def _check_joint(cj: Any, num_classes: int | None, name: str = "confident_joint") -> np.ndarray:
    c = np.asarray(V.as_array(cj, name))
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        want = f"[{num_classes}, {num_classes}]" if num_classes else "a square [K, K] array"
        raise ValueError(f"{name}: has shape {c.shape}; expected {want} with K >= 2")
    if num_classes is not None and c.shape[0] != num_classes:
        raise ValueError(
            f"{name}: has shape {c.shape}; expected [{num_classes}, {num_classes}] "
            "(K = pred_probs.shape[1])"
        )
    if not np.all(np.isfinite(c)) or np.any(c < 0) or np.any(c != np.round(c)):
        raise ValueError(f"{name}: expected non-negative integer counts")
    return c.astype(np.int64)


def calibrated_joint(confident_joint: Any, labels: Any, *, validate: bool = True) -> jax.Array:
    """Calibrates any confident joint to the class counts (cleanlab `calibrate_confident_joint`).

    Rows are rescaled to sum to the number of examples of each given label, the whole to n, and
    each row is rounded to integers that keep its (rounded) total.

    Args:
      confident_joint: [K, K] non-negative integer counts.
      labels: [n] given class ids in [0, K).
      validate: check the inputs.
    Returns:
      [K, K] int32 calibrated counts.
    """
    cj = _check_joint(confident_joint, None)
    k = cj.shape[0]
    y = V.as_class_labels(labels, "labels", k) if validate else jnp.asarray(labels)
    counts = np.bincount(np.asarray(y), minlength=k)
    return jnp.asarray(calibrate_np(cj, counts), dtype=jnp.int32)


def estimate_joint(
    labels: Any,
    pred_probs: Any = None,
    *,
    confident_joint: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Estimated joint distribution P(given label = i, true label = j) (cleanlab `estimate_joint`).

    The calibrated confident joint divided by its total: sums to 1, rows sum to the empirical
    distribution of the given labels.

    Args:
      labels: [n] given class ids in [0, K).
      pred_probs: [n, K] predicted probabilities; unused when `confident_joint` is given.
      confident_joint: optional [K, K] counts; calibrated to `labels` before normalising.
      validate: check the inputs.
    Returns:
      [K, K] probabilities (default float dtype; cleanlab computes them in float64).
    """
    if confident_joint is None:
        if pred_probs is None:
            raise ValueError(
                "pred_probs: got None; expected [n, K] probabilities (or pass confident_joint)"
            )
        cal = np.asarray(confident_joint_np(labels, pred_probs, validate))
    else:
        cal = np.asarray(calibrated_joint(confident_joint, labels, validate=validate))
    joint = cal / np.clip(float(np.sum(cal)), TINY, None)
    return jnp.asarray(joint, dtype=V.default_float())


def confident_joint_np(labels: Any, pred_probs: Any, validate: bool) -> np.ndarray:
    y, p = prepare(labels, pred_probs, validate)
    out = _core(p, y)
    return calibrate_np(floor_diagonal(np.asarray(out["raw"])), np.asarray(out["counts"]))
