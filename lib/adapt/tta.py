"""Open-set test-time adaptation: the wisdom-of-crowds sample filter, masked entropy minimisation.

Lee, Das, Choo, Choi, "Towards Open-Set Test-Time Adaptation Utilizing the Wisdom of Crowds in
Entropy Minimization", ICCV 2023 (arXiv 2308.06879). Entropy minimisation raises the confidence of
most samples ("the crowd"); noisy samples (wrong or open-set predictions) fail to follow and their
confidence under the adapted model drops below the original model's. The rule, per sample x:

    c_o = argmax_k p_o(k | x)                      the original (frozen source) model's prediction
    keep(x) = p_a(c_o | x) >= p_o(c_o | x) + margin   p_a: the model being adapted
    L = sum_x keep(x) H(p_a(x)) / sum_x keep(x)  -  lambda H(mean_x p_a(x))

We found no code from the authors; the formula follows the paper (its Fig. 6: select the samples
with p_a >= p_o on the original model's class, then minimise the entropy of those only) and the
public reimplementation in UniEnt (github.com/gaozhengqing/UniEnt, `cifar/ostta.py`, criterion
"ent": `values >= values0`). Defaults: margin = 0 (the paper's rule; the OSTTA baseline of
github.com/MarcLafon/cliptta uses 0.05), lambda = 0 (UniEnt subtracts 0.5 x the entropy of the
batch-mean prediction, a diversity term it adds to every method; pass `diversity_weight=0.5` for
it). Where no sample is kept the entropy term is 0 (UniEnt's `.mean()` of nothing would be NaN).

Shapes: logits [..., K] with any leading shape ([batch] for classification, [batch, H, W] for
segmentation); every leading position is one "sample". Pure jnp; jit- and vmap-able.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = [
    "crowd_confidences",
    "crowd_filter",
    "masked_entropy_loss",
    "open_set_tta_loss",
    "softmax_entropy",
]


def _logits(x: Any, name: str, validate: bool) -> jax.Array:
    a = V.as_array(x, name)
    if validate:
        V.check_min_rank(a, name, 1, "logits [..., K]")
        V.check_not_empty(a, name)
        if a.shape[-1] < 2:
            raise ValueError(f"{name}: has {a.shape[-1]} class(es); expected K >= 2 classes")
        V.check_finite(a, name)
    return jnp.asarray(V.as_float(a))


def softmax_entropy(logits: jax.Array) -> jax.Array:
    """H(softmax(logits)) in nats: [..., K] -> [...] (no validation; an inner helper)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def crowd_confidences(
    *, adapted_logits: Any, original_logits: Any, validate: bool = True
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Both models' confidence on the original model's predicted class.

    Args:
      adapted_logits: [..., K] logits of the model being adapted.
      original_logits: [..., K] logits of the frozen original (source) model (no gradient flows
        into them).
      validate: check shapes and values (value checks skipped on tracers).
    Returns:
      (p_a(c_o) [...], p_o(c_o) [...], c_o [...] int32).
    """
    za = _logits(adapted_logits, "adapted_logits", validate)
    zo = _logits(original_logits, "original_logits", validate)
    if validate:
        V.check_same_shape(za, zo, "adapted_logits", "original_logits")
    return _confidences_core(za, zo)


@jax.jit
def _confidences_core(za: jax.Array, zo: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    po = jax.nn.softmax(jax.lax.stop_gradient(zo), axis=-1)
    pred = jnp.argmax(po, axis=-1).astype(jnp.int32)
    conf_o = jnp.max(po, axis=-1)
    pa = jax.nn.softmax(za, axis=-1)
    conf_a = jnp.take_along_axis(pa, pred[..., None], axis=-1)[..., 0]
    return conf_a, conf_o, pred


@jax.jit
def _filter_core(za, zo, margin, valid):
    conf_a, conf_o, _ = _confidences_core(za, zo)
    return jnp.logical_and(conf_a - conf_o >= margin, valid)


def crowd_filter(
    *,
    adapted_logits: Any,
    original_logits: Any,
    margin: float = 0.0,
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """The sample filter: keep x iff p_a(c_o | x) - p_o(c_o | x) >= margin.

    Args:
      adapted_logits: [..., K] logits of the model being adapted.
      original_logits: [..., K] logits of the frozen original model.
      margin: [] the required confidence gain (0 = the paper; may be traced).
      mask: optional [...] validity (padding); masked positions are never kept.
      validate: check the input.
    Returns:
      [...] bool, True for the samples that enter the entropy-minimisation step.
    """
    za = _logits(adapted_logits, "adapted_logits", validate)
    zo = _logits(original_logits, "original_logits", validate)
    if validate:
        V.check_same_shape(za, zo, "adapted_logits", "original_logits")
    m = V.coefficient(margin, "margin", -1.0, 1.0)
    valid = V.as_mask(mask, za.shape[:-1])
    return _filter_core(za, zo, jnp.asarray(m, za.dtype), valid)


def masked_entropy_loss(
    *,
    logits: Any,
    mask: Any = None,
    diversity_weight: float = 0.0,
    valid: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Mean prediction entropy over the kept samples, minus an optional diversity term.

    L = sum_x mask(x) H(p(x)) / max(sum_x mask(x), 1) - diversity_weight * H(mean_x p(x)), the
    batch mean running over the `valid` positions (all of them by default, kept or not).

    Args:
      logits: [..., K] logits of the model being adapted.
      mask: optional [...] bool/0-1, the samples to minimise the entropy of (e.g. `crowd_filter`);
        None = all.
      diversity_weight: [] weight of the batch-mean entropy, >= 0 (may be traced).
      valid: optional [...] validity (padding) for the diversity term and for `mask`.
      validate: check the input.
    Returns:
      [] scalar loss (0 for the entropy term when nothing is kept).
    """
    z = _logits(logits, "logits", validate)
    lead = z.shape[:-1]
    v = V.as_mask(valid, lead, "valid")
    keep = V.as_mask(mask, lead, "mask")
    lam = V.coefficient(diversity_weight, "diversity_weight", 0.0)
    return _entropy_core(z, keep, v, jnp.asarray(lam, z.dtype))


@jax.jit
def _entropy_core(z, keep, v, lam):
    keep = jnp.logical_and(keep, v)
    ent = softmax_entropy(z)
    w = keep.astype(z.dtype)
    loss = jnp.sum(ent * w) / jnp.maximum(jnp.sum(w), 1.0)
    vw = v.astype(z.dtype)[..., None]
    p_bar = jnp.sum(jax.nn.softmax(z, axis=-1) * vw, axis=tuple(range(z.ndim - 1)))
    p_bar = p_bar / jnp.maximum(jnp.sum(vw), 1.0)
    h_bar = -jnp.sum(jnp.where(p_bar > 0, p_bar * jnp.log(jnp.where(p_bar > 0, p_bar, 1.0)), 0.0))
    return loss - lam * h_bar


def open_set_tta_loss(
    *,
    adapted_logits: Any,
    original_logits: Any,
    margin: float = 0.0,
    diversity_weight: float = 0.0,
    valid: Any = None,
    validate: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Filter with `crowd_filter`, then `masked_entropy_loss` on the kept samples.

    Args:
      adapted_logits: [..., K] logits of the model being adapted (the loss differentiates these).
      original_logits: [..., K] logits of the frozen original model (stop-gradient).
      margin: [] the filter's required confidence gain.
      diversity_weight: [] weight of the batch-mean entropy (UniEnt's reimplementation: 0.5).
      valid: optional [...] validity (padding).
      validate: check the input.
    Returns:
      (loss [], keep [...] bool).
    """
    keep = crowd_filter(
        adapted_logits=adapted_logits,
        original_logits=original_logits,
        margin=margin,
        mask=valid,
        validate=validate,
    )
    loss = masked_entropy_loss(
        logits=adapted_logits,
        mask=keep,
        diversity_weight=diversity_weight,
        valid=valid,
        validate=False,
    )
    return loss, keep
