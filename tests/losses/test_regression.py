"""POCO's Gaussian NLL: numpy transcription, torch parity, the registered loss, and a regression
whose learned variance tracks planted heteroscedastic noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from introspect import losses
from introspect.losses import regression


def np_nll(mu, y, var, eps=1e-8):
    """POCO losses.py ("norm_flow_res_gaus"): 0.5 ((pred - gt)^2 / (var + eps) + log(var + eps))."""
    e = 0.5 * ((mu - y) ** 2 / (var + eps) + np.log(var + eps))
    return e.reshape(e.shape[0], -1).mean(1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(8,), (8, 24, 3)])
def test_matches_numpy_transcription(seed, shape):
    rng = np.random.default_rng(seed)
    mu, y = rng.normal(size=shape), rng.normal(size=shape)
    var = rng.random(shape) * 2 + 1e-3
    got = regression.gaussian_nll(mean=mu, target=y, variance=var)
    np.testing.assert_allclose(got, np_nll(mu, y, var), rtol=1e-5)
    log_var = np.log(var)
    got_log = regression.gaussian_nll(mean=mu, target=y, log_variance=log_var)
    np.testing.assert_allclose(got_log, np_nll(mu, y, var, eps=0.0), rtol=1e-5, atol=1e-6)
    full = regression.gaussian_nll(mean=mu, target=y, variance=var, include_constant=True)
    np.testing.assert_allclose(full, np_nll(mu, y, var) + 0.5 * np.log(2 * np.pi), rtol=1e-5)


def test_matches_torch_gaussian_nll():
    import torch

    rng = np.random.default_rng(0)
    mu, y, var = rng.normal(size=(6, 5)), rng.normal(size=(6, 5)), rng.random((6, 5)) + 0.1
    ref = torch.nn.GaussianNLLLoss(full=True, reduction="none")(
        torch.tensor(mu), torch.tensor(y), torch.tensor(var)
    )
    got = regression.gaussian_nll(mean=mu, target=y, variance=var, eps=0.0, include_constant=True)
    np.testing.assert_allclose(got, ref.numpy().mean(1), rtol=1e-5)


def test_variance_minimiser_is_the_squared_error():
    """For a fixed residual r the NLL is minimised at sigma^2 = r^2 (variance learns the error)."""
    r = np.array([0.3, 1.0, 2.5], np.float32)
    nll = lambda v: regression.gaussian_nll(mean=jnp.zeros(3), target=r, variance=v).sum()
    np.testing.assert_allclose(jax.grad(nll)(jnp.asarray(r**2)), 0.0, atol=1e-5)
    assert float(nll(r**2)) < min(float(nll(0.8 * r**2)), float(nll(1.25 * r**2)))


def test_registered_and_usable_through_objective():
    assert "gaussian_nll" in losses.LOSSES
    rng = np.random.default_rng(1)
    mu, s, y = rng.normal(size=5), rng.normal(size=5) * 0.3, rng.normal(size=5)
    ref = np_nll(mu[:, None], y[:, None], np.exp(s)[:, None], eps=0.0)
    fn = losses.get_loss("gaussian_nll")
    np.testing.assert_allclose(
        fn(outputs={"mean": mu, "log_variance": s}, batch={"target": y}), ref, rtol=1e-5
    )
    logits = np.stack([mu, s], -1)
    np.testing.assert_allclose(fn(outputs={"logits": logits}, batch={"label": y}), ref, rtol=1e-5)
    np.testing.assert_allclose(
        fn(outputs={"mean": mu, "variance": np.exp(s)}, batch={"target": y}, eps=0.0),
        ref,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="needs 'target'"):
        fn(outputs={"mean": mu, "variance": np.exp(s)}, batch={})
    with pytest.raises(ValueError, match="outputs have"):
        fn(outputs={"mean": mu}, batch={"target": y})
    with pytest.raises(ValueError, match="no option"):
        losses.resolve_options("gaussian_nll", {"sigma": 1.0})


def test_learned_variance_tracks_planted_heteroscedastic_noise():
    """y = 2x - 1 + N(0, sigma(x)^2) with log sigma^2 = -3 + 4|x|; the model's log-variance head
    (linear in [1, |x|]) learns it through the registered loss and the trainer's objective."""
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.uniform(-1, 1, n).astype(np.float32)
    log_var = -3.0 + 4.0 * np.abs(x)
    y = (2 * x - 1 + np.exp(0.5 * log_var) * rng.normal(size=n)).astype(np.float32)

    def forward(params, batch, rng):
        del rng
        x = batch["x"]
        return {
            "mean": params["a"] * x + params["b"],
            "log_variance": params["c"] + params["d"] * jnp.abs(x),
        }

    loss_fn = losses.objective(forward, {"name": "gaussian_nll"})
    params = {k: jnp.zeros(()) for k in "abcd"}
    tx = optax.adam(0.05)
    batch = {"x": x, "target": y}

    def step(carry, _):
        params, opt = carry
        (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, None)
        upd, opt = tx.update(g, opt, params)
        return (optax.apply_updates(params, upd), opt), loss

    (params, _), trace = jax.jit(lambda p, o: jax.lax.scan(step, (p, o), None, length=400))(
        params, tx.init(params)
    )
    assert float(trace[-1]) < float(trace[0])
    assert float(params["a"]) == pytest.approx(2.0, abs=0.05)
    assert float(params["b"]) == pytest.approx(-1.0, abs=0.05)
    assert float(params["c"]) == pytest.approx(-3.0, abs=0.3)
    assert float(params["d"]) == pytest.approx(4.0, abs=0.4)
    pred_sigma = np.exp(0.5 * (params["c"] + params["d"] * np.abs(x)))
    assert np.corrcoef(pred_sigma, np.exp(0.5 * log_var))[0, 1] > 0.99


def test_errors():
    z = np.zeros((3, 2))
    with pytest.raises(ValueError, match="exactly one"):
        regression.gaussian_nll(mean=z, target=z)
    with pytest.raises(ValueError, match="exactly one"):
        regression.gaussian_nll(mean=z, target=z, variance=z + 1, log_variance=z)
    with pytest.raises(ValueError, match="variances >= 0"):
        regression.gaussian_nll(mean=z, target=z, variance=z - 1)
    with pytest.raises(ValueError, match="shapes differ"):
        regression.gaussian_nll(mean=z, target=np.zeros((3, 3)), variance=z + 1)
    with pytest.raises(ValueError, match="NaN or inf"):
        regression.gaussian_nll(mean=z + np.inf, target=z, variance=z + 1)
    with pytest.raises(ValueError, match="eps"):
        regression.gaussian_nll(mean=z, target=z, variance=z + 1, eps=-1.0)
