"""Local-Lipschitz reward penalty (off-policy GAIL), tested with jax.grad on known functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import adapt


def test_linear_reward_has_constant_gradient_norm():
    a = jnp.array([3.0, -4.0])  # ||a|| = 5
    fn = lambda x: jnp.dot(a, x) + 1.0
    x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    np.testing.assert_allclose(adapt.input_gradient_norms(fn, x), np.full(7, 5.0), rtol=1e-6)
    np.testing.assert_allclose(adapt.lipschitz_penalty(fn, x), np.full(7, 16.0), rtol=1e-6)
    np.testing.assert_allclose(adapt.lipschitz_penalty(fn, x, target=6.0), 0.0)
    np.testing.assert_allclose(
        adapt.lipschitz_penalty(fn, x, target=6.0, one_sided=False), np.full(7, 1.0), rtol=1e-6
    )


@pytest.mark.parametrize("seed", range(3))
def test_quadratic_reward_matches_numpy(seed):
    """r(x) = 0.5 ||x||^2: grad = x, so the penalty is max(0, ||x|| - k)^2 per example."""
    x = np.random.default_rng(seed).normal(size=(32, 3)).astype(np.float32)
    fn = lambda v: 0.5 * jnp.sum(v**2)
    norms = np.linalg.norm(x, axis=1)
    for k in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(
            adapt.lipschitz_penalty(fn, x, target=k), np.maximum(norms - k, 0) ** 2, rtol=1e-5
        )
        np.testing.assert_allclose(
            adapt.lipschitz_penalty(fn, x, target=k, one_sided=False), (norms - k) ** 2, rtol=1e-5
        )
    np.testing.assert_allclose(
        adapt.lipschitz_confidence(fn, x), np.exp(-(np.maximum(norms - 1, 0) ** 2)), rtol=1e-5
    )


def test_pytree_inputs_norm_over_all_leaves():
    w_s, w_a = jnp.array([1.0, 2.0]), jnp.array([2.0])
    fn = lambda ex: jnp.dot(w_s, ex["state"]) + jnp.dot(w_a, ex["action"])
    batch = {"state": np.ones((4, 2), np.float32), "action": np.ones((4, 1), np.float32)}
    np.testing.assert_allclose(adapt.input_gradient_norms(fn, batch), np.full(4, 3.0))


def test_penalty_points_variants():
    key = jax.random.key(0)
    pol = np.zeros((500, 3), np.float32)
    exp = np.ones((500, 3), np.float32)
    pts = np.asarray(adapt.penalty_points(key, policy_inputs=pol, expert_inputs=exp))
    u = pts[:, 0]
    assert np.all((u >= 0) & (u <= 1)) and np.allclose(pts, u[:, None])  # on the segment
    assert 0.4 < u.mean() < 0.6
    drag = np.asarray(
        adapt.penalty_points(key, policy_inputs=pol, expert_inputs=exp, variant="dragan")
    )
    assert drag.mean() == pytest.approx(1.0, abs=0.8) and drag.std() == pytest.approx(10, rel=0.1)
    nag = adapt.penalty_points(key, policy_inputs=pol, expert_inputs=exp, variant="nagard")
    assert float(jnp.mean(nag)) == pytest.approx(0.0, abs=0.8)
    bare = adapt.penalty_points(key, policy_inputs=pol, expert_inputs=exp, variant="bare")
    np.testing.assert_array_equal(bare, pol)


def test_discriminator_loss_term_and_its_parameter_gradient():
    """D_w(x) = w . x: the penalty is scale * (||w|| - 1)_+^2, grad 2 scale (||w|| - 1) w/||w||."""
    rng = np.random.default_rng(3)
    pol = rng.normal(size=(16, 4)).astype(np.float32)
    exp = rng.normal(size=(16, 4)).astype(np.float32)
    w = jnp.array([1.0, 2.0, -2.0, 0.5])

    def term(w):
        return adapt.reward_lipschitz_penalty(
            lambda x: jnp.dot(w, x), policy_inputs=pol, expert_inputs=exp, rng=jax.random.key(1)
        )

    n = float(jnp.linalg.norm(w))
    assert float(term(w)) == pytest.approx(10 * (n - 1) ** 2, rel=1e-5)
    g = jax.jit(jax.grad(term))(w)
    np.testing.assert_allclose(g, 20 * (n - 1) * np.asarray(w) / n, rtol=1e-4)


def test_errors():
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="scalar"):
        adapt.input_gradient_norms(lambda v: v * 2.0, x)
    with pytest.raises(ValueError, match="callable"):
        adapt.input_gradient_norms(3.0, x)
    with pytest.raises(ValueError, match="batch size"):
        adapt.input_gradient_norms(lambda e: e["a"].sum(), {"a": x, "b": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="variant"):
        adapt.penalty_points(jax.random.key(0), policy_inputs=x, expert_inputs=x, variant="gp")
    with pytest.raises(ValueError, match="differ"):
        adapt.penalty_points(jax.random.key(0), policy_inputs=x, expert_inputs=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="target"):
        adapt.lipschitz_penalty(lambda v: v.sum(), x, target=-1.0)
