"""Split conformal thresholds: exact ranks, masks, weights, p-values, bad input."""

import math
import warnings
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import conformal as cf


def _rank_exact(n, alpha: Fraction):
    return math.ceil((n + 1) * (1 - alpha))


@pytest.mark.parametrize("alpha", ["0.1", "0.05", "0.2", "0.3", "0.01", "0.025", "0.5", "0.9"])
def test_rank_is_exact_for_decimal_alphas(alpha):
    a = Fraction(alpha)
    for n in range(0, 2001):
        assert cf.conformal_rank(n, alpha=float(alpha)) == _rank_exact(n, a), n


def test_rank_and_min_size_known_values():
    assert cf.conformal_rank(9, alpha=0.1) == 9  # (10)(0.9) = 9 exactly, not 10 from rounding
    assert cf.conformal_rank(8, alpha=0.1) == 9  # > n: infinite threshold
    assert cf.conformal_rank(99, alpha=0.05) == 95
    assert cf.min_calibration_size(0.1) == 9
    assert cf.min_calibration_size(0.05) == 19
    assert cf.min_calibration_size(0.3) == 3
    for alpha in (0.1, 0.05, 0.2, 0.123):
        m = cf.min_calibration_size(alpha)
        assert cf.conformal_rank(m, alpha=alpha) <= m < cf.conformal_rank(m - 1, alpha=alpha) + 1


def test_quantile_is_the_order_statistic():
    rng = np.random.default_rng(0)
    for n in (1, 9, 10, 57, 200):
        s = rng.normal(size=n).astype(np.float32)
        for alpha in (0.1, 0.05, 0.3, 0.5):
            k = cf.conformal_rank(n, alpha=alpha)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cf.InfiniteThresholdWarning)
                q = float(cf.quantile(s, alpha=alpha))
            assert q == (np.sort(s)[k - 1] if k <= n else np.inf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_n_selection_matches_sort(dtype):
    """The bisection selection used for n >= 2^15 returns exactly the sorted order statistic."""
    from introspect.conformal import split

    rng = np.random.default_rng(5)
    with jax.enable_x64(dtype == np.float64):
        for n in (1, 2, 7, 5000):
            x = (rng.normal(size=(3, n)) * 10).astype(dtype)
            x[0, : n // 2] = x[0, 0]  # ties
            if n > 3:
                x[1, :3] = [-np.inf, np.inf, -0.0]
                x[2] = 0.0
            for k in sorted({1, n, (n + 1) // 2, max(1, n - 3)}):
                got = split._kth_smallest_select(jnp.asarray(x), jnp.asarray(k, jnp.int32))
                np.testing.assert_array_equal(np.asarray(got), np.sort(x, -1)[:, k - 1])
        big = rng.normal(size=40_000).astype(dtype)
        np.testing.assert_array_equal(
            cf.quantile(big, alpha=0.1), np.sort(big)[cf.conformal_rank(40_000, alpha=0.1) - 1]
        )


def test_quantile_batched_masked_and_traced_alpha_agree():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 50)).astype(np.float32)
    q = cf.quantile(s, alpha=0.1)
    assert q.shape == (4,)
    for i in range(4):
        assert float(q[i]) == float(cf.quantile(s[i], alpha=0.1))
    # A mask that keeps the first 30 points equals calibrating on them.
    mask = np.zeros((4, 50), bool)
    mask[:, :30] = True
    qm = cf.quantile(s, alpha=0.1, mask=mask)
    np.testing.assert_array_equal(qm, cf.quantile(s[:, :30], alpha=0.1))
    # Traced alpha (jit) gives the same answer as the static path.
    f = jax.jit(lambda x, a: cf.quantile(x, alpha=a, validate=False))
    for a in (0.1, 0.05, 0.2):
        np.testing.assert_array_equal(f(s, a), q if a == 0.1 else cf.quantile(s, alpha=a))


def test_quantile_jit_vmap():
    s = np.random.default_rng(6).normal(size=(8, 40)).astype(np.float32)
    f = jax.jit(jax.vmap(lambda x: cf.quantile(x, alpha=0.1, validate=False)))
    np.testing.assert_array_equal(f(s), cf.quantile(s, alpha=0.1))


def test_infinite_threshold_is_flagged():
    s = np.arange(5.0)
    with pytest.warns(cf.InfiniteThresholdWarning, match="need n >= 9"):
        q = cf.quantile(s, alpha=0.1)
    assert np.isinf(q)
    with pytest.raises(ValueError, match="too few"):
        cf.quantile(s, alpha=0.1, on_infinite="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(cf.quantile(s, alpha=0.1, on_infinite="ignore"))
    with pytest.warns(cf.InfiniteThresholdWarning):
        cf.quantile(np.arange(20.0), alpha=0.1, mask=np.arange(20) < 5)


def test_weighted_quantile_reduces_to_quantile_with_equal_weights():
    rng = np.random.default_rng(2)
    for n in (9, 10, 99, 100):
        s = rng.normal(size=n).astype(np.float32)
        for alpha in (0.1, 0.05, 0.2):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", cf.InfiniteThresholdWarning)
                qw = cf.weighted_quantile(s, np.full(n, 2.5), test_weight=2.5, alpha=alpha)
                q = cf.quantile(s, alpha=alpha)
            assert float(qw) == float(q), (n, alpha)


def test_weighted_quantile_heavy_test_weight_is_infinite():
    s = np.linspace(0, 1, 20)
    with pytest.warns(cf.InfiniteThresholdWarning):
        q = cf.weighted_quantile(s, np.ones(20), test_weight=np.array([1.0, 100.0]), alpha=0.1)
    assert np.isfinite(q[0]) and np.isinf(q[1])


def test_weighted_coverage_under_covariate_shift():
    """Weighted conformal keeps coverage under a known covariate shift; unweighted does not.

    x_cal ~ N(0, 1), x_test ~ N(1, 1), so w(x) = exp(x - 1/2); y = x + (0.3 + |x|) eps. The weighted
    guarantee has no exact upper end, so only the lower end is tested; the tolerance is Z times the
    empirical standard error of the per-split coverage (CLT over independent splits).
    """
    sims, n, m, alpha = 1000, 200, 100, 0.1
    rng = np.random.default_rng(0)
    xc = rng.standard_normal((sims, n)).astype(np.float32)
    xt = (1.0 + rng.standard_normal((sims, m))).astype(np.float32)
    yc = xc + (0.3 + np.abs(xc)) * rng.standard_normal((sims, n)).astype(np.float32)
    yt = xt + (0.3 + np.abs(xt)) * rng.standard_normal((sims, m)).astype(np.float32)

    def one(xc, xt, yc, yt):
        s = cf.residual_scores(yc, xc, validate=False)
        qw = cf.weighted_quantile(
            s, jnp.exp(xc - 0.5), test_weight=jnp.exp(xt - 0.5), alpha=alpha, validate=False
        )
        q = cf.quantile(s, alpha=alpha, validate=False)
        st = jnp.abs(yt - xt)
        return jnp.mean(st <= qw), jnp.mean(st <= q)

    cw, cu = jax.jit(jax.vmap(one))(xc, xt, yc, yt)
    tol_w = 4.5 * float(jnp.std(cw)) / math.sqrt(sims)
    assert float(jnp.mean(cw)) >= 1 - alpha - tol_w
    tol_u = 4.5 * float(jnp.std(cu)) / math.sqrt(sims)
    assert float(jnp.mean(cu)) < 1 - alpha - 3 * tol_u  # the negative control under-covers


def test_conformal_pvalues_are_valid_and_match_quantile(x64, btol):
    rng = np.random.default_rng(3)
    cal = rng.normal(size=99)
    test = rng.normal(size=1000)
    p = np.asarray(cf.conformal_pvalues(cal, test))
    q = float(cf.quantile(cal, alpha=0.1))
    np.testing.assert_array_equal(p > 0.1, test <= q)
    # Exact values: (1 + #{s_i >= s}) / (n + 1).
    ref = (1 + (cal[None, :] >= test[:, None]).sum(1)) / 100
    np.testing.assert_allclose(p, ref)
    # Validity by simulation: P(p <= t) <= t (smoothed: = t), 4000 exchangeable draws.
    sims = 4000
    rng = np.random.default_rng(1)
    x = rng.standard_normal((sims, 51))
    u = rng.random(sims)

    def one(x, u):
        return cf.conformal_pvalues(x[:50], x[50], u=u, validate=False)

    ps = jax.jit(jax.vmap(one))(x, u)
    for t in (0.05, 0.1, 0.5):
        assert abs(float(jnp.mean(ps <= t)) - t) <= btol(t, sims)


def test_empirical_cdf_per_group_matches_numpy():
    rng = np.random.default_rng(4)
    cal = rng.normal(size=300)
    g = rng.integers(0, 3, 300)
    v = rng.normal(size=50)
    gv = rng.integers(0, 4, 50)
    out = np.asarray(cf.empirical_cdf(cal, v, cal_groups=g, groups=gv, num_groups=4))
    for i in range(50):
        sel = cal[g == gv[i]]
        ref = (sel <= v[i]).mean() if sel.size else 0.0
        assert out[i] == pytest.approx(ref)
    np.testing.assert_allclose(cf.empirical_cdf(cal, v), (cal[None] <= v[:, None]).mean(1))


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match=r"alpha: expected a finite number in \(0, 1\)"):
        cf.quantile(np.ones(10), alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        cf.weighted_quantile(np.ones(10), np.ones(10), test_weight=1.0, alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        cf.mondrian_quantiles(np.ones(10), np.zeros(10, int), num_groups=1, alpha=alpha)


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        cf.quantile(np.zeros(0), alpha=0.1)
    with pytest.raises(ValueError, match="NaN"):
        cf.quantile(np.array([0.1, np.nan, 0.3]), alpha=0.1)
    with pytest.raises(ValueError, match=r"mask: has shape \(9,\); expected \(10,\)"):
        cf.quantile(np.ones(10), alpha=0.1, mask=np.ones(9, bool))
    with pytest.raises(ValueError, match="rank"):
        cf.quantile(np.float64(1.0), alpha=0.1)
    with pytest.raises(ValueError, match="on_infinite"):
        cf.quantile(np.ones(10), alpha=0.1, on_infinite="maybe")
    with pytest.raises(ValueError, match="same shape"):
        cf.weighted_quantile(np.ones(10), np.ones(9), test_weight=1.0, alpha=0.1)
    with pytest.raises(ValueError, match="non-negative"):
        cf.weighted_quantile(np.ones(3), np.array([1.0, -1.0, 1.0]), test_weight=1.0, alpha=0.1)
    with pytest.raises(ValueError, match="NaN"):
        cf.conformal_pvalues(np.ones(3), np.array([np.nan]))
    with pytest.raises(ValueError, match="both"):
        cf.empirical_cdf(np.ones(3), np.ones(2), cal_groups=np.zeros(3, int))
    with pytest.raises(ValueError, match="groups: 1 value.* not integer class indices"):
        cf.mondrian_quantiles(np.ones(3), np.array([0.5, 1.0, 0.0]), num_groups=2, alpha=0.1)
    with pytest.raises(ValueError, match=r"groups: .*expected group ids in \[0, 2\)"):
        cf.mondrian_quantiles(np.ones(3), np.array([0, 1, 2]), num_groups=2, alpha=0.1)
