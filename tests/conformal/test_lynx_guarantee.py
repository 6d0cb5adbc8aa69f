"""LYNX's exit guarantee by simulation: P(exit | forced answer wrong) <= delta.

A fixed pool of "collected" (p, label) cue events stands in for a probe's outputs on a labelled
cue set. Each of SPLITS random calibration/test splits of the pool calibrates (q0, q1) with
`exit_thresholds` and applies `exit_decision` to the held-out cues; the premature-exit rate of a
split is the fraction of its held-out negatives (forced answer wrong, label 0) on which the rule
exits.

Splits are stratified: each draws n_c calibration cues of class c uniformly without
replacement from the pool's class-c events, the rest are test cues. The negatives of one split are
then exchangeable, which is all the guarantee needs. With distinct negative scores, a held-out
negative misses the set ("0 not in S") with probability exactly 1 - k / (n0 + 1), where
k = ceil((n0 + 1)(1 - delta)), and an exit implies a miss, so
E[premature-exit rate] <= 1 - k / (n0 + 1) <= delta.

Tolerance (stated once, used by every bound below): `coverage_stats` in conftest.py, Z = 4.5 sigma
on the mean over SPLITS independent splits, from the Beta-Binomial variance of one split's rate,
Var(c) + E[c (1 - c)] / m0 with c ~ Beta(k, n0 + 1 - k). For a finite pool of N0 negatives this is
exact, not just a bound: the split's miss rate is (N0 - R - (n0 - k)) / m0, R the pool rank of the
k-th smallest calibration score, and Var(R) / m0^2 = Var(c) (N0 + 1) / m0 = Var(c) +
E[c (1 - c)] / m0, since Var(c) (n0 + 2) = E[c] (1 - E[c]) for that Beta. The exit rate is <= the
miss rate split by split, so its mean is held to the same upper tolerance.

Runs in float32, the dtype users run; (q0, q1) for all splits come from one jit(vmap(...)) call.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import conformal as cf

SPLITS = 1000  # random calibration/test splits per case (the issue asks for >= 500)
DELTAS = (0.05, 0.1, 0.2, 0.3)


def _pool(seed, n, *, neg, pos, overconfident=0.0):
    """A fixed pool of collected cue events: labels ~ Bernoulli(0.45), p | y ~ Beta.

    Args:
      neg, pos: (a, b) Beta parameters of p for negatives and positives (overlapping).
      overconfident: share of negatives whose p is instead Beta(6, 1.5), confidently wrong cues.
    Returns:
      (p0, p1): float32 p of the negatives and of the positives; negatives' p are distinct.
    """
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.45
    p = rng.beta(*pos, size=n)
    p_neg = np.where(rng.random(n) < overconfident, rng.beta(6, 1.5, size=n), rng.beta(*neg, n))
    p = np.where(y, p, p_neg).astype(np.float32)
    p0, p1 = p[~y], p[y]
    assert np.unique(p0).size == p0.size  # exact miss probability needs distinct negative scores
    return p0, p1


# A realistic probe: negatives mostly low, positives mostly high, heavy overlap, and a tenth of
# the wrong answers reached with high confidence.
REALISTIC = _pool(0, 4000, neg=(2, 4), pos=(5, 2), overconfident=0.1)
# An overconfident probe: wrong answers get p ~ Beta(5, 1.5), right ones p ~ Beta(12, 1).
OVERCONFIDENT = _pool(1, 4000, neg=(5, 1.5), pos=(12, 1))


def _splits(pool, n_cal, seed):
    """SPLITS stratified random splits of a pool.

    Returns:
      (cal_p [S, n0 + n1], cal_y [S, n0 + n1], test_p0 [S, m0], test_p1 [S, m1]).
    """
    rng = np.random.default_rng(seed)
    cal_p, cal_y, test = [], [], []
    for c, (pc, n) in enumerate(zip(pool, n_cal, strict=True)):
        perm = rng.permuted(np.tile(np.arange(pc.size), (SPLITS, 1)), axis=1)
        cal_p.append(pc[perm[:, :n]])
        cal_y.append(np.full((SPLITS, n), c, np.int32))
        test.append(pc[perm[:, n:]])
    return np.concatenate(cal_p, 1), np.concatenate(cal_y, 1), test[0], test[1]


def _conformal_thresholds(cal_p, cal_y, delta):
    """(q0, q1), each [S], from `exit_thresholds` vmapped over the splits."""
    one = lambda p, y: cf.exit_thresholds(p, y, delta=delta, validate=False)
    q0, q1 = jax.jit(jax.vmap(one))(cal_p, cal_y)
    return np.asarray(q0), np.asarray(q1)


def _naive_thresholds(cal_p, cal_y, n0, delta):
    """The same rule without the conformal correction: per class, the plain empirical (1 - delta)
    quantile of the calibration scores (numpy's default, linear interpolation) instead of the
    ceil((n_c + 1)(1 - delta))-th smallest score. Calibration is ordered negatives first."""
    q0 = np.quantile(cal_p[:, :n0], 1 - delta, axis=1)
    q1 = np.quantile(1 - cal_p[:, n0:], 1 - delta, axis=1)
    return q0.astype(np.float32), q1.astype(np.float32)


def _rates(q0, q1, test_p0, test_p1):
    """Per split: premature-exit rate, set-miss rate of negatives, exit rate of positives; [S]."""
    d0 = cf.exit_decision(jnp.asarray(test_p0), jnp.asarray(q0)[:, None], jnp.asarray(q1)[:, None])
    d1 = cf.exit_decision(jnp.asarray(test_p1), jnp.asarray(q0)[:, None], jnp.asarray(q1)[:, None])
    exit0, miss0 = np.asarray(d0.exit), ~np.asarray(d0.prediction_set[..., 0])
    assert not np.any(exit0 & ~miss0)  # an exit means 0 is not in the set
    return exit0.mean(1), miss0.mean(1), np.asarray(d1.exit).mean(1)


@pytest.mark.parametrize("delta", DELTAS)
def test_premature_exit_rate_is_at_most_delta(coverage_stats, delta):
    """Mean premature-exit rate <= delta + tol over SPLITS splits of the realistic pool; the set
    miss rate of negatives sits at its exact expectation; the rule does exit on right answers."""
    n0, n1 = 100, 100  # a calibration set of 200 cues
    cal_p, cal_y, test_p0, test_p1 = _splits(REALISTIC, (n0, n1), seed=10 + int(100 * delta))
    q0, q1 = _conformal_thresholds(cal_p, cal_y, delta)

    # The vmapped, unvalidated thresholds are the rule: the k-th smallest score per class, and the
    # validated entry point agrees (and finds them finite) on the first splits.
    k0, k1 = cf.conformal_rank(n0, alpha=delta), cf.conformal_rank(n1, alpha=delta)
    for s in range(3):
        np.testing.assert_array_equal(q0[s], np.sort(cal_p[s, :n0])[k0 - 1])
        np.testing.assert_array_equal(q1[s], np.sort(1 - cal_p[s, n0:])[k1 - 1])
        v0, v1 = cf.exit_thresholds(cal_p[s], cal_y[s], delta=delta, on_infinite="raise")
        assert (float(v0), float(v1)) == (q0[s], q1[s])

    exit0, miss0, exit1 = _rates(q0, q1, test_p0, test_p1)
    m0 = test_p0.shape[1]
    cov, tol = coverage_stats(n0, m0, SPLITS, delta)
    assert exit0.mean() <= delta + tol, (exit0.mean(), delta, tol)
    # Exact expectation of the miss rate, 1 - k0 / (n0 + 1): thresholds that are too loose or too
    # tight (an off-by-one rank, the wrong class) move it by >= 1 / (n0 + 1) ~ 10 tol at delta 0.1.
    assert abs(miss0.mean() - (1 - cov)) <= tol, (miss0.mean(), 1 - cov, tol)
    # Not vacuous: the rule exits on a good share of right answers (q1 = -inf or q0 = +inf would
    # give no exits at all).
    assert exit1.mean() > {0.05: 0.1, 0.1: 0.2, 0.2: 0.4, 0.3: 0.5}[delta], exit1.mean()


def test_naive_quantile_violates_small_calibration(coverage_stats):
    """Without the (n + 1) correction the plug-in quantile of 20 calibration negatives exits on
    ~13 % of wrong answers at delta = 0.1; conformal thresholds on the same splits stay <= 0.1."""
    delta, n0, n1 = 0.1, 20, 20
    cal_p, cal_y, test_p0, test_p1 = _splits(REALISTIC, (n0, n1), seed=3)
    _, tol = coverage_stats(n0, test_p0.shape[1], SPLITS, delta)

    exit0, _, exit1 = _rates(*_conformal_thresholds(cal_p, cal_y, delta), test_p0, test_p1)
    assert exit0.mean() <= delta + tol, (exit0.mean(), tol)
    assert exit1.mean() > 0.1, exit1.mean()

    naive0, _, _ = _rates(*_naive_thresholds(cal_p, cal_y, n0, delta), test_p0, test_p1)
    # The naive threshold lies between the 18th and 19th smallest of 20 negatives, so a test
    # negative exceeds it with probability ~ 1 - 18.1 / 21 = 0.14 (exits need 1 in S too). The
    # violation must be significant: the naive mean, less 4.5 standard errors of its own (from the
    # observed per-split rates), still exceeds delta + tol, and it exceeds delta by > 0.02.
    se = naive0.std(ddof=1) / np.sqrt(SPLITS)
    assert naive0.mean() - 4.5 * se > delta + tol, (naive0.mean(), se, tol)
    assert naive0.mean() > delta + 0.02, naive0.mean()


@pytest.mark.parametrize("delta", (0.1, 0.2))
def test_naive_fixed_threshold_violates_overconfident_probe(coverage_stats, delta):
    """'Exit when p >= 1 - delta' trusts the probe's calibration: on an overconfident probe it exits
    on >= 2 delta of wrong answers (P(Beta(5, 1.5) >= 1 - delta) = 0.22, 0.49), while the conformal
    thresholds fitted on the same probe keep the premature-exit rate <= delta."""
    n0, n1 = 100, 100
    cal_p, cal_y, test_p0, test_p1 = _splits(OVERCONFIDENT, (n0, n1), seed=4)
    _, tol = coverage_stats(n0, test_p0.shape[1], SPLITS, delta)

    exit0, _, exit1 = _rates(*_conformal_thresholds(cal_p, cal_y, delta), test_p0, test_p1)
    assert exit0.mean() <= delta + tol, (exit0.mean(), tol)
    assert exit1.mean() > 0.2, exit1.mean()

    naive0 = (test_p0 >= 1 - delta).mean(1)
    assert naive0.mean() > 2 * delta, naive0.mean()


@pytest.mark.parametrize("delta", (0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")))
def test_delta_outside_open_unit_interval_raises(delta):
    p, y = np.array([0.2, 0.8, 0.3, 0.7]), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"delta: expected a finite number in \(0, 1\), got"):
        cf.exit_thresholds(p, y, delta=delta)


@pytest.mark.parametrize("delta", (None, True, [0.1]))
def test_delta_not_a_number_raises(delta):
    p, y = np.array([0.2, 0.8, 0.3, 0.7]), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="delta: expected a number, got"):
        cf.exit_thresholds(p, y, delta=delta)
