"""Probe models: parity with scikit-learn, planted signal vs shuffled labels, save/load, errors."""

from __future__ import annotations

import numpy as np
import pytest

from introspect import metrics, probes, train


def train_config(num_steps, batch_size, lr):
    cfg = train.default_config()
    cfg.num_steps = num_steps
    cfg.batch_size = batch_size
    cfg.optimizer.lr = lr
    cfg.schedule.name = "cosine"
    cfg.log_every = num_steps
    cfg.checkpoint.every_steps = 0
    cfg.progress = False
    cfg.tensorboard = False
    return cfg


def test_logistic_probe_matches_sklearn(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    n, d = 400, 10
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    x = x.astype(np.float32)
    w = rng.standard_normal(d)
    z = (x - x.mean(0)) / x.std(0) @ w
    y = (z + rng.standard_normal(n) > 0.8).astype(np.float32)  # separable-ish, imbalanced
    c = 0.5
    xs = StandardScaler().fit_transform(x)
    ref = LogisticRegression(C=c, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(xs, y)
    fit = probes.fit_probe(
        {"name": "logistic", "l2": 1.0 / (c * n)},
        train_config(1000, n, 0.1),
        {"features": x, "label": y},
        workdir=str(tmp_path),
    )
    p = probes.predict(fit.model, fit.variables, x)
    np.testing.assert_allclose(p, ref.predict_proba(xs)[:, 1], atol=1e-4)


@pytest.fixture(scope="module")
def planted():
    """x [5000, 64] (offset and scaled): the label is a noisy function of a linear direction
    plus a product of two features."""
    rng = np.random.default_rng(1)
    n, d = 5000, 64
    z = rng.standard_normal((n, d))
    w = rng.standard_normal(d) / np.sqrt(d)
    signal = z @ w + 0.3 * z[:, 3] * z[:, 17]
    y = (signal + 0.1 * rng.standard_normal(n) > 0).astype(np.float32)
    x = (z * 2 + 5).astype(np.float32)
    return x, y


def auroc_of(tmp_path, x, y):
    tr, va = np.arange(4000), np.arange(4000, 5000)
    fit = probes.fit_probe(
        {"name": "mlp", "hidden": (64, 32)},
        train_config(400, 128, 5e-3),
        {"features": x[tr], "label": y[tr]},
        workdir=str(tmp_path),
        val_source={"features": x[va], "label": y[va]},
    )
    p = probes.predict(fit.model, fit.variables, x[va])
    return float(metrics.auroc(p, y[va])), fit


def test_mlp_probe_finds_planted_signal_and_not_shuffled(planted, tmp_path):
    x, y = planted
    auc, fit = auroc_of(tmp_path / "real", x, y)
    assert auc > 0.95
    assert fit.result.eval_metrics["auroc"] == pytest.approx(auc, abs=1e-6)
    shuffled = np.random.default_rng(2).permutation(y)
    auc_shuffled, _ = auroc_of(tmp_path / "shuffled", x, shuffled)
    assert 0.4 < auc_shuffled < 0.6

    path = probes.save_probe(str(tmp_path / "probe"), fit)
    model, variables, spec = probes.load_probe(path)
    assert spec["probe"]["hidden"] == [64, 32] and spec["input_dim"] == 64
    np.testing.assert_array_equal(
        probes.predict(model, variables, x[:100]), probes.predict(fit.model, fit.variables, x[:100])
    )


def test_standardisation_stats_and_class_weights():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 5)) * [1, 2, 3, 4, 0] + [0, 1, 2, 3, 7]
    stats = probes.feature_stats({"features": x.astype(np.float32)}, chunk=128)
    np.testing.assert_allclose(stats["mean"], x.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["scale"][:4], x.std(0)[:4], rtol=1e-5)
    assert stats["scale"][4] == 1.0  # constant feature
    w0, w1 = probes.class_weights(np.array([0, 0, 0, 1]))
    assert (w0, w1) == (4 / 6, 2.0)
    with pytest.raises(ValueError, match="both classes"):
        probes.class_weights(np.zeros(5))


def test_probe_outputs_and_losses():
    import jax
    import jax.numpy as jnp

    model = probes.make_probe("mlp", hidden=(8,))
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    assert set(variables) == {"params", "stats"}
    logits = model.apply(variables, jnp.ones((3, 4)))
    assert logits.shape == (3,)
    from introspect import losses

    bce = losses.get_loss("bce")
    loss = bce(
        outputs={"logits": jnp.array([0.0, 0.0, 3.0])}, batch={"label": jnp.array([0, 1, 1])}
    )
    np.testing.assert_allclose(loss, [np.log(2), np.log(2), np.log1p(np.exp(-3.0))], rtol=1e-6)
    w = {"weight": jnp.array([1.0, 2.0, 0.0]), "label": jnp.array([0, 1, 1])}
    assert float(losses.reduce(loss, w)) == pytest.approx(np.log(2))
    assert (
        float(probes.l2_penalty({"out": {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(1)}})) == 1.0
    )


@pytest.mark.parametrize(
    "config, message",
    [
        ({"name": "svm"}, "probe.name: unknown probe 'svm'"),
        ({"l2": -1.0}, "probe.l2 must be >= 0"),
        ({"hidden": (0,)}, "probe.hidden must be positive"),
        ({"hiden": (4,)}, "unknown probe config field 'probe.hiden'"),
        ({"loss": {"name": "nope"}}, "probe.loss.name: unknown loss 'nope'; known: bce"),
        ({"loss": {"name": "focal", "options": {"gama": 1.0}}}, "loss 'focal' has no option"),
        ({"loss": {"nme": "focal"}}, "unknown field 'probe.loss.nme'"),
    ],
)
def test_bad_probe_config(config, message):
    with pytest.raises(ValueError) as err:
        probes.resolve_probe_config(config)
    assert message in str(err.value)


def test_fit_probe_input_errors(tmp_path):
    x = np.zeros((10, 3), np.float32)
    with pytest.raises(ValueError, match="columns 'features' and 'label'"):
        probes.fit_probe({}, train_config(2, 2, 1e-3), {"features": x}, workdir=str(tmp_path))
    with pytest.raises(ValueError, match="both classes"):
        probes.fit_probe(
            {}, train_config(2, 2, 1e-3), {"features": x, "label": np.ones(10)},
            workdir=str(tmp_path),
        )  # fmt: skip
