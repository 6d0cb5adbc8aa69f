"""Loss / reward / advantage coefficients are traced values: one compile for every value, vmap
over a vector of values, gradients wrt a coefficient, and the same ValueError as before for a bad
concrete value."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses as L
from introspect.losses import policy, preference, rewards, scoring, tokenized


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


_RNG = np.random.default_rng(0)
_LOGITS = _RNG.normal(size=(6, 5))
_LABELS = _RNG.integers(0, 5, 6)
# Binary logits with one certain prediction (800 -> p = 1 exactly): the focal modulator's p = 1
# path must stay finite under a traced gamma.
_BIN_LOGITS = np.array([0.3, -1.2, 2.0, 800.0, -0.4, 1.1])
_BIN_LABELS = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
_PAIRS = dict(
    policy_chosen_logps=np.array([-1.0, -4.0, -2.5]),
    policy_rejected_logps=np.array([-3.0, -2.0, -2.0]),
    ref_chosen_logps=np.array([-2.0, -3.5, -2.0]),
    ref_rejected_logps=np.array([-2.0, -2.5, -1.0]),
)
_LP = np.log(np.array([[0.5, 0.9, 0.7, 0.3], [0.2, 0.6, 0.4, 0.8]]))
_OLD = np.log(np.array([[0.5, 0.5, 0.7, 0.6], [0.3, 0.6, 0.25, 0.5]]))
_MASK = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
_CLIPPED = dict(
    logprobs=_LP,
    old_logprobs=_OLD,
    advantages=np.array([1.0, -0.5]),
    mask=_MASK,
    ref_logprobs=np.log(np.full((2, 4), 0.5)),
)
_UCAS = dict(
    rewards=np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]),
    certainty=np.array([[3.0, 1.0, 2.0], [2.5, 0.5, 1.0]]),
    sampled_logits=_RNG.normal(size=(2, 3, 4)),
    mask=np.ones((2, 3, 4), bool),
)
_EMPG = dict(
    advantages=np.array([2.0, -1.0]),
    step_entropy=np.array([[0.0, 1.0, 2.0, 5.0], [0.5, 0.2, 3.0, 1.0]]),
    step_mask=np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool),
)
_STEER = dict(
    logprobs=_LP,
    old_logprobs=_OLD,
    entropy=np.array([[1.0, 0.2, 0.5, 1.0], [0.1, 2.0, 0.7, 0.3]]),
    advantages=np.array([1.0, -2.0]),
    mask=_MASK,
)
_RISKPO = dict(
    rewards=np.array([[[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 3.0, 2.0]]])
)
_PPO_C = dict(
    rewards=np.array([2.0, -1.0, 0.3]), confidence=np.array([0.9, 0.8, 0.2]), reward_avg=0.1
)
_RLCR = dict(correct=np.array([1, 0, 1]), confidence=np.array([0.8, 0.3, 0.5]), format_ok=[1, 1, 0])
_CLICK = dict(
    point=np.array([[40.0, 20.0], [30.0, 15.0], [70.0, 15.0], [10.0, 25.0]]),
    box=np.array([[0.0, 0.0, 60.0, 30.0]] * 4),
)


@dataclasses.dataclass(frozen=True)
class Case:
    """One coefficient of one function: two valid values and whether d/dcoef is meaningful."""

    fn: Callable[..., Any]
    data: dict
    name: str
    values: tuple[float, float]
    grad: bool = True

    def kwargs(self, c: Any) -> dict:
        if self.name == "clip_range[0]":
            return {**self.data, "clip_range": (c, 1.2)}
        return {**self.data, self.name: c}

    def __call__(self, c: Any) -> Any:
        return self.fn(**self.kwargs(c))

    @property
    def id(self) -> str:
        return f"{self.fn.__name__}-{self.name}"


CASES = [
    Case(
        L.log_loss,
        dict(probs=np.array([0.0, 1e-3, 0.5, 0.999, 1.0]), labels=np.array([1.0, 1, 0, 0, 0])),
        "eps",
        (1e-2, 1e-4),
    ),
    Case(
        L.label_smoothing_cross_entropy,
        dict(logits=_LOGITS, labels=_LABELS),
        "smoothing",
        (0.1, 0.3),
    ),
    Case(L.focal_loss, dict(logits=_LOGITS, labels=_LABELS), "gamma", (0.0, 2.0)),
    Case(L.focal_loss, dict(logits=_BIN_LOGITS, labels=_BIN_LABELS), "gamma", (0.0, 1.5)),
    Case(L.focal_loss, dict(logits=_BIN_LOGITS, labels=_BIN_LABELS), "alpha", (0.25, 0.75)),
    Case(L.focal_loss, dict(logits=_LOGITS, labels=_LABELS), "alpha", (0.25, 0.75)),
    Case(L.dpo_loss, _PAIRS, "beta", (0.1, 0.5)),
    Case(L.dpo_loss, _PAIRS, "label_smoothing", (0.0, 0.2)),
    Case(L.vpo_loss, _PAIRS, "beta", (0.1, 0.5)),
    Case(L.vpo_loss, {**_PAIRS, "value_on": "chosen"}, "alpha", (0.1, 0.4)),
    Case(L.grpo_advantages, dict(rewards=_UCAS["rewards"]), "eps", (1e-6, 0.5)),
    Case(L.clipped_policy_loss, _CLIPPED, "clip_eps", (0.1, 0.3)),
    Case(L.clipped_policy_loss, _CLIPPED, "clip_eps_high", (0.15, 0.4)),
    Case(L.clipped_policy_loss, _CLIPPED, "kl_coef", (0.0, 0.1)),
    Case(L.ucas_advantages, _UCAS, "pos_scale", (0.25, 0.5)),
    Case(L.ucas_advantages, _UCAS, "neg_scale", (0.35, 0.7)),
    Case(L.ucas_advantages, _UCAS, "token_coef", (0.05, 0.5)),
    Case(L.ucas_advantages, _UCAS, "eps", (1e-6, 0.1)),
    Case(L.empg_advantages, _EMPG, "k", (1.0, 2.0)),
    Case(L.empg_advantages, _EMPG, "k_future", (1.0, 0.5)),
    Case(L.empg_advantages, _EMPG, "zeta", (0.1, 0.3)),
    Case(L.empg_advantages, _EMPG, "eps", (1e-8, 0.1)),
    # STEER weights carry no gradient by design (they multiply the loss as constants).
    Case(L.steer_weights, _STEER, "w_min", (0.8, 0.6), grad=False),
    Case(L.steer_weights, _STEER, "w_max", (1.2, 1.4), grad=False),
    Case(L.steer_weights, _STEER, "clip_range[0]", (0.8, 0.9), grad=False),
    Case(L.riskpo_advantages, _RISKPO, "alpha", (0.2, 0.3)),
    Case(L.riskpo_advantages, _RISKPO, "beta", (0.8, 0.7)),
    Case(L.riskpo_advantages, _RISKPO, "weight", (1.5, 0.5)),
    Case(L.riskpo_advantages, _RISKPO, "eps", (1e-6, 0.1)),
    Case(L.ppo_c_rewards, _PPO_C, "momentum", (0.1, 0.5)),
    Case(L.ppo_c_rewards, {**_PPO_C, "mode": "difference"}, "weight", (0.5, 1.0)),
    Case(L.rlcr_reward, _RLCR, "format_penalty", (0.0, 0.5)),
    Case(L.hyperclick_spatial_confidence, _CLICK, "sigma_scale", (1 / 6, 1 / 3)),
    Case(
        L.hyperclick_reward, {**_CLICK, "confidence": np.full(4, 0.5)}, "sigma_scale", (1 / 6, 0.25)
    ),
    Case(
        L.hyperclick_reward,
        {**_CLICK, "confidence": np.full(4, 0.5)},
        "correctness_weight",
        (1.0, 2.0),
    ),
    Case(
        L.hyperclick_reward,
        {**_CLICK, "confidence": np.full(4, 0.5)},
        "calibration_weight",
        (1.0, 0.5),
    ),
]


def _allclose(got: Any, want: Any, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol),
        got,
        want,
    )


def _differ(a: Any, b: Any) -> bool:
    return any(
        not np.allclose(np.asarray(x), np.asarray(y), rtol=1e-9, atol=1e-12)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@contextlib.contextmanager
def _count_compiles():
    """Collects the XLA backend compilations that happen inside the block."""
    events: list[str] = []

    def listener(event: str, duration: float, **kwargs: Any) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _scalar(out: Any) -> jax.Array:
    """The sum of the first output (the loss of (loss, metrics); the rewards of (rewards, avg))."""
    return jnp.sum(jax.tree.leaves(out)[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_traced_coefficient_compiles_once(case):
    traces = []

    def f(c):
        traces.append(c)
        return case(c)

    jitted = jax.jit(f)
    eager = [case(v) for v in case.values]
    first, second = (jnp.asarray(v) for v in case.values)
    _allclose(jitted(first), eager[0])
    with _count_compiles() as compiles:
        out = jax.block_until_ready(jitted(second))
    _allclose(out, eager[1])
    assert len(traces) == 1, "a new coefficient value retraced"
    assert compiles == [], "a new coefficient value compiled again"
    assert isinstance(traces[0], jax.core.Tracer)
    # The coefficient really enters the result (not a constant baked in at the first trace).
    assert _differ(*eager), "the two test values give the same output; pick values that matter"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vmap_over_coefficient_equals_loop(case):
    values = jnp.asarray([case.values[0], case.values[1], (case.values[0] + case.values[1]) / 2])
    batched = jax.vmap(case)(values)
    looped = [case(float(v)) for v in values]
    _allclose(batched, jax.tree.map(lambda *xs: jnp.stack(xs), *looped))


@pytest.mark.parametrize("case", [c for c in CASES if c.grad], ids=lambda c: c.id)
def test_gradient_wrt_coefficient(case):
    f = jax.jit(lambda c: _scalar(case(c)))
    g = jax.grad(f)
    for v in case.values:
        assert np.isfinite(float(g(jnp.asarray(v))))
    # Central difference at the second value (traced, so no range check trims the stencil).
    v = case.values[1]
    h = 1e-6 * max(abs(v), 1e-3)  # relative step: log_loss's eps is 1e-4
    fd = (float(f(jnp.asarray(v + h))) - float(f(jnp.asarray(v - h)))) / (2 * h)
    assert float(g(jnp.asarray(v))) == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_focal_gamma_gradient_matches_formula():
    # d/dgamma of -(1 - p)^gamma log p is -(1 - p)^gamma log(1 - p) log p, finite at gamma = 0.
    z, y = _LOGITS, _LABELS
    logp = np.take_along_axis(np.asarray(jax.nn.log_softmax(z)), y[:, None], 1)[:, 0]
    for gamma in (0.0, 0.5, 2.0):
        got = jax.grad(lambda g: jnp.sum(L.focal_loss(logits=z, labels=y, gamma=g)))(gamma)
        want = np.sum(-((1 - np.exp(logp)) ** gamma) * np.log1p(-np.exp(logp)) * logp)
        assert float(got) == pytest.approx(want, rel=1e-10)


def test_scheduled_beta_in_a_jitted_step():
    """A step-dependent beta (a schedule inside the jitted step) compiles once for all steps."""
    traces = []

    @jax.jit
    def step(step_count, chosen):
        traces.append(step_count)
        beta = 0.1 + 0.4 * jnp.minimum(step_count / 10, 1.0)
        kw = {**_PAIRS, "policy_chosen_logps": chosen}
        return jnp.mean(L.dpo_loss(beta=beta, **kw))

    got = [float(step(jnp.asarray(s), _PAIRS["policy_chosen_logps"])) for s in (0, 5, 20)]
    want = [float(jnp.mean(L.dpo_loss(beta=b, **_PAIRS))) for b in (0.1, 0.1 + 0.4 * 0.5, 0.5)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(traces) == 1


# ----------------------------------------------------------------------------- bad values

BAD = [
    (
        L.log_loss,
        dict(probs=[0.5], labels=[1.0]),
        {"eps": 0.5},
        r"eps: expected a finite number in \[0, 0.5\), got 0.5",
    ),
    (
        L.log_loss,
        dict(probs=[0.5], labels=[1.0]),
        {"eps": -1e-3},
        r"eps: expected a finite number in \[0, 0.5\)",
    ),
    (
        L.label_smoothing_cross_entropy,
        dict(logits=np.zeros((2, 3)), labels=[0, 1]),
        {"smoothing": 2},
        r"smoothing: expected a finite number in \[0, 1\], got 2.0",
    ),
    (
        L.focal_loss,
        dict(logits=np.zeros(2), labels=np.zeros(2)),
        {"gamma": -1},
        r"gamma: expected a finite number in \[0, inf\], got -1.0",
    ),
    (
        L.focal_loss,
        dict(logits=np.zeros(2), labels=np.zeros(2)),
        {"alpha": 1.5},
        r"alpha: expected a finite number in \[0, 1\], got 1.5",
    ),
    (
        L.focal_loss,
        dict(logits=np.zeros(2), labels=np.zeros(2)),
        {"gamma": math.nan},
        r"gamma: expected a finite number in \[0, inf\], got nan",
    ),
    (L.dpo_loss, _PAIRS, {"beta": 0.0}, r"beta: expected a finite number in \(0, inf\], got 0.0"),
    (
        L.dpo_loss,
        _PAIRS,
        {"label_smoothing": 0.5},
        r"label_smoothing: expected a finite number in \[0, 0.5\)",
    ),
    (
        L.vpo_loss,
        _PAIRS,
        {"alpha": -0.1},
        r"alpha: expected a finite number in \[0, inf\], got -0.1",
    ),
    (
        L.grpo_advantages,
        dict(rewards=np.ones((1, 2))),
        {"eps": -1},
        r"eps: expected a finite number in \[0, inf\]",
    ),
    (
        L.clipped_policy_loss,
        _CLIPPED,
        {"clip_eps": 0},
        r"clip_eps: expected a finite number in \(0, inf\]",
    ),
    (
        L.clipped_policy_loss,
        _CLIPPED,
        {"clip_eps_high": -0.2},
        r"clip_eps_high: expected a finite number in \(0, inf\]",
    ),
    (
        L.clipped_policy_loss,
        _CLIPPED,
        {"kl_coef": -0.1},
        r"kl_coef: expected a finite number in \[0, inf\]",
    ),
    (
        L.ucas_advantages,
        _UCAS,
        {"token_coef": -1},
        r"token_coef: expected a finite number in \[0, inf\]",
    ),
    (L.empg_advantages, _EMPG, {"k": -1}, r"k: expected a finite number in \[0, inf\]"),
    (L.empg_advantages, _EMPG, {"zeta": math.inf}, r"zeta: expected a finite number"),
    (
        L.steer_weights,
        _STEER,
        {"w_max": 0.5},
        r"w_max: expected a finite number in \[0.8, inf\], got 0.5",
    ),
    (
        L.steer_weights,
        _STEER,
        {"clip_range": (0.8, 0.7)},
        r"clip_range\[1\]: expected a finite number in \[0.8, inf\]",
    ),
    (
        L.riskpo_advantages,
        _RISKPO,
        {"alpha": 0.5, "beta": 0.4},
        r"beta: expected a finite number in \(0.5, 1\], got 0.4",
    ),
    (L.riskpo_advantages, _RISKPO, {"alpha": 1.0}, r"alpha: expected a finite number in \(0, 1\)"),
    (L.ppo_c_rewards, _PPO_C, {"momentum": 1.5}, r"momentum: expected a finite number in \[0, 1\]"),
    (
        L.rlcr_reward,
        _RLCR,
        {"format_penalty": -1},
        r"format_penalty: expected a finite number in \[0, inf\]",
    ),
    (
        L.hyperclick_spatial_confidence,
        _CLICK,
        {"sigma_scale": 0},
        r"sigma_scale: expected a finite number in \(0, inf\]",
    ),
    (
        L.hyperclick_reward,
        {**_CLICK, "confidence": np.full(4, 0.5)},
        {"calibration_weight": -1},
        r"calibration_weight: expected a finite number in \[0, inf\]",
    ),
]


@pytest.mark.parametrize("fn, data, bad, match", BAD, ids=lambda x: getattr(x, "__name__", None))
@pytest.mark.parametrize("as_array", [False, True], ids=["python", "concrete_array"])
def test_bad_concrete_coefficient_raises(fn, data, bad, match, as_array):
    if as_array:  # a concrete jax array is checked like the Python number
        bad = {
            k: tuple(jnp.asarray(x) for x in v) if isinstance(v, tuple) else jnp.asarray(v)
            for k, v in bad.items()
        }
    with pytest.raises(ValueError, match=match):
        fn(**data, **bad)


def test_coefficient_must_be_a_scalar_number():
    with pytest.raises(ValueError, match=r"beta: has shape \(2,\); expected a scalar .*vmap"):
        L.dpo_loss(beta=np.array([0.1, 0.2]), **_PAIRS)
    with pytest.raises(ValueError, match=r"beta: has shape \(2,\); expected a scalar"):
        jax.jit(lambda b: L.dpo_loss(beta=b, **_PAIRS))(jnp.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="gamma: expected a number, got True"):
        L.focal_loss(logits=_LOGITS, labels=_LABELS, gamma=True)
    with pytest.raises(ValueError, match="gamma: dtype bool; expected a real number"):
        jax.jit(lambda g: L.focal_loss(logits=_LOGITS, labels=_LABELS, gamma=g))(jnp.array(True))
    with pytest.raises(ValueError, match="beta: expected a number, got 'big'"):
        L.dpo_loss(beta="big", **_PAIRS)


def test_traced_kl_coef_needs_reference():
    kw = {k: v for k, v in _CLIPPED.items() if k != "ref_logprobs"}
    with pytest.raises(ValueError, match="ref_logprobs: required when kl_coef > 0 or traced"):
        jax.jit(lambda c: L.clipped_policy_loss(kl_coef=c, **kw))(jnp.asarray(0.0))
    # A concrete zero needs no reference, as before.
    loss, _ = L.clipped_policy_loss(kl_coef=0.0, **kw)
    assert np.isfinite(float(loss))


def test_float32_losses_stay_float32_under_a_float64_coefficient():
    z = jnp.asarray(_LOGITS, jnp.float32)
    out = jax.jit(lambda g: L.focal_loss(logits=z, labels=_LABELS, gamma=g))(jnp.float64(2.0))
    assert out.dtype == jnp.float32
    want = L.focal_loss(logits=z, labels=_LABELS, gamma=2.0)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_no_private_jitted_twins():
    """Public functions are plain jnp functions: nothing in these modules is pre-jitted."""
    for module in (scoring, policy, preference, rewards, tokenized):
        jitted = [
            name for name, obj in vars(module).items() if callable(obj) and hasattr(obj, "lower")
        ]
        assert not jitted, f"{module.__name__}: jitted functions {jitted}"
