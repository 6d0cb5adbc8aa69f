"""The loss contract and the registries: every registered loss maps (outputs, batch) to [batch]
values that equal the pure function it adapts; `reduce` and `objective` are what trainers use."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses as L
from introspect.registry import Registry, UnknownNameError, import_modules


def _binary(rng, n=16):
    return {"logits": jnp.asarray(rng.normal(size=n), jnp.float32)}, {
        "label": jnp.asarray(rng.integers(0, 2, n), jnp.float32)
    }


def test_registry_class_lists_names_and_refuses_duplicates():
    reg = Registry("widget", defaults={"prob": False})
    reg.register("b", 2, prob=True)

    @reg.register("a")
    def a():
        return 1

    assert reg.get("a") is a and reg["b"] == 2 and "a" in reg and len(reg) == 2
    assert reg.names() == ("a", "b") and reg.names(prob=True) == ("b",)
    assert reg.meta("a", "prob") is False and reg.info("b").meta["prob"] is True
    with pytest.raises(ValueError, match=r"unknown widget 'c'; known: a, b"):
        reg.get("c")
    with pytest.raises(KeyError):  # also a KeyError
        reg.get("c")
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", 3)
    reg.register("a", 3, overwrite=True)
    assert reg.get("a") == 3
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", 1)
    with pytest.raises(ValueError, match=r"config.x.name: unknown widget 'zz'"):
        reg.check("zz", field="config.x.name")
    reg.unregister("a")
    assert reg.names() == ("b",)


def test_every_registered_loss_follows_the_contract():
    for name in L.LOSSES:
        params = inspect.signature(L.LOSSES[name]).parameters
        assert params["outputs"].kind == params["outputs"].KEYWORD_ONLY, name
        assert params["batch"].kind == params["batch"].KEYWORD_ONLY, name
        assert all(p.kind == p.KEYWORD_ONLY for p in params.values()), name
    for fn in [*dict(L.REWARDS.items()).values(), *dict(L.ADVANTAGES.items()).values()]:
        assert all(p.kind == p.KEYWORD_ONLY for p in inspect.signature(fn).parameters.values())
    assert L.get_reward("rlcr") is L.rlcr_reward
    assert L.get_advantage("ucas") is L.ucas_advantages
    with pytest.raises(UnknownNameError, match=r"unknown loss 'nope'; known: bce, brier"):
        L.get_loss("nope")


@pytest.mark.parametrize("seed", range(3))
def test_classification_adapters_equal_the_pure_functions(seed):
    rng = np.random.default_rng(seed)
    outputs, batch = _binary(rng)
    z, y = outputs["logits"], batch["label"]
    p = jax.nn.sigmoid(z)
    expect = {
        "bce": L.cross_entropy(logits=z, labels=y),
        "cross_entropy": L.cross_entropy(logits=z, labels=y),
        "focal": L.focal_loss(logits=z, labels=y, gamma=2.0),
        "brier": L.brier_loss(probs=p, labels=y),
        "log": L.log_loss(probs=p, labels=y),
        "spherical": L.spherical_loss(probs=p, labels=y),
    }
    for name, want in expect.items():
        got = L.get_loss(name)(outputs=outputs, batch=batch)
        assert got.shape == (16,), name
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    # multiclass logits [batch, K] with class-index labels
    logits = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, 8))
    got = L.get_loss("label_smoothing_ce")(
        outputs={"logits": logits}, batch={"label": labels}, smoothing=0.2
    )
    want = L.label_smoothing_cross_entropy(logits=logits, labels=labels, smoothing=0.2)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = L.get_loss("brier")(outputs={"logits": logits}, batch={"label": labels})
    np.testing.assert_allclose(
        got, L.brier_loss(probs=jax.nn.softmax(logits), labels=labels), rtol=1e-6
    )


def test_tokenized_brier_and_preference_adapters():
    rng = np.random.default_rng(0)
    conf = jnp.asarray(rng.normal(size=(6, len(L.confidence_values(mode="coarse")))), jnp.float32)
    correct = jnp.asarray(rng.integers(0, 2, 6), jnp.float32)
    values = L.confidence_values(mode="coarse")
    got = L.get_loss("tokenized_brier")(
        outputs={"conf_logits": conf}, batch={"correct": correct}, values=values
    )
    np.testing.assert_allclose(
        got, L.tokenized_brier(conf_logits=conf, correct=correct, values=values), rtol=1e-6
    )
    keys = (
        "policy_chosen_logps",
        "policy_rejected_logps",
        "ref_chosen_logps",
        "ref_rejected_logps",
    )
    arrays = {k: jnp.asarray(rng.normal(size=5) - 3, jnp.float32) for k in keys}
    outputs = {k: arrays[k] for k in keys[:2]}
    batch = {k: arrays[k] for k in keys[2:]}  # reference log-probs precomputed in the batch
    np.testing.assert_allclose(
        L.get_loss("dpo")(outputs=outputs, batch=batch, beta=0.3),
        L.dpo_loss(**arrays, beta=0.3),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        L.get_loss("vpo")(outputs=outputs, batch=batch, beta=0.3),
        L.vpo_loss(**arrays, beta=0.3),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="needs 'ref_chosen_logps' in the model outputs or"):
        L.get_loss("dpo")(outputs=outputs, batch={})


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "fixed_length"])
@pytest.mark.parametrize("seed", range(3))
def test_clipped_policy_rows_reduce_to_the_batch_loss(aggregation, seed):
    rng = np.random.default_rng(seed)
    b, t = 4, 7
    lp = jnp.asarray(-rng.random((b, t)) * 2, jnp.float32)
    old = lp + jnp.asarray(rng.normal(size=(b, t)) * 0.3, jnp.float32)
    ref = lp + jnp.asarray(rng.normal(size=(b, t)) * 0.1, jnp.float32)
    adv = jnp.asarray(rng.normal(size=(b, t)), jnp.float32)
    mask = np.ones((b, t), bool)
    for i in range(b):
        mask[i, rng.integers(1, t + 1) :] = False
    kw = dict(clip_eps=0.2, kl_coef=0.05, aggregation=aggregation)
    want, _ = L.clipped_policy_loss(
        logprobs=lp, old_logprobs=old, advantages=adv, mask=mask, ref_logprobs=ref, **kw
    )
    batch = {"old_logprobs": old, "advantages": adv, "token_mask": mask, "ref_logprobs": ref}
    rows = L.get_loss("clipped_policy")(outputs={"logprobs": lp}, batch=batch, **kw)
    assert rows.shape == (b,)
    np.testing.assert_allclose(L.reduce(rows, batch), want, rtol=1e-5, atol=1e-6)


def test_reduce_masks_and_weights():
    v = jnp.array([1.0, 2.0, 3.0, 4.0])
    assert float(L.reduce(v, {})) == pytest.approx(2.5)
    assert float(L.reduce(v, {"mask": np.array([1, 1, 0, 0], bool)})) == pytest.approx(1.5)
    w = np.array([2.0, 0.0, 1.0, 1.0])
    assert float(L.reduce(v, {"weight": w})) == pytest.approx((2 + 3 + 4) / 4)
    assert float(L.reduce(v, {"mask": np.zeros(4, bool)})) == 0.0
    with pytest.raises(ValueError, match=r"per-example values \[batch\]; got shape \(2, 2\)"):
        L.reduce(v.reshape(2, 2), {})


def test_options_are_checked_and_coefficients_traced():
    fn, opts = L.resolve_options("focal", {"gamma": 1.5})
    assert fn is L.get_loss("focal") and isinstance(opts["gamma"], jax.Array)
    with pytest.raises(ValueError, match=r"loss.options.gama: loss 'focal' has no option 'gama'"):
        L.resolve_options("focal", {"gama": 1.5})
    with pytest.raises(ValueError, match=r"loss.name: unknown loss 'focl'"):
        L.resolve_options("focl", {})

    # One compiled step serves every gamma: the option is an argument, not a constant.
    traces = []

    def step(gamma, outputs, batch):
        traces.append(1)
        return L.reduce(L.get_loss("focal")(outputs=outputs, batch=batch, gamma=gamma), batch)

    outputs, batch = _binary(np.random.default_rng(1))
    jstep = jax.jit(step)
    a = jstep(jnp.float32(0.5), outputs, batch)
    b = jstep(jnp.float32(3.0), outputs, batch)
    assert len(traces) == 1 and float(a) != float(b)


def test_objective_builds_the_trainers_loss_fn():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
    y = (x[:, 0] > 0).astype(jnp.float32)
    batch = {"x": x, "label": y, "weight": jnp.where(y > 0, 2.0, 1.0)}
    forward = lambda w, batch, rng: {"logits": batch["x"] @ w}
    loss_fn = L.objective(forward, {"name": "bce", "options": {}}, penalty=lambda w: 0.5 * w @ w)
    w = jnp.asarray([0.3, -0.2, 0.1])
    total, aux = loss_fn(w, batch, None)
    z = x @ w
    data = jnp.mean(batch["weight"] * (jnp.logaddexp(0, z) - y * z))
    np.testing.assert_allclose(aux["bce"], data, rtol=1e-6)
    np.testing.assert_allclose(total, data + 0.5 * w @ w, rtol=1e-6)
    g = jax.grad(lambda w: loss_fn(w, batch, None)[0])(w)
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_user_loss_registers_by_decorator_and_is_refused_twice(tmp_path, monkeypatch):
    (tmp_path / "my_user_losses.py").write_text(
        "from introspect import losses\n"
        "@losses.register('user_quartic_test')\n"
        "def quartic(*, outputs, batch, scale=1.0):\n"
        "    return scale * (outputs['logits'] - batch['label']) ** 4\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import_modules("my_user_losses")
        fn, opts = L.resolve_options("user_quartic_test", {"scale": 2.0})
        v = fn(outputs={"logits": jnp.array([1.0, 0.0])}, batch={"label": jnp.array([0.0, 0.0])},
               **opts)  # fmt: skip
        np.testing.assert_allclose(v, [2.0, 0.0])
        with pytest.raises(ValueError, match="'user_quartic_test' is already registered"):
            L.register("user_quartic_test", lambda *, outputs, batch: outputs["logits"])
        with pytest.raises(ValueError, match="must take keyword arguments `outputs` and `batch`"):
            L.register("bad_signature_test", lambda probs, labels: probs)
        with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
            import_modules("no_such_module_xyz")
    finally:
        L.LOSSES.unregister("user_quartic_test")
