"""Per-position statistics of a next-token distribution: what the logit-based signals need.

The compiled generation loop (`introspect.models`) and teacher-forced scoring compute exactly
these from the full vocabulary at every step, so no [steps, vocab] logits need to be stored.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from introspect import _checks as V

# For p = softmax(z) over a vocabulary of size V:
#   entropy          -sum_j p_j log p_j                (nats)
#   max_prob         max_j p_j
#   logsumexp        log sum_j exp(z_j)
#   mean_logit       (1/V) sum_j z_j
#   second_prob      the second largest p_j            (max-prob margin)
#   logsumexp_half   log sum_j exp(z_j / 2)
#   logsumexp_quarter log sum_j exp(z_j / 4)
# Self-certainty KL(U || p) = logsumexp - mean_logit - log V follows from logsumexp and
# mean_logit; the Renyi (alpha 1/2) and Fisher-Rao distances of softmax(z / 2) to the uniform
# distribution (RAINPROOF / LM-Polygraph's defaults, temperature 2) from the last two:
# sum_j sqrt(softmax(z / 2)_j) = exp(logsumexp_quarter - logsumexp_half / 2).
STAT_NAMES = (
    "entropy", "max_prob", "logsumexp", "mean_logit", "second_prob", "logsumexp_half",
    "logsumexp_quarter",
)  # fmt: skip


def step_statistics(logits: jax.Array) -> jax.Array:
    """Statistics of softmax(logits).

    Args:
      logits: [..., vocab].
    Returns:
      [..., len(STAT_NAMES)] float32 in the order of STAT_NAMES. NaN logits give NaN
      statistics (the signals reject those at their boundary); this runs inside compiled
      loops, so only the shape is checked here.
    """
    V.check_min_rank(logits, "logits", 1, "[..., vocab]")
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, axis=-1)
    logp = logits - lse[..., None]
    # A -inf logit (a banned token) has p = 0 and contributes 0, not 0 * -inf = NaN.
    entropy = -jnp.sum(jnp.exp(logp) * jnp.where(jnp.isfinite(logp), logp, 0.0), axis=-1)
    top2 = jax.lax.top_k(logp, 2)[0] if logp.shape[-1] > 1 else jnp.concatenate(
        [logp, jnp.full_like(logp, -jnp.inf)], axis=-1
    )  # fmt: skip
    max_prob, second = jnp.exp(top2[..., 0]), jnp.exp(top2[..., 1])
    half = jax.nn.logsumexp(logits / 2, axis=-1)
    quarter = jax.nn.logsumexp(logits / 4, axis=-1)
    # The mean over the finite logits: suppressed ids (-inf, e.g. ZIP-RC's reserved slice)
    # are not part of the distribution.
    finite = jnp.isfinite(logits)
    mean_logit = jnp.sum(jnp.where(finite, logits, 0.0), axis=-1) / jnp.maximum(
        jnp.sum(finite, axis=-1), 1
    )
    return jnp.stack([entropy, max_prob, lse, mean_logit, second, half, quarter], axis=-1)
