"""Confidence bounds, HC-RLHF's safety test and the LCB action rule."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from introspect import conformal as cf


def test_bounds_match_formulas(x64):
    rng = np.random.default_rng(0)
    x = rng.random((3, 40))
    t = stats.t.ppf(0.95, 39)
    ref = x.mean(1) + x.std(1, ddof=1) / math.sqrt(40) * t
    np.testing.assert_allclose(cf.student_t_ucb(x, delta=0.05), ref, rtol=1e-12)
    np.testing.assert_allclose(cf.student_t_lcb(x, delta=0.05), 2 * x.mean(1) - ref, rtol=1e-12)
    h = math.sqrt(math.log(20) / 80)
    np.testing.assert_allclose(cf.hoeffding_ucb(x, delta=0.05), x.mean(1) + h, rtol=1e-12)
    np.testing.assert_allclose(cf.hoeffding_lcb(x, delta=0.05), x.mean(1) - h, rtol=1e-12)
    np.testing.assert_allclose(
        cf.hoeffding_ucb(4 * x - 2, delta=0.05, lower=-2, upper=2), 4 * x.mean(1) - 2 + 4 * h
    )


def test_safety_test_rejects_unsafe_models(x64, btol):
    """HC-RLHF: if the mean cost exceeds the limit, P(accept) <= delta (20000 simulations).

    Student-t with Gaussian costs is exact: at mean = limit the acceptance rate equals delta, a
    two-sided check that catches a wrong quantile (e.g. t_{1 - delta/2} or the normal one with a
    wrong df would move it). Hoeffding with Bernoulli costs is conservative. Tolerance: binomial,
    Z = 4.5. Accepting iff the sample mean is below the limit fails, as a negative control.
    """
    sims, n, delta, limit = 20000, 30, 0.05, 0.0
    rng = np.random.default_rng(1)
    g = rng.standard_normal((sims, n))
    f = jax.jit(lambda c: cf.safety_test(c, limit=limit, delta=delta, validate=False).accept)
    at_limit = float(jnp.mean(f(g)))
    above = float(jnp.mean(f(g + 0.05)))
    assert abs(at_limit - delta) <= btol(delta, sims)
    assert above <= delta + btol(delta, sims)
    assert float(np.mean((g + 0.05).mean(1) <= limit)) > delta + btol(delta, sims)
    # Safe model (mean well below the limit) is usually accepted.
    assert float(jnp.mean(f(g - 1.0))) > 0.9
    b = (rng.random((sims, 200)) < 0.32).astype(np.float64)
    fh = jax.jit(
        lambda c: (
            cf.safety_test(c, limit=0.3, delta=delta, bound="hoeffding", validate=False).accept
        )
    )
    assert float(jnp.mean(fh(b))) <= delta + btol(delta, sims)


def test_safety_test_result_and_candidate_ucb():
    costs = np.full(50, 0.1, np.float32)
    res = cf.safety_test(costs, limit=0.2, delta=0.05, bound="hoeffding")
    assert bool(res.accept) == (float(res.ucb) <= 0.2)
    c = np.random.default_rng(2).random(100)
    wide = cf.candidate_ucb(c, n_safety=100, delta=0.05)
    assert float(wide) > float(cf.student_t_ucb(c, delta=0.05))


def test_lcb_and_action():
    means = jnp.array([0.5, 0.6, 0.9])
    counts = jnp.array([100, 400, 1])
    v = cf.lcb(means, counts, delta=0.1, c=1.0)
    ref = means - jnp.sqrt(jnp.log(10.0) / counts)
    np.testing.assert_allclose(v, ref, rtol=1e-6)
    assert int(cf.lcb_action(means, counts, delta=0.1)) == 1  # pessimism prefers the sure 0.6
    assert float(cf.lcb(means, jnp.array([0, 1, 1]), delta=0.1)[0]) == -np.inf
    batch = cf.lcb_action(
        jnp.stack([means, means[::-1]]), jnp.stack([counts, counts[::-1]]), delta=0.1
    )
    np.testing.assert_array_equal(batch, [1, 1])


def test_bad_inputs():
    with pytest.raises(ValueError, match="delta"):
        cf.student_t_ucb(np.ones(5), delta=1.5)
    with pytest.raises(ValueError, match="at least 2"):
        cf.student_t_ucb(np.ones(1), delta=0.1)
    with pytest.raises(ValueError, match="empty|at least 1"):
        cf.hoeffding_ucb(np.ones(0), delta=0.1)
    with pytest.raises(ValueError, match=r"\[lower, upper\]"):
        cf.hoeffding_ucb(np.array([2.0]), delta=0.1)
    with pytest.raises(ValueError, match="NaN"):
        cf.safety_test(np.array([0.1, np.nan]), limit=0.2, delta=0.1)
    with pytest.raises(ValueError, match="bound"):
        cf.safety_test(np.ones(4), limit=0.2, delta=0.1, bound="bernstein")
    with pytest.raises(ValueError, match="tracer"):
        jax.jit(lambda d: cf.student_t_ucb(jnp.ones(4), delta=d))(0.1)
    with pytest.raises(ValueError, match="same shape"):
        cf.lcb(np.ones(3), np.ones(2), delta=0.1)
    with pytest.raises(ValueError, match="counts"):
        cf.lcb(np.ones(2), np.array([1, -1]), delta=0.1)
