"""Split conformal thresholds: plain, masked and weighted (covariate shift), and conformal p-values.

Everything here takes nonconformity scores (larger = stranger) from any score function; the
classification and regression modules turn model outputs into such scores.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from introspect import _checks as V
from introspect.conformal import thresholds as T

# Above this many scores the k-th smallest is found by bisection on the floats' bit patterns
# (32 counting passes in float32) instead of a sort, which is slow on CPU for large n.
_SELECT_MIN_N = 1 << 15


def _kth_smallest_static(scores, k: int):
    """k-th smallest (1-based, 1 <= k <= n) along the last axis."""
    if scores.shape[-1] >= _SELECT_MIN_N:
        return _kth_smallest_select(scores, jnp.asarray(k, jnp.int32))
    return _kth_smallest(scores, jnp.asarray(k - 1, jnp.int32))


@jax.jit
def _kth_smallest(scores, index):
    # The index is traced so that one compilation serves every alpha.
    return jnp.take(jnp.sort(scores, axis=-1), index, axis=-1)


def _order_keys(x):
    """Signed integers ordered like the floats x (no NaN): negatives get their magnitude flipped."""
    idt = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[x.dtype.itemsize]
    b = jax.lax.bitcast_convert_type(x, idt)
    return jnp.where(b < 0, b ^ jnp.array(jnp.iinfo(idt).max, idt), b)


@jax.jit
def _kth_smallest_select(scores, k):
    """Exact k-th smallest along the last axis: the smallest key m with #{key <= m} >= k."""
    keys = _order_keys(scores)
    lo = jnp.min(keys, axis=-1) - 1  # count(<= lo) = 0 < k
    hi = jnp.max(keys, axis=-1)  # count(<= hi) = n >= k

    def body(_, carry):
        lo, hi = carry
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2) without overflow
        ok = jnp.sum(keys <= mid[..., None], axis=-1) >= k
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

    _, hi = jax.lax.fori_loop(0, 8 * keys.dtype.itemsize, body, (lo, hi))
    # Back from key to float: the key of an actual score, so this is one of the scores.
    b = jnp.where(hi < 0, hi ^ jnp.array(jnp.iinfo(hi.dtype).max, hi.dtype), hi)
    return jax.lax.bitcast_convert_type(b, scores.dtype)


def quantile(
    scores: jax.Array,
    *,
    alpha: float,
    mask: jax.Array | None = None,
    validate: bool = True,
    on_infinite: str = "warn",
) -> jax.Array:
    """Split-conformal threshold: the ceil((n + 1)(1 - alpha))-th smallest calibration score.

    Guarantee: if the n calibration points and a test point are exchangeable, the test score S
    satisfies P(S <= qhat) >= 1 - alpha; if the scores are almost surely distinct it is also
    < 1 - alpha + 1 / (n + 1). When ceil((n + 1)(1 - alpha)) > n the threshold is +inf (the trivial
    set, which covers with probability 1); at the public API this is reported as chosen by
    `on_infinite` ("warn": an `InfiniteThresholdWarning`, "raise": a ValueError, "ignore").

    Args:
      scores: [..., n] calibration nonconformity scores; leading axes are independent problems
        (e.g. [splits, n] gives one threshold per split).
      alpha: miscoverage level in (0, 1). A Python float is handled exactly (0.1 means 1/10); a
        traced alpha is allowed with `validate=False`.
      mask: optional [..., n] bool, True for the points that belong to the calibration set
        (n is then the number of True entries, per row).
      validate: check shapes and (for concrete inputs) NaN / alpha range; False skips all checks.
      on_infinite: "warn" | "raise" | "ignore"; only consulted when `validate` is True and the
        sizes are known on the host.
    Returns:
      [...] thresholds qhat, same dtype as `scores`.
    """
    if validate:
        scores = V.as_float_array(scores, "scores", min_ndim=1)
        T.check_on_infinite(on_infinite)
        T.check_level(alpha, "alpha")
        V.check_not_empty(scores, "scores")
        if mask is not None:
            mask = V.as_mask(mask, scores.shape)
        V.check_no_nan(scores, "scores", mask)  # NaN scores outside the mask are ignored
    else:
        scores = jnp.asarray(scores)
    n = scores.shape[-1]
    if mask is None:
        if V.is_concrete(alpha):
            k = T.conformal_rank(n, alpha=float(alpha))
            if k > n:
                if validate:
                    T.report_infinite(
                        f"conformal threshold is +inf: n = {n} calibration points are too few for "
                        f"alpha = {float(alpha)} (rank ceil((n + 1)(1 - alpha)) = {k} > n; need "
                        f"n >= {T.min_calibration_size(float(alpha))}).",
                        on_infinite,
                    )
                return jnp.full(scores.shape[:-1], jnp.inf, scores.dtype)
            return _kth_smallest_static(scores, k)
        return _quantile_traced_alpha(scores, alpha)
    mask = jnp.asarray(mask, bool)
    if V.is_concrete(alpha):
        val, finite, n_eff = _masked_quantile_jit(scores, mask, alpha=float(alpha))
    else:
        val, finite, n_eff = _masked_quantile(scores, mask, alpha=alpha)
    if validate and V.is_concrete(finite) and not bool(jnp.all(finite)):
        T.report_infinite(
            f"conformal threshold is +inf for {int(jnp.sum(~finite))} row(s): too few masked-in "
            f"calibration points for alpha = {alpha} (smallest n = {int(jnp.min(n_eff))}; need "
            f"n >= {T.min_calibration_size(float(alpha))}).",
            on_infinite,
        )
    return val


def _quantile_traced_alpha(scores, alpha):
    n = scores.shape[-1]
    k = T.conformal_rank_dynamic(n, alpha)
    srt = jnp.sort(scores, axis=-1)
    val = jnp.take(srt, jnp.clip(k - 1, 0, n - 1), axis=-1)
    return jnp.where(k <= n, val, jnp.inf).astype(scores.dtype)


def _masked_quantile(scores, mask, *, alpha):
    n = scores.shape[-1]
    n_eff = jnp.sum(mask, axis=-1)
    k = T.conformal_rank_dynamic(n_eff, alpha)
    srt = jnp.sort(jnp.where(mask, scores, jnp.inf), axis=-1)
    idx = jnp.clip(k - 1, 0, n - 1)
    val = jnp.take_along_axis(srt, idx[..., None], axis=-1)[..., 0]
    finite = k <= n_eff
    return jnp.where(finite, val, jnp.inf).astype(scores.dtype), finite, n_eff


_masked_quantile_jit = jax.jit(_masked_quantile, static_argnames=("alpha",))


def weighted_quantile(
    scores: jax.Array,
    weights: jax.Array,
    *,
    test_weight: jax.Array,
    alpha: float,
    validate: bool = True,
    on_infinite: str = "warn",
) -> jax.Array:
    """Weighted split-conformal threshold for covariate shift (Tibshirani et al., 2019).

    With w(x) = dP_test(x) / dP_cal(x) (known up to a constant), put mass p_i = w_i / (W + w) on
    each calibration score and p = w / (W + w) on +inf, where W = sum_i w_i and w = w(x_test); the
    threshold is the (1 - alpha) quantile of that distribution (+inf if the finite mass is below
    1 - alpha). Guarantee: if the calibration points are i.i.d. from P_cal and the test point is
    drawn with covariates from P_test (same Y | X), then P(S_test <= qhat(x_test)) >= 1 - alpha.
    With all weights equal this is exactly `quantile`.

    Args:
      scores: [n] calibration nonconformity scores.
      weights: [n] non-negative likelihood-ratio weights w(x_i) of the calibration points.
      test_weight: [...] weight w(x) of each test point (scalar for one test point).
      alpha: miscoverage level in (0, 1).
      validate: shape / value checks; False skips them.
      on_infinite: "warn" | "raise" | "ignore" for thresholds that come out +inf.
    Returns:
      [...] thresholds, one per test weight.
    """
    if validate:
        scores = V.as_float_array(scores, "scores", ndim=1)
        weights = V.as_float_array(weights, "weights", ndim=1)
        test_weight = V.as_float_array(test_weight, "test_weight")
        T.check_on_infinite(on_infinite)
        T.check_level(alpha, "alpha")
        V.check_not_empty(scores, "scores")
        V.check_same_shape(scores, weights, "scores", "weights")
        V.check_no_nan(scores, "scores")
        for x, name in ((weights, "weights"), (test_weight, "test_weight")):
            V.check_range(x, name, 0.0, float("inf"), what="finite non-negative likelihood ratios")
    else:
        scores, weights, test_weight = map(jnp.asarray, (scores, weights, test_weight))
    q, finite = _weighted_core(scores, weights, test_weight, jnp.asarray(alpha))
    if validate and V.is_concrete(finite) and not bool(jnp.all(finite)):
        T.report_infinite(
            f"weighted conformal threshold is +inf for {int(jnp.sum(~finite))} test point(s): "
            f"their weight leaves less than 1 - alpha = {1 - float(alpha):.4g} of the mass on "
            "the calibration scores.",
            on_infinite,
        )
    return q


@jax.jit
def _weighted_core(scores, weights, test_weight, alpha):
    dtype = jnp.result_type(scores.dtype, weights.dtype, test_weight.dtype)
    order = jnp.argsort(scores)
    s_sorted = scores[order].astype(dtype)
    cw = jnp.cumsum(weights[order].astype(dtype))
    total = cw[-1] + test_weight.astype(dtype)
    # Relative slack of a few ulps so that equal weights reproduce `quantile` exactly when
    # (1 - alpha)(n + 1) is an integer.
    rtol = 8 * jnp.finfo(dtype).eps
    target = (1.0 - alpha.astype(dtype)) * total * (1.0 - rtol)
    idx = jnp.searchsorted(cw, target, side="left")
    n = scores.shape[0]
    finite = idx < n
    return jnp.where(finite, s_sorted[jnp.clip(idx, 0, n - 1)], jnp.inf), finite


def conformal_pvalues(
    cal_scores: jax.Array,
    test_scores: jax.Array,
    *,
    u: jax.Array | None = None,
    validate: bool = True,
) -> jax.Array:
    """Conformal p-values of test scores against a calibration set.

    p(s) = (1 + #{i: s_i >= s}) / (n + 1), or with `u` the smoothed version
    p(s) = (#{i: s_i > s} + u (1 + #{i: s_i == s})) / (n + 1).
    Guarantee: for a test point exchangeable with the calibration points, P(p <= t) <= t for all
    t in [0, 1] (exactly t for the smoothed version). `qhat = quantile(cal, alpha=a)` and
    "p > a" describe the same set up to ties.

    Args:
      cal_scores: [n] calibration scores.
      test_scores: [...] test scores.
      u: optional [...] uniforms in [0, 1] for the smoothed p-value.
      validate: shape / NaN checks.
    Returns:
      [...] p-values in (0, 1].
    """
    if validate:
        cal_scores = V.as_float_array(cal_scores, "cal_scores", ndim=1)
        test_scores = V.as_float_array(test_scores, "test_scores")
        V.check_not_empty(cal_scores, "cal_scores")
        V.check_no_nan(cal_scores, "cal_scores")
        V.check_no_nan(test_scores, "test_scores")
        if u is not None:
            u = V.as_float_array(u, "u")
            V.check_same_shape(u, test_scores, "u", "test_scores")
            V.check_range(u, "u", 0.0, 1.0, what="uniforms in [0, 1]")
    return _pvalues_core(jnp.asarray(cal_scores), jnp.asarray(test_scores), u)


@jax.jit
def _pvalues_core(cal_scores, test_scores, u):
    srt = jnp.sort(cal_scores)
    n = srt.shape[0]
    below = jnp.searchsorted(srt, test_scores, side="left")  # #{s_i < s}
    at_or_below = jnp.searchsorted(srt, test_scores, side="right")  # #{s_i <= s}
    dtype = jnp.result_type(float)
    if u is None:
        return (1 + n - below).astype(dtype) / (n + 1)
    greater = n - at_or_below
    ties = at_or_below - below
    return (greater + jnp.asarray(u, dtype) * (1 + ties)) / (n + 1)


def empirical_cdf(
    cal_values: jax.Array,
    values: jax.Array,
    *,
    cal_groups: jax.Array | None = None,
    groups: jax.Array | None = None,
    num_groups: int | None = None,
    validate: bool = True,
) -> jax.Array:
    """Held-out empirical CDF, optionally per partition (SDM-style calibration).

    F_g(v) = #{i in group g: v_i <= v} / n_g, evaluated for each value at its own group; a group
    with no calibration points gives 0. SDM calibrates an output by the class- (or partition-)
    conditional empirical CDF of a held-out set; `conformal_pvalues` is the finite-sample-valid
    counterpart (use it when a guarantee is needed).

    Args:
      cal_values: [n] held-out values.
      values: [m] values to calibrate.
      cal_groups, groups: optional [n] / [m] partition ids in [0, num_groups).
      num_groups: number of partitions (required with groups).
      validate: shape / value checks.
    Returns:
      [m] CDF values in [0, 1].
    """
    if validate:
        cal_values = V.as_float_array(cal_values, "cal_values", ndim=1)
        values = V.as_float_array(values, "values", ndim=1)
        V.check_not_empty(cal_values, "cal_values")
        V.check_no_nan(cal_values, "cal_values")
        V.check_no_nan(values, "values")
        if (cal_groups is None) != (groups is None):
            raise ValueError("cal_groups, groups: pass both or neither")
        if cal_groups is not None:
            num_groups = V.check_int_option(num_groups, "num_groups", 1)
            what = f"group ids in [0, {num_groups})"
            cal_groups = V.as_class_labels(cal_groups, "cal_groups", num_groups, what)
            groups = V.as_class_labels(groups, "groups", num_groups, what)
            V.check_same_shape(cal_values, cal_groups, "cal_values", "cal_groups")
            V.check_same_shape(values, groups, "values", "groups")
    return _ecdf_core(
        jnp.asarray(cal_values),
        jnp.asarray(values),
        None if cal_groups is None else jnp.asarray(cal_groups),
        None if groups is None else jnp.asarray(groups),
        num_groups=num_groups,
    )


@partial(jax.jit, static_argnames=("num_groups",))
def _ecdf_core(cal_values, values, cal_groups, groups, *, num_groups):
    dtype = jnp.result_type(float)
    if cal_groups is None:
        srt = jnp.sort(cal_values)
        return jnp.searchsorted(srt, values, side="right").astype(dtype) / srt.shape[0]
    _, v_sorted = jax.lax.sort((cal_groups, cal_values), num_keys=2)
    counts = jnp.bincount(cal_groups, length=num_groups)
    starts = jnp.cumsum(counts) - counts
    n_g = counts[groups]
    # Binary search inside each group's slice [start, start + n_g) of the (group, value) order.
    pos = _searchsorted_in_slices(v_sorted, starts[groups], n_g, values)
    return jnp.where(n_g > 0, pos.astype(dtype) / jnp.maximum(n_g, 1), 0.0)


def _searchsorted_in_slices(sorted_vals, lo, length, queries):
    """#{j in [lo, lo + length): sorted_vals[j] <= q}, vectorised binary search."""
    n = sorted_vals.shape[0]
    steps = max(1, int(n).bit_length() + 1)

    def body(_, carry):
        a, b = carry  # answer in [a, b]
        mid = (a + b) // 2
        v = sorted_vals[jnp.clip(lo + mid, 0, n - 1)]
        go_right = (mid < b) & (v <= queries)
        return jnp.where(go_right, mid + 1, a), jnp.where(go_right, b, mid)

    a, _ = jax.lax.fori_loop(0, steps, body, (jnp.zeros_like(length), length))
    return a
