"""Teacher-divergence confidence weights (hand keypoint / mask DA)."""

from __future__ import annotations

import numpy as np
import pytest

from introspect import adapt


def np_smooth_l1(a, b, beta=1.0):
    e = np.abs(a - b)
    return np.where(e < beta, 0.5 * e**2 / beta, e - 0.5 * beta)


def np_bce(p, q, eps=1e-7):
    p = np.clip(p, eps, 1 - eps)
    return -(q * np.log(p) + (1 - q) * np.log(1 - p))


def np_divergence(a, b, kind, eps=1e-7):
    if kind == "smooth_l1":
        d = np_smooth_l1(a, b)
    elif kind == "l1":
        d = np.abs(a - b)
    elif kind == "l2":
        d = (a - b) ** 2
    elif kind == "bce":
        d = 0.5 * (np_bce(a, np.clip(b, eps, 1 - eps)) + np_bce(b, np.clip(a, eps, 1 - eps)))
    else:
        pa, pb = np.clip(a, eps, 1 - eps), np.clip(b, eps, 1 - eps)
        m = 0.5 * (pa + pb)

        def kl(p, q):
            return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))

        d = 0.5 * (kl(pa, m) + kl(pb, m))
    return d.reshape(d.shape[0], -1).mean(1)


@pytest.mark.parametrize("kind", ["smooth_l1", "l1", "l2", "bce", "js"])
def test_divergences_match_numpy(kind):
    rng = np.random.default_rng(0)
    a = rng.random((6, 21, 2)).astype(np.float32)
    b = np.clip(a + rng.normal(size=a.shape) * 0.8, 0, 1).astype(np.float32)
    if kind in ("smooth_l1", "l1", "l2"):
        a, b = a * 4, b * 4  # both sides of the SmoothL1 threshold
    got = adapt.teacher_divergence(pred_a=a, pred_b=b, kind=kind)
    np.testing.assert_allclose(got, np_divergence(a, b, kind), rtol=1e-5, atol=1e-6)
    if kind != "bce":  # a divergence of a prediction with itself is 0 (BCE keeps its entropy)
        same = adapt.teacher_divergence(pred_a=a, pred_b=a, kind=kind)
        np.testing.assert_allclose(same, np.zeros(6), atol=1e-6)


@pytest.mark.parametrize("form", ["sigmoid", "exp"])
def test_weight_forms_match_numpy(form):
    d = np.array([0.0, 0.1, 1.0, 5.0, 80.0], np.float32)
    for s in (0.5, 1.0, 3.0):
        ref = 2 / (1 + np.exp(s * d.astype(np.float64)))  # = 2 (1 - sigmoid(s d))
        if form == "exp":
            ref = np.exp(-s * d.astype(np.float64))
        got = adapt.teacher_confidence(divergence=d, scale=s, form=form)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-30)
        assert float(got[0]) == 1.0 and np.all(np.diff(np.asarray(got)) < 0)


@pytest.mark.parametrize("seed", range(4))
def test_weights_fall_as_teachers_disagree(seed):
    rng = np.random.default_rng(seed)
    kp = rng.random((1, 21, 2)) * 64
    masks = rng.random((1, 16, 16))
    noise = np.array([0.0, 0.5, 2.0, 8.0])
    kp_b = kp + noise[:, None, None] * rng.normal(size=(4, 21, 2))
    mk_b = np.clip(masks + noise[:, None, None] / 8 * rng.normal(size=(4, 16, 16)), 0, 1)
    w = np.asarray(
        adapt.hand_pseudo_label_weights(
            keypoints_a=np.repeat(kp, 4, 0),
            keypoints_b=kp_b,
            masks_a=np.repeat(masks, 4, 0),
            masks_b=mk_b,
            seg_weight=0.0,
        )
    )
    assert w[0] == pytest.approx(1.0) and np.all(np.diff(w) < 0) and np.all(w > 0)
    w_seg = np.asarray(
        adapt.hand_pseudo_label_weights(
            keypoints_a=np.repeat(kp, 4, 0),
            keypoints_b=np.repeat(kp, 4, 0),
            masks_a=np.repeat(masks, 4, 0),
            masks_b=mk_b,
        )
    )
    assert np.all(np.diff(w_seg[1:]) < 0) and np.all(w_seg <= 1.0)
    w_js = np.asarray(
        adapt.hand_pseudo_label_weights(
            keypoints_a=np.repeat(kp, 4, 0),
            keypoints_b=np.repeat(kp, 4, 0),
            masks_a=np.repeat(masks, 4, 0),
            masks_b=mk_b,
            mask_divergence="js",
        )
    )
    assert w_js[0] == pytest.approx(1.0) and np.all(np.diff(w_js) < 0)


def test_combined_divergence_transcription():
    rng = np.random.default_rng(5)
    ka, kb = rng.random((3, 5, 2)) * 3, rng.random((3, 5, 2)) * 3
    ma, mb = rng.random((3, 4, 4)), rng.random((3, 4, 4))
    d = 2.0 * np_divergence(ka, kb, "smooth_l1") + 0.5 * np_divergence(ma, mb, "bce")
    got = adapt.hand_pseudo_label_weights(
        keypoints_a=ka, keypoints_b=kb, masks_a=ma, masks_b=mb,
        pose_weight=2.0, seg_weight=0.5, scale=0.7, form="exp",
    )  # fmt: skip
    np.testing.assert_allclose(got, np.exp(-0.7 * d), rtol=1e-5)


def test_errors():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="kind"):
        adapt.teacher_divergence(pred_a=a, pred_b=a, kind="cosine")
    with pytest.raises(ValueError, match="shapes differ"):
        adapt.teacher_divergence(pred_a=a, pred_b=np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        adapt.teacher_divergence(pred_a=a + 2, pred_b=a, kind="bce")
    with pytest.raises(ValueError, match="divergence"):
        adapt.teacher_confidence(divergence=np.array([-1.0]))
    with pytest.raises(ValueError, match="scale"):
        adapt.teacher_confidence(divergence=np.array([1.0]), scale=0.0)
    with pytest.raises(ValueError, match="form"):
        adapt.teacher_confidence(divergence=np.array([1.0]), form="linear")
    with pytest.raises(ValueError, match="mask_divergence"):
        adapt.hand_pseudo_label_weights(keypoints_a=a, keypoints_b=a, mask_divergence="kl")
    with pytest.raises(ValueError, match="both"):
        adapt.hand_pseudo_label_weights(keypoints_a=a, keypoints_b=a, masks_a=a)
    with pytest.raises(ValueError, match="batch size"):
        adapt.hand_pseudo_label_weights(
            keypoints_a=a, keypoints_b=a, masks_a=np.zeros((3, 2)), masks_b=np.zeros((3, 2))
        )
