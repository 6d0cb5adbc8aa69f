"""CLASSP as an optax GradientTransformation: step-by-step numpy transcription, the threshold's
sparsity, and use by name in the trainer (`train.optimizer.name = "classp"`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from introspect import train
from introspect.train import classp as C


def np_classp(params, grads_seq, lrs, threshold, power, eps, apply_scaling=True):
    """The pseudo-code of the CLASSP README, per coordinate, in float64."""
    w = {k: np.asarray(v, np.float64).copy() for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in w.items()}
    trace = []
    for grads, lr in zip(grads_seq, lrs, strict=True):
        for k in w:
            g = np.asarray(grads[k], np.float64)
            active = g**2 > threshold
            s[k] = s[k] + np.where(active, np.abs(g) ** power, 0.0)
            scale = lr / (eps + s[k]) ** (1 / power) if apply_scaling else lr
            w[k] = w[k] - np.where(active, scale * g, 0.0)
        trace.append(({k: v.copy() for k, v in w.items()}, {k: v.copy() for k, v in s.items()}))
    return trace


@pytest.mark.parametrize(
    "threshold,power,eps,apply_scaling",
    [
        (0.5, 1.0, 1e-5, True),
        (0.1, 2.0, 1e-3, True),
        (0.0, 1.5, 1e-5, True),
        (0.3, 1.0, 1e-5, False),
    ],
)
def test_matches_numpy_step_by_step(threshold, power, eps, apply_scaling):
    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
    grads_seq = [
        {k: (rng.normal(size=v.shape) * 1.2).astype(np.float32) for k, v in params.items()}
        for _ in range(6)
    ]
    schedule = optax.linear_schedule(0.2, 0.05, 6)
    tx = C.classp(schedule, threshold=threshold, power=power, eps=eps, apply_scaling=apply_scaling)
    ref = np_classp(
        params, grads_seq, [float(schedule(i)) for i in range(6)], threshold, power, eps,
        apply_scaling,
    )  # fmt: skip
    state = tx.init(params)
    p = params
    update = jax.jit(tx.update)
    for (w_ref, s_ref), g in zip(ref, grads_seq, strict=True):
        upd, state = update(g, state, p)
        p = optax.apply_updates(p, upd)
        grad_sum = state[0].grad_sum
        for k in params:
            np.testing.assert_allclose(p[k], w_ref[k], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(grad_sum[k], s_ref[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_sub_threshold_coordinates_never_move(seed):
    rng = np.random.default_rng(seed)
    threshold = 0.25  # |g| <= 0.5 never updates
    params = {"w": rng.normal(size=(50,)).astype(np.float32)}
    frozen = rng.random(50) < 0.5
    tx = C.classp(0.1, threshold=threshold)
    state, p = tx.init(params), params
    moved = np.zeros(50, bool)
    for _ in range(10):
        g = rng.normal(size=50) * 2
        g = np.where(frozen, np.clip(g, -0.5, 0.5), np.sign(g) * (np.abs(g) + 0.6))
        upd, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, p)
        p = optax.apply_updates(p, upd)
        moved |= np.asarray(p["w"]) != params["w"]
    np.testing.assert_array_equal(np.asarray(p["w"])[frozen], params["w"][frozen])
    np.testing.assert_array_equal(np.asarray(state[0].grad_sum["w"])[frozen], 0.0)
    assert moved[~frozen].all()


def test_rate_decays_with_accumulated_updates():
    tx = C.classp(1.0, threshold=0.0, eps=1e-5)
    params = {"w": jnp.zeros(1)}
    state, steps = tx.init(params), []
    for _ in range(4):
        upd, state = tx.update({"w": jnp.ones(1)}, state, params)
        steps.append(-float(upd["w"][0]))
    np.testing.assert_allclose(steps, [1 / (1e-5 + k) for k in (1, 2, 3, 4)], rtol=1e-5)


def test_usable_by_name_in_the_trainer(tmp_path):
    assert "classp" in train.OPTIMIZERS
    cfg = train.default_config()
    cfg.optimizer.name = "classp"
    cfg.optimizer.lr = 0.2
    cfg.num_steps = 30
    cfg.batch_size = 64
    cfg.log_every = 30
    cfg.checkpoint.every_steps = 0
    cfg.progress = False
    cfg.tensorboard = False
    resolved = train.resolve_config(cfg)
    tx, _ = train.make_optimizer(resolved)
    params = {"w": jnp.ones(3)}
    upd, _ = tx.update({"w": jnp.array([1.0, 0.1, -2.0])}, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], [-0.2 / (1 + 1e-5), 0.0, 0.2 / (1 + 1e-5)], rtol=1e-5)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) > 0).astype(np.float32)

    def loss_fn(params, batch, rng):  # summed over the batch: gradients above the threshold
        z = batch["x"] @ params["w"] + params["b"]
        return jnp.sum(jnp.logaddexp(0.0, z) - batch["y"] * z), {}

    result = train.train(
        cfg,
        init_fn=lambda rng: {"w": jnp.zeros(4), "b": jnp.zeros(())},
        loss_fn=loss_fn,
        data={"x": x, "y": y},
        workdir=str(tmp_path),
    )
    rows = [r for r in train.read_metrics(str(tmp_path)) if "loss" in r]
    assert int(result.state.step) == 30 and rows[-1]["loss"] < 0.7 * 64 * np.log(2)
    assert np.any(np.asarray(result.state.params["w"]) != 0)


def test_config_fields_reach_the_optimiser():
    """optimizer.classp_threshold / classp_power / classp_eps, fields of train.default_config."""
    cfg = train.default_config()
    cfg.optimizer.name = "classp"
    cfg.optimizer.lr = 1.0
    cfg.optimizer.classp_threshold = 0.001
    cfg.optimizer.classp_power = 2.0
    tx, _ = train.make_optimizer(train.resolve_config(cfg))
    params = {"w": jnp.zeros(2)}
    upd, _ = tx.update({"w": jnp.array([0.1, 0.01])}, tx.init(params), params)
    np.testing.assert_allclose(upd["w"], [-0.1 / np.sqrt(0.01 + 1e-5), 0.0], rtol=1e-5)


def test_errors():
    for kw in ({"threshold": -0.1}, {"power": 0.0}, {"eps": 0.0}, {"threshold": True}):
        with pytest.raises(ValueError, match="classp"):
            C.classp(0.1, **kw)
