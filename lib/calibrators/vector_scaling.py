"""Vector scaling (Guo et al., 2017): p = softmax(w * z + b), w and b in R^K, fit by NLL."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from introspect.calibrators import _common as C
from introspect.calibrators._optim import lbfgs_minimize

__all__ = ["VectorScalingParams", "fit", "apply"]


@struct.dataclass
class VectorScalingParams:
    """weight: [K] per-class scale; bias: [K] per-class offset."""

    weight: jax.Array
    bias: jax.Array


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit(z, y, m, l2, max_iter: int):
    k = z.shape[1]

    def loss(theta):
        w, b = theta[:k], theta[k:]
        reg = l2 * (jnp.sum((w - 1) ** 2) + jnp.sum(b**2))
        return C.weighted_nll(z * w + b, y, m) + reg

    theta0 = jnp.concatenate([jnp.ones((k,), z.dtype), jnp.zeros((k,), z.dtype)])
    theta = lbfgs_minimize(loss, theta0, max_iter=max_iter)
    return theta[:k], theta[k:]


def fit(
    logits: Any,
    labels: Any,
    *,
    l2: float = 0.0,
    mask: Any = None,
    max_iter: int = 500,
    validate: bool = True,
) -> VectorScalingParams:
    """Fits per-class scale and offset minimising NLL + l2 (|w - 1|^2 + |b|^2).

    Args:
      logits: [n, num_classes] logits.
      labels: [n] class indices.
      l2: ridge penalty towards the identity map (>= 0).
      mask: optional [n] bool, False = padding.
      max_iter: L-BFGS iterations.
      validate: check the input.
    Returns:
      VectorScalingParams.
    """
    z, y, m, reg, it = C.prepare_affine_fit(
        logits, labels, mask, l2, max_iter, validate, "vector scaling"
    )
    w, b = _fit(z, y, m, reg, it)
    return VectorScalingParams(weight=w, bias=b)


def apply(
    params: VectorScalingParams, logits: Any, *, return_logits: bool = False, validate: bool = True
) -> jax.Array:
    """Calibrated probabilities softmax(w * logits + b).

    Args:
      params: from `fit`.
      logits: [n, num_classes].
      return_logits: return w * logits + b instead.
      validate: check the input.
    Returns:
      [n, num_classes] probabilities (or logits).
    """
    z = C.check_apply_logits(logits, params.weight.shape[0], validate)
    out = z * params.weight.astype(z.dtype) + params.bias.astype(z.dtype)
    return out if return_logits else jax.nn.softmax(out, axis=-1)
