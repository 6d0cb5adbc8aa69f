"""Mowst: the dispersion confidences against a numpy transcription of compute_confidence
(facebookresearch/mowst-gnn), the loss/mixture/routing, a learned gate and the weak/strong
cascade on planted experts, the budgeted threshold, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from introspect import heads, losses


def ref_confidence(logit, method):
    """compute_confidence (train_test_engine.py) in numpy."""
    n_classes = logit.shape[1]
    p = np.exp(logit - logit.max(1, keepdims=True))
    p = p / p.sum(1, keepdims=True)
    if method == "variance":
        one_hot = np.zeros(n_classes)
        one_hot[0] = 1
        return np.var(p, axis=1) / np.var(one_hot)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
    return 1 - entropy / np.log(n_classes)


def test_dispersion_matches_reference():
    for seed in range(12):
        rng = np.random.default_rng(seed)
        z = rng.normal(0, rng.uniform(0.1, 5), (9, (2, 5)[seed % 2]))
        for kind in ("variance", "entropy"):
            got = np.asarray(heads.mowst_dispersion(z, kind=kind))
            np.testing.assert_allclose(got, ref_confidence(z, kind), rtol=1e-4, atol=1e-6)
            assert np.all((got >= -1e-6) & (got <= 1 + 1e-6))
            alpha = rng.uniform(0.5, 3)
            np.testing.assert_allclose(heads.mowst_confidence(z, kind=kind, alpha=alpha),
                                       np.clip(got, 0, 1) ** alpha, rtol=1e-5)  # fmt: skip
    flat, peaked = np.zeros((1, 4)), np.array([[50.0, 0, 0, 0]])
    for kind in ("variance", "entropy"):
        np.testing.assert_allclose(heads.mowst_dispersion(flat, kind=kind), [0.0], atol=1e-6)
        np.testing.assert_allclose(heads.mowst_dispersion(peaked, kind=kind), [1.0], atol=1e-5)


def test_loss_mix_route():
    rng = np.random.default_rng(0)
    lw, ls, c = rng.uniform(size=5), rng.uniform(size=5), rng.uniform(size=5)
    np.testing.assert_allclose(heads.mowst_loss(lw, ls, c), c * lw + (1 - c) * ls, rtol=1e-6)
    pw, ps = rng.dirichlet(np.ones(3), 5), rng.dirichlet(np.ones(3), 5)
    mix = np.asarray(heads.mowst_mix(pw, ps, c))
    np.testing.assert_allclose(mix, c[:, None] * pw + (1 - c[:, None]) * ps, rtol=1e-6)
    np.testing.assert_allclose(mix.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(heads.mowst_route(c, threshold=0.5), c >= 0.5)
    conf = np.full(20000, 0.3)
    draws = np.asarray(heads.mowst_route(conf, key=jax.random.PRNGKey(0)))
    assert abs(draws.mean() - 0.3) < 0.015  # the weak expert answers with probability C
    batch = {"weak_loss": lw, "strong_loss": ls}
    out = heads.mowst_gate_loss(outputs={"logits": np.zeros(5)}, batch=batch, strong_cost=0.1)
    np.testing.assert_allclose(out, 0.5 * lw + 0.5 * (ls + 0.1), rtol=1e-6)
    assert losses.get_loss("mowst_gate") is heads.mowst_gate_loss


def planted_experts(rng, n, k=4):
    """The weak expert is right when its prediction is peaked, a coin flip otherwise; the strong
    expert is right 90% of the time."""
    y = rng.integers(0, k, n)
    sure = rng.uniform(size=n) < 0.6
    z = rng.normal(0, 0.3, (n, k))
    guess = np.where(sure, y, np.where(rng.uniform(size=n) < 0.3, y, (y + 1) % k))
    z[np.arange(n), guess] += np.where(sure, 4.0, 0.4)
    weak_correct = (z.argmax(1) == y).astype(float)
    strong_correct = (rng.uniform(size=n) < 0.9).astype(float)
    return z, weak_correct, strong_correct


def test_learned_gate_and_cascade(tmp_path):
    rng = np.random.default_rng(0)
    z, wc, sc = planted_experts(rng, 800)
    fit = heads.fit_mowst_gate(z, 1 - wc, 1 - sc, workdir=str(tmp_path))
    z2, wc2, sc2 = planted_experts(rng, 800)
    g = heads.mowst_gate(fit, z2)
    keep = g >= 0.5
    assert 0.4 < keep.mean() < 0.8
    cascade_acc = np.where(keep, wc2, sc2).mean()
    assert cascade_acc > wc2.mean() + 0.1 and cascade_acc > sc2.mean()
    answers, deferred = heads.mowst_cascade(list(wc2), g, list(sc2 + 10))
    np.testing.assert_array_equal(deferred, ~keep)
    assert answers[int(np.flatnonzero(~keep)[0])] >= 10  # deferred rows carry the strong answer
    # the budgeted threshold never routes more than the budget to the strong expert
    thr, acc, frac = heads.choose_route_threshold(g, wc2, sc2, strong_budget=0.2)
    assert frac <= 0.2 and acc >= wc2.mean()
    thr, acc, frac = heads.choose_route_threshold(g, wc2, sc2)
    assert acc >= cascade_acc - 1e-9


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="K >= 2"):
        heads.mowst_dispersion(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="kind"):
        heads.mowst_dispersion(np.zeros((3, 2)), kind="gini")
    with pytest.raises(ValueError, match="alpha"):
        heads.mowst_confidence(np.zeros((3, 2)), alpha=0.0)
    with pytest.raises(ValueError, match=r"\[n\] alike"):
        heads.mowst_loss(np.zeros(3), np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="exactly one"):
        heads.mowst_route(np.zeros(3))
    with pytest.raises(ValueError, match="strong_cost"):
        heads.fit_mowst_gate(np.zeros((4, 2)), np.zeros(4), np.zeros(4), workdir=str(tmp_path),
                             strong_cost=-1.0)  # fmt: skip
    with pytest.raises(ValueError, match="one per example"):
        heads.fit_mowst_gate(np.zeros((4, 2)), np.zeros(3), np.zeros(4), workdir=str(tmp_path))
    with pytest.raises(ValueError, match="strong_budget"):
        heads.choose_route_threshold(np.zeros(3), np.zeros(3), np.zeros(3), strong_budget=2.0)
