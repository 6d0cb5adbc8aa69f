"""Open-set TTA (wisdom of crowds): the confidence filter and the masked entropy loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import adapt


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_reference(za, zo, margin=0.0, lam=0.0):
    """Direct transcription of the rule (UniEnt's `ostta.forward_and_adapt`, criterion "ent")."""
    po, pa = np_softmax(zo.astype(np.float64)), np_softmax(za.astype(np.float64))
    values0 = po.max(-1)
    idx0 = po.argmax(-1)
    values = np.take_along_axis(pa, idx0[..., None], -1)[..., 0]
    keep = values - values0 >= margin
    ent = -(pa * np.log(pa)).sum(-1)
    loss = ent[keep].mean() if keep.any() else 0.0
    pbar = pa.reshape(-1, pa.shape[-1]).mean(0)
    return keep, loss - lam * -(pbar * np.log(pbar)).sum()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(16, 5), (2, 3, 4, 7)])
def test_matches_numpy_transcription(seed, shape):
    rng = np.random.default_rng(seed)
    zo = rng.normal(size=shape).astype(np.float32) * 2
    za = (zo + rng.normal(size=shape) * 0.7).astype(np.float32)
    for margin, lam in [(0.0, 0.0), (0.05, 0.5)]:
        keep_ref, loss_ref = np_reference(za, zo, margin, lam)
        loss, keep = adapt.open_set_tta_loss(
            adapted_logits=za, original_logits=zo, margin=margin, diversity_weight=lam
        )
        np.testing.assert_array_equal(np.asarray(keep), keep_ref)
        np.testing.assert_allclose(float(loss), loss_ref, rtol=1e-5, atol=1e-6)
        assert 0 < keep_ref.sum() < keep_ref.size  # both branches exercised


def test_unchanged_model_keeps_everything_and_margin_drops_it():
    z = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    assert bool(jnp.all(adapt.crowd_filter(adapted_logits=z, original_logits=z)))
    assert not bool(jnp.any(adapt.crowd_filter(adapted_logits=z, original_logits=z, margin=1e-3)))


def test_confidence_on_original_class():
    zo = np.array([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0]], np.float32)
    za = np.array([[5.0, 0.0, 0.0], [0.0, 4.0, 3.0]], np.float32)  # row 2: adapted drifts away
    ca, co, pred = adapt.crowd_confidences(adapted_logits=za, original_logits=zo)
    np.testing.assert_array_equal(pred, [0, 2])
    assert ca[0] > co[0] and ca[1] < co[1]
    np.testing.assert_array_equal(
        adapt.crowd_filter(adapted_logits=za, original_logits=zo), [True, False]
    )


def test_gradient_only_through_kept_samples_and_adapted_logits():
    rng = np.random.default_rng(1)
    zo = rng.normal(size=(12, 5)).astype(np.float32)
    za = (zo + rng.normal(size=(12, 5))).astype(np.float32)

    def f(za, zo):
        return adapt.open_set_tta_loss(adapted_logits=za, original_logits=zo, validate=False)[0]

    ga, go = jax.jit(jax.grad(f, argnums=(0, 1)))(za, zo)
    _, keep = adapt.open_set_tta_loss(adapted_logits=za, original_logits=zo)
    keep = np.asarray(keep)
    assert np.all(np.asarray(ga)[~keep] == 0) and np.any(np.asarray(ga)[keep] != 0)
    assert np.all(np.asarray(go) == 0)  # the original model is frozen


def test_nothing_kept_is_zero_not_nan_and_jit_works():
    z = np.zeros((4, 3), np.float32)
    loss = adapt.masked_entropy_loss(logits=z, mask=np.zeros(4, bool))
    assert float(loss) == 0.0
    jitted = jax.jit(lambda a, b: adapt.open_set_tta_loss(adapted_logits=a, original_logits=b))
    loss, keep = jitted(z + 0.1, z)
    assert np.isfinite(float(loss)) and keep.shape == (4,)


def test_valid_mask_excludes_padding():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(6, 3)).astype(np.float32)
    valid = np.array([1, 1, 1, 0, 0, 0], bool)
    keep = adapt.crowd_filter(adapted_logits=z, original_logits=z, mask=valid)
    np.testing.assert_array_equal(keep, valid)
    full = adapt.masked_entropy_loss(logits=z[:3], diversity_weight=0.5)
    padded = adapt.masked_entropy_loss(logits=z, valid=valid, diversity_weight=0.5)
    np.testing.assert_allclose(float(full), float(padded), rtol=1e-6)


def test_errors():
    z = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="shapes differ"):
        adapt.crowd_filter(adapted_logits=z, original_logits=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="K >= 2"):
        adapt.crowd_filter(adapted_logits=z[:, :1], original_logits=z[:, :1])
    with pytest.raises(ValueError, match="NaN|inf|non-finite"):
        adapt.crowd_filter(adapted_logits=z + np.nan, original_logits=z)
    with pytest.raises(ValueError, match="margin"):
        adapt.crowd_filter(adapted_logits=z, original_logits=z, margin=2.0)
    with pytest.raises(ValueError, match="mask"):
        adapt.crowd_filter(adapted_logits=z, original_logits=z, mask=np.ones(3, bool))
    with pytest.raises(ValueError, match="diversity_weight"):
        adapt.masked_entropy_loss(logits=z, diversity_weight=-1.0)
