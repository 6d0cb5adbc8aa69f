"""SDM: the activation, Similarity, distance quantiles, the CDF index and the high-probability
region against numpy transcriptions of the reference code (ReexpressAI/sdm sdm_model.py,
loops kept as written there), the nearest-neighbour search against brute force, the whole
calibration on planted blobs (the rescaler trained through introspect.train), errors."""

from __future__ import annotations

import numpy as np
import pytest

from introspect import heads

KEPS = np.finfo(np.float32).eps


# ----------------------------------------------------------------------------------------------
# numpy transcriptions of the reference
# ----------------------------------------------------------------------------------------------


def ref_soft_sdm_max(batch_input, q, distance_quantile_per_class=None, log=False):
    q_factor = 2 + q  # [n, 1]
    batch_input = batch_input - np.max(batch_input, axis=1, keepdims=True)
    if distance_quantile_per_class is not None:
        rescaled = q_factor ** (batch_input * distance_quantile_per_class)
    else:
        rescaled = q_factor**batch_input
    if log:
        rescaled = np.log(rescaled + KEPS) - np.log(np.sum(rescaled, axis=1) + KEPS)[:, None]
        return rescaled / np.log(q_factor)
    return rescaled / np.sum(rescaled, axis=1)[:, None]


def ref_q(top_idx, train_labels, train_pred, eval_pred, is_training_support):
    out = []
    for i in range(top_idx.shape[0]):
        lab, pred = train_labels[top_idx[i]], train_pred[top_idx[i]]
        q = 0
        for j in range(top_idx.shape[1]):
            if (not is_training_support) or (is_training_support and j > 0):
                if lab[j] == pred[j] and pred[j] == eval_pred[i]:
                    q += 1
                else:
                    break
        out.append(q)
    return np.array(out)


def ref_cdf_index(cdf, val, reverse=False, val_in_0to1=False):
    if len(cdf) == 0:
        return 0.0
    if val_in_0to1 and val >= cdf[-1]:
        return 1.0
    index = np.searchsorted(cdf, val, side="left")
    return 1 - index / len(cdf) if reverse else index / len(cdf)


def ref_swift_quantile(float_list, p):
    return np.sort(float_list)[min(int(p * len(float_list)), len(float_list) - 1)]


def ref_thresholds(per_class, all_bins, num_classes, alpha):
    """calculateOutputThresholdsAdaptive; per_class[c] = [(rescaled output of c, qbin), ...]."""
    per_class = {c: sorted(v, key=lambda x: x[1]) for c, v in per_class.items()}
    for candidate in sorted(set(all_bins)):
        cdf = {}
        for c in range(num_classes):
            kept = [pair for pair in per_class[c] if pair[1] >= candidate]
            cdf[c] = [pair[0] for pair in kept]
            per_class[c] = kept
        thresholds = np.zeros(num_classes)
        for c in range(num_classes):
            if len(cdf[c]) > 0:
                thresholds[c] = max(ref_swift_quantile(cdf[c], 1 - alpha), 0.0)
        if np.all(thresholds >= alpha):
            return thresholds, candidate
    return np.zeros(num_classes), np.inf


# ----------------------------------------------------------------------------------------------
# Pieces against the transcriptions
# ----------------------------------------------------------------------------------------------


def test_activation_matches_reference():
    for seed in range(16):
        rng = np.random.default_rng(seed)
        z = rng.normal(0, 3, (6, 4))
        q = rng.integers(0, 50, 6).astype(np.float64)
        d = rng.uniform(size=6)
        got = heads.sdm_activation(z, q, distance_quantile=d)
        want = ref_soft_sdm_max(z, q[:, None], np.repeat(d[:, None], 4, 1))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
        got = np.asarray(heads.sdm_activation(z, q, log=True))
        want = ref_soft_sdm_max(z, q[:, None], log=True)
        big = ref_soft_sdm_max(z, q[:, None]) > 1e-3  # the reference's log(x + eps) elsewhere
        np.testing.assert_allclose(got[big], want[big], rtol=1e-4, atol=1e-4)
        assert np.all(got[~big] <= want[~big] + 1e-4)
    z = np.random.default_rng(0).normal(size=(3, 5))
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(heads.sdm_activation(z, np.full(3, np.e - 2)), soft, rtol=1e-5)
    np.testing.assert_allclose(heads.sdm_activation(z, np.ones(3), distance_quantile=np.zeros(3)),
                               np.full((3, 5), 0.2), rtol=1e-6)  # fmt: skip


def test_similarity_matches_reference():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        m, n, k = 30, 12, 6
        labels = rng.integers(0, 2, m)
        preds = np.where(rng.uniform(size=m) < 0.8, labels, rng.integers(0, 2, m))
        idx = np.stack([rng.permutation(m)[:k] for _ in range(n)])
        yhat = rng.integers(0, 2, n)
        for training in (False, True):
            got = heads.sdm_similarity(labels[idx], preds[idx], yhat, exclude_first=training)
            np.testing.assert_array_equal(got, ref_q(idx, labels, preds, yhat, training))


def test_cdf_index_and_distance_quantile_match_reference():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        cdf = np.sort(rng.integers(0, 8, rng.integers(0, 12)).astype(np.float64))
        vals = rng.integers(-1, 10, 15).astype(np.float64)
        for reverse, sat in ((False, False), (True, False), (False, True)):
            got = heads.cdf_index(cdf, vals, reverse=reverse, saturate=sat)
            want = [ref_cdf_index(cdf, v, reverse, sat) for v in vals]
            np.testing.assert_allclose(got, want)
        cdfs = [np.sort(rng.uniform(size=rng.integers(0, 9))) for _ in range(3)]
        d0 = rng.uniform(size=7)
        want = [min(ref_cdf_index(c, v, reverse=True) for c in cdfs) for v in d0]
        np.testing.assert_allclose(heads.sdm_distance_quantile(d0, cdfs), want)


def test_thresholds_match_reference():
    for seed in range(12):
        rng = np.random.default_rng(seed)
        n, k, alpha = 80, 3, (0.8, 0.9)[seed % 2]
        y = rng.integers(0, k, n)
        r = rng.dirichlet(np.ones(k) * 0.3, n)
        r[np.arange(n), y] = np.maximum(r[np.arange(n), y], rng.uniform(0.5, 1, n))
        r /= r.sum(1, keepdims=True)
        qbin = np.round(rng.uniform(0, 4, n), 1)
        ood = rng.uniform(size=n) < 0.2
        per_class = {c: [(r[i, c], qbin[i]) for i in range(n) if not ood[i] and y[i] == c]
                     for c in range(k)}  # fmt: skip
        want_t, want_b = ref_thresholds(per_class, list(qbin[~ood]), k, alpha)
        got_t, got_b, acc = heads.sdm_thresholds(r, qbin, y, ood, alpha=alpha)
        np.testing.assert_allclose(got_t, want_t)
        assert got_b == want_b and acc == (alpha if np.isfinite(want_b) else 0.0)


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, (20, 2)).astype(np.float32)  # many ties
    x = rng.integers(0, 3, (5, 2)).astype(np.float32)
    d, idx = heads.sdm_nearest(x, s, k=6)
    for i in range(5):
        d2 = ((s - x[i]) ** 2).sum(1)
        order = sorted(range(20), key=lambda j: (d2[j], j))[:6]
        np.testing.assert_array_equal(idx[i], order)
        np.testing.assert_allclose(d[i], d2[order])


# ----------------------------------------------------------------------------------------------
# The whole calibration on planted data
# ----------------------------------------------------------------------------------------------


def blobs(rng, n, spread=1.0):
    y = rng.integers(0, 3, n)
    centers = np.array([[4.0, 0.0], [-2.0, 3.5], [-2.0, -3.5]])
    x = centers[y] + spread * rng.standard_normal((n, 2))
    return x, y, x @ centers.T / 4.0  # a fixed linear classifier's logits


def test_fit_sdm_on_planted_blobs(tmp_path):
    rng = np.random.default_rng(0)
    xt, yt, zt = blobs(rng, 300, spread=1.6)
    xc, yc, zc = blobs(rng, 300, spread=1.6)
    xs, ys, zs = blobs(rng, 300, spread=1.6)
    q, d0 = heads.sdm_support_stats(xc, zc, xt, yt, zt, k=50)
    qt, d0t = heads.sdm_support_stats(xt, zt, xt, yt, zt, k=50, is_training_support=True)
    assert np.all(qt <= 49) and q.max() > 10
    cal0 = heads.fit_sdm(zc, yc, q, d0, train_rescaler=False, alpha=0.9)
    cal = heads.fit_sdm(zc, yc, q, d0, workdir=str(tmp_path), alpha=0.9)
    assert not np.allclose(cal.rescaler, np.eye(3))

    def nll(c):
        out = heads.sdm_predict(c, zc, q, d0)
        return -np.mean(np.log(out["rescaled"][np.arange(300), yc] + 1e-12))

    assert nll(cal) < nll(cal0)  # the trained rescaler fits the calibration set better
    assert np.isfinite(cal.min_qbin) and cal.class_conditional_accuracy == 0.9

    qs, d0s = heads.sdm_support_stats(xs, zs, xt, yt, zt, k=50)
    out = heads.sdm_predict(cal, zs, qs, d0s)
    valid = out["index_conditional"]
    assert valid.sum() > 60
    assert np.mean(out["prediction"][valid] == ys[valid]) >= 0.9 - 0.03
    assert np.mean(out["prediction"] == ys) < np.mean(out["prediction"][valid] == ys[valid])
    # far from the training data: distance quantile 0, never index-conditional
    far = xs[:20] + 60.0
    qf, d0f = heads.sdm_support_stats(far, far @ np.eye(2, 3), xt, yt, zt, k=50)
    outf = heads.sdm_predict(cal, far @ np.eye(2, 3), qf, d0f)
    np.testing.assert_array_equal(outf["distance_quantile"], 0.0)
    assert not outf["index_conditional"].any()


def test_errors():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"\[n, K\]"):
        heads.sdm_activation(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="q must be"):
        heads.sdm_activation(z, np.array([0.0, -1.0]))
    with pytest.raises(ValueError, match="distance_quantile"):
        heads.sdm_activation(z, np.zeros(2), distance_quantile=np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="q_offset"):
        heads.sdm_activation(z, np.zeros(2), q_offset=1.0)
    with pytest.raises(ValueError, match=r"\[n, k\]"):
        heads.sdm_similarity(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="at least 2"):
        heads.sdm_similarity(np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), exclude_first=True)
    with pytest.raises(ValueError, match="alpha"):
        heads.sdm_thresholds(np.full((2, 3), 1 / 3), np.ones(2), [0, 1], [False, False],
                             alpha=0.2)  # fmt: skip
    with pytest.raises(ValueError, match="labels"):
        heads.fit_sdm(z, np.array([0, 5]), np.ones(2), np.ones(2), train_rescaler=False)
    with pytest.raises(ValueError, match="workdir"):
        heads.fit_sdm(z, np.array([0, 1]), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="features"):
        heads.sdm_nearest(np.zeros((2, 3)), np.zeros((4, 2)), k=1)
