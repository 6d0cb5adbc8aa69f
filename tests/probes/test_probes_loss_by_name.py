"""Probes train with the loss named in their config, including a loss defined outside introspect
(the issue's acceptance: a user module + one config string, nothing else)."""

from __future__ import annotations

import sys
import textwrap

import jax
import numpy as np
import pytest

from introspect import losses, probes, train

USER_MODULE = textwrap.dedent(
    """
    import jax.numpy as jnp
    from introspect import losses

    @losses.register("user_zero_loss")
    def zero(*, outputs, batch):
        return jnp.zeros_like(outputs["logits"])

    @losses.register("user_squared_margin")
    def squared_margin(*, outputs, batch, margin=1.0):
        sign = 2.0 * batch["label"] - 1.0
        return jnp.maximum(0.0, margin - sign * outputs["logits"]) ** 2
    """
)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("user_pkg")
    (path / "introspect_user_losses_test.py").write_text(USER_MODULE)
    sys.path.insert(0, str(path))
    yield "introspect_user_losses_test"
    sys.path.remove(str(path))
    for name in ("user_zero_loss", "user_squared_margin"):
        if name in losses.LOSSES:
            losses.LOSSES.unregister(name)
    sys.modules.pop("introspect_user_losses_test", None)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=256) > 0).astype(np.float32)
    return {"features": x, "label": y}


def _train_config(steps=20):
    cfg = train.default_config()
    cfg.num_steps = steps
    cfg.batch_size = 32
    cfg.optimizer.lr = 1e-2
    cfg.log_every = steps
    cfg.checkpoint.every_steps = 0
    cfg.progress = False
    cfg.tensorboard = False
    return cfg


def _initial_params(probe_config, dim):
    model = probes.build_model(probes.resolve_probe_config(probe_config))
    key = jax.random.split(jax.random.PRNGKey(_train_config().seed))[0]
    return jax.device_get(model.init(key, np.zeros((1, dim), np.float32))["params"])


def test_default_probe_config_has_loss_fields():
    cfg = probes.default_probe_config()
    assert cfg.loss.name == "bce" and dict(cfg.loss.options) == {}


def test_user_loss_trains_a_probe_by_config_alone(user_module, data, tmp_path):
    from introspect.registry import import_modules

    import_modules(user_module)  # what `--config.imports=<module>` does in an experiment
    probe_cfg = probes.default_probe_config()
    probe_cfg.hidden = (16,)
    init = _initial_params(probe_cfg, 8)

    probe_cfg.loss.name = "user_zero_loss"
    fit = probes.fit_probe(probe_cfg, _train_config(), data, workdir=str(tmp_path / "zero"))
    jax.tree.map(np.testing.assert_array_equal, fit.variables["params"], init)  # bitwise

    probe_cfg.loss.name = "user_squared_margin"
    probe_cfg.loss.options = {"margin": 2.0}
    fit = probes.fit_probe(probe_cfg, _train_config(), data, workdir=str(tmp_path / "margin"))
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), fit.variables["params"], init)
    assert all(jax.tree.leaves(changed))
    assert fit.spec["probe"]["loss"] == {"name": "user_squared_margin", "options": {"margin": 2.0}}
    assert "user_squared_margin" in fit.result.metrics


@pytest.mark.parametrize("name, options", [("bce", {}), ("focal", {"gamma": 2.0}), ("brier", {})])
def test_builtin_losses_by_name_learn_the_signal(name, options, data, tmp_path):
    from introspect import metrics

    probe_cfg = probes.default_probe_config()
    probe_cfg.name = "logistic"
    probe_cfg.loss.name = name
    probe_cfg.loss.options = options
    fit = probes.fit_probe(probe_cfg, _train_config(60), data, workdir=str(tmp_path / name))
    p = probes.predict(fit.model, fit.variables, data["features"])
    assert float(metrics.auroc(p, data["label"])) > 0.85
    assert name in fit.result.metrics
