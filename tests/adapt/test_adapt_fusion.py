"""IEMF inverse-effectiveness fusion gain and Veila-style confidence-aware conditioning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import adapt


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_iemf(out_a, out_v, out, label, gain=1.0):
    """Transcription of the released train_aba.py (score sums, ratio_av, coeff_av)."""
    score_v = sum(np_softmax(out_v)[i][label[i]] for i in range(len(label)))
    score_a = sum(np_softmax(out_a)[i][label[i]] for i in range(len(label)))
    score_av = sum(np_softmax(out)[i][label[i]] for i in range(len(label)))
    ratio_av = ((score_a + score_v) / 2) / score_av
    return gain * (1 + np.tanh(1.0 - ratio_av))


@pytest.mark.parametrize("seed", range(5))
def test_iemf_matches_released_rule(seed):
    rng = np.random.default_rng(seed)
    za, zv, zf = (rng.normal(size=(16, 6)) * s for s in (1.0, 2.0, 3.0))
    y = rng.integers(0, 6, 16)
    for gain in (1.0, 0.5):
        ref = np_iemf(za, zv, zf, y, gain)
        got = adapt.iemf_coefficient(unimodal_logits=[za, zv], fused_logits=zf, labels=y, gain=gain)
        np.testing.assert_allclose(float(got), ref, rtol=1e-5)
        stacked = adapt.iemf_coefficient(
            unimodal_logits=np.stack([za, zv]), fused_logits=zf, labels=y, gain=gain
        )
        np.testing.assert_allclose(float(stacked), ref, rtol=1e-5)


def test_inverse_effectiveness_direction_and_range():
    y = np.arange(8) % 4
    strong = np.eye(4)[y] * 6.0
    weak = np.zeros((8, 4))
    k_weak = float(
        adapt.iemf_coefficient(unimodal_logits=[weak, weak], fused_logits=strong, labels=y)
    )
    k_strong = float(
        adapt.iemf_coefficient(unimodal_logits=[strong, strong], fused_logits=weak, labels=y)
    )
    k_equal = float(adapt.iemf_coefficient(unimodal_logits=[weak], fused_logits=weak, labels=y))
    assert k_weak > 1.0 > k_strong > 0.0  # weak unimodal cues -> stronger fusion update
    assert k_equal == pytest.approx(1.0)
    assert k_weak < 1.0 + np.tanh(1.0)
    masked = adapt.iemf_coefficient(
        unimodal_logits=[weak, weak], fused_logits=strong, labels=y, mask=np.arange(8) < 4
    )
    np.testing.assert_allclose(float(masked), k_weak, rtol=1e-6)  # ratio of sums is per row alike


def test_iemf_scale_gradients():
    grads = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(1)}
    out = adapt.iemf_scale_gradients(grads, jnp.asarray(1.5))
    np.testing.assert_allclose(out["w"], 1.5 * np.arange(6.0).reshape(2, 3))
    big = {"w": jax.random.normal(jax.random.key(0), (200_000,)) * 3.0}
    noisy = adapt.iemf_scale_gradients(big, 0.5, rng=jax.random.key(1))
    resid = np.asarray(noisy["w"] - 0.5 * big["w"])
    assert abs(resid.mean()) < 0.05 and resid.std() == pytest.approx(3.0, rel=0.02)
    with pytest.raises(ValueError, match="scalar"):
        adapt.iemf_scale_gradients(grads, jnp.ones(2))


def test_iemf_errors():
    z = np.zeros((4, 3))
    y = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="no modality"):
        adapt.iemf_coefficient(unimodal_logits=[], fused_logits=z, labels=y)
    with pytest.raises(ValueError, match="do not match"):
        adapt.iemf_coefficient(unimodal_logits=[np.zeros((4, 2))], fused_logits=z, labels=y)
    with pytest.raises(ValueError, match="labels"):
        adapt.iemf_coefficient(unimodal_logits=[z], fused_logits=z, labels=np.array([0, 1, 5, 0]))
    with pytest.raises(ValueError, match="gain"):
        adapt.iemf_coefficient(unimodal_logits=[z], fused_logits=z, labels=y, gain=0.0)


# ---- Veila-style conditioning (rule ours) ------------------------------------------------------


def test_semantic_confidence_is_normalised_entropy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2, 5, 5, 7)) * 2
    p = np_softmax(z)
    ref = 1 - (-(p * np.log(p)).sum(-1)) / np.log(7)
    np.testing.assert_allclose(adapt.semantic_confidence(semantic_logits=z), ref, rtol=1e-5)
    flat = adapt.semantic_confidence(semantic_logits=np.zeros((3, 4)))
    np.testing.assert_allclose(flat, 0.0, atol=1e-6)
    sharp = adapt.semantic_confidence(semantic_logits=np.array([[50.0, 0, 0, 0]]))
    np.testing.assert_allclose(sharp, 1.0, atol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_weights_and_condition_transcription(seed):
    rng = np.random.default_rng(seed)
    cs, cd = rng.random((4, 6)), rng.random((4, 6))
    fs, fd = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 3))
    t = 0.3
    e = np.exp(np.stack([cs, cd]) / t)
    w_sem_ref = e[0] / e.sum(0)
    w_sem, w_dep = adapt.confidence_aware_weights(
        semantic_confidence=cs, depth_confidence=cd, temperature=t
    )
    np.testing.assert_allclose(w_sem, w_sem_ref, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(w_sem) + np.asarray(w_dep), 1.0, rtol=1e-6)
    assert np.all((np.asarray(w_sem) > 0.5) == (cs > cd))
    ref = w_sem_ref[..., None] * fs + (1 - w_sem_ref)[..., None] * fd
    got = adapt.confidence_aware_condition(
        semantic_features=fs, depth_features=fd, semantic_confidence=cs,
        depth_confidence=cd, temperature=t,
    )  # fmt: skip
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    gated = adapt.confidence_aware_condition(
        semantic_features=fs, depth_features=fd, semantic_confidence=cs,
        depth_confidence=cd, temperature=t, gated=True,
    )  # fmt: skip
    gate = w_sem_ref * cs + (1 - w_sem_ref) * cd
    np.testing.assert_allclose(gated, ref * gate[..., None], rtol=1e-5, atol=1e-6)


def test_low_temperature_picks_the_more_reliable_cue():
    cs = np.array([0.9, 0.1])
    cd = depth = adapt.depth_confidence(depth_std=np.array([2.0, 0.01]), depth_scale=1.0)
    np.testing.assert_allclose(depth, np.exp(-np.array([2.0, 0.01])), rtol=1e-6)
    w_sem, _ = adapt.confidence_aware_weights(
        semantic_confidence=cs, depth_confidence=cd, temperature=1e-3
    )
    np.testing.assert_allclose(w_sem, [1.0, 0.0], atol=1e-6)


def test_conditioning_errors():
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        adapt.confidence_aware_weights(
            semantic_confidence=np.array([1.5]), depth_confidence=np.array([0.5])
        )
    with pytest.raises(ValueError, match="temperature"):
        adapt.confidence_aware_weights(
            semantic_confidence=np.array([0.5]), depth_confidence=np.array([0.5]), temperature=0
        )
    with pytest.raises(ValueError, match="depth_std"):
        adapt.depth_confidence(depth_std=np.array([-1.0]))
    with pytest.raises(ValueError, match="C >= 2"):
        adapt.semantic_confidence(semantic_logits=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="without the last axis"):
        adapt.confidence_aware_condition(
            semantic_features=np.zeros((2, 3)), depth_features=np.zeros((2, 3)),
            semantic_confidence=np.zeros(3), depth_confidence=np.zeros(3),
        )  # fmt: skip
