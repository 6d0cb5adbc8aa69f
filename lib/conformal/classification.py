"""Conformal prediction sets for classifiers: LAC, APS (randomised / deterministic) and RAPS.

Notation: p = [N, K] class probabilities of one example per row, y its label, u ~ U(0, 1) one
uniform per row (randomised scores only), A(t) = sum_j p_j [p_j > t] the mass strictly above t and
C(t) = #{j: p_j > t}.

Scores (larger = stranger):
  LAC                 s(x, y)    = 1 - p_y
  APS, randomised     s(x, y, u) = A(p_y) + u p_y                       (Romano et al., 2020)
  APS, deterministic  s(x, y)    = A(p_y) + (mass of labels tied with y) = sum_j p_j [p_j >= p_y]
  RAPS adds lam * (o_y - k_reg)^+ with o_y = 1 + C(p_y) (randomised) or #{j: p_j >= p_y}
  (deterministic), the 1-based rank of y (Angelopoulos et al., 2021).
Labels tied in probability share a score, so ties enter or leave a set together and the set is
exactly {k: s(x, k) <= qhat} -- the guarantee needs nothing more.

APS / RAPS order the labels by the probabilities as given, but add up their values rounded to
the grid 2^-m (m = 23 in float32, 52 in float64): a change of at most K 2^-(m+1) in a score,
which makes every mass an exact sum (the same float whatever order a backend reduces in).
Scores computed in `nonconformity`, in `label_scores` and inside the set search therefore agree
bit for bit.

A set for a scalar (or per-row) threshold is found without sorting the K classes: the included
labels are {k: p_k > t*} (plus the boundary tie group for the randomised / include-last rules),
where t* is the smallest probability with A(t*) + lam (C(t*) - k_reg)^+ <= qhat. t* is found
exactly by bisection on the floats' bit patterns (30 steps in float32), each step one pass over
a cache-sized block of rows; much faster than a per-row sort on CPU, and exact everywhere.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V
from introspect.conformal.split import quantile

SCORES = ("lac", "aps", "raps")

# Rows processed per bisection block on CPU (keeps a block of probabilities in cache).
_CPU_ROW_CHUNK = 256


# ----------------------------------------------------------------------------------------------
# Building blocks. They take probabilities p = [B, K] for the order (which labels are above a
# threshold t = [B]) and their grid values pq = _quantize(p) as the summands of every mass: a
# partial sum of grid values below 2 is exact, so the calibration score of (x, k) and the set rule
# evaluate the same float.


def _quantize(p):
    """Round probabilities to the nearest multiple of 2^-m (m = mantissa bits); idempotent."""
    scale = float(2 ** jnp.finfo(p.dtype).nmant)
    return jnp.round(p * scale) * (1.0 / scale)


def _above(p, t):
    """[B, K] indicator p_j > t as 0./1. (t is [B]); needs 0 <= p <= 1 and t >= -tiny.

    ceil(max(p - t, 0)) is 1 for p - t in (0, 1] and 0 otherwise. On large arrays it fuses into
    a vectorised CPU reduction where a select does not (on cache-sized blocks `select` wins).
    """
    return jnp.ceil(jnp.maximum(p - t[:, None], 0))


def _mass_above(p, pq, t, *, select: bool = False):
    """sum_j pq_j [p_j > t] -> [B]; both forms give the same (exact) float."""
    if select:
        return jnp.sum(jnp.where(p > t[:, None], pq, 0.0), axis=-1)
    return jnp.sum(pq * _above(p, t), axis=-1)


def _count_above(p, t, *, select: bool = False):
    if select:
        return jnp.sum(jnp.where(p > t[:, None], 1.0, 0.0), axis=-1).astype(p.dtype)
    return jnp.sum(_above(p, t), axis=-1)


def _penalty(count, k_reg, lam):
    return lam * jnp.maximum(count - k_reg, 0)


def _below_all(dtype):
    """A threshold t with p > t for every p >= 0 that is never flushed to zero (a normal float)."""
    return -jnp.finfo(dtype).tiny


def _int_like(dtype):
    return {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[jnp.dtype(dtype).itemsize]


def _prev_float(x):
    """Largest float below x >= 0 (for x == 0: -tiny, the 'below every probability' point)."""
    bits = jax.lax.bitcast_convert_type(x, _int_like(x.dtype))
    prev = jax.lax.bitcast_convert_type(jnp.maximum(bits - 1, 0), x.dtype)
    return jnp.where(x > 0, prev, _below_all(x.dtype))


def _next_float(t):
    """Smallest float above t >= 0; above 0 it is the smallest normal float (a subnormal cut
    could be flushed to zero on CPU, and subnormal probabilities count as 0 there anyway)."""
    bits = jax.lax.bitcast_convert_type(t, _int_like(t.dtype))
    nxt = jax.lax.bitcast_convert_type(bits + 1, t.dtype)
    return jnp.where(t > 0, nxt, jnp.finfo(t.dtype).tiny)


def _g(p, pq, t, *, raps: bool, k_reg, lam, select: bool = False):
    """G(t) = A(t) + lam (C(t) - k_reg)^+, non-increasing in t. [B, K], [B, K], [B] -> [B]."""
    g = _mass_above(p, pq, t, select=select)
    if raps:
        g = g + _penalty(_count_above(p, t, select=select), k_reg, lam)
    return g


def _label_score(p, pq, py, u, *, kind: str, k_reg, lam):
    """Score of the label whose probability is `py` ([B]) in the rows of p ([B, K])."""
    if kind == "lac":
        return 1.0 - py
    raps = kind == "raps"
    if u is None:  # deterministic, tie-inclusive
        return _g(p, pq, _prev_float(py), raps=raps, k_reg=k_reg, lam=lam)
    s = _mass_above(p, pq, py) + u * _quantize(py)
    if raps:
        s = s + _penalty(_count_above(p, py) + 1, k_reg, lam)
    return s


def _bisect_threshold(p, pq, q, *, raps: bool, k_reg, lam):
    """Smallest float t in [0, 1] with G(t) <= q, per row: exact bisection on the bit pattern.

    G only changes at the probabilities, so t* is one of them (or 0); for t >= 0 the bit
    patterns of floats are ordered like the floats, and 30 steps (float32; 62 in float64) pin t*
    down. lo = -1 stands for "below every probability", where G is the full mass (rows where
    even that is <= q are handled by the caller).
    """
    idt = _int_like(p.dtype)
    one = _one_bits(p.dtype)
    n = p.shape[0]
    lo = jnp.full((n,), -1, idt)
    hi = jnp.full((n,), one, idt)  # t = 1: G(1) = 0 <= q for any q >= 0

    def body(_, carry):
        lo, hi = carry
        mid = lo + (hi - lo) // 2
        t = jax.lax.bitcast_convert_type(jnp.maximum(mid, 0), p.dtype)
        ok = _g(p, pq, t, raps=raps, k_reg=k_reg, lam=lam, select=True) <= q
        # Invariant: G(lo) > q >= G(hi). Once hi = lo + 1, mid == lo and nothing moves.
        return jnp.where(ok, lo, mid), jnp.where(ok & (mid > lo), mid, hi)

    _, hi = jax.lax.fori_loop(0, one.bit_length(), body, (lo, hi))
    return jax.lax.bitcast_convert_type(hi, p.dtype)


def _one_bits(dtype) -> int:
    """The bit pattern of 1.0 in `dtype`, as a Python int (static)."""
    return int(np.ones((), jnp.dtype(dtype)).view(np.dtype(_int_like(dtype))))


def _row_thresholds(p, q, u, *, raps, k_reg, lam, include_last):
    """Per-row cut t_eff such that the set is {k: p_k >= t_eff}.

    p [B, K] probabilities, q [B], u [B] or None -> [B]. The labels strictly above t* always
    enter; the tie group at t* enters for include_last, or (randomised) when its own score is
    <= q; every label enters when even the full mass (and rank penalty) is <= q.
    """
    pq = _quantize(p)
    t = _bisect_threshold(p, pq, q, raps=raps, k_reg=k_reg, lam=lam)
    if include_last:
        cut = t
    elif u is not None:
        s_b = _mass_above(p, pq, t, select=True) + u * _quantize(t)
        if raps:
            s_b = s_b + _penalty(_count_above(p, t, select=True) + 1, k_reg, lam)
        cut = jnp.where(s_b <= q, t, _next_float(t))
    else:
        cut = _next_float(t)
    # G just below every probability: the whole mass (exact on the grid) and rank K.
    everything = jnp.sum(pq, axis=-1)
    if raps:
        everything = everything + _penalty(p.shape[-1], k_reg, lam)
    return jnp.where(everything <= q, -jnp.inf, cut)


def _map_rows(fn, row_chunk, *arrays):
    """fn over row blocks of size row_chunk (lax.map), or in one go when row_chunk is None.

    The whole blocks are a free reshape of the inputs; a last partial block runs separately (no
    padded copy of the inputs).
    """
    n = arrays[0].shape[0]
    if row_chunk is None or n <= row_chunk:
        return fn(*arrays)
    nb, rest = divmod(n, row_chunk)
    present = [i for i, a in enumerate(arrays) if a is not None]

    def call(sub):
        args = [None] * len(arrays)
        for i, x in zip(present, sub, strict=True):
            args[i] = x
        return fn(*args)

    bulk = [arrays[i][: nb * row_chunk] for i in present]
    bulk = [a.reshape((nb, row_chunk) + a.shape[1:]) for a in bulk]
    out = jax.lax.map(call, bulk)
    out = out.reshape((nb * row_chunk,) + out.shape[2:])
    if rest:
        tail = call([arrays[i][nb * row_chunk :] for i in present])
        out = jnp.concatenate([out, tail], axis=0)
    return out


def _resolve_chunk(row_chunk):
    if row_chunk == "auto":
        return _CPU_ROW_CHUNK if jax.default_backend() == "cpu" else None
    if row_chunk is not None and (not isinstance(row_chunk, int) or row_chunk < 1):
        raise ValueError(f"row_chunk must be 'auto', None or a positive int; got {row_chunk!r}.")
    return row_chunk


# ----------------------------------------------------------------------------------------------
# Validation helpers for the public functions.


def _check_score_options(score, k_reg, lam):
    V.check_choice(score, "score", SCORES)
    if score == "raps":
        if V.is_concrete(k_reg):
            V.check_int_option(k_reg, "k_reg", 0)
        if V.is_concrete(lam):
            V.check_float_option(lam, "lam", 0.0)


def _check_probs(probs, score):
    """probs [N, K], K >= 2; LAC needs values in [0, 1], APS / RAPS probability vectors."""
    probs = V.as_float_array(probs, "probs", ndim=2)
    if probs.shape[1] < 2:
        raise ValueError(f"probs: has shape {tuple(probs.shape)}; expected [N, K] with K >= 2")
    (V.check_probabilities if score == "lac" else V.check_simplex)(probs, "probs")
    return probs


def _check_u(n, rng, u, validate):
    """Validate the randomisation inputs (the uniforms themselves are drawn inside jit)."""
    if rng is not None and u is not None:
        raise ValueError("pass rng or u for a randomised score, not both.")
    if u is None:
        return None
    if validate:
        u = V.as_float_array(u, "u")
        V.check_shape(u, "u", (n,), f"[N] = ({n},), one uniform per row of probs")
        V.check_range(u, "u", 0.0, 1.0, what="uniforms in [0, 1]")
    return jnp.asarray(u)


def _draw_u(n, dtype, rng, u):
    """Inside jit: the per-row uniforms as `dtype` (from rng or u), or None."""
    if rng is not None:
        return jax.random.uniform(rng, (n,), dtype)
    return None if u is None else u.astype(dtype)


# ----------------------------------------------------------------------------------------------
# Public API.


def nonconformity(
    probs: jax.Array,
    labels: jax.Array,
    *,
    score: str = "lac",
    k_reg: int = 1,
    lam: float = 0.0,
    rng: jax.Array | None = None,
    u: jax.Array | None = None,
    validate: bool = True,
) -> jax.Array:
    """Nonconformity scores s(x_i, y_i) of labelled examples (the calibration scores).

    Args:
      probs: [n, K] class probabilities in [0, 1] (rows sum to 1 for "aps" / "raps"; checked
        when `validate`, assumed otherwise).
      labels: [n] int labels in [0, K).
      score: "lac" | "aps" | "raps" (see the module docstring for the formulas).
      k_reg, lam: RAPS regularisation (rank allowance and penalty per extra rank).
      rng: PRNG key for the randomised APS / RAPS score (one uniform per row), or
      u: [n] uniforms in [0, 1] given explicitly. With neither, APS / RAPS are deterministic.
      validate: shape / value checks; False skips them (for use inside jit / vmap).
    Returns:
      [n] scores. With `quantile(scores, alpha=a)` as qhat, `prediction_sets(...)` with the same
      options gives P(Y in C(X)) >= 1 - a.
    """
    if validate:
        _check_score_options(score, k_reg, lam)
        probs = _check_probs(probs, score)
        labels = V.as_class_labels(labels, "labels", probs.shape[1])
        V.check_leading(probs, labels, "probs", "labels")
    probs, labels = jnp.asarray(probs), jnp.asarray(labels)
    if score == "lac" and (rng is not None or u is not None):
        raise ValueError("LAC has no randomised form; drop rng / u.")
    u = _check_u(probs.shape[0], rng, u, validate)
    return _nonconformity(probs, labels, u, rng, k_reg, lam, kind=score)


@partial(jax.jit, static_argnames=("kind",))
def _nonconformity(probs, labels, u, rng, k_reg, lam, *, kind):
    u = _draw_u(probs.shape[0], probs.dtype, rng, u)
    py = jnp.take_along_axis(probs, labels[:, None].astype(jnp.int32), axis=1)[:, 0]
    pq = None if kind == "lac" else _quantize(probs)
    return _label_score(probs, pq, py, u, kind=kind, k_reg=k_reg, lam=lam)


def label_scores(
    probs: jax.Array,
    *,
    score: str = "lac",
    k_reg: int = 1,
    lam: float = 0.0,
    rng: jax.Array | None = None,
    u: jax.Array | None = None,
    validate: bool = True,
    row_chunk: int | str | None = "auto",
) -> jax.Array:
    """Scores s(x, k) of every candidate label k, the same expression as `nonconformity`.

    Cost O(N K^2) for APS / RAPS (pairwise comparisons, no sort); use `prediction_sets` with a
    scalar threshold when only sets are needed.

    Args:
      probs: [N, K] class probabilities in [0, 1].
      score, k_reg, lam, rng, u: as in `nonconformity` (u is [N], shared by a row's labels).
      row_chunk: rows per block ("auto": 256 on CPU, unblocked elsewhere).
    Returns:
      [N, K] scores.
    """
    if validate:
        _check_score_options(score, k_reg, lam)
        probs = _check_probs(probs, score)
    probs = jnp.asarray(probs)
    if score == "lac" and (rng is not None or u is not None):
        raise ValueError("LAC has no randomised form; drop rng / u.")
    u = _check_u(probs.shape[0], rng, u, validate)
    return _label_scores_jit(
        probs, u, rng, k_reg, lam, score=score, row_chunk=_resolve_chunk(row_chunk)
    )


@partial(jax.jit, static_argnames=("score", "row_chunk"))
def _label_scores_jit(probs, u, rng, k_reg, lam, *, score, row_chunk):
    u = _draw_u(probs.shape[0], probs.dtype, rng, u)
    return _all_label_scores(probs, u, score, k_reg, lam, row_chunk)


def _all_label_scores(probs, u, score, k_reg, lam, row_chunk):
    if score == "lac":
        return 1.0 - probs

    def rows(p, uu):
        pq = _quantize(p)
        f = lambda pk: _label_score(p, pq, pk, uu, kind=score, k_reg=k_reg, lam=lam)
        return jax.lax.map(f, p.T).T

    return _map_rows(rows, row_chunk, probs, u)


def prediction_sets(
    probs: jax.Array,
    qhat: jax.Array | float,
    *,
    score: str = "lac",
    k_reg: int = 1,
    lam: float = 0.0,
    rng: jax.Array | None = None,
    u: jax.Array | None = None,
    include_last: bool = False,
    validate: bool = True,
    row_chunk: int | str | None = "auto",
) -> jax.Array:
    """Conformal prediction sets C(x) = {k: s(x, k) <= qhat}.

    Guarantee: with qhat = `quantile(nonconformity(cal_probs, cal_labels, ...), alpha=a)` on
    calibration data exchangeable with the test data, and the same score options here,
    1 - a <= P(Y in C(X)) (< 1 - a + 1 / (n + 1) for continuous scores, e.g. randomised APS).
    With per-class thresholds from `class_conditional_quantiles` the bound holds per class.

    Args:
      probs: [N, K] class probabilities in [0, 1].
      qhat: threshold(s): scalar; [N, 1] one per row (e.g. Mondrian groups known at test time:
        `q[groups][:, None]`); [K] one per class (class-conditional); or [N, K].
      score, k_reg, lam: as in `nonconformity`.
      rng / u: randomised APS / RAPS sets (u is [N]); must match how qhat was calibrated.
      include_last: deterministic APS / RAPS only: also include the label at which the cumulative
        mass first exceeds qhat (Romano et al.'s non-randomised rule; MAPIE's default
        `include_last_label=True`). Never smaller than the exact set, so the guarantee still
        holds, conservatively; needs a scalar or [N, 1] threshold.
      validate: shape / value checks; False skips them.
      row_chunk: rows per bisection block ("auto": 256 on CPU, unblocked on accelerators).
    Returns:
      [N, K] bool, True where the label is in the set.
    """
    if validate:
        _check_score_options(score, k_reg, lam)
        probs = _check_probs(probs, score)
        qhat = V.as_float_array(qhat, "qhat")
        V.check_no_nan(qhat, "qhat")
        if include_last and (rng is not None or u is not None):
            raise ValueError("include_last is the deterministic rule; drop rng / u.")
        if include_last and score == "lac":
            raise ValueError("include_last applies to score='aps' or 'raps'.")
    probs = jnp.asarray(probs)
    qhat = jnp.asarray(qhat)
    n, k = probs.shape
    shape = tuple(qhat.shape)
    per_row = shape in ((), (1,), (n, 1), (1, 1))
    per_label = shape in ((k,), (1, k), (n, k))
    if not (per_row or per_label):
        raise ValueError(
            f"qhat must have shape (), ({k},) [per class], ({n}, 1) [per row] or ({n}, {k}) "
            f"for probs of shape ({n}, {k}); got {shape}."
        )
    if score == "lac":
        if rng is not None or u is not None:
            raise ValueError("LAC has no randomised form; drop rng / u.")
        return _lac_sets(probs, qhat)
    u = _check_u(n, rng, u, validate)
    if per_label and include_last:
        raise ValueError("include_last needs a scalar or [N, 1] qhat, not per-class thresholds.")
    return _sets_jit(
        probs,
        qhat,
        u,
        rng,
        k_reg,
        lam,
        raps=score == "raps",
        include_last=include_last,
        chunk=_resolve_chunk(row_chunk),
        per_row=per_row,
    )


@jax.jit
def _lac_sets(probs, qhat):
    return (1.0 - probs) <= qhat.astype(probs.dtype)


@partial(jax.jit, static_argnames=("raps", "include_last", "chunk", "per_row"))
def _sets_jit(probs, qhat, u, rng, k_reg, lam, *, raps, include_last, chunk, per_row):
    n = probs.shape[0]
    u = _draw_u(n, probs.dtype, rng, u)
    qhat = qhat.astype(probs.dtype)
    if per_row:
        q = jnp.broadcast_to(qhat.reshape(-1), (n,))
        fn = lambda p, qq, uu: _row_thresholds(
            p, qq, uu, raps=raps, k_reg=k_reg, lam=lam, include_last=include_last
        )
        # Blocks return one cut per row; the [N, K] set is then a single fused comparison.
        cut = _map_rows(fn, chunk, probs, q, u)
        return probs >= cut[:, None]
    kind = "raps" if raps else "aps"
    return _all_label_scores(probs, u, kind, k_reg, lam, chunk) <= qhat


def calibrate(
    probs: jax.Array,
    labels: jax.Array,
    *,
    alpha: float,
    score: str = "lac",
    k_reg: int = 1,
    lam: float = 0.0,
    rng: jax.Array | None = None,
    u: jax.Array | None = None,
    class_conditional: bool = False,
    validate: bool = True,
    on_infinite: str = "warn",
) -> jax.Array:
    """Threshold(s) for `prediction_sets` from a labelled calibration set.

    Guarantee: see `prediction_sets`; marginal coverage >= 1 - alpha, or per class with
    `class_conditional=True`.

    Args:
      probs: [n, K], labels: [n]; score options as in `nonconformity`.
      alpha: miscoverage level in (0, 1).
      class_conditional: one threshold per class (Mondrian on the label).
    Returns:
      scalar qhat, or [K] thresholds with `class_conditional`.
    """
    from introspect.conformal.mondrian import class_conditional_quantiles

    s = nonconformity(
        probs, labels, score=score, k_reg=k_reg, lam=lam, rng=rng, u=u, validate=validate
    )
    if class_conditional:
        return class_conditional_quantiles(
            s,
            labels,
            num_classes=jnp.shape(probs)[1],
            alpha=alpha,
            validate=validate,
            on_infinite=on_infinite,
        )
    return quantile(s, alpha=alpha, validate=validate, on_infinite=on_infinite)


# ----------------------------------------------------------------------------------------------
# Summaries.


def set_size(sets: jax.Array) -> jax.Array:
    """[N, K] bool sets -> [N] int set sizes."""
    return jnp.sum(jnp.asarray(sets, bool), axis=-1)


def coverage(sets: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of rows whose label is in the set. sets [N, K] bool, labels [N] -> scalar."""
    sets = jnp.asarray(sets, bool)
    labels = jnp.asarray(labels)
    V.check_rank(sets, "sets", 2, "[N, K] bool")
    V.check_shape(labels, "labels", sets.shape[:1], "[N], one label per row of sets")
    hit = jnp.take_along_axis(sets, labels[:, None].astype(jnp.int32), axis=1)[:, 0]
    return jnp.mean(hit.astype(jnp.result_type(float)))


def set_summary(
    sets: jax.Array,
    labels: jax.Array | None = None,
    *,
    groups: jax.Array | None = None,
    num_groups: int | None = None,
) -> dict[str, jax.Array]:
    """Coverage and size summaries of prediction sets.

    Args:
      sets: [N, K] bool.
      labels: optional [N] true labels (for coverage).
      groups: optional [N] group ids in [0, num_groups) for per-group coverage / size.
    Returns:
      dict with "mean_size", "empty_fraction", "singleton_fraction", "size_histogram" [K + 1],
      and with labels "coverage" (plus "group_coverage" / "group_size" / "group_count" [G] with
      groups).
    """
    sets = jnp.asarray(sets, bool)
    V.check_rank(sets, "sets", 2, "[N, K] bool")
    fdt = jnp.result_type(float)
    size = set_size(sets)
    out = {
        "mean_size": jnp.mean(size.astype(fdt)),
        "empty_fraction": jnp.mean((size == 0).astype(fdt)),
        "singleton_fraction": jnp.mean((size == 1).astype(fdt)),
        "size_histogram": jnp.bincount(size, length=sets.shape[1] + 1),
    }
    hit = None
    if labels is not None:
        out["coverage"] = coverage(sets, labels)
        hit = jnp.take_along_axis(sets, jnp.asarray(labels)[:, None].astype(jnp.int32), 1)[:, 0]
    if groups is not None:
        if num_groups is None:
            raise ValueError("num_groups is required with groups.")
        groups = jnp.asarray(groups)
        V.check_shape(groups, "groups", size.shape, "[N], one group per row of sets")
        count = jnp.bincount(groups, length=num_groups)
        out["group_count"] = count
        denom = jnp.maximum(count, 1).astype(fdt)
        out["group_size"] = (
            jnp.bincount(groups, weights=size.astype(fdt), length=num_groups) / denom
        )
        if hit is not None:
            w = hit.astype(fdt)
            out["group_coverage"] = jnp.bincount(groups, weights=w, length=num_groups) / denom
    return out
