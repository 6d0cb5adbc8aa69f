"""Confidence-aware conditioning weights in the manner of Veila (unpublished rule; ours).

Veila ("Panoramic LiDAR Generation from a Monocular RGB Image", 2025) conditions a LiDAR diffusion
model on RGB through a Confidence-Aware Conditioning Mechanism that "adaptively balances semantic
and depth cues according to their local reliability". We found neither the formula nor code
from the authors, so the rule below is ours, built from standard parts:

    c_sem(u) = 1 - H(softmax(semantic_logits(u))) / log C      normalised-entropy confidence
    c_dep(u) = exp(-sigma(u) / depth_scale)                    from a predicted depth std
    (w_sem, w_dep)(u) = softmax(c_sem(u) / T, c_dep(u) / T)     per location, sums to 1
    cond(u) = w_sem f_sem(u) + w_dep f_dep(u)
    gated:  cond(u) * (w_sem c_sem + w_dep c_dep)

so each location leans on the more reliable cue, with temperature T (T -> 0: pick the more
confident cue; T -> inf: equal weights), and the gated variant also weakens the conditioning
where both cues are unreliable. The paper's core is LiDAR generation; only the confidence
weighting is here.

Shapes: per-location maps [..., H, W] (any leading shape), features [..., H, W, D]. Pure jnp.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = [
    "confidence_aware_condition",
    "confidence_aware_weights",
    "depth_confidence",
    "semantic_confidence",
]


def semantic_confidence(*, semantic_logits: Any, validate: bool = True) -> jax.Array:
    """c = 1 - H(p) / log C per location: [..., C] logits -> [...] in [0, 1] (1 = one-hot)."""
    z = V.as_array(semantic_logits, "semantic_logits")
    if validate:
        V.check_min_rank(z, "semantic_logits", 1, "[..., C] logits")
        V.check_not_empty(z, "semantic_logits")
        if z.shape[-1] < 2:
            raise ValueError(
                f"semantic_logits: has {z.shape[-1]} class(es); expected C >= 2 classes"
            )
        V.check_finite(z, "semantic_logits")
    return _semantic_core(jnp.asarray(V.as_float(z)))


@jax.jit
def _semantic_core(z: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(z, axis=-1)
    h = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return jnp.clip(1.0 - h / jnp.log(z.shape[-1]), 0.0, 1.0)


def depth_confidence(*, depth_std: Any, depth_scale: float = 1.0, validate: bool = True):
    """c = exp(-sigma / depth_scale): [...] predicted depth std >= 0 -> [...] in (0, 1]."""
    s = V.as_array(depth_std, "depth_std")
    if validate:
        V.check_not_empty(s, "depth_std")
        V.check_range(s, "depth_std", 0.0, float("inf"), what="standard deviations >= 0")
    s = jnp.asarray(V.as_float(s))
    sc = V.coefficient(depth_scale, "depth_scale", 0.0, lo_open=True)
    return jnp.exp(-s / V.as_dtype(sc, dtype=s.dtype))


def confidence_aware_weights(
    *,
    semantic_confidence: Any,
    depth_confidence: Any,
    temperature: float = 1.0,
    validate: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Per-location (w_sem, w_dep) = softmax(c_sem / T, c_dep / T); w_sem + w_dep = 1.

    Args:
      semantic_confidence, depth_confidence: [...] confidences in [0, 1], same shape.
      temperature: [] T > 0 (may be traced).
      validate: check the input.
    Returns:
      (w_sem [...], w_dep [...]).
    """
    cs = V.as_array(semantic_confidence, "semantic_confidence")
    cd = V.as_array(depth_confidence, "depth_confidence")
    if validate:
        V.check_not_empty(cs, "semantic_confidence")
        V.check_same_shape(cs, cd, "semantic_confidence", "depth_confidence")
        V.check_probabilities(cs, "semantic_confidence")
        V.check_probabilities(cd, "depth_confidence")
    dt = jnp.result_type(V.as_float(cs).dtype, V.as_float(cd).dtype)
    cs, cd = jnp.asarray(cs, dt), jnp.asarray(cd, dt)
    t = V.as_dtype(V.coefficient(temperature, "temperature", 0.0, lo_open=True), dtype=dt)
    w_sem = jax.nn.sigmoid((cs - cd) / t)  # the two-way softmax
    return w_sem, 1.0 - w_sem


def confidence_aware_condition(
    *,
    semantic_features: Any,
    depth_features: Any,
    semantic_confidence: Any,
    depth_confidence: Any,
    temperature: float = 1.0,
    gated: bool = False,
    validate: bool = True,
) -> jax.Array:
    """The fused conditioning map w_sem f_sem + w_dep f_dep (x the mixed confidence if gated).

    Args:
      semantic_features, depth_features: [..., D] per-location features, same shape.
      semantic_confidence, depth_confidence: [...] per-location confidences in [0, 1] (the
        features' shape without D).
      temperature: [] T > 0.
      gated: also multiply by w_sem c_sem + w_dep c_dep (weak conditioning where both cues are
        unreliable).
      validate: check the input.
    Returns:
      [..., D] the conditioning features.
    """
    fs = V.as_array(semantic_features, "semantic_features")
    fd = V.as_array(depth_features, "depth_features")
    if validate:
        V.check_min_rank(fs, "semantic_features", 1, "[..., D]")
        V.check_same_shape(fs, fd, "semantic_features", "depth_features")
        cs = V.as_array(semantic_confidence, "semantic_confidence")
        if tuple(cs.shape) != tuple(fs.shape[:-1]):
            raise ValueError(
                f"semantic_confidence: has shape {tuple(cs.shape)}; expected the features' shape "
                f"without the last axis, {tuple(fs.shape[:-1])}"
            )
    w_sem, _ = confidence_aware_weights(
        semantic_confidence=semantic_confidence,
        depth_confidence=depth_confidence,
        temperature=temperature,
        validate=validate,
    )
    fs = jnp.asarray(V.as_float(fs))
    fd = jnp.asarray(fd, fs.dtype)
    cs = jnp.asarray(semantic_confidence, fs.dtype)
    cd = jnp.asarray(depth_confidence, fs.dtype)
    return _condition_core(fs, fd, cs, cd, w_sem.astype(fs.dtype), gated=bool(gated))


@functools.partial(jax.jit, static_argnames="gated")
def _condition_core(fs, fd, cs, cd, w_sem, *, gated):
    w_dep = 1.0 - w_sem
    out = w_sem[..., None] * fs + w_dep[..., None] * fd
    if gated:
        out = out * (w_sem * cs + w_dep * cd)[..., None]
    return out
