"""Scoring rules and classification losses: properness, hand values, shapes, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses as L


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


GRID = np.round(np.arange(1, 100) / 100, 2)  # p and q in {0.01, ..., 0.99}


def _expected(fn, q, p):
    """E_{y ~ Bernoulli(p)} fn(q, y) for every (p, q): [len(p), len(q)]."""
    qq = jnp.asarray(np.broadcast_to(q[None, :], (len(p), len(q))))
    ones, zeros = jnp.ones_like(qq), jnp.zeros_like(qq)
    p = p[:, None]
    return p * np.asarray(fn(probs=qq, labels=ones)) + (1 - p) * np.asarray(
        fn(probs=qq, labels=zeros)
    )


@pytest.mark.parametrize("fn", [L.brier_loss, L.log_loss, L.spherical_loss])
def test_binary_scoring_rules_are_proper(fn):
    exp = _expected(fn, GRID, GRID)
    # For every p on the grid the expected loss is minimised exactly at q = p, and strictly.
    np.testing.assert_array_equal(np.argmin(exp, axis=1), np.arange(len(GRID)))
    diag = np.diag(exp)
    off = exp + np.eye(len(GRID)) * 1e9
    assert np.all(off.min(axis=1) > diag)


@pytest.mark.parametrize("fn", [L.brier_loss, L.log_loss, L.spherical_loss])
def test_multiclass_scoring_rules_are_proper(fn):
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.dirichlet(np.ones(4))
        candidates = np.vstack([p, rng.dirichlet(np.ones(4), size=200)])
        losses = np.stack(
            [np.asarray(fn(probs=candidates, labels=np.full(201, k))) for k in range(4)], axis=1
        )
        expected = losses @ p
        assert np.argmin(expected) == 0


def test_hand_values():
    q = np.array([0.8, 0.3])
    y = np.array([1.0, 1.0])
    np.testing.assert_allclose(L.brier_loss(probs=q, labels=y), [0.04, 0.49])
    np.testing.assert_allclose(L.log_loss(probs=q, labels=y), -np.log(q))
    norm = np.sqrt(q**2 + (1 - q) ** 2)
    np.testing.assert_allclose(L.spherical_loss(probs=q, labels=y), 1 - q / norm)
    pm = np.array([[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(L.brier_loss(probs=pm, labels=np.array([1])), [0.49 + 0.64 + 0.01])
    np.testing.assert_allclose(
        L.spherical_loss(probs=pm, labels=np.array([0])), [1 - 0.7 / np.sqrt(0.54)]
    )


def test_cross_entropy_family():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 5))
    y = rng.integers(0, 5, 6)
    logp = jax.nn.log_softmax(z)
    ce = -np.take_along_axis(np.asarray(logp), y[:, None], axis=1)[:, 0]
    np.testing.assert_allclose(L.cross_entropy(logits=z, labels=y), ce, atol=1e-12)
    np.testing.assert_allclose(L.focal_loss(logits=z, labels=y, gamma=0.0), ce, atol=1e-12)
    pt = np.exp(-ce)
    np.testing.assert_allclose(
        L.focal_loss(logits=z, labels=y, gamma=2.0, alpha=0.25), 0.25 * (1 - pt) ** 2 * ce
    )
    s = 0.1
    target = (1 - s) * np.eye(5)[y] + s / 5
    np.testing.assert_allclose(
        L.label_smoothing_cross_entropy(logits=z, labels=y, smoothing=s),
        -(target * np.asarray(logp)).sum(1),
        atol=1e-12,
    )
    # Binary logits: sigmoid versions.
    zb, yb = rng.normal(size=6), rng.integers(0, 2, 6).astype(float)
    p = 1 / (1 + np.exp(-zb))
    bce = -(yb * np.log(p) + (1 - yb) * np.log(1 - p))
    np.testing.assert_allclose(L.cross_entropy(logits=zb, labels=yb), bce, atol=1e-12)
    pt = np.where(yb == 1, p, 1 - p)
    at = np.where(yb == 1, 0.25, 0.75)
    np.testing.assert_allclose(
        L.focal_loss(logits=zb, labels=yb, gamma=2.0, alpha=0.25), at * (1 - pt) ** 2 * -np.log(pt)
    )


def test_token_shaped_input_and_gradients():
    rng = np.random.default_rng(2)
    z = jnp.asarray(rng.normal(size=(2, 3, 7)))  # [batch, length, vocab]
    y = jnp.asarray(rng.integers(0, 7, (2, 3)))
    for fn in (L.cross_entropy, L.focal_loss, L.label_smoothing_cross_entropy):
        out = fn(logits=z, labels=y)
        assert out.shape == (2, 3)
        g = jax.grad(lambda a, f=fn: jnp.sum(f(logits=a, labels=y)))(z)
        assert np.all(np.isfinite(np.asarray(g)))
    # gamma = 0 keeps a finite gradient even at p = 1.
    sharp = jnp.asarray([[100.0, 0.0]])
    g = jax.grad(lambda a: jnp.sum(L.focal_loss(logits=a, labels=jnp.array([0]), gamma=0.0)))(sharp)
    assert np.all(np.isfinite(np.asarray(g)))
    jitted = jax.jit(lambda a, b: L.brier_loss(probs=jax.nn.softmax(a), labels=b))
    assert jitted(z, y).shape == (2, 3)


def test_bad_input():
    with pytest.raises(ValueError, match=r"probs: .*outside \[0, 1\]"):
        L.brier_loss(probs=np.array([1.2]), labels=np.array([1.0]))
    with pytest.raises(ValueError, match=r"probs: 1 row\(s\) do not sum to 1"):
        L.log_loss(probs=np.array([[0.5, 0.6]]), labels=np.array([0]))
    with pytest.raises(ValueError, match="probs and labels: shapes"):
        L.spherical_loss(probs=np.ones((3, 2, 2)) / 2, labels=np.zeros(5))
    with pytest.raises(ValueError, match="logits: contains 1 NaN"):
        L.focal_loss(logits=np.array([[np.nan, 0.0]]), labels=np.array([0]))
    with pytest.raises(ValueError, match="labels: 1 value"):
        L.cross_entropy(logits=np.zeros((2, 3)), labels=np.array([0, 3]))
    with pytest.raises(ValueError, match="smoothing"):
        L.label_smoothing_cross_entropy(
            logits=np.zeros((2, 3)), labels=np.array([0, 1]), smoothing=2
        )
    with pytest.raises(ValueError, match="gamma"):
        L.focal_loss(logits=np.zeros(2), labels=np.zeros(2), gamma=-1)
    with pytest.raises(ValueError, match="probs: is empty"):
        L.brier_loss(probs=np.zeros(0), labels=np.zeros(0))
