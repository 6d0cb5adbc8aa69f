"""PACE-LM's two-score combination: the formula against numpy, the fit against scikit-learn's
unpenalised logistic regression and the planted coefficients, errors."""

from __future__ import annotations

import numpy as np
import pytest

from introspect import heads


def np_logit(p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def test_formula_matches_numpy():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        a, b = rng.uniform(size=20), rng.uniform(size=20)
        a[0], b[1] = 0.0, 1.0  # clipped ends
        we, wj, bias = rng.normal(size=3)
        want = 1 / (1 + np.exp(-(we * np_logit(a) + wj * np_logit(b) + bias)))
        got = heads.pace_combine(a, b, evidence_weight=we, judge_weight=wj, bias=bias)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    # special cases: one score alone is Platt scaling of it; unit weights multiply the odds
    a, b = np.array([0.2, 0.7]), np.array([0.6, 0.9])
    np.testing.assert_allclose(heads.pace_combine(a, b, evidence_weight=1, judge_weight=0), a,
                               rtol=1e-5)  # fmt: skip
    odds = a / (1 - a) * b / (1 - b)
    np.testing.assert_allclose(
        heads.pace_combine(a, b, evidence_weight=1, judge_weight=1), odds / (1 + odds), rtol=1e-5
    )


def test_fit_recovers_planted_combination(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n = 3000
    a, b = rng.beta(2, 2, n), rng.beta(2, 2, n)
    p = 1 / (1 + np.exp(-(1.5 * np_logit(a) + 0.7 * np_logit(b) - 0.3)))
    y = (rng.uniform(size=n) < p).astype(np.float64)
    cfg = {"num_steps": 600, "log_every": 600, "checkpoint": {"every_steps": 0},
           "progress": False, "tensorboard": False, "optimizer": {"lr": 0.05}}  # fmt: skip
    fit = heads.fit_pace(a, b, y, workdir=str(tmp_path), train_config=cfg)
    ref = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(heads.pace_features(a, b), y)
    np.testing.assert_allclose([fit.evidence_weight, fit.judge_weight], ref.coef_[0], atol=0.03)
    np.testing.assert_allclose(fit.bias, ref.intercept_[0], atol=0.03)
    np.testing.assert_allclose([fit.evidence_weight, fit.judge_weight, fit.bias],
                               [1.5, 0.7, -0.3], atol=0.2)  # fmt: skip
    want = ref.predict_proba(heads.pace_features(a, b))[:, 1]
    np.testing.assert_allclose(heads.pace_confidence(fit, a, b), want, atol=0.01)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"evidence_score must be in \[0, 1\]"):
        heads.pace_features([1.2], [0.5])
    with pytest.raises(ValueError, match="one per example"):
        heads.pace_features([0.2, 0.3], [0.5])
    with pytest.raises(ValueError, match="finite"):
        heads.pace_features([np.nan], [0.5])
    with pytest.raises(ValueError, match="both correct and wrong"):
        heads.fit_pace([0.1, 0.9], [0.5, 0.5], [1, 1], workdir=str(tmp_path))
    with pytest.raises(ValueError, match="0/1"):
        heads.fit_pace([0.1, 0.9], [0.5, 0.5], [1, 2], workdir=str(tmp_path))
    with pytest.raises(ValueError, match="l2"):
        heads.fit_pace([0.1, 0.9], [0.5, 0.5], [1, 0], workdir=str(tmp_path), l2=-1.0)
