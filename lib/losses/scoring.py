"""Proper scoring rules and classification losses, per example (lower = better).

Shapes. Binary: `probs`/`logits` [...] (probability or logit of class 1) with `labels` [...] in
[0, 1] (hard 0/1 or soft targets). Multiclass: `probs`/`logits` [..., K] with `labels` [...]
integer class indices. The leading shape is free ([batch], [batch, length], ...); every function
returns the per-example loss with the labels' shape, so the caller chooses the reduction (and the
mask). All are written as losses (negatively oriented scores): Brier, log and spherical are
strictly proper, i.e. the expected loss under y ~ p is uniquely minimised by forecasting p.
Coefficients (eps, smoothing, gamma, alpha) may be traced values: jit, vmap or differentiate
over them; they are range-checked only when concrete.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = [
    "brier_loss",
    "log_loss",
    "spherical_loss",
    "focal_loss",
    "cross_entropy",
    "label_smoothing_cross_entropy",
]


def _prepare(values: Any, labels: Any, *, name: str, kind: str, validate: bool):
    """Returns (values as float, labels, multiclass flag). kind: "probs" or "logits"."""
    x = V.as_array(values, name)
    y = V.as_array(labels, "labels")
    if x.ndim == y.ndim + 1:
        multiclass = True
    elif x.shape == y.shape:
        multiclass = False
    else:
        raise ValueError(
            f"{name} and labels: shapes {tuple(x.shape)} and {tuple(y.shape)} do not match; "
            f"expected {name} [...] with labels [...] (binary) or {name} [..., K] with labels "
            "[...] (class indices)"
        )
    if multiclass and x.shape[:-1] != y.shape:
        raise ValueError(
            f"{name} and labels: leading shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}; "
            f"expected {name} [..., K] and labels [...]"
        )
    if validate:
        V.check_not_empty(x, name)
        if kind == "probs":
            if multiclass:
                V.check_simplex(x, name)
            else:
                V.check_probabilities(x, name)
        else:
            V.check_finite(x, name)
        if multiclass:
            V.check_class_labels(y, "labels", x.shape[-1])
        else:
            V.check_range(y, "labels", 0.0, 1.0, what="targets in [0, 1] (1 = positive)")
    return jnp.asarray(V.as_float(x)), jnp.asarray(y), multiclass


def _onehot(labels: jax.Array, k: int, dtype) -> jax.Array:
    return jax.nn.one_hot(labels.astype(jnp.int32), k, dtype=dtype)


def _take(x: jax.Array, labels: jax.Array) -> jax.Array:
    """x[..., labels]: [..., K] and [...] class indices -> [...]."""
    return jnp.take_along_axis(x, labels.astype(jnp.int32)[..., None], axis=-1)[..., 0]


def brier_loss(*, probs: Any, labels: Any, validate: bool = True) -> jax.Array:
    """Brier score per example: sum_k (q_k - 1[y = k])^2 (binary: (q - y)^2); lower = better.

    Args:
      probs: [...] P(class 1) (binary) or [..., K] probability vectors.
      labels: [...] targets in [0, 1] (binary) or class indices.
      validate: check the input (value checks skipped on tracers).
    Returns:
      [...] loss, in [0, 1] (binary) or [0, 2] (multiclass).
    """
    q, y, multi = _prepare(probs, labels, name="probs", kind="probs", validate=validate)
    if multi:
        return jnp.sum((q - _onehot(y, q.shape[-1], q.dtype)) ** 2, axis=-1)
    return (q - y.astype(q.dtype)) ** 2


def log_loss(
    *, probs: Any, labels: Any, eps: float | None = None, validate: bool = True
) -> jax.Array:
    """Logarithmic score per example, -log q_y (binary: -[y log q + (1 - y) log(1 - q)]).

    Lower = better. Probabilities are clipped to [eps, 1 - eps] (eps defaults to the dtype's
    machine epsilon), so a zero probability on the outcome gives a large finite loss.

    Args:
      probs: [...] P(class 1) or [..., K] probability vectors.
      labels: [...] targets in [0, 1] or class indices.
      eps: [] clipping constant in [0, 0.5) (may be traced); None = machine epsilon.
      validate: check the input.
    Returns:
      [...] loss in nats.
    """
    q, y, multi = _prepare(probs, labels, name="probs", kind="probs", validate=validate)
    e = (
        float(jnp.finfo(q.dtype).eps)
        if eps is None
        else V.coefficient(eps, "eps", 0.0, 0.5, hi_open=True)
    )
    e = V.as_dtype(e, dtype=q.dtype)
    q = jnp.clip(q, e, 1 - e)
    if multi:
        return -_take(jnp.log(q), y)
    yf = y.astype(q.dtype)
    return -(yf * jnp.log(q) + (1 - yf) * jnp.log1p(-q))


def spherical_loss(*, probs: Any, labels: Any, validate: bool = True) -> jax.Array:
    """Spherical score as a loss: 1 - q_y / ||q||_2 (binary q = (1 - q1, q1)); lower = better.

    Args:
      probs: [...] P(class 1) or [..., K] probability vectors.
      labels: [...] targets in [0, 1] (soft targets mix the two outcomes) or class indices.
      validate: check the input.
    Returns:
      [...] loss in [0, 1).
    """
    q, y, multi = _prepare(probs, labels, name="probs", kind="probs", validate=validate)
    if multi:
        return 1 - _take(q, y) / jnp.linalg.norm(q, axis=-1)
    yf = y.astype(q.dtype)
    norm = jnp.sqrt(q**2 + (1 - q) ** 2)
    return 1 - (yf * q + (1 - yf) * (1 - q)) / norm


def cross_entropy(*, logits: Any, labels: Any, validate: bool = True) -> jax.Array:
    """Softmax cross-entropy per example (binary logits: sigmoid cross-entropy); lower = better.

    Args:
      logits: [...] logit of class 1 or [..., K] logits.
      labels: [...] targets in [0, 1] or class indices.
      validate: check the input.
    Returns:
      [...] loss in nats.
    """
    return label_smoothing_cross_entropy(
        logits=logits, labels=labels, smoothing=0.0, validate=validate
    )


def label_smoothing_cross_entropy(
    *, logits: Any, labels: Any, smoothing: float = 0.1, validate: bool = True
) -> jax.Array:
    """Cross-entropy against the smoothed target (1 - s) onehot(y) + s / K; lower = better.

    Binary logits use K = 2: the target for class 1 is (1 - s) y + s / 2.

    Args:
      logits: [...] logit of class 1 or [..., K] logits.
      labels: [...] targets in [0, 1] or class indices.
      smoothing: [] s in [0, 1] (may be traced).
      validate: check the input.
    Returns:
      [...] loss in nats.
    """
    s = V.coefficient(smoothing, "smoothing", 0.0, 1.0)
    z, y, multi = _prepare(logits, labels, name="logits", kind="logits", validate=validate)
    s = V.as_dtype(s, dtype=z.dtype)
    if multi:
        k = z.shape[-1]
        target = (1 - s) * _onehot(y, k, z.dtype) + s / k
        return -jnp.sum(target * jax.nn.log_softmax(z, axis=-1), axis=-1)
    t = (1 - s) * y.astype(z.dtype) + s / 2
    return -(t * jax.nn.log_sigmoid(z) + (1 - t) * jax.nn.log_sigmoid(-z))


def focal_loss(
    *,
    logits: Any,
    labels: Any,
    gamma: float = 2.0,
    alpha: float | None = None,
    validate: bool = True,
) -> jax.Array:
    """Focal loss -alpha_y (1 - p_y)^gamma log p_y (Lin et al., 2017); lower = better.

    Binary logits (sigmoid): p_y = p if y = 1 else 1 - p, alpha_y = alpha for y = 1 and
    1 - alpha for y = 0 (soft targets mix both terms). Multiclass (softmax): alpha, if given,
    multiplies every class. gamma = 0 and alpha = None is cross-entropy.

    Args:
      logits: [...] logit of class 1 or [..., K] logits.
      labels: [...] targets in [0, 1] or class indices.
      gamma: [] focusing parameter >= 0 (may be traced, e.g. to learn or schedule it).
      alpha: optional [] class-balance weight in [0, 1] (may be traced).
      validate: check the input.
    Returns:
      [...] loss.
    """
    g = V.coefficient(gamma, "gamma", 0.0)
    a = None if alpha is None else V.coefficient(alpha, "alpha", 0.0, 1.0)
    z, y, multi = _prepare(logits, labels, name="logits", kind="logits", validate=validate)
    g = V.as_dtype(g, dtype=z.dtype)
    a = None if a is None else V.as_dtype(a, dtype=z.dtype)
    if multi:
        logp = _take(jax.nn.log_softmax(z, axis=-1), y)
        loss = -_modulator(logp, g) * logp
        return loss if a is None else a * loss
    yf = y.astype(z.dtype)
    logp1, logp0 = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
    w1 = 1.0 if a is None else a
    w0 = 1.0 if a is None else 1 - a
    return -(yf * w1 * _modulator(logp1, g) * logp1 + (1 - yf) * w0 * _modulator(logp0, g) * logp0)


def _modulator(logp: jax.Array, gamma: Any) -> jax.Array:
    """(1 - p)^gamma from log p, with finite gradients (wrt log p and gamma) at p = 1.

    At p = 1 the base is 0: the value is 0^gamma (1 for gamma = 0, else 0) and the power is
    taken of 1 instead, so neither 0 * inf (d/dp at gamma = 0) nor log 0 (d/dgamma) appears.
    """
    base = -jnp.expm1(logp)
    at_one = base == 0
    at_one_value = jnp.where(jnp.asarray(gamma) == 0, 1, 0).astype(logp.dtype)
    return jnp.where(at_one, at_one_value, jnp.where(at_one, 1, base) ** gamma)
