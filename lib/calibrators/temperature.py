"""Temperature scaling (Guo et al., 2017): p = softmax(z / T) with T fit by NLL.

The mean NLL is convex in beta = 1 / T, so `fit` runs a bracketed Newton iteration on beta
(exact to machine precision, no learning rate). T is kept in [1e-4, 1e4]: if the logits are
anti-informative the optimum is T -> inf and the fit returns 1e4; if the data are separable the
optimum is T -> 0 and the fit returns 1e-4.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from introspect import _checks as V
from introspect.calibrators import _common as C

__all__ = ["TemperatureParams", "fit", "apply"]

T_MIN, T_MAX = 1e-4, 1e4


@struct.dataclass
class TemperatureParams:
    """temperature: [] T > 0 (T > 1 softens overconfident logits). num_classes: static, None for
    binary logits."""

    temperature: jax.Array
    num_classes: int | None = struct.field(pytree_node=False, default=None)


def _derivs(beta, z, y, w):
    """Mean NLL derivative g and second derivative h with respect to beta."""
    logp = jax.nn.log_softmax(beta * z, axis=-1)
    p = jnp.exp(logp)
    zy = jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0]
    m1 = jnp.sum(p * z, axis=-1)
    m2 = jnp.sum(p * z * z, axis=-1)
    wsum = jnp.sum(w)
    g = jnp.sum(w * (m1 - zy)) / wsum
    h = jnp.sum(w * jnp.maximum(m2 - m1 * m1, 0)) / wsum
    return g, h


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit(z, y, m, max_iter: int):
    w = m.astype(z.dtype)
    b_min, b_max = 1.0 / T_MAX, 1.0 / T_MIN
    dt = z.dtype

    def cond(s):
        _, _, _, it, done = s
        return (it < max_iter) & ~done

    def body(s):
        beta, lo, hi, it, _ = s
        g, h = _derivs(beta, z, y, w)
        lo = jnp.where(g < 0, beta, lo)
        hi = jnp.where(g > 0, beta, hi)
        newton = beta - g / jnp.where(h > 0, h, 1)
        good = (h > 0) & jnp.isfinite(newton) & (newton > lo) & (newton < hi)
        # Without an upper bracket yet, grow at least geometrically (separable data make the
        # Newton steps additive); with a bracket, bisect whenever Newton leaves it.
        expand = jnp.isinf(hi)
        new = jnp.where(good, newton, jnp.where(expand, 2 * beta, (lo + hi) / 2))
        new = jnp.where(expand, jnp.maximum(new, 2 * beta), new)
        new = jnp.clip(new, b_min, b_max)
        flat = (g == 0) & ~expand  # g == 0 before any upper bracket: flat tail of separable data
        done = flat | (jnp.abs(new - beta) <= 1e-13 * beta) | ((new == beta) & (it > 0))
        return new, lo, hi, it + 1, done

    init = (jnp.asarray(1.0, dt), jnp.asarray(0.0, dt), jnp.asarray(jnp.inf, dt), 0, False)
    beta, *_ = lax.while_loop(cond, body, init)
    return 1.0 / beta


def fit(
    logits: Any,
    labels: Any,
    *,
    mask: Any = None,
    max_iter: int = 100,
    validate: bool = True,
) -> TemperatureParams:
    """Fits the temperature minimising the NLL of softmax(logits / T).

    Args:
      logits: [n, num_classes] logits, or [n] binary logits (sigmoid).
      labels: [n] class indices (or 0/1 for binary logits).
      mask: optional [n] bool, False = padding.
      max_iter: Newton iterations (each one pass over the data), >= 1.
      validate: check the input.
    Returns:
      TemperatureParams.
    """
    it = V.check_int_option(max_iter, "max_iter", 1)
    z, y, m, binary = C.prepare_logits(logits, labels, mask, validate)
    return TemperatureParams(
        temperature=_fit(z, y, m, it), num_classes=None if binary else z.shape[1]
    )


def apply(
    params: TemperatureParams,
    logits: Any,
    *,
    return_logits: bool = False,
    validate: bool = True,
) -> jax.Array:
    """Calibrated probabilities softmax(logits / T) (binary: sigmoid(logits / T)).

    Args:
      params: from `fit`.
      logits: [n, num_classes] (or [n] binary) logits.
      return_logits: return logits / T instead of probabilities.
      validate: check the input.
    Returns:
      [n, num_classes] (or [n]) calibrated probabilities (or logits).
    """
    z = C.check_apply_logits(logits, params.num_classes, validate)
    scaled = z / params.temperature.astype(z.dtype)
    if return_logits:
        return scaled
    if params.num_classes is None:
        return jax.nn.sigmoid(scaled)
    return jax.nn.softmax(scaled, axis=-1)
