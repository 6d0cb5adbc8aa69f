"""Sorting helpers (exact tie groups with static shapes) for ranking metrics and isotonic fits.

XLA's CPU sort is fast for a single integer operand and slow for floats and for several operands,
so scores are mapped to unsigned integer keys with the same order. When the payload is a binary
label and all scores have one sign (probabilities, confidences), the label is packed into the
lowest bit of the key and a single-operand sort does the whole job exactly (a non-negative float
needs one bit less than its width). Other inputs fall back to an exact multi-operand sort.
Masked-out entries get the largest key, so they end up after the valid ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _uint_for(dtype) -> tuple:
    bits = jnp.finfo(dtype).bits
    if bits == 32:
        return jnp.uint32, 32
    if bits == 64:
        return jnp.uint64, 64
    raise TypeError(f"unsupported float dtype {dtype}")  # callers upcast 16-bit floats first


def order_key(x: jax.Array) -> jax.Array:
    """Unsigned integer key [n] with the order of the float array `x` [n]; -0.0 and +0.0 tie."""
    udt, width = _uint_for(x.dtype)
    x = jnp.where(x == 0, jnp.zeros_like(x), x)
    bits = lax.bitcast_convert_type(x, udt)
    sign = bits >> udt(width - 1)
    return jnp.where(sign == 1, ~bits, bits | (udt(1) << udt(width - 1)))


def _max_key(udt):
    return jnp.array(jnp.iinfo(udt).max, dtype=udt)


SIGN_MODES = ("auto", "nonneg", "nonpos", "general")


def sign_mode(scores, valid) -> str:
    """The sorting path for concrete scores ("auto" for tracers): one host pass over min/max."""
    if isinstance(scores, jax.core.Tracer) or isinstance(valid, jax.core.Tracer):
        return "auto"
    import numpy as np

    s = np.asarray(scores)
    if valid is not None:
        s = s[np.asarray(valid)]
    if s.size == 0:
        return "auto"
    lo, hi = s.min(), s.max()
    return "nonneg" if lo >= 0 else ("nonpos" if hi <= 0 else "general")


def sort_binary_ascending(
    scores: jax.Array, labels: jax.Array, valid: jax.Array, mode: str = "auto"
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Sorts by score, ascending; within tied scores negatives (0) come before positives (1).

    Args:
      scores: [n] floating scores (float32 or float64).
      labels: [n] binary labels (nonzero = positive).
      valid: [n] bool; invalid entries are moved to the end.
      mode: the sorting path if known ("nonneg", "nonpos", "general", see `sign_mode`), or
        "auto" to choose it on device with lax.switch.
    Returns:
      (tie_key [n], label [n] int32, valid [n] bool), all in sorted order. Equal `tie_key` means
      equal score; invalid entries have label 0 and valid False.
    """
    udt, _ = _uint_for(scores.dtype)
    n = scores.shape[0]
    one = udt(1)
    top = _max_key(udt)
    s = jnp.where(valid, scores, jnp.zeros_like(scores))
    s = jnp.where(s == 0, jnp.zeros_like(s), s)
    lab = ((labels != 0) & valid).astype(udt)
    n_valid = jnp.sum(valid.astype(jnp.int32))
    idx = jnp.arange(n, dtype=jnp.int32)
    in_front = idx < n_valid

    def nonneg(_):
        key = (lax.bitcast_convert_type(s, udt) << one) | lab
        k = jnp.sort(jnp.where(valid, key, top))
        return k >> one, k & one

    def nonpos(_):
        # Sort -s ascending with the label inverted, then reverse the valid prefix: this gives s
        # ascending with negatives first inside each tie.
        neg = jnp.where(s == 0, jnp.zeros_like(s), -s)  # -(+0) would be -0 (sign bit set)
        key = (lax.bitcast_convert_type(neg, udt) << one) | (one - lab)
        k = jnp.sort(jnp.where(valid, key, top))
        k = k[jnp.where(in_front, n_valid - 1 - idx, idx)]
        return k >> one, one - (k & one)

    def general(_):
        key = jnp.where(valid, order_key(s), top)
        k, lb = lax.sort((key, lab), num_keys=2)
        return k, lb

    if mode == "auto":
        all_nonneg = jnp.all((s >= 0) | ~valid)
        all_nonpos = jnp.all((s <= 0) | ~valid)
        branch = jnp.where(all_nonneg, 0, jnp.where(all_nonpos, 1, 2))
        tie_key, lab_sorted = lax.switch(branch, (nonneg, nonpos, general), None)
    else:
        tie_key, lab_sorted = {"nonneg": nonneg, "nonpos": nonpos, "general": general}[mode](None)
    lab_sorted = jnp.where(in_front, lab_sorted.astype(jnp.int32), 0)
    return tie_key, lab_sorted, in_front


def sort_payload(
    scores: jax.Array,
    payloads: tuple[jax.Array, ...],
    valid: jax.Array,
    *,
    descending: bool,
) -> tuple[jax.Array, tuple[jax.Array, ...], jax.Array]:
    """Sorts `payloads` by score (stable; ties keep input order); invalid entries go last.

    Returns (tie_key [n], sorted payloads, valid [n] bool) in sorted order.
    """
    udt, _ = _uint_for(scores.dtype)
    n = scores.shape[0]
    key = order_key(jnp.where(valid, scores, jnp.zeros_like(scores)))
    if descending:
        key = ~key
    key = jnp.where(valid, key, _max_key(udt))
    out = lax.sort((key, *payloads), num_keys=1)
    n_valid = jnp.sum(valid.astype(jnp.int32))
    return out[0], tuple(out[1:]), jnp.arange(n, dtype=jnp.int32) < n_valid


def tie_groups(tie_key: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Group ids [n] int32 (0, 1, ... in sorted order; invalid tail joins the last group) and
    the number of groups (scalar)."""
    first = jnp.ones((1,), dtype=bool)
    is_start = valid & jnp.concatenate([first, tie_key[1:] != tie_key[:-1]])
    gid = jnp.cumsum(is_start.astype(jnp.int32), dtype=jnp.int32) - 1
    return jnp.maximum(gid, 0), jnp.sum(is_start.astype(jnp.int32))


def group_sum(x: jax.Array, gid: jax.Array) -> jax.Array:
    """Per-group sums [n] (group g at index g; unused tail zeros) of `x` [n] in sorted order."""
    return jax.ops.segment_sum(x, gid, num_segments=x.shape[0], indices_are_sorted=True)


def from_order_key(key: jax.Array, dtype) -> jax.Array:
    """Inverse of `order_key`: the float values (of `dtype`) of keys [n]."""
    udt, width = _uint_for(dtype)
    topbit = udt(1) << udt(width - 1)
    bits = jnp.where((key & topbit) != 0, key & ~topbit, ~key)
    return lax.bitcast_convert_type(bits, dtype)
