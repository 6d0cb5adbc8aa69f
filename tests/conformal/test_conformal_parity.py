"""Parity with MAPIE (the [parity] extra): LAC and APS scores, thresholds and sets on the same data.

MAPIE's APS calibration score is randomised as cumsum_y - u p_y with u from
`RandomState(random_state)`; ours is (mass above y) + u' p_y, so u' = 1 - u reproduces it. Its
prediction-time randomisation draws fresh uniforms from the same seed. Tolerances: scores and
thresholds agree to 1e-12 (float64; ours sums probabilities on the 2^-52 grid, MAPIE with
cumsum); sets must agree exactly except on rows where a cumulative mass is within MAPIE's
EPSILON = 1e-8 of the threshold (MAPIE compares with that slack), and there must be none here.
"""

import numpy as np
import pytest
import sklearn.base as sklearn_base
from mapie.classification import SplitConformalClassifier  # noqa: E402

from introspect import conformal as cf  # noqa: E402


class _Identity(sklearn_base.ClassifierMixin, sklearn_base.BaseEstimator):
    """A fitted classifier whose inputs already are its class probabilities."""

    def fit(self, x, y):
        self.classes_ = np.arange(x.shape[1])
        self.n_features_in_ = x.shape[1]
        return self

    def predict_proba(self, x):
        return np.asarray(x)

    def predict(self, x):
        return np.argmax(x, axis=1)


def _data(seed, n, k):
    rng = np.random.default_rng(seed)
    z = 1.5 * rng.normal(size=(2 * n, k))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    t = np.exp(0.7 * z) / np.exp(0.7 * z).sum(1, keepdims=True)
    y = np.minimum((t.cumsum(1) < rng.random((2 * n, 1))).sum(1), k - 1)
    return p[:n], y[:n], p[n:]


def _mapie(score, p_cal, y_cal, p_test, seed, alpha, include_last_label=True):
    m = SplitConformalClassifier(
        estimator=_Identity().fit(p_cal[:2], y_cal[:2]),
        confidence_level=1 - alpha,
        conformity_score=score,
        prefit=True,
        random_state=seed,
    )
    m.conformalize(p_cal, y_cal)
    _, sets = m.predict_set(
        p_test, conformity_score_params={"include_last_label": include_last_label}
    )
    q = float(np.ravel(m._mapie_classifier.conformity_score_function_.quantiles_)[0])
    return np.ravel(m.conformity_scores), q, sets[:, :, 0]


def _near_tie_rows(p, q, eps=1e-8):
    """Rows where some sorted cumulative mass is within eps of q (MAPIE's tolerance band)."""
    c = np.cumsum(-np.sort(-p, axis=1), axis=1)
    return np.any(np.abs(c - q) <= eps, axis=1)


@pytest.mark.parametrize("alpha", [0.1, 0.05, 0.2])
def test_lac_parity(x64, alpha):
    p_cal, y_cal, p_test = _data(0, 500, 6)
    s_m, q_m, sets_m = _mapie("lac", p_cal, y_cal, p_test, 0, alpha)
    s = np.asarray(cf.nonconformity(p_cal, y_cal, score="lac"))
    np.testing.assert_allclose(s, s_m, rtol=0, atol=1e-15)
    q = float(cf.quantile(s, alpha=alpha))
    assert q == q_m
    np.testing.assert_array_equal(np.asarray(cf.prediction_sets(p_test, q, score="lac")), sets_m)


@pytest.mark.parametrize("seed,alpha", [(0, 0.1), (1, 0.05), (2, 0.2)])
def test_aps_parity(x64, seed, alpha):
    n, k = 500, 6
    p_cal, y_cal, p_test = _data(seed, n, k)
    s_m, q_m, sets_m = _mapie("aps", p_cal, y_cal, p_test, seed, alpha)
    u_cal = 1.0 - np.random.RandomState(seed).uniform(size=n)
    s = np.asarray(cf.nonconformity(p_cal, y_cal, score="aps", u=u_cal))
    np.testing.assert_allclose(s, s_m, rtol=0, atol=1e-12)
    q = float(cf.quantile(s, alpha=alpha))
    assert abs(q - q_m) <= 1e-12
    assert not _near_tie_rows(p_test, q_m).any()
    # MAPIE's default rule (include_last_label=True) is our include_last.
    ours = np.asarray(cf.prediction_sets(p_test, q, score="aps", include_last=True))
    np.testing.assert_array_equal(ours, sets_m)
    # Randomised sets with MAPIE's prediction-time uniforms.
    _, _, sets_mr = _mapie("aps", p_cal, y_cal, p_test, seed, alpha, "randomized")
    u_test = 1.0 - np.random.RandomState(seed).uniform(size=(n, 1))[:, 0]
    ours_r = np.asarray(cf.prediction_sets(p_test, q, score="aps", u=u_test))
    np.testing.assert_array_equal(ours_r, sets_mr)
