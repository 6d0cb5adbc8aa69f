"""Post-hoc calibrators: recovery on synthetic data, parity with scikit-learn (Platt, isotonic),
exactness of the temperature optimum, monotonicity, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.calibration import _sigmoid_calibration
from sklearn.isotonic import IsotonicRegression

from introspect import calibrators as C
from introspect import metrics as M


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _sample(rng, probs):
    u = rng.random((probs.shape[0], 1))
    return (u > np.cumsum(probs, axis=1)).sum(axis=1)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def synthetic():
    """Labels drawn from softmax(z); the model reports z * T_TRUE (over-confident)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(8192, 5)) * 2.0
    return z, _sample(rng, _softmax(z))


T_TRUE = 2.5


def test_temperature_recovers_known_temperature(synthetic):
    z, y = synthetic
    params = C.fit_temperature(z * T_TRUE, y)
    assert float(params.temperature) == pytest.approx(T_TRUE, rel=0.05)
    probs = C.apply_temperature(params, z * T_TRUE)
    before = float(M.nll(_softmax(z * T_TRUE), y))
    after = float(M.nll(np.asarray(probs), y))
    assert after < before
    assert float(M.top_label_ece(np.asarray(probs), y)) < float(
        M.top_label_ece(_softmax(z * T_TRUE), y)
    )


def test_temperature_is_the_exact_optimum(synthetic):
    z, y = synthetic
    z, y = z[:1024] * T_TRUE, y[:1024]
    t = float(C.fit_temperature(z, y).temperature)

    def nll(temp):
        s = z / temp
        s = s - s.max(1, keepdims=True)
        return -(s[np.arange(len(y)), y] - np.log(np.exp(s).sum(1))).mean()

    # Stationary point: the NLL derivative vanishes (central difference), and it is a minimum.
    h = 1e-5 * t
    assert abs(nll(t + h) - nll(t - h)) / (2 * h) < 1e-8
    assert nll(t) <= min(nll(t * 0.999), nll(t * 1.001))


def test_binary_temperature_and_masks():
    rng = np.random.default_rng(1)
    z = rng.normal(size=2048) * 3
    y = (rng.random(2048) < 1 / (1 + np.exp(-z))).astype(int)
    params = C.fit_temperature(z * 0.5, y)  # under-confident by a factor 2
    assert float(params.temperature) == pytest.approx(0.5, rel=0.1)
    probs = C.apply_temperature(params, z * 0.5)
    assert probs.shape == (2048,)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-z * 0.5 / float(params.temperature))))
    mask = rng.random(2048) < 0.5
    garbage = np.where(mask, z * 0.5, np.nan)
    masked = C.fit_temperature(garbage, y, mask=mask)
    subset = C.fit_temperature(z[mask] * 0.5, y[mask])
    assert float(masked.temperature) == pytest.approx(float(subset.temperature), rel=1e-10)


def test_temperature_extremes_are_clamped():
    z = np.array([[2.0, -2.0], [-2.0, 2.0]] * 8)
    y = np.array([0, 1] * 8)  # separable: optimum T -> 0
    assert float(C.fit_temperature(z, y).temperature) == pytest.approx(1e-4)
    assert float(C.fit_temperature(z, 1 - y).temperature) == pytest.approx(1e4)  # T -> inf


def test_vector_and_matrix_scaling(synthetic):
    z, y = synthetic
    vec = C.fit_vector_scaling(z * T_TRUE, y)
    np.testing.assert_allclose(np.asarray(vec.weight), 1 / T_TRUE, rtol=0.08)
    assert np.max(np.abs(np.asarray(vec.bias))) < 0.1
    # Matrix scaling recovers a known affine map (up to softmax's shift invariance).
    rng = np.random.default_rng(2)
    w_true = np.eye(5) + rng.normal(size=(5, 5)) * 0.3
    b_true = rng.normal(size=5) * 0.5
    y2 = _sample(rng, _softmax(z @ w_true.T + b_true))
    mat = C.fit_matrix_scaling(z, y2)

    def centre(w):
        return w - w.mean(axis=0, keepdims=True)

    np.testing.assert_allclose(centre(np.asarray(mat.weight)), centre(w_true), atol=0.1)
    b = np.asarray(mat.bias)
    np.testing.assert_allclose(b - b.mean(), b_true - b_true.mean(), atol=0.1)
    probs = C.apply_matrix_scaling(mat, z)
    np.testing.assert_allclose(np.asarray(probs).sum(1), 1.0)
    logits = C.apply_vector_scaling(vec, z, return_logits=True)
    np.testing.assert_allclose(
        logits, z * np.asarray(vec.weight) + np.asarray(vec.bias), atol=1e-12
    )


def test_platt_matches_sklearn():
    rng = np.random.default_rng(3)
    s = rng.normal(size=512)
    y = (rng.random(512) < 1 / (1 + np.exp(-(2 * s + 0.3)))).astype(int)
    params = C.fit_platt(s, y)
    a_sk, b_sk = _sigmoid_calibration(s, y)  # sklearn: p = 1 / (1 + exp(A s + B))
    assert float(params.slope) == pytest.approx(-a_sk, abs=1e-5)
    assert float(params.intercept) == pytest.approx(-b_sk, abs=1e-5)
    np.testing.assert_allclose(
        C.apply_platt(params, s), 1 / (1 + np.exp(a_sk * s + b_sk)), atol=1e-6
    )
    plain = C.fit_platt(s, y, smooth_targets=False)
    assert abs(float(plain.slope)) > abs(float(params.slope))  # smoothing shrinks the slope


@pytest.mark.parametrize("increasing", [True, False])
def test_isotonic_matches_sklearn(increasing):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 40, 512) / 40  # many ties
    y = (rng.random(512) < (x if increasing else 1 - x)).astype(float)
    w = rng.random(512) + 0.1
    params = C.fit_isotonic(x, y, sample_weight=w, increasing=increasing)
    ref = IsotonicRegression(out_of_bounds="clip", increasing=increasing).fit(x, y, sample_weight=w)
    new = np.concatenate([x, rng.random(512) * 1.4 - 0.2])
    np.testing.assert_allclose(C.apply_isotonic(params, new), ref.predict(new), atol=1e-12)


def test_isotonic_output_is_monotone_and_pava_is_exact():
    rng = np.random.default_rng(5)
    x = rng.normal(size=512)
    y = (rng.random(512) < 1 / (1 + np.exp(-x))).astype(float)
    params = C.fit_isotonic(x, y)
    grid = np.sort(rng.normal(size=512) * 2)
    out = np.asarray(C.apply_isotonic(params, grid))
    assert np.all(np.diff(out) >= 0)
    assert out.min() >= 0 and out.max() <= 1
    # PAVA on a hand example: 1 3 2 4 -> 1 2.5 2.5 4; zero weights are skipped.
    fitted = C.pava(jnp.array([1.0, 3.0, 2.0, 4.0, 0.0]), jnp.array([1.0, 1.0, 1.0, 1.0, 0.0]))
    np.testing.assert_allclose(fitted[:4], [1, 2.5, 2.5, 4])
    ref = IsotonicRegression().fit_transform(np.arange(512), y[np.argsort(x)])
    np.testing.assert_allclose(
        C.pava(jnp.asarray(y[np.argsort(x)]), jnp.ones(512)), ref, atol=1e-12
    )


def test_isotonic_mask_equals_subset():
    rng = np.random.default_rng(6)
    x = rng.random(512)
    y = (rng.random(512) < x).astype(float)
    mask = rng.random(512) < 0.6
    masked = C.fit_isotonic(np.where(mask, x, np.nan), y, mask=mask)
    ref = IsotonicRegression(out_of_bounds="clip").fit(x[mask], y[mask])
    grid = np.linspace(-0.1, 1.1, 97)
    np.testing.assert_allclose(C.apply_isotonic(masked, grid), ref.predict(grid), atol=1e-12)


def test_histogram_binning():
    conf = np.array([0.05, 0.1, 0.15, 0.55, 0.6, 0.62, 0.95, 1.0])
    correct = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    params = C.fit_histogram_binning(conf, correct, num_bins=4)
    np.testing.assert_allclose(params.values, [1 / 3, 0.375, 2 / 3, 1.0])  # bin 1 empty: midpoint
    np.testing.assert_array_equal(params.count, [3, 0, 3, 2])
    out = C.apply_histogram_binning(params, np.array([0.0, 0.25, 0.3, 0.5, 0.99, 1.0]))
    np.testing.assert_allclose(out, [1 / 3, 0.375, 0.375, 2 / 3, 1.0, 1.0])
    q = C.fit_histogram_binning(conf, correct, num_bins=2, binning="quantile")
    np.testing.assert_allclose(q.values, [0.5, 0.75])
    np.testing.assert_allclose(q.edges, [0.05, 0.6, 1.0])


def test_registry_and_jit():
    assert set(C.CALIBRATORS) == {
        "temperature",
        "vector_scaling",
        "matrix_scaling",
        "platt",
        "isotonic",
        "histogram_binning",
    }
    fit, apply = C.CALIBRATORS["platt"]
    rng = np.random.default_rng(7)
    s = jnp.asarray(rng.normal(size=256))
    y = jnp.asarray((rng.random(256) < 0.5).astype(float))
    params = jax.jit(lambda a, b: fit(a, b, validate=False))(s, y)
    ref = fit(s, y)
    assert float(params.slope) == pytest.approx(float(ref.slope), abs=1e-10)
    out = jax.jit(lambda p, a: apply(p, a))(params, s)
    assert out.shape == (256,)


def test_bad_input():
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"labels: 1 value\(s\) are not integer class indices"):
        C.fit_temperature(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="logits: contains 1 NaN"):
        C.fit_temperature(np.array([[np.nan, 0, 0]]), np.array([0]))
    with pytest.raises(ValueError, match="logits and labels: leading dimensions differ"):
        C.fit_temperature(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="logits: is empty"):
        C.fit_temperature(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(ValueError, match="logits: expected \\[n, num_classes\\]"):
        C.fit_vector_scaling(np.zeros(4), np.zeros(4, int))
    with pytest.raises(ValueError, match="logits: has 2 classes; the calibrator was fit on 3"):
        C.apply_temperature(C.fit_temperature(z, np.array([0, 1, 2, 0])), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="labels: 1 value\\(s\\) are not 0 or 1"):
        C.fit_platt(np.zeros(3), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"scores: .*outside \[0, 1\]"):
        C.fit_histogram_binning(np.array([0.5, 1.5]), np.array([0, 1]))
    with pytest.raises(ValueError, match="num_bins"):
        C.fit_histogram_binning(np.array([0.5]), np.array([1]), num_bins=0)
    with pytest.raises(ValueError, match="sample_weight: .*weights >= 0"):
        C.fit_isotonic(np.zeros(2), np.zeros(2), sample_weight=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="mask: selects no entries"):
        C.fit_platt(np.zeros(3), np.zeros(3), mask=np.zeros(3, bool))
    with pytest.raises(ValueError, match="scores and labels: shapes differ"):
        C.fit_isotonic(np.zeros(3), np.zeros(4))
