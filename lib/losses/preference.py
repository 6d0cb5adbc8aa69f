"""Preference losses: DPO and VPO (value-incentivised preference optimisation), per pair."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = ["sequence_logprob", "dpo_loss", "vpo_loss"]

VALUE_ON = ("both", "chosen", "rejected")


def sequence_logprob(
    *, token_logprobs: Any, mask: Any, average: bool = False, validate: bool = True
) -> jax.Array:
    """Log-probability of each response: the sum (or mean) of its token log-probs.

    Args:
      token_logprobs: [batch, length] log pi(token).
      mask: [batch, length] True on response tokens.
      average: mean instead of sum over the response tokens.
      validate: check the input.
    Returns:
      [batch] sequence log-probabilities.
    """
    lp = V.as_array(token_logprobs, "token_logprobs")
    if validate:
        V.check_rank(lp, "token_logprobs", 2, "[batch, length]")
        V.check_not_empty(lp, "token_logprobs")
    m = V.as_mask(mask, lp.shape)
    if validate:
        V.check_finite(lp, "token_logprobs", m)
    return _seq(V.as_float(lp), m, bool(average))


@functools.partial(jax.jit, static_argnames=("average",))
def _seq(lp, m, average: bool):
    total = jnp.sum(jnp.where(m, lp, 0), axis=-1)
    if average:
        return total / jnp.maximum(jnp.sum(m, axis=-1), 1)
    return total


def _pairs(arrays: dict[str, Any], validate: bool) -> dict[str, jax.Array]:
    out = {k: V.as_array(v, k) for k, v in arrays.items()}
    first_name, first = next(iter(out.items()))
    if validate:
        V.check_rank(first, first_name, 1, "[batch] sequence log-probabilities")
        V.check_not_empty(first, first_name)
        for k, v in out.items():
            V.check_same_shape(first, v, first_name, k)
            V.check_finite(v, k)
    dt = jnp.result_type(*[V.as_float(v).dtype for v in out.values()])
    return {k: v.astype(dt) for k, v in out.items()}


def dpo_loss(
    *,
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    validate: bool = True,
) -> jax.Array:
    """DPO loss -log sigmoid(beta [(pi_c - ref_c) - (pi_r - ref_r)]); lower = better.

    With label_smoothing e (conservative DPO):
    -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h).

    Args:
      policy_chosen_logps, policy_rejected_logps: [batch] sequence log-probs under the policy.
      ref_chosen_logps, ref_rejected_logps: [batch] under the reference policy.
      beta: inverse temperature of the implicit reward (> 0).
      label_smoothing: e in [0, 0.5).
      validate: check the input.
    Returns:
      [batch] loss.
    """
    b = V.check_float_option(beta, "beta", 0.0, lo_open=True)
    e = V.check_float_option(label_smoothing, "label_smoothing", 0.0, 0.5, hi_open=True)
    x = _pairs(
        {
            "policy_chosen_logps": policy_chosen_logps,
            "policy_rejected_logps": policy_rejected_logps,
            "ref_chosen_logps": ref_chosen_logps,
            "ref_rejected_logps": ref_rejected_logps,
        },
        validate,
    )
    return _dpo(x, b, e)


@functools.partial(jax.jit, static_argnames=("b", "e"))
def _dpo(x, b: float, e: float):
    h = (x["policy_chosen_logps"] - x["ref_chosen_logps"]) - (
        x["policy_rejected_logps"] - x["ref_rejected_logps"]
    )
    return -(1 - e) * jax.nn.log_sigmoid(b * h) - e * jax.nn.log_sigmoid(-b * h)


def vpo_loss(
    *,
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    beta: float = 0.1,
    alpha: float = 0.1,
    sign: int = -1,
    value_on: str = "both",
    validate: bool = True,
) -> jax.Array:
    """VPO loss: DPO minus sign * alpha * V, with the implicit value V = beta log(pi / pi_ref).

    sign = +1 is optimism (online RLHF: push the value of the policy's responses up), sign = -1
    pessimism (offline RLHF: push it down). V is averaged over the responses named by
    `value_on` ("both", "chosen" or "rejected"); which responses carry the regulariser is a
    configuration choice, not fixed by the method's description. Lower = better.

    Args:
      policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps: [batch].
      beta: DPO inverse temperature (> 0).
      alpha: regulariser weight (>= 0).
      sign: +1 (optimistic) or -1 (pessimistic).
      value_on: responses whose value enters the regulariser.
      validate: check the input.
    Returns:
      [batch] loss.
    """
    a = V.check_float_option(alpha, "alpha", 0.0)
    b = V.check_float_option(beta, "beta", 0.0, lo_open=True)
    if sign not in (1, -1) or isinstance(sign, bool):
        raise ValueError(f"sign: expected +1 (optimism) or -1 (pessimism), got {sign!r}")
    V.check_choice(value_on, "value_on", VALUE_ON)
    base = dpo_loss(
        policy_chosen_logps=policy_chosen_logps,
        policy_rejected_logps=policy_rejected_logps,
        ref_chosen_logps=ref_chosen_logps,
        ref_rejected_logps=ref_rejected_logps,
        beta=b,
        validate=validate,
    )
    x = _pairs(
        {
            "policy_chosen_logps": policy_chosen_logps,
            "policy_rejected_logps": policy_rejected_logps,
            "ref_chosen_logps": ref_chosen_logps,
            "ref_rejected_logps": ref_rejected_logps,
        },
        False,
    )
    return _vpo(base, x, b, a, int(sign), value_on)


@functools.partial(jax.jit, static_argnames=("b", "a", "sign", "value_on"))
def _vpo(base, x, b: float, a: float, sign: int, value_on: str):
    v_c = b * (x["policy_chosen_logps"] - x["ref_chosen_logps"])
    v_r = b * (x["policy_rejected_logps"] - x["ref_rejected_logps"])
    value = {"both": (v_c + v_r) / 2, "chosen": v_c, "rejected": v_r}[value_on]
    return base - sign * a * value
