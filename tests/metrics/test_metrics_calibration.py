"""Calibration metrics: parity with torchmetrics CalibrationError and scikit-learn, plus exact
numpy references for the bin edges, quantile bins and class-wise ECE (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
)

from introspect import metrics as M

TOL = 1e-9
N = 256  # one array size for most tests keeps the number of compilations down


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _tied_confidences(rng, n):
    # Many ties, none on a bin edge i / B for B in {1, 2, 4, 5, 10, 15, 20, 25}: torchmetrics'
    # torch.linspace edges differ from i / B by an ulp for some B, which only matters exactly
    # on an edge.
    return (rng.integers(0, 100, n) + 0.5) / 100


def _np_ece(conf, correct, edges_index, num_bins, norm):
    count = np.bincount(edges_index, minlength=num_bins).astype(float)
    sy = np.bincount(edges_index, weights=correct, minlength=num_bins)
    sc = np.bincount(edges_index, weights=conf, minlength=num_bins)
    nz = count > 0
    gap = np.zeros(num_bins)
    gap[nz] = np.abs(sy[nz] / count[nz] - sc[nz] / count[nz])
    if norm == "l1":
        return np.sum(count * gap) / count.sum()
    if norm == "l2":
        return np.sqrt(np.sum(count * gap**2) / count.sum())
    return gap[nz].max()


def _np_uniform_index(conf, num_bins):
    edges = np.arange(num_bins + 1) / num_bins
    return np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, num_bins - 1)


def _np_quantile_index(conf, num_bins):
    order = np.argsort(conf, kind="stable")
    sorted_c = conf[order]
    bins_sorted = np.empty(len(conf), dtype=int)
    for b, chunk in enumerate(np.array_split(np.arange(len(conf)), num_bins)):
        bins_sorted[chunk] = b
    # Ties go to the bin of the first of them.
    first = np.searchsorted(sorted_c, sorted_c, side="left")
    bins_sorted = bins_sorted[first]
    out = np.empty(len(conf), dtype=int)
    out[order] = bins_sorted
    return out


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
@pytest.mark.parametrize("num_bins", [1, 5, 10, 15, 20])
def test_ece_matches_torchmetrics(norm, num_bins):
    rng = np.random.default_rng(num_bins)
    conf = _tied_confidences(rng, N)
    correct = (rng.random(N) < conf**1.3).astype(np.int64)
    ours = float(M.ece(conf, correct, num_bins=num_bins, norm=norm))
    ref = float(
        binary_calibration_error(
            torch.from_numpy(conf), torch.from_numpy(correct), n_bins=num_bins, norm=norm
        )
    )
    assert ours == pytest.approx(ref, abs=TOL)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_top_label_ece_matches_torchmetrics(norm):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(N, 7)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 7, N)
    ours = float(M.top_label_ece(probs, labels, num_bins=15, norm=norm))
    # The definition: binary ECE of (max prob, argmax == label), in float64.
    conf = torch.from_numpy(probs.max(1))
    acc = torch.from_numpy((probs.argmax(1) == labels).astype(np.int64))
    ref64 = float(binary_calibration_error(conf, acc, n_bins=15, norm=norm))
    assert ours == pytest.approx(ref64, abs=TOL)
    # torchmetrics' multiclass path casts the confidences to float32.
    ref32 = float(
        multiclass_calibration_error(
            torch.from_numpy(probs), torch.from_numpy(labels), num_classes=7, n_bins=15, norm=norm
        )
    )
    assert ours == pytest.approx(ref32, abs=1e-6)


@pytest.mark.parametrize("num_bins", [1, 3, 5, 10, 15])
def test_uniform_bins_exact_edges(num_bins):
    # Values exactly on the edges i / B (as doubles) go to the upper bin; 1.0 to the last bin.
    rng = np.random.default_rng(2)
    edges = np.arange(num_bins + 1) / num_bins
    conf = np.concatenate([edges, rng.choice(edges, 100), rng.integers(0, 21, 100) / 20])
    conf = np.resize(conf, N)
    correct = rng.integers(0, 2, conf.size).astype(float)
    idx = _np_uniform_index(conf, num_bins)
    for norm in ("l1", "l2", "max"):
        ours = float(M.ece(conf, correct, num_bins=num_bins, norm=norm))
        assert ours == pytest.approx(_np_ece(conf, correct, idx, num_bins, norm), abs=TOL)
    curve = M.reliability_curve(conf, correct, num_bins=num_bins)
    np.testing.assert_array_equal(np.asarray(curve.count), np.bincount(idx, minlength=num_bins))
    np.testing.assert_allclose(np.asarray(curve.edges), edges, rtol=0, atol=0)


@pytest.mark.parametrize("num_bins", [1, 3, 10, 15])
def test_quantile_ece_matches_reference(num_bins):
    rng = np.random.default_rng(num_bins + 10)
    conf = rng.integers(0, 40, N) / 40  # heavy ties; N % num_bins != 0 for 3, 10, 15
    correct = (rng.random(N) < conf).astype(float)
    idx = _np_quantile_index(conf, num_bins)
    for norm in ("l1", "l2", "max"):
        ours = float(M.ece(conf, correct, num_bins=num_bins, binning="quantile", norm=norm))
        assert ours == pytest.approx(_np_ece(conf, correct, idx, num_bins, norm), abs=TOL)
    assert float(M.ace(conf, correct, num_bins=num_bins)) == pytest.approx(
        _np_ece(conf, correct, idx, num_bins, "l1"), abs=TOL
    )
    # Order invariance (ties may straddle a split point).
    perm = rng.permutation(conf.size)
    assert float(
        M.ece(conf[perm], correct[perm], num_bins=num_bins, binning="quantile")
    ) == pytest.approx(float(M.ece(conf, correct, num_bins=num_bins, binning="quantile")), abs=TOL)


def test_quantile_bins_without_ties_are_equal_mass():
    rng = np.random.default_rng(3)
    conf = rng.random(N)
    correct = rng.integers(0, 2, N)
    curve = M.reliability_curve(conf, correct, num_bins=16, binning="quantile")
    np.testing.assert_array_equal(np.asarray(curve.count), np.full(16, N // 16))
    edges = np.asarray(curve.edges)
    np.testing.assert_allclose(edges[0], conf.min())
    np.testing.assert_allclose(edges[-1], conf.max())
    assert np.all(np.diff(edges) >= 0)


def test_classwise_ece_matches_reference():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(N, 4)) * 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, N)
    for binning, index in (("uniform", _np_uniform_index), ("quantile", _np_quantile_index)):
        ref = np.mean(
            [
                _np_ece(probs[:, k], (labels == k).astype(float), index(probs[:, k], 10), 10, "l1")
                for k in range(4)
            ]
        )
        ours = float(M.classwise_ece(probs, labels, num_bins=10, binning=binning))
        assert ours == pytest.approx(ref, abs=TOL)


def test_reliability_curve_statistics():
    rng = np.random.default_rng(5)
    conf = rng.random(N)
    correct = (rng.random(N) < conf).astype(float)
    curve = M.reliability_curve(conf, correct, num_bins=6)
    idx = _np_uniform_index(conf, 6)
    for b in range(6):
        sel = idx == b
        assert float(curve.count[b]) == sel.sum()
        assert float(curve.accuracy[b]) == pytest.approx(correct[sel].mean(), abs=TOL)
        assert float(curve.confidence[b]) == pytest.approx(conf[sel].mean(), abs=TOL)


def test_empty_bins_report_zero():
    curve = M.reliability_curve(np.array([0.05, 0.95]), np.array([0, 1]), num_bins=10)
    assert np.asarray(curve.count).sum() == 2
    assert float(curve.accuracy[4]) == 0.0 and float(curve.count[4]) == 0.0
    assert float(M.mce(np.array([0.05, 0.95]), np.array([0, 1]), num_bins=10)) == pytest.approx(
        0.05
    )


def test_brier_and_nll_match_sklearn():
    rng = np.random.default_rng(6)
    p = rng.uniform(0.01, 0.99, N)
    y = rng.integers(0, 2, N)
    assert float(M.brier_score(p, y)) == pytest.approx(brier_score_loss(y, p), abs=TOL)
    assert float(M.nll(p, y)) == pytest.approx(log_loss(y, p), abs=TOL)
    logits = rng.normal(size=(N, 5))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 5, N)
    assert float(M.brier_score(probs, labels)) == pytest.approx(
        brier_score_loss(labels, probs, labels=list(range(5))), abs=TOL
    )
    assert float(M.nll(probs, labels)) == pytest.approx(
        log_loss(labels, probs, labels=list(range(5))), abs=TOL
    )


def test_nll_clips_zero_probability_like_sklearn():
    p = np.array([0.0, 1.0, 0.5])
    y = np.array([1, 0, 1])
    got = float(M.nll(p, y))
    assert np.isfinite(got)
    assert got == pytest.approx(log_loss(y, p), rel=1e-12)


def test_mask_equals_subset():
    rng = np.random.default_rng(7)
    conf = rng.random(N)
    correct = rng.integers(0, 2, N)
    mask = rng.random(N) < 0.6
    garbage = np.where(mask, conf, np.nan)  # padding may hold anything
    for fn in (M.ece, M.ace, M.mce, M.rmsce):
        assert float(fn(garbage, correct, mask=mask)) == pytest.approx(
            float(fn(conf[mask], correct[mask])), abs=TOL
        )
    assert float(M.brier_score(conf, correct, mask=mask)) == pytest.approx(
        float(M.brier_score(conf[mask], correct[mask])), abs=TOL
    )


def test_jit_and_vmap():
    rng = np.random.default_rng(8)
    conf = jnp.asarray(rng.random((3, N)))
    correct = jnp.asarray(rng.integers(0, 2, (3, N)))
    mask = jnp.asarray(rng.random((3, N)) < 0.8)
    batched = jax.vmap(lambda c, y, m: M.ece(c, y, mask=m, num_bins=10))(conf, correct, mask)
    for i in range(3):
        m = np.asarray(mask[i])
        ref = float(M.ece(np.asarray(conf[i])[m], np.asarray(correct[i])[m], num_bins=10))
        assert float(batched[i]) == pytest.approx(ref, abs=TOL)
    jitted = jax.jit(lambda c, y: M.ece(c, y, num_bins=10, validate=False))
    assert float(jitted(conf[0], correct[0])) == pytest.approx(
        float(M.ece(conf[0], correct[0], num_bins=10)), abs=TOL
    )


def test_float32_is_accurate():
    rng = np.random.default_rng(9)
    conf = rng.random(100_000)
    correct = (rng.random(100_000) < conf**1.1).astype(np.int32)
    ref = float(M.ece(conf, correct))
    with jax.enable_x64(False):
        got = M.ece(conf.astype(np.float32), correct)
        assert got.dtype == jnp.float32
    assert float(got) == pytest.approx(ref, abs=1e-6)
