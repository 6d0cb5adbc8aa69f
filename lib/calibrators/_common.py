"""Input preparation of the calibrators: the calibrator-specific part (two-class form of binary
logits, zeroed padding, options of the affine fits, checks of `apply` against the fitted
parameters) on top of the shared boundary checks in `introspect._checks`."""

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
    two-class logits [n, 2] = (0, z), so softmax gives sigmoid. Masked rows are zeroed.
    """
    z, y, m = V.prepare_labelled(
        logits, labels, mask, name="logits", kind="logits", allow_binary=True, validate=validate
    )
    binary = z.ndim == 1
    m = V.valid_or_ones(m, z.shape[:1])
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
    """(scores [n] float, labels [n] float, mask [n] bool) for the binary calibrators; masked
    entries are zeroed. unit: scores are probabilities in [0, 1] (else any finite number);
    labels_kind: "binary" (0/1) or "real" (finite)."""
    kinds = ("probability" if unit else "finite", "binary" if labels_kind == "binary" else "finite")
    s, y, m = V.prepare_pair(scores, labels, mask, kinds=kinds, validate=validate)
    m = V.valid_or_ones(m, s.shape)
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
