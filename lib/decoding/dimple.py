"""Dimple's confident decoding: parallel unmasking in masked (discrete-diffusion) decoding.

Dimple (Yu et al. 2025, "Discrete Diffusion Multimodal Large Language Model with Parallel
Decoding") decodes a block of [MASK] tokens iteratively; at each step the denoiser predicts
every masked position, and every position whose top probability reaches the threshold is
revealed at once (at least one per step: the single most confident one when none passes), so
the number of steps adapts to the model's confidence instead of being fixed.

introspect's decoders are autoregressive, so the rule is offered for any denoiser:
`parallel_decode(denoise, tokens, mask_id=...)` where `denoise(tokens) -> [batch, length,
vocab]` logits (a masked LM, a diffusion LM's step function). The whole loop is one
`jax.lax.while_loop` inside one `jax.jit`, compiled once per denoiser (the threshold is
traced). The confidence part is the paper's rule; the denoiser and its training (the paper's
core) are the user's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def confident_unmask(confidence: Any, masked: Any, threshold: float) -> jax.Array:
    """[batch, length] bool: the masked positions to reveal this step.

    Every masked position with confidence >= threshold; a row where none passes reveals its
    single most confident masked position (the first on ties); rows without masked positions
    reveal nothing.
    """
    conf = jnp.asarray(confidence, jnp.float32)
    m = jnp.asarray(masked, bool)
    passed = m & (conf >= threshold)
    best = jnp.argmax(jnp.where(m, conf, -jnp.inf), axis=-1)
    fallback = jax.nn.one_hot(best, conf.shape[-1], dtype=bool) & m
    none = ~passed.any(axis=-1, keepdims=True)
    return jnp.where(none, fallback, passed)


def parallel_decode(
    denoise: Callable[[jax.Array], jax.Array],
    tokens: Any,
    *,
    mask_id: int,
    threshold: float = 0.9,
    max_steps: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Reveal every [MASK] of `tokens` with Dimple's confident decoding.

    Args:
      denoise: tokens [batch, length] int32 -> logits [batch, length, vocab] (jit-traceable).
      tokens: [batch, length] ints; positions equal to `mask_id` are decoded, others are kept.
      mask_id: the mask token id.
      threshold: reveal every masked position whose top probability is >= this (in (0, 1];
        above 1 = one position per step, the most confident first).
      max_steps: stop after this many steps (default: length, enough for any row).
    Returns:
      (tokens [batch, length] with the masks filled (masks remain only when max_steps ran
      out), steps [batch] int32: the steps each row needed).
    """
    t = jnp.asarray(tokens)
    if t.ndim != 2 or not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(f"tokens must be [batch, length] integers, got {t.dtype} {t.shape}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    steps_cap = t.shape[1] if max_steps is None else int(max_steps)
    if steps_cap < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    run = _runner(denoise, int(mask_id), steps_cap)
    return run(t.astype(jnp.int32), jnp.float32(threshold))


@functools.lru_cache(maxsize=16)
def _runner(denoise, mask_id: int, max_steps: int):
    """One compiled loop per (denoiser, mask id, step cap); the threshold is traced."""

    @jax.jit
    def run(tokens, threshold):
        def cond(carry):
            toks, _, i = carry
            return (i < max_steps) & (toks == mask_id).any()

        def body(carry):
            toks, steps, i = carry
            masked = toks == mask_id
            probs = jax.nn.softmax(denoise(toks).astype(jnp.float32), axis=-1)
            conf, pred = probs.max(-1), probs.argmax(-1).astype(toks.dtype)
            reveal = confident_unmask(conf, masked, threshold)
            steps = steps + masked.any(-1).astype(jnp.int32)
            return jnp.where(reveal, pred, toks), steps, i + 1

        zeros = jnp.zeros(tokens.shape[0], jnp.int32)
        toks, steps, _ = jax.lax.while_loop(cond, body, (tokens, zeros, 0))
        return toks, steps

    return run
