"""Ranking and selective-prediction metrics: parity with scikit-learn / scipy / LM-Polygraph's
formula, exact tie handling, masks, jit and vmap (float64)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from introspect import metrics as M

TOL = 1e-9
N = 256  # one array size for most tests keeps the number of compilations down


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _scores(rng, kind):
    """Scores with many ties, of one sign or mixed (the three sorting paths)."""
    s = rng.integers(0, 12, N) / 12.0
    if kind == "nonpositive":
        return -s
    if kind == "mixed":
        return s - 0.5
    if kind == "continuous":
        return rng.normal(size=N)
    return s


@pytest.mark.parametrize("kind", ["nonnegative", "nonpositive", "mixed", "continuous"])
def test_auroc_auprc_match_sklearn(kind):
    rng = np.random.default_rng(len(kind))
    for _ in range(5):
        s = _scores(rng, kind)
        y = (rng.random(N) < 0.3 + 0.4 * (s > np.median(s))).astype(np.int64)
        assert float(M.auroc(s, y)) == pytest.approx(roc_auc_score(y, s), abs=TOL)
        assert float(M.auprc(s, y)) == pytest.approx(average_precision_score(y, s), abs=TOL)


def test_auroc_extremes_and_bool_labels():
    y = np.array([0, 0, 1, 1] * (N // 4), dtype=bool)
    assert float(M.auroc(y.astype(float), y)) == 1.0
    assert float(M.auroc(-y.astype(float), y)) == 0.0
    assert float(M.auroc(np.zeros(N), y)) == 0.5  # all tied
    assert float(M.auprc(np.zeros(N), y)) == pytest.approx(y.mean(), abs=TOL)


def test_ranking_masks_equal_subsets():
    rng = np.random.default_rng(1)
    s = _scores(rng, "nonnegative")
    y = rng.integers(0, 2, N)
    m = rng.random(N) < 0.7
    padded = np.where(m, s, np.inf)  # padding may hold anything, even inf
    assert float(M.auroc(padded, y, mask=m)) == pytest.approx(roc_auc_score(y[m], s[m]), abs=TOL)
    assert float(M.auprc(padded, y, mask=m)) == pytest.approx(
        average_precision_score(y[m], s[m]), abs=TOL
    )
    for fn in (M.aurc, M.excess_aurc):
        assert float(fn(padded, y, mask=m)) == pytest.approx(float(fn(s[m], y[m])), abs=TOL)


def test_spearman_matches_scipy():
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = rng.integers(0, 6, N).astype(float)
        z = x + rng.integers(0, 4, N)
        assert float(M.spearman(x, z)) == pytest.approx(spearmanr(x, z).statistic, abs=TOL)
    x, z = rng.normal(size=N), rng.normal(size=N)
    assert float(M.spearman(x, z)) == pytest.approx(spearmanr(x, z).statistic, abs=TOL)
    m = rng.random(N) < 0.5
    assert float(M.spearman(x, z, mask=m)) == pytest.approx(
        spearmanr(x[m], z[m]).statistic, abs=TOL
    )


def _np_risk_curve(conf, correct):
    order = np.argsort(-conf, kind="stable")
    c = correct[order]
    k = np.arange(1, len(c) + 1)
    return 1 - np.cumsum(c) / k


def test_aurc_without_ties_matches_definition():
    rng = np.random.default_rng(3)
    conf = rng.random(N)
    correct = (rng.random(N) < conf).astype(float)
    risk = _np_risk_curve(conf, correct)
    assert float(M.aurc(conf, correct)) == pytest.approx(risk.mean(), abs=TOL)
    oracle = _np_risk_curve(correct + 1e-9 * rng.random(N), correct).mean()
    assert float(M.excess_aurc(conf, correct)) == pytest.approx(risk.mean() - oracle, abs=TOL)
    curve = M.risk_coverage_curve(conf, correct)
    np.testing.assert_allclose(np.asarray(curve.risk), risk, atol=TOL)
    np.testing.assert_allclose(np.asarray(curve.coverage), np.arange(1, N + 1) / N, atol=TOL)
    np.testing.assert_allclose(np.asarray(curve.threshold), np.sort(conf)[::-1], atol=0)
    for cov in (0.1, 0.25, 0.5, 1.0):
        k = int(np.ceil(cov * N))
        want = correct[np.argsort(-conf)][:k].mean()
        assert float(M.selective_accuracy(conf, correct, coverage=cov)) == pytest.approx(
            want, abs=TOL
        )


def test_ties_use_expectation_over_orderings():
    # Exact average over every ordering of the tied samples (small example).
    conf = np.array([0.9, 0.5, 0.5, 0.5, 0.2, 0.2, 0.7])
    correct = np.array([1, 0, 1, 1, 0, 1, 0], dtype=float)
    curves = []
    order = np.argsort(-conf, kind="stable")
    groups = [list(g) for _, g in itertools.groupby(order, key=lambda i: conf[i])]
    for perms in itertools.product(*[itertools.permutations(g) for g in groups]):
        idx = np.concatenate([np.array(p) for p in perms])
        c = correct[idx]
        curves.append(1 - np.cumsum(c) / np.arange(1, len(c) + 1))
    expected = np.mean(curves, axis=0)
    got = M.risk_coverage_curve(conf, correct)
    np.testing.assert_allclose(np.asarray(got.risk), expected, atol=TOL)
    assert float(M.aurc(conf, correct)) == pytest.approx(expected.mean(), abs=TOL)
    perm = np.random.default_rng(0).permutation(len(conf))
    assert float(M.aurc(conf[perm], correct[perm])) == pytest.approx(expected.mean(), abs=TOL)


def _lm_polygraph_area(ue, metric, max_rejection):
    # Prediction-rejection area as LM-Polygraph computes it (uncertainty ascending = kept first).
    num_obs = len(ue)
    num_rej = int(max_rejection * num_obs)
    order = np.argsort(ue, kind="stable")
    cumsum = np.cumsum(metric[order])[-num_rej:]
    scores = (cumsum / np.arange(num_obs - num_rej + 1, num_obs + 1))[::-1]
    return np.sum(scores) / num_rej


@pytest.mark.parametrize("max_rejection", [1.0, 0.5])
def test_prr_matches_lm_polygraph_formula(max_rejection):
    rng = np.random.default_rng(4)
    conf = rng.random(N)
    quality = np.clip(conf + rng.normal(scale=0.3, size=N), 0, 1)  # graded, no ties
    method = _lm_polygraph_area(-conf, quality, max_rejection)
    oracle = _lm_polygraph_area(-quality, quality, max_rejection)
    random = quality.mean()
    want = (method - random) / (oracle - random)
    got = float(M.prr(conf, quality, max_rejection=max_rejection))
    assert got == pytest.approx(want, abs=TOL)
    assert float(M.prr(quality, quality)) == pytest.approx(1.0, abs=TOL)


def test_prr_random_and_aurc_relation():
    rng = np.random.default_rng(5)
    conf = rng.random(N)
    correct = (rng.random(N) < 0.6).astype(float)
    a = float(M.aurc(conf, correct))
    a_oracle = a - float(M.excess_aurc(conf, correct))
    a_random = 1 - correct.mean()
    want = (a_random - a) / (a_random - a_oracle)
    assert float(M.prr(conf, correct)) == pytest.approx(want, abs=TOL)


def test_jit_and_vmap():
    rng = np.random.default_rng(6)
    s = jnp.asarray(rng.random((3, N)))
    y = jnp.asarray(rng.integers(0, 2, (3, N)))
    out = jax.vmap(M.auroc)(s, y)
    for i in range(3):
        assert float(out[i]) == pytest.approx(roc_auc_score(np.asarray(y[i]), s[i]), abs=TOL)
    jitted = jax.jit(lambda a, b: (M.auprc(a, b), M.aurc(a, b), M.spearman(a, b)))
    ap, ar, rho = jitted(s[0], y[0])
    assert float(ap) == pytest.approx(average_precision_score(np.asarray(y[0]), s[0]), abs=TOL)
    assert float(ar) == pytest.approx(float(M.aurc(s[0], y[0])), abs=TOL)
    assert float(rho) == pytest.approx(spearmanr(s[0], y[0]).statistic, abs=TOL)
    # A single class inside jit cannot raise: the result is NaN.
    assert np.isnan(float(jax.jit(M.auroc)(s[0], jnp.ones(N))))


def test_float32_auroc_accuracy():
    rng = np.random.default_rng(7)
    s = rng.random(100_000).astype(np.float32)
    y = (rng.random(100_000) < s).astype(np.int32)
    with jax.enable_x64(False):
        got = M.auroc(s, y)
    assert float(got) == pytest.approx(roc_auc_score(y, s), abs=1e-6)
