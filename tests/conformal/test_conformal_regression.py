"""Split conformal regression: absolute residuals and CQR, coverage by simulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import conformal as cf


def _regression_data(rng, sims, n_total):
    """Heteroscedastic y = sin(2x) + (0.2 + 0.3|x|) eps with a biased point model and a
    mis-specified quantile model (band too narrow), x ~ U(-2, 2)."""
    x = rng.uniform(-2, 2, (sims, n_total))
    y = np.sin(2 * x) + (0.2 + 0.3 * np.abs(x)) * rng.standard_normal((sims, n_total))
    pred = 0.9 * np.sin(2 * x)
    half = 1.0 * (0.2 + 0.2 * np.abs(x))
    return y, pred, pred - half, pred + half


@pytest.mark.parametrize("method", ["residual", "cqr"])
def test_regression_coverage_over_random_splits(coverage_stats, method):
    """Coverage over 2000 splits in [1 - a, 1 - a + 1/(n + 1)] and equal to k/(n + 1) within the
    Beta-binomial tolerance of `split_coverage_stats` (Z = 4.5)."""
    sims, n, m, alpha = 2000, 300, 200, 0.1
    y, pred, lo, hi = (
        a.astype(np.float32) for a in _regression_data(np.random.default_rng(0), sims, n + m)
    )

    def one(y, pred, lo, hi):
        if method == "residual":
            q = cf.quantile(cf.residual_scores(y[:n], pred[:n], validate=False), alpha=alpha)
            a, b = cf.residual_intervals(pred[n:], q, validate=False)
        else:
            s = cf.cqr_scores(y[:n], lo[:n], hi[:n], validate=False)
            q = cf.quantile(s, alpha=alpha, validate=False)
            a, b = cf.cqr_intervals(lo[n:], hi[n:], q, validate=False)
        out = cf.interval_summary(a, b, y[n:])
        return out["coverage"], out["mean_width"]

    cov, width = jax.jit(jax.vmap(one))(y, pred, lo, hi)
    exact, tol = coverage_stats(n, m, sims, alpha)
    c = float(jnp.mean(cov))
    assert 1 - alpha - tol <= c <= 1 - alpha + 1 / (n + 1) + tol, (c, tol)
    assert abs(c - exact) <= tol
    assert float(jnp.mean(width)) > 0


def test_cqr_scores_and_intervals_values():
    y = np.array([0.0, 2.0, -3.0])
    lo, hi = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])
    np.testing.assert_allclose(cf.cqr_scores(y, lo, hi), [-1.0, 1.0, 2.0])
    a, b = cf.cqr_intervals(lo, hi, 0.5)
    np.testing.assert_allclose(a, -1.5)
    np.testing.assert_allclose(b, 1.5)
    np.testing.assert_allclose(cf.residual_scores(y, np.zeros(3)), [0.0, 2.0, 3.0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        cf.residual_scores(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        cf.cqr_scores(np.array([np.nan]), np.zeros(1), np.ones(1))
    with pytest.raises(ValueError, match="NaN"):
        cf.residual_intervals(np.zeros(3), np.nan)
    with pytest.raises(ValueError, match="same shape"):
        cf.interval_summary(np.zeros(3), np.zeros(2))
