"""Matrix scaling (Guo et al., 2017): p = softmax(W z + b), W in R^{KxK}, b in R^K, fit by NLL."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from introspect.calibrators import _common as C
from introspect.calibrators._optim import lbfgs_minimize

__all__ = ["MatrixScalingParams", "fit", "apply"]


@struct.dataclass
class MatrixScalingParams:
    """weight: [K, K] (calibrated logits = logits @ weight.T + bias); bias: [K]."""

    weight: jax.Array
    bias: jax.Array


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit(z, y, m, l2, max_iter: int):
    k = z.shape[1]
    eye = jnp.eye(k, dtype=z.dtype)

    def unpack(theta):
        return theta[: k * k].reshape(k, k), theta[k * k :]

    def loss(theta):
        w, b = unpack(theta)
        reg = l2 * (jnp.sum((w - eye) ** 2) + jnp.sum(b**2))
        return C.weighted_nll(z @ w.T + b, y, m) + reg

    theta0 = jnp.concatenate([eye.reshape(-1), jnp.zeros((k,), z.dtype)])
    return unpack(lbfgs_minimize(loss, theta0, max_iter=max_iter))


def fit(
    logits: Any,
    labels: Any,
    *,
    l2: float = 0.0,
    mask: Any = None,
    max_iter: int = 500,
    validate: bool = True,
) -> MatrixScalingParams:
    """Fits an affine map of the logits minimising NLL + l2 (|W - I|^2 + |b|^2).

    With K^2 + K parameters it overfits small calibration sets; use l2 > 0 there.

    Args:
      logits: [n, num_classes] logits.
      labels: [n] class indices.
      l2: ridge penalty towards the identity map (>= 0).
      mask: optional [n] bool, False = padding.
      max_iter: L-BFGS iterations.
      validate: check the input.
    Returns:
      MatrixScalingParams.
    """
    z, y, m, reg, it = C.prepare_affine_fit(
        logits, labels, mask, l2, max_iter, validate, "matrix scaling"
    )
    w, b = _fit(z, y, m, reg, it)
    return MatrixScalingParams(weight=w, bias=b)


def apply(
    params: MatrixScalingParams, logits: Any, *, return_logits: bool = False, validate: bool = True
) -> jax.Array:
    """Calibrated probabilities softmax(logits @ W.T + b).

    Args:
      params: from `fit`.
      logits: [n, num_classes].
      return_logits: return the affine-mapped logits instead.
      validate: check the input.
    Returns:
      [n, num_classes] probabilities (or logits).
    """
    z = C.check_apply_logits(logits, params.bias.shape[0], validate)
    out = z @ params.weight.astype(z.dtype).T + params.bias.astype(z.dtype)
    return out if return_logits else jax.nn.softmax(out, axis=-1)
