"""Input preparation shared by the calibrators."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V


def prepare_logits(
    logits: Any, labels: Any, mask: Any, validate: bool
) -> tuple[jax.Array, jax.Array, jax.Array, bool]:
    """(logits [n, K] float, labels [n] int32, mask [n] bool, binary flag).

    Binary input is logits [n] (logit of class 1) with labels [n] in {0, 1}; it is returned as
    two-class logits [n, 2] = (0, z), so softmax gives sigmoid.
    """
    z = V.as_array(logits, "logits")
    y = V.as_array(labels, "labels")
    if validate:
        V.check_rank(z, "logits", (1, 2), "[n] (binary) or [n, num_classes]")
        V.check_not_empty(z, "logits")
        V.check_rank(y, "labels", 1, "a 1-D array [n]")
        V.check_leading(z, y, "logits", "labels")
    binary = z.ndim == 1
    m = V.as_mask(mask, z.shape[:1])
    if validate:
        V.check_any_valid(m)
        V.check_finite(z, "logits", m)
        if binary:
            V.check_binary(y, "labels", m)
        else:
            V.check_class_labels(y, "labels", z.shape[1], m)
    z = V.as_float(z)
    if binary:
        z = jnp.stack([jnp.zeros_like(z), z], axis=-1)
    y = jnp.where(m, y.astype(jnp.int32), 0)
    z = jnp.where(m[:, None], z, 0)
    return z, y, m, binary


def prepare_affine_fit(
    logits: Any, labels: Any, mask: Any, l2: Any, max_iter: Any, validate: bool, what: str
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, int]:
    """Shared input handling of the multiclass affine calibrators (vector / matrix scaling):
    (logits [n, K], labels [n], mask [n], l2 as a scalar of the logits' dtype, max_iter)."""
    reg = V.check_float_option(l2, "l2", 0.0)
    it = V.check_int_option(max_iter, "max_iter", 1)
    if validate and getattr(logits, "ndim", jnp.ndim(logits)) != 2:
        raise ValueError(f"logits: expected [n, num_classes] multiclass logits for {what}")
    z, y, m, _ = prepare_logits(logits, labels, mask, validate)
    return z, y, m, jnp.asarray(reg, z.dtype), it


def check_apply_logits(logits: Any, num_classes: int | None, validate: bool) -> jax.Array:
    z = V.as_array(logits, "logits")
    if validate:
        if num_classes is None:
            V.check_rank(z, "logits", 1, "[n] binary logits (the calibrator was fit on those)")
        else:
            V.check_rank(z, "logits", 2, "[n, num_classes]")
            if z.shape[1] != num_classes:
                raise ValueError(
                    f"logits: has {z.shape[1]} classes; the calibrator was fit on {num_classes}"
                )
        V.check_finite(z, "logits")
    return V.as_float(z)


def prepare_scores(
    scores: Any, labels: Any, mask: Any, validate: bool, *, unit: bool, labels_kind: str = "binary"
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(scores [n] float, labels [n] float, mask [n] bool) for the binary calibrators."""
    s = V.as_array(scores, "scores")
    y = V.as_array(labels, "labels")
    if validate:
        V.check_rank(s, "scores", 1, "a 1-D array [n]")
        V.check_not_empty(s, "scores")
        V.check_same_shape(s, y, "scores", "labels")
    m = V.as_mask(mask, s.shape)
    if validate:
        V.check_any_valid(m)
        if unit:
            V.check_probabilities(s, "scores", m)
        else:
            V.check_finite(s, "scores", m)
        if labels_kind == "binary":
            V.check_binary(y, "labels", m)
        else:
            V.check_finite(y, "labels", m)
    s = V.as_float(s)
    return jnp.where(m, s, 0), jnp.where(m, y.astype(s.dtype), 0), m


def check_apply_scores(scores: Any, validate: bool, *, unit: bool) -> jax.Array:
    s = V.as_array(scores, "scores")
    if validate:
        if s.ndim == 0:
            raise ValueError("scores: is a scalar; expected an array [...]")
        if unit:
            V.check_probabilities(s, "scores")
        else:
            V.check_finite(s, "scores")
    return V.as_float(s)


def weighted_nll(z: jax.Array, y: jax.Array, m: jax.Array) -> jax.Array:
    """Mean NLL over masked rows of softmax(z) [n, K] at labels y [n]."""
    logp = jax.nn.log_softmax(z, axis=-1)
    nll = -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
    w = m.astype(z.dtype)
    return jnp.sum(w * nll) / jnp.sum(w)
