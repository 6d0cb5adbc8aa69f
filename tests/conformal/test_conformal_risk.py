"""Conformal risk control and Learn-then-Test: exact p-value validity, FWER, risk by simulation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from introspect import conformal as cf


def test_binomial_cdf_matches_scipy(x64):
    for n, p in ((10, 0.1), (200, 0.05), (1000, 0.3)):
        k = np.arange(-1, n + 2)
        np.testing.assert_allclose(
            cf.binomial_cdf(k, n=n, p=p), stats.binom.cdf(k, n, p), rtol=1e-9, atol=1e-12
        )


def test_hb_pvalue_formula(x64):
    n, alpha = 300, 0.1
    r = np.linspace(0, 0.2, 41)
    a = np.minimum(r, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = np.nan_to_num(a * np.log(a / alpha)) + (1 - a) * np.log((1 - a) / (1 - alpha))
    ref = np.minimum(
        np.minimum(np.exp(-n * h1), math.e * stats.binom.cdf(np.ceil(n * r - 1e-9), n, alpha)), 1
    )
    np.testing.assert_allclose(cf.hoeffding_bentkus_pvalue(r, n=n, alpha=alpha), ref, rtol=1e-9)
    np.testing.assert_allclose(
        cf.hoeffding_pvalue(r, n=n, alpha=alpha), np.exp(-2 * n * np.maximum(alpha - r, 0) ** 2)
    )


@pytest.mark.parametrize("pvalue", ["hoeffding", "hoeffding_bentkus"])
def test_pvalues_are_valid_exactly(x64, pvalue):
    """P(p <= t) <= t under the null R = alpha, computed exactly over Binomial(n, alpha) counts."""
    fn = cf.hoeffding_pvalue if pvalue == "hoeffding" else cf.hoeffding_bentkus_pvalue
    for n, alpha in ((50, 0.1), (400, 0.2), (1000, 0.05)):
        for r_true in (alpha, alpha + 0.01):
            counts = np.arange(n + 1)
            pv = np.asarray(fn(counts / n, n=n, alpha=alpha))
            pmf = stats.binom.pmf(counts, n, r_true)
            for t in (0.01, 0.05, 0.1, 0.3):
                assert pmf[pv <= t].sum() <= t + 1e-12, (n, alpha, r_true, t)


def test_fwer_procedures():
    p = jnp.array([0.01, 0.02, 0.2, 0.001])
    np.testing.assert_array_equal(cf.fixed_sequence(p, delta=0.05), [True, True, False, False])
    np.testing.assert_array_equal(cf.bonferroni(p, delta=0.05), [True, False, False, True])


def _threshold_losses(rng, sims, n, lambdas):
    """0/1 losses L(lambda) = 1[Z > lambda], Z ~ U(0, 1): risk R(lambda) = 1 - lambda exactly."""
    z = rng.random((sims, n, 1))
    return (z > lambdas[None, None, :]).astype(np.float64)


@pytest.mark.parametrize("pvalue", ["hoeffding", "hoeffding_bentkus"])
@pytest.mark.parametrize("fwer", ["fixed_sequence", "bonferroni"])
def test_ltt_family_wise_error_by_simulation(btol, pvalue, fwer):
    """P(some certified lambda has R(lambda) > alpha) <= delta over 2000 calibration sets.

    Grid: lambda from 1 down to 0.7 (most conservative first), R(lambda) = 1 - lambda, alpha = 0.1:
    every lambda < 0.9 is a true null. Tolerance: binomial, Z = 4.5. A naive rule (smallest
    lambda with R_hat <= alpha) is run on the same data as a negative control and must fail.
    """
    sims, n, alpha, delta = 2000, 400, 0.1, 0.1
    lambdas = np.round(np.linspace(1.0, 0.7, 61), 6)
    losses = _threshold_losses(np.random.default_rng(0), sims, n, lambdas).astype(np.float32)
    bad = jnp.asarray(1 - lambdas > alpha + 1e-12)

    def one(loss):
        res = cf.learn_then_test(
            loss, lambdas, alpha=alpha, delta=delta, pvalue=pvalue, fwer=fwer, validate=False
        )
        naive = jnp.mean(loss, 0) <= alpha
        return jnp.any(res.valid & bad), jnp.any(naive & bad), res.found, res.threshold

    err, err_naive, found, thr = jax.jit(jax.vmap(one))(losses)
    assert float(jnp.mean(err)) <= delta + btol(delta, sims)
    assert float(jnp.mean(err_naive)) > delta + btol(delta, sims)  # the check has teeth
    assert float(jnp.mean(found)) > 0.99 and float(jnp.nanmean(thr)) < 0.995  # and some power


def test_ltt_result_fields_and_warning():
    losses = np.zeros((100, 3))
    res = cf.learn_then_test(losses, np.array([3.0, 2.0, 1.0]), alpha=0.1, delta=0.1)
    np.testing.assert_array_equal(res.valid, [True, True, True])
    assert int(res.index) == 2 and float(res.threshold) == 1.0 and bool(res.found)
    with pytest.warns(cf.NoThresholdWarning):
        res = cf.learn_then_test(np.ones((100, 2)), np.array([1.0, 2.0]), alpha=0.1, delta=0.1)
    assert not bool(res.found) and int(res.index) == -1 and np.isnan(float(res.threshold))


def test_crc_expected_loss_by_simulation():
    """E[L(lambda_hat)] <= alpha (and >= alpha - 2B/(n + 1) - grid step) over 2000 splits.

    Loss L(lambda) = (Z - lambda)_+ with Z ~ U(0, 1) (continuous, non-increasing, B = 1). The
    tolerance is Z = 4.5 times the empirical standard error of the per-split test loss (CLT;
    the losses are not Bernoulli, so no binomial form applies).
    """
    sims, n, m, alpha = 2000, 200, 200, 0.05
    lambdas = np.linspace(0.0, 1.0, 101, dtype=np.float32)
    rng = np.random.default_rng(1)
    z = rng.random((sims, n + m), dtype=np.float32)

    def one(z):
        losses = jnp.maximum(z[:n, None] - lambdas, 0.0)  # [n, L] calibration table
        res = cf.crc_threshold(losses, lambdas, alpha=alpha, validate=False)
        return jnp.mean(jnp.maximum(z[n:] - res.threshold, 0.0)), res.feasible

    test_loss, feasible = jax.jit(jax.vmap(one))(z)
    mean = float(jnp.mean(test_loss))
    tol = 4.5 * float(jnp.std(test_loss)) / math.sqrt(sims)
    assert bool(jnp.all(feasible))
    assert mean <= alpha + tol
    assert mean >= alpha - 2 / (n + 1) - 0.01 - tol  # 0.01: the grid step


def test_crc_formula_and_infeasible_grid():
    losses = np.array([[1.0, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    res = cf.crc_threshold(losses, np.array([0.0, 1.0, 2.0]), alpha=0.5)
    np.testing.assert_allclose(res.risk_bound, [0.75, 0.375, 0.25])
    assert int(res.index) == 1 and float(res.threshold) == 1.0 and bool(res.feasible)
    with pytest.warns(cf.NoThresholdWarning):
        res = cf.crc_threshold(losses, np.array([0.0, 1.0, 2.0]), alpha=0.1)
    assert int(res.index) == 2 and not bool(res.feasible)


def test_bad_inputs():
    lam = np.array([0.0, 1.0])
    with pytest.raises(ValueError, match=r"losses: has shape \(5, 3\); expected \[n, L\]"):
        cf.crc_threshold(np.zeros((5, 3)), lam, alpha=0.1)
    with pytest.raises(ValueError, match="empty"):
        cf.crc_threshold(np.zeros((0, 2)), lam, alpha=0.1)
    with pytest.raises(ValueError, match="non-increasing"):
        cf.crc_threshold(np.array([[0.0, 1.0]]), lam, alpha=0.1)
    with pytest.raises(ValueError, match="strictly increasing"):
        cf.crc_threshold(np.zeros((3, 2)), np.array([1.0, 0.0]), alpha=0.1)
    with pytest.raises(ValueError, match=r"alpha: expected a finite number in \(0, 1\)"):
        cf.crc_threshold(np.zeros((3, 2)), lam, alpha=1.5)
    with pytest.raises(ValueError, match=r"losses: 6 value\(s\) outside \[0, 1\]"):
        cf.learn_then_test(np.full((3, 2), 2.0), lam, alpha=0.1, delta=0.1)
    with pytest.raises(ValueError, match="NaN"):
        cf.learn_then_test(np.array([[np.nan, 0.0]]), lam, alpha=0.1, delta=0.1)
    with pytest.raises(ValueError, match="delta"):
        cf.learn_then_test(np.zeros((3, 2)), lam, alpha=0.1, delta=0.0)
    with pytest.raises(ValueError, match="pvalue"):
        cf.learn_then_test(np.zeros((3, 2)), lam, alpha=0.1, delta=0.1, pvalue="wsr")
    with pytest.raises(ValueError, match="fwer"):
        cf.learn_then_test(np.zeros((3, 2)), lam, alpha=0.1, delta=0.1, fwer="holm")
