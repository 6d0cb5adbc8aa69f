"""The `Conformalized` wrapper: any score function + calibration set -> a pure set predictor."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import conformal as cf


def _probs(rng, n, k):
    z = rng.normal(size=(n, k))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.minimum((p.cumsum(1) < rng.random((n, 1))).sum(1), k - 1)
    return p.astype(np.float32), y


@pytest.mark.parametrize("score", ["lac", "aps", "raps"])
def test_builtin_scores_match_the_functional_api(score):
    rng = np.random.default_rng(0)
    p, y = _probs(rng, 400, 5)
    kw = {"k_reg": 1, "lam": 0.05} if score == "raps" else {}
    model = cf.conformalize(score, p[:200], y[:200], alpha=0.1, **kw)
    q = cf.calibrate(p[:200], y[:200], alpha=0.1, score=score, **kw)
    assert float(model.thresholds) == float(q) and model.n == 200 and model.num_classes == 5
    np.testing.assert_array_equal(
        model.predict(p[200:]), cf.prediction_sets(p[200:], q, score=score, **kw)
    )
    # The predictor is a pytree and its predict is pure: jit it with the model as an argument.
    np.testing.assert_array_equal(jax.jit(lambda m, x: m(x))(model, p[200:]), model(p[200:]))


def test_class_conditional_binary_is_lynx():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 + 0.3 * (2 * y - 1) + 0.2 * rng.normal(size=300), 0, 1).astype(np.float32)
    model = cf.conformalize("binary", p, y, alpha=0.1, class_conditional=True)
    q0, q1 = cf.exit_thresholds(p, y, delta=0.1)
    np.testing.assert_array_equal(model.thresholds, [q0, q1])
    d = cf.exit_decision(p, q0, q1)
    np.testing.assert_array_equal(model.predict(p), d.prediction_set)


def test_callable_score_on_a_pytree_covers(coverage_stats):
    """A reward-model-like real score in a dict output; marginal coverage over 2000 splits."""
    sims, n, m, alpha = 2000, 200, 200, 0.1
    rng = np.random.default_rng(2)
    y = (rng.random((sims, n + m)) < 0.6).astype(np.int32)
    reward = (1.2 * (2 * y - 1) + rng.normal(size=(sims, n + m))).astype(np.float32)

    def score(out, labels):  # high reward should mean label 1
        r = out["reward"] * out["scale"]
        return jnp.where(labels == 1, -r, r)

    def one(r, y):
        outs = {"reward": r, "scale": jnp.ones_like(r)}
        cal = jax.tree_util.tree_map(lambda a: a[:n], outs)
        test = jax.tree_util.tree_map(lambda a: a[n:], outs)
        model = cf.conformalize(score, cal, y[:n], alpha=alpha, num_classes=2, validate=False)
        return cf.coverage(model.predict(test), y[n:])

    cov = jax.jit(jax.vmap(one))(reward, y)
    exact, tol = coverage_stats(n, m, sims, alpha)
    assert abs(float(jnp.mean(cov)) - exact) <= tol


def test_infinite_threshold_gives_full_sets():
    rng = np.random.default_rng(3)
    p, y = _probs(rng, 5, 4)
    with pytest.warns(cf.InfiniteThresholdWarning):
        model = cf.conformalize("aps", p, y, alpha=0.1)
    assert np.isinf(model.thresholds)
    assert bool(np.all(model.predict(p)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cf.conformalize("aps", p, y, alpha=0.1, on_infinite="ignore")


def test_bad_inputs():
    rng = np.random.default_rng(4)
    p, y = _probs(rng, 50, 3)
    with pytest.raises(ValueError, match="score must be a callable or one of"):
        cf.conformalize("top_k", p, y, alpha=0.1)
    with pytest.raises(ValueError, match="num_classes"):
        cf.conformalize(lambda o, lab: o[:, 0], p, y, alpha=0.1)
    with pytest.raises(ValueError, match="leading axis"):
        cf.conformalize(lambda o, lab: o[:, 0], p[:40], y, alpha=0.1, num_classes=3)
    with pytest.raises(ValueError, match="must return shape"):
        cf.conformalize(lambda o, lab: o, p, y, alpha=0.1, num_classes=3)
    with pytest.raises(ValueError, match="alpha"):
        cf.conformalize("lac", p, y, alpha=2.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cf.conformalize("binary", np.full(50, 1.5), (y > 0).astype(int), alpha=0.1)
    with pytest.raises(ValueError, match=r"labels: .*expected class ids in \[0, 2\)"):
        cf.conformalize("binary", np.full(50, 0.5), y, alpha=0.1)
