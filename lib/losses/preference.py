"""Preference losses: DPO and VPO (value-incentivised preference optimisation), per pair; the
reward-model losses Bradley-Terry and PPO-M's calibrated reward modelling.

beta, label_smoothing and alpha may be traced values (a scheduled beta, a vmap over betas);
they are range-checked only when concrete. sign and value_on are static choices.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = ["sequence_logprob", "dpo_loss", "vpo_loss", "reward_bt_loss", "ppo_m_loss"]

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


# ----------------------------------------------------------------------------- reward models


def _rewards(named: dict[str, Any], validate: bool) -> list[jax.Array]:
    arrays = {k: V.as_array(v, k) for k, v in named.items()}
    first_name, first = next(iter(arrays.items()))
    if validate:
        V.check_rank(first, first_name, 1, "[batch] scalar rewards")
        V.check_not_empty(first, first_name)
        for k, v in arrays.items():
            V.check_same_shape(first, v, first_name, k)
            V.check_finite(v, k)
    dt = jnp.result_type(*[V.as_float(v).dtype for v in arrays.values()])
    return [jnp.asarray(v, dtype=dt) for v in arrays.values()]


def reward_bt_loss(
    *, chosen_rewards: Any, rejected_rewards: Any, margin: Any = 0.0, validate: bool = True
) -> jax.Array:
    """Bradley-Terry reward-model loss -log sigmoid(r_chosen - r_rejected - margin), [batch]."""
    c, r = _rewards({"chosen_rewards": chosen_rewards, "rejected_rewards": rejected_rewards},
                    validate)  # fmt: skip
    return -jax.nn.log_sigmoid(c - r - jnp.asarray(margin, c.dtype))


def ppo_m_loss(
    *,
    chosen_high_rewards: Any,
    chosen_low_rewards: Any,
    rejected_high_rewards: Any,
    rejected_low_rewards: Any,
    validate: bool = True,
) -> jax.Array:
    """PPO-M calibrated reward modelling (Leng et al. 2024, "Taming Overconfidence in LLMs"),
    [batch]: -log sigmoid(r(chosen, high conf) - r(chosen, low conf))
    - log sigmoid(r(rejected, low conf) - r(rejected, high conf)).

    A good response should score higher when it states high confidence, a bad one when it
    states low confidence. This is the authors' default ("version 5") of
    `CalibratedRewardModelTrainer` (SeanLeng1/Reward-Calibration, OpenRLHF/openrlhf/trainer/
    crm_trainer.py); their variants that add the plain chosen-vs-rejected term are
    `ppo_m_loss + reward_bt_loss`.
    """
    ch, cl, rh, rl = _rewards(
        {"chosen_high_rewards": chosen_high_rewards, "chosen_low_rewards": chosen_low_rewards,
         "rejected_high_rewards": rejected_high_rewards,
         "rejected_low_rewards": rejected_low_rewards},
        validate,
    )  # fmt: skip
    return -jax.nn.log_sigmoid(ch - cl) - jax.nn.log_sigmoid(rl - rh)
