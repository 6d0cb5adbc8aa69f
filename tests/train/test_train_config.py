"""Config validation (errors name the field) and the optimiser/schedule construction."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from introspect import train
from introspect.train.config import check_batch_divisible, decay_mask


@pytest.mark.parametrize(
    "override, field",
    [
        ({"optimizer": {"name": "adamx"}}, "train.optimizer.name: unknown optimiser 'adamx'"),
        ({"optimizer": {"lr": -0.1}}, "train.optimizer.lr must be a finite number > 0"),
        ({"optimizer": {"lr": float("nan")}}, "train.optimizer.lr"),
        ({"optimizer": {"weight_decay": -1.0}}, "train.optimizer.weight_decay must be >= 0"),
        ({"optimizer": {"b2": 1.0}}, "train.optimizer.b2 must be in [0, 1)"),
        ({"schedule": {"name": "cosinus"}}, "train.schedule.name: unknown schedule 'cosinus'"),
        ({"schedule": {"warmup_steps": 1000}}, "train.schedule.warmup_steps"),
        ({"num_steps": 0}, "train.num_steps must be an int >= 1"),
        ({"batch_size": 2.5}, "train.batch_size must be a"),
        ({"checkpoint": {"keep": 0}}, "train.checkpoint.keep"),
        ({"checkpoint": {"every_seconds": -1.0}}, "train.checkpoint.every_seconds"),
        ({"log_every": 0}, "train.log_every"),
        ({"steps_per_dispatch": 0}, "train.steps_per_dispatch must be an int >= 1"),
        ({"mesh": {"data": 0}}, "train.mesh.data"),
        ({"sharding": {"rules": (("heads", "modle"),)}}, "train.sharding.rules: each rule"),
        ({"lrate": 0.1}, "unknown training config field 'train.lrate'"),
        ({"optimizer": {"learning_rate": 0.1}}, "'train.optimizer.learning_rate'"),
        ({"optimizer": {"frozen": ("([",)}}, "train.optimizer.frozen: bad regular expression"),
        ({"optimizer": {"frozen": "^base/"}}, "train.optimizer.frozen must be a tuple"),
    ],
)
def test_bad_config_values_name_the_field(override, field):
    with pytest.raises(ValueError) as err:
        train.resolve_config(override)
    assert field in str(err.value)


def test_field_name_prefix_and_mesh_errors(tmp_path):
    with pytest.raises(ValueError, match=r"config\.train\.optimizer\.lr"):
        train.resolve_config({"optimizer": {"lr": -1.0}}, name="config.train")
    cfg = train.resolve_config({"mesh": {"model": 2}})
    with pytest.raises(ValueError, match=r"train\.mesh\.model=2 must be an int >= 1 that divides"):
        train.partition.mesh_from_config(cfg)


def test_batch_must_divide_over_devices_and_hosts():
    cfg = train.resolve_config({"batch_size": 30})
    with pytest.raises(ValueError, match=r"train\.batch_size=30 must be divisible .* \(8 dev"):
        check_batch_divisible(cfg, 8, 1)
    with pytest.raises(ValueError, match="e.g. use 32"):
        check_batch_divisible(cfg, 8, 2)
    check_batch_divisible(cfg, 3, 1)


@pytest.mark.parametrize("warmup", [0, 2])
def test_adamw_decay_is_optax_adamw_bit_for_bit_and_masked(warmup):
    cfg = train.resolve_config(
        {
            "num_steps": 10,
            "optimizer": {"name": "adamw", "lr": 0.1, "weight_decay": 0.5, "clip_norm": 0.0},
            "schedule": {"name": "cosine", "warmup_steps": warmup},
        }
    )
    ours, schedule = train.make_optimizer(cfg)
    ref = optax.adamw(schedule, weight_decay=0.5, mask=decay_mask)
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones((2,))}
    s1, s2 = ours.init(params), ref.init(params)
    p1 = p2 = params
    for i in range(4):
        g = jax.tree.map(lambda x, v=0.1 * (i + 1): jnp.full_like(x, v), params)
        u1, s1 = ours.update(g, s1, p1)
        u2, s2 = ref.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Biases are not decayed: with the same gradients, w (decayed) and b part ways.
    assert float(p1["b"][0]) != float(p1["w"][0, 0])
    no_decay, _ = train.make_optimizer(
        train.resolve_config({**cfg.to_dict(), "optimizer": {"name": "adam", "lr": 0.1}})
    )
    s3, p3 = no_decay.init(params), params
    for i in range(4):
        g = jax.tree.map(lambda x, v=0.1 * (i + 1): jnp.full_like(x, v), params)
        u3, s3 = no_decay.update(g, s3, p3)
        p3 = optax.apply_updates(p3, u3)
    np.testing.assert_array_equal(np.asarray(p1["b"]), np.asarray(p3["b"]))


def test_sgd_weight_decay_is_decoupled_and_other_optimisers_reject_it():
    cfg = train.resolve_config({"optimizer": {"name": "sgd", "lr": 0.5, "weight_decay": 0.1}})
    tx, _ = train.make_optimizer(cfg)
    params = {"w": jnp.full((2, 2), 2.0), "b": jnp.full((2,), 2.0)}
    g = jax.tree.map(jnp.ones_like, params)
    u, _ = tx.update(g, tx.init(params), params)
    np.testing.assert_allclose(u["w"], -0.5 * (1.0 + 0.1 * 2.0), rtol=1e-7)
    np.testing.assert_allclose(u["b"], -0.5, rtol=1e-7)
    with pytest.raises(ValueError, match=r"train\.optimizer\.weight_decay=0\.1 needs .*'adam'"):
        train.resolve_config({"optimizer": {"name": "adam", "weight_decay": 0.1}})


def test_optimizers_and_schedules_are_registries():
    from introspect.registry import Registry

    assert isinstance(train.OPTIMIZERS, Registry) and isinstance(train.SCHEDULES, Registry)
    assert {"adam", "adamw", "sgd"} <= set(train.OPTIMIZERS.names())
    assert train.OPTIMIZERS.meta("adamw", "weight_decay") is True
    train.register_schedule("half", lambda s, lr, n: lambda step: 0.5 * lr)
    try:
        cfg = train.resolve_config({"schedule": {"name": "half"}, "optimizer": {"lr": 0.2}})
        assert float(train.make_schedule(cfg)(3)) == pytest.approx(0.1)
        with pytest.raises(ValueError, match="already registered"):
            train.register_schedule("half", lambda s, lr, n: None)
    finally:
        train.SCHEDULES.unregister("half")
    with pytest.raises(ValueError, match=r"known: .*cosine.*register_schedule"):
        train.resolve_config({"schedule": {"name": "half"}})


def test_warmup_then_cosine_schedule_and_clipping():
    cfg = train.resolve_config(
        {
            "num_steps": 110,
            "optimizer": {"name": "sgd", "lr": 1.0, "clip_norm": 0.5},
            "schedule": {"name": "cosine", "warmup_steps": 10, "end_factor": 0.1},
        }
    )
    tx, schedule = train.make_optimizer(cfg)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(0.5)
    assert float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(110)) == pytest.approx(0.1, rel=1e-5)
    params = {"w": jnp.zeros((4,))}
    state = tx.init(params)
    for _ in range(11):
        updates, state = tx.update({"w": jnp.full((4,), 10.0)}, state, params)
    # clipped to global norm 0.5 and scaled by lr(10) = 1
    assert float(optax.global_norm(updates)) == pytest.approx(0.5, rel=1e-5)


def test_every_registered_optimizer_builds_and_steps():
    params = {"w": jnp.ones((4, 4))}
    for name in train.OPTIMIZERS:
        tx, _ = train.make_optimizer(train.resolve_config({"optimizer": {"name": name}}))
        u, _ = tx.update({"w": jnp.ones((4, 4))}, tx.init(params), params)
        assert np.all(np.isfinite(np.asarray(u["w"]))), name


def test_state_sharding_is_the_one_scheme():
    """Generic leaves (the tiny task's w1 [16, 32]) follow introspect.sharding's rules."""
    from types import SimpleNamespace

    import ml_collections
    from jax.sharding import PartitionSpec as P

    from introspect import sharding

    mesh = SimpleNamespace(shape={"data": 4, "model": 2})
    cfg = train.resolve_config({"sharding": {"fsdp": True, "min_size": 0}})
    assert isinstance(cfg.sharding, ml_collections.ConfigDict)
    assert tuple(map(tuple, cfg.sharding.rules)) == sharding.DEFAULT_RULES
    specs = sharding.param_specs(
        {"w1": np.zeros((16, 32)), "b": np.zeros((5, 3))}, mesh, cfg.sharding
    )
    assert specs == {"w1": P("data", "model"), "b": P()}


def test_frozen_parameters_get_no_update_and_no_optimiser_state():
    cfg = train.resolve_config({"optimizer": {"name": "adam", "lr": 0.1, "clip_norm": 1.0,
                                              "frozen": ("^base/", "scale$")}})  # fmt: skip
    tx, _ = train.make_optimizer(cfg)
    params = {"base": {"w": jnp.ones((3, 4))}, "head": {"w": jnp.ones((4,)), "scale": jnp.ones(())}}
    state = tx.init(params)
    sizes = [x.size for x in jax.tree.leaves(state) if hasattr(x, "size")]
    assert sum(sizes) == 2 * 4 + 2  # Adam's two moments for head/w only (+ two step counts)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, state, params)
    assert np.all(np.asarray(updates["base"]["w"]) == 0)
    assert float(updates["head"]["scale"]) == 0
    assert np.all(np.asarray(updates["head"]["w"]) != 0)
