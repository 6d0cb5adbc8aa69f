"""JEI-DNN (gate inputs, oracle gate targets, exit weights and the loss against numpy
transcriptions of networkslab/dynn; joint training on planted exits) and Dynamic Confidence
(confidence, stop rule and the validation threshold against brute force; planted anytime data;
monotonicity over seeds); errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from introspect import heads, losses


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ref_uncertainty(logits):
    """compute_detached_uncertainty_metrics (metrics_utils.py)."""
    probs = np_softmax(logits)
    top2 = -np.sort(-probs, axis=1)[:, :2]
    pow_probs = probs**2
    pow_probs = pow_probs / pow_probs.sum(1, keepdims=True)
    return np.stack([top2[:, 0], scipy.stats.entropy(probs, axis=1), top2[:, 0] - top2[:, 1],
                     scipy.stats.entropy(pow_probs, axis=1)], 1)  # fmt: skip


def ref_gate_targets(ce, costs, lam):
    """GateTrainingHelper.get_loss + _get_exit_subsequent_loss."""
    level = ce + lam * costs[None, :]
    target = np.argmin(level, axis=1)
    onehot = np.eye(ce.shape[1])[target][:, :-1]
    return target, np.cumsum(onehot, axis=1)


def ref_exit_weights(g):
    """ClassifierTrainingHelper.get_loss, LossContributionMode.WEIGHTED (+ the last exit)."""
    n, gates = g.shape
    big_g = np.zeros((n, 1))
    ps = []
    for i in range(gates):
        prev = big_g.sum(1)
        ps.append(np.maximum(0.0, np.minimum(g[:, i], 1 - prev)))
        big_g = np.concatenate([big_g, g[:, i : i + 1]], 1)
    p = np.stack(ps, 1)
    return np.concatenate([p, np.maximum(0.0, 1 - p.sum(1, keepdims=True))], 1)


def test_pieces_match_reference():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        z = rng.normal(0, 2, (7, 4))
        np.testing.assert_allclose(heads.exit_uncertainty_features(z), ref_uncertainty(z),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
        ce = rng.exponential(size=(7, 3)).round(1)  # ties
        costs = np.array([1 / 3, 2 / 3, 1.0])
        lam = rng.uniform(0, 1)
        best, t = heads.jei_gate_targets(ce, costs, lam)
        want_best, want_t = ref_gate_targets(ce, costs, lam)
        np.testing.assert_array_equal(best, want_best)
        np.testing.assert_array_equal(t, want_t)
        g = rng.uniform(size=(7, 3))
        np.testing.assert_allclose(heads.jei_exit_weights(g), ref_exit_weights(g), atol=1e-6)
        first = heads.jei_first_exit(g, threshold=0.6)
        want = [next((i for i in range(3) if g[r, i] >= 0.6), 3) for r in range(7)]
        np.testing.assert_array_equal(first, want)


def test_loss_matches_reference_and_weights_the_gradient():
    rng = np.random.default_rng(0)
    b, num_exits, k = 6, 3, 4
    z = rng.normal(0, 2, (b, num_exits, k)).astype(np.float32)
    gl = rng.normal(0, 2, (b, num_exits - 1)).astype(np.float32)
    y = rng.integers(0, k, b)
    costs, lam, pw = np.array([0.2, 0.5, 1.0]), 0.3, np.array([2.0, 0.5])
    ce = -np.log(np_softmax(z)[np.arange(b), :, y])
    _, t = ref_gate_targets(ce, costs, lam)
    bce = np.logaddexp(0, gl) - t * gl
    gate = np.mean(bce * (t * pw + (1 - t)), axis=1)
    want = ce.sum(1) / num_exits + gate  # the reference's IM value: sum_l CE_l / L per example
    opts = dict(costs=list(costs), cost_weight=lam, pos_weights=list(pw))
    for mode in ("weighted", "uniform"):
        got = heads.jei_dnn_loss(outputs={"logits": z, "gate_logits": gl}, batch={"label": y},
                                 im_weighting=mode, **opts)  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert losses.get_loss("jei_dnn") is heads.jei_dnn_loss

    def im_grad(mode):
        def f(zz):
            out = {"logits": zz, "gate_logits": jnp.asarray(gl)}
            return jnp.sum(heads.jei_dnn_loss(outputs=out, batch={"label": y}, im_weighting=mode,
                                              **opts))  # fmt: skip

        return np.asarray(jax.grad(f)(jnp.asarray(z)))

    p = ref_exit_weights(1 / (1 + np.exp(-gl)))
    r = ce.sum(1) / (p * ce).sum(1)
    dce = np_softmax(z) - np.eye(k)[y][:, None, :]  # d CE_l / d z_l
    np.testing.assert_allclose(im_grad("weighted"), (p * r[:, None])[..., None] * dce / num_exits,
                               rtol=1e-4, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(im_grad("uniform"), dce / num_exits, rtol=1e-4, atol=1e-6)


def planted_exits(rng, n, d=6):
    """Easy examples carry their class at every exit, hard ones only at the last."""
    y = rng.integers(0, 3, n)
    easy = rng.uniform(size=n) < 0.5
    signal = np.eye(3, d)[y] * 3.0
    h = rng.standard_normal((n, 3, d)) * 0.5
    h[:, 2] += signal
    h[easy, 0] += signal[easy]
    h[easy, 1] += signal[easy]
    return h.astype(np.float32), y, easy


def test_fit_jei_dnn_exits_easy_examples_early(tmp_path):
    rng = np.random.default_rng(0)
    h, y, _ = planted_exits(rng, 600)
    fit = heads.fit_jei_dnn(h, y, num_classes=3, workdir=str(tmp_path), cost_weight=0.3)
    ht, yt, easy = planted_exits(rng, 400)
    out = heads.jei_dnn_predict(fit, ht)
    assert np.mean(out["prediction"] == yt) > 0.93
    assert out["exit"][easy].mean() < 0.2 and out["exit"][~easy].mean() > 1.6, (
        out["exit"][easy].mean(), out["exit"][~easy].mean())  # fmt: skip
    assert out["gate_probs"].shape == (400, 2) and out["logits"].shape == (400, 3, 3)


# ----------------------------------------------------------------------------------------------
# Dynamic Confidence
# ----------------------------------------------------------------------------------------------


def planted_anytime(rng, n, t=8, k=4):
    """Outputs whose evidence for the true class grows over time, faster for easy inputs."""
    y = rng.integers(0, k, n)
    rate = rng.uniform(0.1, 3.0, n)
    out = rng.normal(0, 3.0, (n, t, k))
    out[np.arange(n), :, y] += rate[:, None] * np.arange(1, t + 1)[None, :]
    return out, y


def brute_force_threshold(conf, correct, target, candidates):
    best = None
    for thr in candidates:
        stop = np.array([next((s for s in range(conf.shape[1]) if conf[i, s] >= thr),
                              conf.shape[1] - 1) for i in range(conf.shape[0])])  # fmt: skip
        acc = correct[np.arange(len(stop)), stop].mean()
        steps = (stop + 1).mean()
        key = (acc >= target, -steps if acc >= target else acc, acc, -steps)
        if best is None or key > best[0]:
            best = (key, thr, acc, steps)
    return best[1:]


def test_dynamic_confidence_matches_brute_force_and_meets_target():
    rng = np.random.default_rng(0)
    out, y = planted_anytime(rng, 300)
    conf, pred = heads.anytime_confidence(out)
    mean = np.cumsum(out, 1) / np.arange(1, 9)[None, :, None]
    np.testing.assert_allclose(conf, np_softmax(mean).max(-1), rtol=1e-5)
    np.testing.assert_array_equal(pred, np_softmax(mean).argmax(-1))
    conf, correct = np.asarray(conf, np.float64), (np.asarray(pred) == y[:, None]).astype(float)
    choice = heads.choose_dynamic_threshold(conf, correct, target_accuracy=0.9,
                                            num_candidates=10_000)  # fmt: skip
    cands = np.concatenate([np.unique(conf), [np.inf]])
    thr, acc, steps = brute_force_threshold(conf, correct, 0.9, cands)
    assert (choice.threshold, choice.accuracy, choice.mean_steps) == (thr, acc, steps)
    assert choice.met_target and choice.mean_steps < 6
    thinned = heads.choose_dynamic_threshold(conf, correct, target_accuracy=0.9, num_candidates=64)
    assert thinned.met_target and choice.mean_steps <= thinned.mean_steps < 6
    # held out: the chosen threshold keeps accuracy near the target at lower latency
    out2, y2 = planted_anytime(rng, 2000)
    conf2, pred2 = heads.anytime_confidence(out2)
    stop = heads.dynamic_stop(conf2, choice.threshold)
    assert np.mean(np.asarray(pred2)[np.arange(2000), stop] == y2) > 0.87
    assert np.mean(stop + 1) < 6


def test_dynamic_threshold_properties_over_seeds():
    for seed in range(8):
        rng = np.random.default_rng(seed)
        out, y = planted_anytime(rng, 120, t=6)
        conf, pred = heads.anytime_confidence(out)
        correct = (np.asarray(pred) == y[:, None]).astype(float)
        steps = []
        for target in (0.5, 0.7, 0.8, 0.9, 1.0):
            c = heads.choose_dynamic_threshold(conf, correct, target_accuracy=target)
            assert c.met_target == (c.accuracy >= target)
            steps.append(c.mean_steps if c.met_target else np.inf)
        assert all(a <= b for a, b in zip(steps, steps[1:], strict=False))  # stricter = later
        ln = rng.integers(1, 7, 120)
        stop = heads.dynamic_stop(conf, 0.6, lengths=ln)
        assert np.all(stop < ln)
        np.testing.assert_array_equal(heads.dynamic_stop(conf, np.inf, lengths=ln), ln - 1)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="K >= 2"):
        heads.exit_uncertainty_features(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="costs"):
        heads.jei_gate_targets(np.zeros((2, 3)), np.zeros(2), 0.1)
    with pytest.raises(ValueError, match="L >= 2"):
        heads.fit_jei_dnn(np.zeros((4, 1, 3)), np.zeros(4, int), num_classes=2,
                          workdir=str(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match="labels"):
        heads.fit_jei_dnn(np.zeros((4, 2, 3)), np.full(4, 5), num_classes=2,
                          workdir=str(tmp_path))  # fmt: skip
    with pytest.raises(ValueError, match="im_weighting"):
        heads.fit_jei_dnn(np.zeros((4, 2, 3)), np.zeros(4, int), num_classes=2,
                          workdir=str(tmp_path), im_weighting="boosted")  # fmt: skip
    with pytest.raises(ValueError, match="costs"):
        heads.fit_jei_dnn(np.zeros((4, 2, 3)), np.zeros(4, int), num_classes=2,
                          workdir=str(tmp_path), costs=[1.0])  # fmt: skip
    with pytest.raises(ValueError, match=r"\[n, T, K\]"):
        heads.anytime_confidence(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="lengths"):
        heads.dynamic_stop(np.zeros((2, 3)), 0.5, lengths=[0, 3])
    with pytest.raises(ValueError, match="NaN"):
        heads.dynamic_stop(np.full((1, 2), np.nan), 0.5)
    with pytest.raises(ValueError, match="target_accuracy"):
        heads.choose_dynamic_threshold(np.zeros((2, 3)), np.zeros((2, 3)), target_accuracy=1.5)
    with pytest.raises(ValueError, match="0/1"):
        heads.choose_dynamic_threshold(np.zeros((2, 3)), np.full((2, 3), 0.5),
                                       target_accuracy=0.5)  # fmt: skip
