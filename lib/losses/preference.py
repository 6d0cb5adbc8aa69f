"""Preference losses: DPO and VPO (value-incentivised preference optimisation), per pair.

beta, label_smoothing and alpha may be traced values (a scheduled beta, a vmap over betas);
they are range-checked only when concrete. sign and value_on are static choices.
"""

from __future__ import annotations

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
      average: mean instead of sum over the response tokens (static).
      validate: check the input.
    Returns:
      [batch] sequence log-probabilities.
    """
    lp = V.checked_array(token_logprobs, "token_logprobs", 2, "[batch, length]", validate)
    m = V.as_mask(mask, lp.shape)
    if validate:
        V.check_finite(lp, "token_logprobs", m)
    total = jnp.sum(jnp.where(m, V.as_float(lp), 0), axis=-1)
    if average:
        return total / jnp.maximum(jnp.sum(m, axis=-1), 1)
    return total


def _log_ratios(
    policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, validate: bool
) -> tuple[jax.Array, jax.Array]:
    """(log pi(chosen) - log ref(chosen), same for rejected), each [batch] in one float dtype."""
    named = {
        "policy_chosen_logps": V.as_array(policy_chosen, "policy_chosen_logps"),
        "policy_rejected_logps": V.as_array(policy_rejected, "policy_rejected_logps"),
        "ref_chosen_logps": V.as_array(ref_chosen, "ref_chosen_logps"),
        "ref_rejected_logps": V.as_array(ref_rejected, "ref_rejected_logps"),
    }
    first = named["policy_chosen_logps"]
    if validate:
        V.check_rank(first, "policy_chosen_logps", 1, "[batch] sequence log-probabilities")
        V.check_not_empty(first, "policy_chosen_logps")
        for k, v in named.items():
            V.check_same_shape(first, v, "policy_chosen_logps", k)
            V.check_finite(v, k)
    dt = jnp.result_type(*[V.as_float(v).dtype for v in named.values()])
    pc, pr, rc, rr = (jnp.asarray(v, dtype=dt) for v in named.values())
    return pc - rc, pr - rr


def _dpo(chosen: jax.Array, rejected: jax.Array, beta: Any, smoothing: Any) -> jax.Array:
    h = chosen - rejected
    return -(1 - smoothing) * jax.nn.log_sigmoid(beta * h) - smoothing * jax.nn.log_sigmoid(
        -beta * h
    )


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
      beta: [] inverse temperature of the implicit reward (> 0; may be traced).
      label_smoothing: [] e in [0, 0.5) (may be traced).
      validate: check the input.
    Returns:
      [batch] loss.
    """
    b = V.coefficient(beta, "beta", 0.0, lo_open=True)
    e = V.coefficient(label_smoothing, "label_smoothing", 0.0, 0.5, hi_open=True)
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, validate
    )
    return _dpo(c, r, *V.as_dtype(b, e, dtype=c.dtype))


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
      beta: [] DPO inverse temperature (> 0; may be traced).
      alpha: [] regulariser weight (>= 0; may be traced).
      sign: +1 (optimistic) or -1 (pessimistic); static.
      value_on: responses whose value enters the regulariser; static.
      validate: check the input.
    Returns:
      [batch] loss.
    """
    a = V.coefficient(alpha, "alpha", 0.0)
    b = V.coefficient(beta, "beta", 0.0, lo_open=True)
    if sign not in (1, -1) or isinstance(sign, bool):
        raise ValueError(f"sign: expected +1 (optimism) or -1 (pessimism), got {sign!r}")
    V.check_choice(value_on, "value_on", VALUE_ON)
    c, r = _log_ratios(
        policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, validate
    )
    a, b = V.as_dtype(a, b, dtype=c.dtype)
    v_c, v_r = b * c, b * r
    value = {"both": (v_c + v_r) / 2, "chosen": v_c, "rejected": v_r}[value_on]
    return _dpo(c, r, b, 0.0) - int(sign) * a * value
