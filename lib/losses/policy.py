"""Policy-gradient pieces over [batch, length] token arrays with masks.

GRPO group advantages, the clipped-ratio objective with optional KL, and the advantage / weight
transforms UCAS, EMPG, STEER, RiskPO and PPO-C reward centring (formulas: METHODS.md). All are
pure functions; the trainer (a later issue) combines them. Masked entries come out as 0.
Numeric coefficients (eps, clip_eps, kl_coef, pos_scale, k, w_min, alpha, momentum, ...) may be
traced values (scheduled, vmapped, differentiated; a new value never recompiles) and are
range-checked only when concrete; modes, aggregations and integer options are static.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = [
    "grpo_advantages",
    "negative_only_advantages",
    "trust_grpo_rewards",
    "clipped_policy_loss",
    "ucas_token_certainty",
    "ucas_sequence_certainty",
    "ucas_advantages",
    "empg_advantages",
    "steer_weights",
    "riskpo_advantages",
    "riskpo_paper_scores",
    "riskpo_tracker_init",
    "riskpo_tracker_update",
    "ppo_c_rewards",
]

AGGREGATIONS = ("token_mean", "sequence_mean", "fixed_length")


def _per_row(a: jax.Array, like: jax.Array, axis: str, dtype: Any, validate: bool) -> jax.Array:
    """Advantages [batch] or [batch, axis] (the shape of `like`) as [batch, 1|axis] of dtype."""
    if validate and a.shape not in (like.shape, like.shape[:1]):
        raise ValueError(
            f"advantages: has shape {tuple(a.shape)}; expected [batch] {like.shape[:1]} or "
            f"[batch, {axis}] {tuple(like.shape)}"
        )
    a = jnp.asarray(a, dtype=dtype)
    return a[:, None] if a.ndim == 1 else a


def _mask(mask: Any, shape, validate: bool) -> jax.Array:
    m = V.as_mask(mask, shape)
    if validate:
        V.check_any_valid(m)
    return m


def _masked_mean(x: jax.Array, m: jax.Array, axis=None, keepdims: bool = False) -> jax.Array:
    w = m.astype(x.dtype)
    return jnp.sum(x * w, axis=axis, keepdims=keepdims) / jnp.maximum(
        jnp.sum(w, axis=axis, keepdims=keepdims), 1
    )


def _masked_minmax(x: jax.Array, m: jax.Array, axis=None) -> jax.Array:
    """(x - min) / (max - min) over the masked entries (0 where max == min)."""
    big = jnp.asarray(jnp.inf, x.dtype)
    lo = jnp.min(jnp.where(m, x, big), axis=axis, keepdims=axis is not None)
    hi = jnp.max(jnp.where(m, x, -big), axis=axis, keepdims=axis is not None)
    span = hi - lo
    ok = jnp.isfinite(span) & (span > 0)
    return jnp.where(ok & m, (x - lo) / jnp.where(ok, span, 1), 0)


def _zscore_groups(x: jax.Array, m: jax.Array, eps: Any, ddof: int = 0) -> jax.Array:
    """(x - mean) / (std + eps) within each group (last axis) over the masked entries."""
    w = m.astype(x.dtype)
    n = jnp.sum(w, axis=-1, keepdims=True)
    mean = jnp.sum(x * w, axis=-1, keepdims=True) / jnp.maximum(n, 1)
    var = jnp.sum(w * (x - mean) ** 2, axis=-1, keepdims=True) / jnp.maximum(n - ddof, 1)
    denom = jnp.sqrt(var) + eps
    # A group with one distinct value carries no signal: 0, never 0 / 0.
    return jnp.where(m, (x - mean) / jnp.where(denom > 0, denom, 1), 0)


# ----------------------------------------------------------------------------- GRPO


def grpo_advantages(
    *,
    rewards: Any,
    mask: Any = None,
    eps: float = 1e-6,
    scale_by_std: bool = True,
    ddof: int = 0,
    validate: bool = True,
) -> jax.Array:
    """GRPO group-normalised advantages (r - mean) / (std + eps) within each group.

    Args:
      rewards: [groups, size] reward of each sampled response (size responses per prompt).
      mask: optional [groups, size] bool, False = padding.
      eps: [] added to the standard deviation (may be traced).
      scale_by_std: divide by the std (False = Dr. GRPO, mean-centring only); static.
      ddof: delta degrees of freedom of the std; static. 0 (default) = the population std
        of the GRPO paper's formula; 1 = the unbiased std that TRL (eps 1e-4) and verl (eps
        1e-6) use (torch.std). A group of one response gets advantage 0 either way.
      validate: check the input.
    Returns:
      [groups, size] advantages (higher = better than the group), 0 on padding.
    """
    e = V.coefficient(eps, "eps", 0.0)
    d = V.check_int_option(ddof, "ddof", 0)
    r = V.checked_array(rewards, "rewards", 2, "[groups, size]", validate)
    m = _mask(mask, r.shape, validate)
    if validate:
        V.check_finite(r, "rewards", m)
    r = jnp.asarray(V.as_float(r))
    if scale_by_std:
        return _zscore_groups(r, m, V.as_dtype(e, dtype=r.dtype), d)
    return jnp.where(m, r - _masked_mean(r, m, axis=-1, keepdims=True), 0)


def negative_only_advantages(
    *,
    rewards: Any,
    mask: Any = None,
    eps: float = 1e-6,
    scale_by_std: bool = True,
    ddof: int = 0,
    validate: bool = True,
) -> jax.Array:
    """GRPO advantages with the positive ones zeroed: min(A, 0) (learning from the relative
    negative gradients only, the "negative samples" regime of the two-stage dynamics paper:
    pushing down worse-than-group responses without sharpening the better ones).

    Args, returns: as `grpo_advantages`.
    """
    a = grpo_advantages(
        rewards=rewards, mask=mask, eps=eps, scale_by_std=scale_by_std, ddof=ddof,
        validate=validate,
    )  # fmt: skip
    return jnp.minimum(a, 0)


def trust_grpo_rewards(
    *,
    outcome: Any,
    thinking: Any,
    step: Any = 0,
    alpha: float = 1.0,
    anneal_steps: float | None = None,
    threshold: float = 0.5,
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Trust-GRPO (SophiaVL-R1) combined rewards R = R_o + gamma alpha exp(-step / T) R_t.

    Per group: correct = R_o >= threshold; mu_c, mu_w = mean thinking reward of the correct and
    the wrong responses; gamma = 1 if mu_c >= mu_w else exp(mu_c - mu_w) (a thinking reward that
    favours wrong answers is trusted less). A group without both a correct and a wrong response
    gets gamma = 1 (nothing to compare; the paper does not say). The GRPO advantages of R are
    then group-normalised as usual.

    Args:
      outcome: [groups, size] rule-based outcome reward R_o.
      thinking: [groups, size] thinking-process reward R_t.
      step: [] training step (annealing; may be traced).
      alpha: [] base weight of the thinking reward (may be traced).
      anneal_steps: T of the exponential annealing exp(-step / T); None = no annealing.
      threshold: [] R_o >= threshold counts as correct (the paper: 0.5).
      mask: optional [groups, size] bool, False = padding.
      validate: check the input.
    Returns:
      [groups, size] combined rewards (0 on padding).
    """
    a = V.coefficient(alpha, "alpha", 0.0)
    thr = V.coefficient(threshold, "threshold")
    ro = V.checked_array(outcome, "outcome", 2, "[groups, size]", validate)
    rt = V.as_array(thinking, "thinking")
    if validate:
        V.check_same_shape(ro, rt, "outcome", "thinking")
    m = _mask(mask, ro.shape, validate)
    if validate:
        V.check_finite(ro, "outcome", m)
        V.check_finite(rt, "thinking", m)
    ro = jnp.asarray(V.as_float(ro))
    rt = jnp.asarray(rt, ro.dtype)
    a, thr = V.as_dtype(a, thr, dtype=ro.dtype)
    ok = m & (ro >= thr)
    bad = m & (ro < thr)
    mu_c = _masked_mean(rt, ok, axis=-1, keepdims=True)
    mu_w = _masked_mean(rt, bad, axis=-1, keepdims=True)
    both = jnp.any(ok, axis=-1, keepdims=True) & jnp.any(bad, axis=-1, keepdims=True)
    gamma = jnp.where(both & (mu_c < mu_w), jnp.exp(jnp.minimum(mu_c - mu_w, 0)), 1.0)
    decay = 1.0
    if anneal_steps is not None:
        t = V.coefficient(anneal_steps, "anneal_steps", 0.0, lo_open=True)
        decay = jnp.exp(-jnp.asarray(step, ro.dtype) / V.as_dtype(t, dtype=ro.dtype))
    return jnp.where(m, ro + gamma * a * decay * rt, 0)


def clipped_policy_loss(
    *,
    logprobs: Any,
    old_logprobs: Any,
    advantages: Any,
    mask: Any,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    ref_logprobs: Any = None,
    kl_coef: float = 0.0,
    token_weights: Any = None,
    aggregation: str = "token_mean",
    dual_clip: float | None = None,
    validate: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped-ratio policy-gradient loss (PPO/GRPO) with an optional KL penalty; lower = better.

    Per token: ratio = exp(logprobs - old_logprobs) (log-ratio clamped to [-20, 20] as verl),
    l_t = -min(ratio A_t, clip(ratio, 1 - eps, 1 + eps_high) A_t) + kl_coef * KL_t,
    and with dual clip c (> 1, Ye et al.; verl's clip_ratio_c) the policy term of a token with
    A_t < 0 is capped at -c A_t,
    with KL_t = exp(ref - logp) - (ref - logp) - 1 (the k3 estimator of KL(pi || pi_ref)),
    times `token_weights` if given (e.g. STEER weights). Aggregation over masked tokens:
    "token_mean" = sum / number of tokens; "sequence_mean" = mean over sequences of each
    sequence's token mean (GRPO); "fixed_length" = sum / (batch * length) (Dr. GRPO).

    Args:
      logprobs: [batch, length] log pi(token) under the current policy (differentiated).
      old_logprobs: [batch, length] log-probs under the sampling policy.
      advantages: [batch] per sequence or [batch, length] per token.
      mask: [batch, length] True on response tokens.
      clip_eps: [] lower clip epsilon (> 0; may be traced, as may the two below).
      clip_eps_high: [] upper clip epsilon (default clip_eps; DAPO's clip-higher uses a larger
        one).
      ref_logprobs: optional [batch, length] reference-policy log-probs for the KL term.
      kl_coef: [] weight of the KL term (needs ref_logprobs when > 0 or traced).
      token_weights: optional [batch, length] per-token weights (no gradient flows into them).
      aggregation: "token_mean", "sequence_mean" or "fixed_length"; static.
      dual_clip: optional [] c > 1 bounding the loss of negative-advantage tokens (may be
        traced).
      validate: check the input.
    Returns:
      (loss [], metrics dict: "pg_loss", "kl", "clip_fraction", "ratio_mean").
    """
    lo_eps = V.coefficient(clip_eps, "clip_eps", 0.0, lo_open=True)
    hi_eps = (
        lo_eps
        if clip_eps_high is None
        else V.coefficient(clip_eps_high, "clip_eps_high", 0.0, lo_open=True)
    )
    beta = V.coefficient(kl_coef, "kl_coef", 0.0)
    dual = None if dual_clip is None else V.coefficient(dual_clip, "dual_clip", 1.0, lo_open=True)
    V.check_choice(aggregation, "aggregation", AGGREGATIONS)
    lp = V.checked_array(logprobs, "logprobs", 2, "[batch, length]", validate)
    old = V.as_array(old_logprobs, "old_logprobs")
    adv = V.as_array(advantages, "advantages")
    if validate:
        V.check_same_shape(lp, old, "logprobs", "old_logprobs")
    lp = jnp.asarray(V.as_float(lp))
    dt = lp.dtype
    a = _per_row(adv, lp, "length", dt, validate)
    m = _mask(mask, lp.shape, validate)
    if ref_logprobs is None and (not V.is_concrete(beta) or beta > 0):
        raise ValueError(
            "ref_logprobs: required when kl_coef > 0 or traced (the KL penalty needs them)"
        )
    if validate:
        V.check_finite(lp, "logprobs", m)
        V.check_finite(old, "old_logprobs", m)
        V.check_finite(adv, "advantages")
    lo_eps, hi_eps, beta = V.as_dtype(lo_eps, hi_eps, beta, dtype=dt)
    log_ratio = jnp.clip(jnp.where(m, lp - jnp.asarray(old, dtype=dt), 0), -20.0, 20.0)
    ratio = jnp.exp(log_ratio)
    clipped = jnp.clip(ratio, 1 - lo_eps, 1 + hi_eps)
    pg = -jnp.minimum(ratio * a, clipped * a)
    if dual is not None:
        pg = jnp.where(a < 0, jnp.minimum(pg, -V.as_dtype(dual, dtype=dt) * a), pg)
    per_token = pg
    kl = jnp.zeros_like(lp)
    if ref_logprobs is not None:
        ref = V.as_array(ref_logprobs, "ref_logprobs")
        if validate:
            V.check_same_shape(lp, ref, "logprobs", "ref_logprobs")
            V.check_finite(ref, "ref_logprobs", m)
        d = jnp.where(m, jnp.asarray(ref, dtype=dt) - lp, 0)
        kl = jnp.exp(d) - d - 1
        per_token = per_token + beta * kl
    if token_weights is not None:
        w = V.as_array(token_weights, "token_weights")
        if validate:
            V.check_same_shape(lp, w, "logprobs", "token_weights")
            V.check_finite(w, "token_weights", m)
        per_token = per_token * jax.lax.stop_gradient(jnp.asarray(w, dtype=dt))
    per_token = jnp.where(m, per_token, 0)
    if aggregation == "token_mean":
        loss = jnp.sum(per_token) / jnp.maximum(jnp.sum(m), 1)
    elif aggregation == "sequence_mean":
        has = jnp.any(m, axis=-1)
        per_seq = jnp.sum(per_token, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1)
        loss = jnp.sum(jnp.where(has, per_seq, 0)) / jnp.maximum(jnp.sum(has), 1)
    else:
        loss = jnp.sum(per_token) / (lp.shape[0] * lp.shape[1])
    was_clipped = (ratio * a != clipped * a) & (pg == -clipped * a)
    metrics = {
        "pg_loss": _masked_mean(pg, m),
        "kl": _masked_mean(kl, m),
        "clip_fraction": _masked_mean(was_clipped.astype(dt), m),
        "ratio_mean": _masked_mean(ratio, m),
    }
    return loss, jax.tree.map(jax.lax.stop_gradient, metrics)


# ----------------------------------------------------------------------------- UCAS


def ucas_token_certainty(*, logits: Any, validate: bool = True) -> jax.Array:
    """UCAS token certainty c_t = logsumexp(z_t) - mean(z_t); higher = more peaked.

    Args:
      logits: [..., vocab] logits z_t of the next-token distribution.
      validate: check the input.
    Returns:
      [...] certainty >= log(vocab), with equality for uniform logits.
    """
    z = V.as_array(logits, "logits")
    if validate:
        V.check_not_empty(z, "logits")
        V.check_finite(z, "logits")
    return _certainty(jnp.asarray(V.as_float(z)))


def _certainty(z: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(z, axis=-1) - jnp.mean(z, axis=-1)


def ucas_sequence_certainty(*, logits: Any, mask: Any, validate: bool = True) -> jax.Array:
    """UCAS response self-confidence C = sum over response tokens of c_t.

    Args:
      logits: [batch, length, vocab] logits at the response positions.
      mask: [batch, length] True on response tokens.
      validate: check the input.
    Returns:
      [batch] C.
    """
    z = V.checked_array(logits, "logits", 3, "[batch, length, vocab]", validate)
    m = V.as_mask(mask, z.shape[:2])
    if validate:
        V.check_finite(z, "logits", m)
    c = _certainty(jnp.where(m[..., None], V.as_float(z), 0))
    return jnp.sum(jnp.where(m, c, 0), axis=-1)


def ucas_advantages(
    *,
    rewards: Any,
    certainty: Any,
    sampled_logits: Any,
    mask: Any,
    group_mask: Any = None,
    pos_scale: float = 0.25,
    neg_scale: float = 0.35,
    token_coef: float = 0.05,
    eps: float = 1e-6,
    validate: bool = True,
) -> jax.Array:
    """UCAS token advantages (uncertainty-aware advantage shaping).

    Within each group, A = zscore(reward) and Cz = zscore(C). Response level:
    A' = A exp(-pos_scale Cz) if A > 0 else A exp(neg_scale Cz) (confident correct answers
    gain less, confident wrong answers lose more). Token level: A_t = A' - token_coef * l_t,
    l_t the logit of the sampled token min-max normalised over the response's tokens (our
    choice of normalisation scope; the paper does not fix it), and A_t >= 0 where A' > 0.

    Args:
      rewards: [groups, size] response rewards.
      certainty: [groups, size] response self-confidence C (`ucas_sequence_certainty`).
      sampled_logits: [groups, size, length] raw logit of each sampled token.
      mask: [groups, size, length] True on response tokens.
      group_mask: optional [groups, size] bool, False = padding response.
      pos_scale, neg_scale, token_coef: [] the constants 0.25, 0.35, 0.05 (may be traced).
      eps: [] added to the group std (may be traced).
      validate: check the input.
    Returns:
      [groups, size, length] advantages, 0 on padding.
    """
    ps = V.coefficient(pos_scale, "pos_scale", 0.0)
    ns = V.coefficient(neg_scale, "neg_scale", 0.0)
    tc = V.coefficient(token_coef, "token_coef", 0.0)
    e = V.coefficient(eps, "eps", 0.0)
    r = V.checked_array(rewards, "rewards", 2, "[groups, size]", validate)
    c = V.as_array(certainty, "certainty")
    sl = V.as_array(sampled_logits, "sampled_logits")
    if validate:
        V.check_same_shape(r, c, "rewards", "certainty")
        V.check_rank(sl, "sampled_logits", 3, "[groups, size, length]")
        V.check_leading(r, sl, "rewards", "sampled_logits", ndim=2)
    gm = _mask(group_mask, r.shape, validate)
    m = V.as_mask(mask, sl.shape) & gm[..., None]
    if validate:
        V.check_finite(r, "rewards", gm)
        V.check_finite(c, "certainty", gm)
        V.check_finite(sl, "sampled_logits", m)
    r = jnp.asarray(V.as_float(r))
    ps, ns, tc, e = V.as_dtype(ps, ns, tc, e, dtype=r.dtype)
    a = _zscore_groups(r, gm, e)
    cz = _zscore_groups(jnp.asarray(c, dtype=r.dtype), gm, e)
    a_resp = jnp.where(a > 0, a * jnp.exp(-ps * cz), a * jnp.exp(ns * cz))
    norm_logit = _masked_minmax(jnp.asarray(sl, dtype=r.dtype), m, axis=-1)
    a_tok = a_resp[..., None] - tc * norm_logit
    a_tok = jnp.where(a_resp[..., None] > 0, jnp.maximum(a_tok, 0), a_tok)
    return jnp.where(m, a_tok, 0)


# ----------------------------------------------------------------------------- EMPG


def empg_advantages(
    *,
    advantages: Any,
    step_entropy: Any,
    step_mask: Any,
    k: float = 1.0,
    k_future: float = 1.0,
    zeta: float = 0.1,
    eps: float = 1e-8,
    validate: bool = True,
) -> jax.Array:
    """EMPG entropy-modulated step advantages with the future-clarity bonus.

    H = per-step mean token entropy, min-max normalised over all valid steps of the batch.
    g_t = exp(-k H_t) / mean(exp(-k H)) (mean over valid steps); f_t = exp(-k_future H_{t+1})
    (0 after the last step); A_mod = g_t A + zeta f_t. Confident steps get amplified updates,
    uncertain ones attenuated. (The exact form of the bonus term is unverified; zeta = 0
    removes it.)

    Args:
      advantages: [batch] per trajectory or [batch, steps] per step.
      step_entropy: [batch, steps] mean token entropy of each step.
      step_mask: [batch, steps] True on real steps (padding after the last step).
      k, k_future, zeta: [] the constants (1, 1, 0.1) (may be traced).
      eps: [] guards the normalisation (may be traced).
      validate: check the input.
    Returns:
      [batch, steps] modulated advantages, 0 on padding.
    """
    kk = V.coefficient(k, "k", 0.0)
    kf = V.coefficient(k_future, "k_future", 0.0)
    z = V.coefficient(zeta, "zeta")
    e = V.coefficient(eps, "eps", 0.0)
    h = V.checked_array(step_entropy, "step_entropy", 2, "[batch, steps]", validate)
    adv = V.as_array(advantages, "advantages")
    a = _per_row(adv, h, "steps", V.as_float(h).dtype, validate)
    m = _mask(step_mask, h.shape, validate)
    if validate:
        V.check_range(h, "step_entropy", 0.0, jnp.inf, m, what="entropies >= 0")
        V.check_finite(adv, "advantages")
    h = jnp.asarray(V.as_float(h))
    kk, kf, z, e = V.as_dtype(kk, kf, z, e, dtype=h.dtype)
    big = jnp.asarray(jnp.inf, h.dtype)
    lo = jnp.min(jnp.where(m, h, big))
    hi = jnp.max(jnp.where(m, h, -big))
    hn = jnp.where(m, (h - lo) / (hi - lo + e), 0)
    conf = jnp.exp(-kk * hn)
    g = conf / _masked_mean(conf, m)
    next_h = jnp.concatenate([hn[:, 1:], jnp.zeros_like(hn[:, :1])], axis=1)
    next_ok = jnp.concatenate([m[:, 1:], jnp.zeros_like(m[:, :1])], axis=1)
    f = jnp.where(next_ok, jnp.exp(-kf * next_h), 0)
    return jnp.where(m, g * a + z * f, 0)


# ----------------------------------------------------------------------------- STEER


def steer_weights(
    *,
    logprobs: Any,
    old_logprobs: Any,
    entropy: Any,
    advantages: Any,
    mask: Any,
    w_min: float = 0.8,
    w_max: float = 1.2,
    clip_range: tuple[float, float] = (0.8, 1.2),
    validate: bool = True,
) -> jax.Array:
    """STEER token weights from the estimated per-token entropy change.

    Omega_t = (A_t / pi_old) pi (1 - pi) (log pi + H_t), pi = exp(logprobs) of the sampled token;
    w_t = w_max - minmax(|Omega|) (w_max - w_min), min-max over all valid tokens of the batch
    (the authors: of each micro-batch), then clipped to `clip_range`; (w_min + w_max) / 2
    everywhere when all |Omega| are equal. As in the authors' code, pi is clamped to
    [1e-8, 1 - 1e-8], pi_old to [1e-8, 1], and a non-finite Omega counts as 0. Tokens that would
    move the entropy most get the smallest weight. Use as `clipped_policy_loss(...,
    token_weights=w, dual_clip=3.0)` (their loss; their scripts use dual_clip 10); the weights
    carry no gradient.

    Args:
      logprobs: [batch, length] current log-prob of each sampled token.
      old_logprobs: [batch, length] sampling-policy log-probs.
      entropy: [batch, length] entropy H_t of the current next-token distribution.
      advantages: [batch] or [batch, length].
      mask: [batch, length] True on response tokens.
      w_min, w_max: [] weight range before clipping (may be traced).
      clip_range: ([] low, [] high) final clip (each may be traced).
      validate: check the input.
    Returns:
      [batch, length] weights (0 on padding).
    """
    lo_w = V.coefficient(w_min, "w_min")
    hi_w = V.coefficient(w_max, "w_max", lo_w)
    if len(clip_range) != 2:
        raise ValueError(f"clip_range: expected (low, high), got {clip_range!r}")
    c_lo = V.coefficient(clip_range[0], "clip_range[0]")
    c_hi = V.coefficient(clip_range[1], "clip_range[1]", c_lo)
    lp = V.checked_array(logprobs, "logprobs", 2, "[batch, length]", validate)
    old = V.as_array(old_logprobs, "old_logprobs")
    ent = V.as_array(entropy, "entropy")
    adv = V.as_array(advantages, "advantages")
    if validate:
        V.check_same_shape(lp, old, "logprobs", "old_logprobs")
        V.check_same_shape(lp, ent, "logprobs", "entropy")
    dt = V.as_float(lp).dtype
    a = _per_row(adv, lp, "length", dt, validate)
    m = _mask(mask, lp.shape, validate)
    if validate:
        V.check_range(lp, "logprobs", -jnp.inf, 0.0, m, what="log-probabilities <= 0")
        V.check_range(old, "old_logprobs", -jnp.inf, 0.0, m, what="log-probabilities <= 0")
        V.check_range(ent, "entropy", 0.0, jnp.inf, m, what="entropies >= 0")
        V.check_finite(adv, "advantages")
    lo_w, hi_w, c_lo, c_hi = V.as_dtype(lo_w, hi_w, c_lo, c_hi, dtype=dt)
    lp = jax.lax.stop_gradient(jnp.asarray(lp, dtype=dt))
    # The authors' clamps: pi in [1e-8, 1 - 1e-8], pi_old in [1e-8, 1]; a non-finite Omega is 0.
    pi = jnp.clip(jnp.exp(lp), 1e-8, 1 - 1e-8)
    pi_old = jnp.clip(jnp.exp(jnp.asarray(old, dtype=dt)), 1e-8, 1.0)
    omega = (a / pi_old) * pi * (1 - pi) * (jnp.log(pi) + jnp.asarray(ent, dtype=dt))
    mag = jnp.abs(jnp.where(m & jnp.isfinite(omega), omega, 0))
    big = jnp.asarray(jnp.inf, dt)
    span = jnp.max(jnp.where(m, mag, -big)) - jnp.min(jnp.where(m, mag, big))
    # All |Omega| equal (max == min): every token gets the mid weight, as the reference does.
    nrm = jnp.where(jnp.isfinite(span) & (span > 0), _masked_minmax(mag, m), 0.5)
    w = jnp.clip(hi_w - nrm * (hi_w - lo_w), c_lo, c_hi)
    return jax.lax.stop_gradient(jnp.where(m, w, 0))


# ----------------------------------------------------------------------------- RiskPO


RISKPO_CREDIT = ("uniform", "std", "sum_mean", "score")
RISKPO_QUANTILES = ("batch", "track", "mix")
# The tracker's quantile levels (the authors' grid: 0.05, 0.10, ..., 0.95).
RISKPO_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def riskpo_tracker_init() -> dict[str, jax.Array]:
    """A RiskPO quantile tracker's state (carry it in the train state): the tracked quantiles
    of the paper scores at `RISKPO_LEVELS`, and whether it has seen a batch."""
    return {
        "q": jnp.zeros((len(RISKPO_LEVELS),), jnp.float32),
        "initialized": jnp.zeros((), bool),
    }


def riskpo_paper_scores(*, rewards: Any, mask: Any = None, validate: bool = True) -> jax.Array:
    """[bundles, samples] paper scores: paper j of a bundle = the j-th response to each of its
    questions, scored by the sum of their rewards (masked questions add 0)."""
    r = V.checked_array(rewards, "rewards", 3, "[bundles, questions, samples]", validate)
    m = V.as_mask(mask, r.shape)
    if validate:
        V.check_finite(r, "rewards", m)
    return jnp.sum(jnp.where(m, V.as_float(r), 0), axis=1)


def riskpo_tracker_update(state, scores: Any, *, lr: float = 0.1) -> dict[str, jax.Array]:
    """One step of the RiskPO authors' stochastic quantile tracker on a batch of paper scores
    (all bundles pooled): the first batch sets q to its empirical quantiles, later batches
    move q_k by lr * (level_k - fraction of scores below q_k)."""
    x = jnp.ravel(jnp.asarray(scores, jnp.float32))
    levels = jnp.asarray(RISKPO_LEVELS, jnp.float32)
    step = jnp.asarray(lr, jnp.float32)
    moved = state["q"] + step * (levels - jnp.mean(x[None, :] < state["q"][:, None], axis=1))
    q = jnp.where(state["initialized"], moved, jnp.quantile(x, levels))
    return {"q": q, "initialized": jnp.ones((), bool)}


def _tracked(state, level):
    """The tracked quantile at the grid level nearest `level`."""
    levels = jnp.asarray(RISKPO_LEVELS, jnp.float32)
    return state["q"][jnp.argmin(jnp.abs(levels - level))]


def riskpo_advantages(
    *,
    rewards: Any,
    mask: Any = None,
    alpha: float = 0.2,
    beta: float = 0.8,
    weight: float = 1.5,
    eps: float = 1e-6,
    natural_baseline: bool = True,
    credit: str = "uniform",
    quantile_mode: str = "batch",
    tracker: Any = None,
    validate: bool = True,
) -> jax.Array:
    """RiskPO Mixed Value-at-Risk advantages with question bundles (the authors' verl code).

    A bundle holds B questions with n sampled responses each. Paper j of a bundle = the j-th
    response to each question; its score S_j = the sum of their rewards
    (`riskpo_paper_scores`). With a, b the alpha and beta quantiles of the bundle's n paper
    scores (linear interpolation; "track": the tracker's, "mix": the mean of both):
      A_RVaR = [(S - a)+ - (S - b)+ + (a - b if natural_baseline)] / (beta - alpha + eps),
      A_CVaR = -(a - S)+ / (alpha + eps),
      A_j = (weight A_CVaR + A_RVaR) / (weight + 1) / (std_j(S) + eps),
    std unbiased over the bundle's papers (1 for a single paper). Credit to response (q, j):
    "uniform" A_j; "std" A_j / (std of question q's n rewards, unbiased, 1 where <= 1e-3,
    + 1e-6); "sum_mean" A_j (r_qj - mean_q) / sum_q' (r_q'j - mean_q') (A_j / B where that
    sum is <= 1e-6 in size); "score" A_j times 0.5 if r_qj > 0 else 1.5.

    Deviation from the paper's description: its tracked quantiles never reach the advantage
    in the released code (the tracker state is written into a batch that is rebuilt every
    step), so every released run used the per-bundle quantiles: quantile_mode "batch", the
    default here. "track"/"mix" use `tracker` (state from `riskpo_tracker_init`, advanced by
    `riskpo_tracker_update` after each step; an uninitialised tracker falls back to "batch").
    Defaults: alpha 0.2, beta 0.8, weight 1.5 (their math scripts), tracker lr 0.1.

    Args:
      rewards: [bundles, questions, samples] rewards (samples = responses per question).
      mask: optional [bundles, questions, samples] bool, False = padding (e.g. the missing
        questions of a short last bundle).
      alpha, beta: [] quantile levels, 0 < alpha < beta <= 1 (may be traced, as may weight
        and eps).
      weight: [] weight of the CVaR term.
      eps: [] stabiliser of the divisions.
      natural_baseline: keep the (a - b) term of A_RVaR; static.
      credit: "uniform", "std", "sum_mean" or "score"; static.
      quantile_mode: "batch", "track" or "mix"; static.
      tracker: the tracker state (needed for "track" and "mix").
      validate: check the input.
    Returns:
      [bundles, questions, samples] advantage of each response (0 on padding).
    """
    a_ = V.coefficient(alpha, "alpha", 0.0, 1.0, lo_open=True, hi_open=True)
    b_ = V.coefficient(beta, "beta", a_, 1.0, lo_open=True)
    w = V.coefficient(weight, "weight", 0.0)
    e = V.coefficient(eps, "eps", 0.0)
    V.check_choice(credit, "credit", RISKPO_CREDIT)
    V.check_choice(quantile_mode, "quantile_mode", RISKPO_QUANTILES)
    if quantile_mode != "batch" and tracker is None:
        raise ValueError(
            f"tracker: quantile_mode {quantile_mode!r} needs the tracker state "
            "(riskpo_tracker_init / riskpo_tracker_update)"
        )
    s = riskpo_paper_scores(rewards=rewards, mask=mask, validate=validate)
    r = jnp.asarray(V.as_float(V.as_array(rewards, "rewards")), s.dtype)
    m = V.as_mask(mask, r.shape)
    a_, b_, w, e = V.as_dtype(a_, b_, w, e, dtype=s.dtype)
    n = s.shape[-1]
    levels = jnp.stack([jnp.asarray(a_, s.dtype), jnp.asarray(b_, s.dtype)])
    q = jnp.quantile(s, levels, axis=-1)  # [2, bundles]
    q_a, q_b = q[0][:, None], q[1][:, None]
    if quantile_mode != "batch":
        t_a = _tracked(tracker, a_).astype(s.dtype)
        t_b = _tracked(tracker, b_).astype(s.dtype)
        if quantile_mode == "mix":
            t_a, t_b = (t_a + q_a) / 2, (t_b + q_b) / 2
        on = jnp.asarray(tracker["initialized"])
        q_a, q_b = jnp.where(on, t_a, q_a), jnp.where(on, t_b, q_b)
    relu = jax.nn.relu
    g = relu(s - q_a) - relu(s - q_b) + ((q_a - q_b) if natural_baseline else 0)
    g = g / (b_ - a_ + e)
    c = -relu(q_a - s) / (a_ + e)
    adv = (w * c + g) / (w + 1)
    std = jnp.std(s, axis=-1, keepdims=True, ddof=1) if n > 1 else jnp.ones_like(s[:, :1])
    adv = adv / (std + e)  # [bundles, samples]
    per = jnp.broadcast_to(adv[:, None, :], r.shape)
    if credit == "std":
        sq = jnp.std(r, axis=-1, keepdims=True, ddof=1) if n > 1 else jnp.ones_like(r[..., :1])
        per = per / (jnp.where(sq <= 1e-3, 1.0, sq) + 1e-6)
    elif credit == "sum_mean":
        dev = jnp.where(m, r - jnp.mean(r, axis=-1, keepdims=True), 0)
        tot = jnp.sum(dev, axis=1, keepdims=True)
        count = jnp.maximum(jnp.sum(jnp.any(m, axis=-1), axis=1), 1)[:, None, None]
        small = jnp.abs(tot) <= 1e-6
        per = jnp.where(small, per / count, per * dev / jnp.where(small, 1.0, tot))
    elif credit == "score":
        per = per * jnp.where(r > 0, 0.5, 1.5)
    return jnp.where(m, per, 0)


# ----------------------------------------------------------------------------- PPO-C

PPO_C_MODES = ("threshold", "difference")


def ppo_c_rewards(
    *,
    rewards: Any,
    confidence: Any,
    reward_avg: Any,
    momentum: float = 0.1,
    weight: float = 0.5,
    mode: str = "threshold",
    validate: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """PPO-C calibrated reward: adjust by stated confidence relative to a moving reward average.

    First the average is updated, avg' = momentum * mean(r) + (1 - momentum) * avg. Then, with c
    the stated confidence in [0, 1]:
      "threshold":  r' = r + w |r| (c - 0.5) if r >= avg' else r - w |r| (c - 0.5)
      "difference": r' = r + w (r - avg') (c - 0.5)
    so high confidence is rewarded only on responses better than the running average.

    Args:
      rewards: [batch] reward-model scores.
      confidence: [batch] verbalised confidence in [0, 1].
      reward_avg: [] current moving average (carry it between steps; start at the reward
        model's mean or 0).
      momentum: [] weight of the new batch mean in the average, in [0, 1] (may be traced).
      weight: [] adjustment strength w >= 0 (may be traced).
      mode: "threshold" or "difference"; static.
      validate: check the input.
    Returns:
      (adjusted rewards [batch], new average []).
    """
    mom = V.coefficient(momentum, "momentum", 0.0, 1.0)
    w = V.coefficient(weight, "weight", 0.0)
    V.check_choice(mode, "mode", PPO_C_MODES)
    r = V.checked_array(rewards, "rewards", 1, "[batch]", validate)
    c = V.as_array(confidence, "confidence")
    avg = V.as_array(reward_avg, "reward_avg")
    if validate:
        V.check_same_shape(r, c, "rewards", "confidence")
        if avg.ndim != 0:
            raise ValueError(f"reward_avg: has shape {tuple(avg.shape)}; expected a scalar")
        V.check_finite(r, "rewards")
        V.check_finite(avg, "reward_avg")
        V.check_probabilities(c, "confidence")
    r = jnp.asarray(V.as_float(r))
    c = jnp.asarray(c, dtype=r.dtype)
    mom, w = V.as_dtype(mom, w, dtype=r.dtype)
    new_avg = mom * jnp.mean(r) + (1 - mom) * jnp.asarray(avg, dtype=r.dtype)
    if mode == "threshold":
        adj = w * jnp.abs(r) * (c - 0.5)
        out = jnp.where(r >= new_avg, r + adj, r - adj)
    else:
        out = r + w * (r - new_avg) * (c - 0.5)
    return out, new_avg
