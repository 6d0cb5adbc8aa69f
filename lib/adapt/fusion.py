"""IEMF: inverse-effectiveness multimodal fusion (the fusion module's gradient gain).

He, Zhao, Li, Kong, Yang, Zeng, "Incorporating brain-inspired mechanisms for multimodal learning
in artificial intelligence" (arXiv 2505.10176). Inverse effectiveness: the weaker the unimodal
cues relative to the fused signal, the stronger the multisensory integration. Per training batch,

    s_m  = sum_i softmax(z_m,i)[y_i]        for each unimodal head m and for the fused head (s_f)
    rho  = mean_m s_m / s_f
    k    = gain * (1 + tanh(1 - rho))       in gain * (0, 1 + tanh 1)
    grad(fusion params) <- k * grad + N(0, std(grad)^2)   (noise: the released code, OGM-GE style)

Source: the authors' code, github.com/Brain-Cog-Lab/IEMF, "Audio Visual Classification/
train_snn.py" and `train_aba.py` (`ratio_av = ((score_a + score_v) / 2) / score_av`,
`coeff_av = args.inverse_coef * (1 + tanh(1. - ratio_av))`, `inverse_coef` 1 in the main scripts);
the two-modality mean generalises here to M modalities. The noise term (`torch.zeros_like(g)
.normal_(0, g.std() + 1e-8)`, unbiased std of the unscaled gradient) is applied only when an RNG
key is passed. The paper's core is fusion dynamics; only its confidence-driven gain is here.

Shapes: unimodal logits [M, batch, K] (or a sequence of M [batch, K]), fused logits [batch, K],
labels [batch] int. Pure jnp.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = ["iemf_coefficient", "iemf_scale_gradients", "label_confidence_sum"]


def label_confidence_sum(
    *, logits: Any, labels: Any, mask: Any = None, validate: bool = True
) -> jax.Array:
    """s = sum_i softmax(logits_i)[labels_i] over the (unmasked) batch.

    Args:
      logits: [batch, K]; labels: [batch] class indices; mask: optional [batch] validity.
    Returns:
      [] the summed probability of the true class.
    """
    z = V.as_array(logits, "logits")
    y = V.as_array(labels, "labels")
    if validate:
        V.check_rank(z, "logits", 2, "[batch, K]")
        V.check_not_empty(z, "logits")
        V.check_rank(y, "labels", 1, "[batch] class indices")
        V.check_leading(z, y, "logits", "labels")
        V.check_finite(z, "logits")
        V.check_class_labels(y, "labels", z.shape[1])
    m = V.as_mask(mask, z.shape[:1])
    return _label_sum(jnp.asarray(V.as_float(z)), jnp.asarray(y, jnp.int32), m)


@jax.jit
def _label_sum(z: jax.Array, y: jax.Array, m: jax.Array) -> jax.Array:
    p = jax.nn.softmax(z, axis=-1)
    py = jnp.take_along_axis(p, y[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.where(m, py, 0.0))


@jax.jit
def _iemf_core(uni, zf, y, m, gain):
    s_f = _label_sum(zf, y, m)
    s_m = jax.vmap(lambda z: _label_sum(z, y, m))(uni)
    rho = jnp.mean(s_m) / jnp.maximum(s_f, jnp.finfo(s_f.dtype).tiny)
    return gain * (1.0 + jnp.tanh(1.0 - rho))


def iemf_coefficient(
    *,
    unimodal_logits: Any,
    fused_logits: Any,
    labels: Any,
    gain: float = 1.0,
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """The IEMF gain k = gain * (1 + tanh(1 - mean_m s_m / s_fused)).

    Args:
      unimodal_logits: [M, batch, K] (or a sequence of M [batch, K]) logits of each modality's
        own head (M >= 1).
      fused_logits: [batch, K] logits of the fused head.
      labels: [batch] class indices.
      gain: [] the paper's inverse coefficient > 0 (`--inverse-coef`; may be traced).
      mask: optional [batch] validity.
      validate: check the input.
    Returns:
      [] k in gain * (0, 1 + tanh(1)): > gain when the unimodal heads are, on average, less
      confident in the true class than the fused head (weak cues -> stronger fusion update).
    """
    if isinstance(unimodal_logits, Sequence) and not hasattr(unimodal_logits, "shape"):
        if len(unimodal_logits) == 0:
            raise ValueError("unimodal_logits: got no modality; expected M >= 1 [batch, K] arrays")
        uni = [V.as_array(u, f"unimodal_logits[{i}]") for i, u in enumerate(unimodal_logits)]
        if validate:
            for i, u in enumerate(uni):
                V.check_rank(u, f"unimodal_logits[{i}]", 2, "[batch, K]")
                V.check_same_shape(u, uni[0], f"unimodal_logits[{i}]", "unimodal_logits[0]")
        uni = jnp.stack([jnp.asarray(u) for u in uni])
    else:
        uni = V.as_array(unimodal_logits, "unimodal_logits")
        if validate:
            V.check_rank(uni, "unimodal_logits", 3, "[M, batch, K]")
            V.check_not_empty(uni, "unimodal_logits")
    zf = V.as_array(fused_logits, "fused_logits")
    if validate:
        V.check_rank(zf, "fused_logits", 2, "[batch, K]")
        V.check_not_empty(zf, "fused_logits")
        if tuple(uni.shape[1:]) != tuple(zf.shape):
            raise ValueError(
                f"unimodal_logits and fused_logits: shapes {tuple(uni.shape)} and "
                f"{tuple(zf.shape)} do not match; expected [M, batch, K] and [batch, K]"
            )
    y = V.as_array(labels, "labels")
    if validate:
        V.check_rank(y, "labels", 1, "[batch] class indices")
        if y.shape[0] != zf.shape[0]:
            raise ValueError(
                f"labels: has {y.shape[0]} entries; expected one per example ({zf.shape[0]})"
            )
        V.check_finite(uni, "unimodal_logits")
        V.check_finite(zf, "fused_logits")
        V.check_class_labels(y, "labels", zf.shape[1])
    m = V.as_mask(mask, zf.shape[:1])
    g = V.coefficient(gain, "gain", 0.0, lo_open=True)
    zf = jnp.asarray(V.as_float(zf))
    uni = jnp.asarray(uni, zf.dtype)
    return _iemf_core(uni, zf, jnp.asarray(y, jnp.int32), m, jnp.asarray(g, zf.dtype))


def iemf_scale_gradients(grads: Any, coefficient: Any, *, rng: jax.Array | None = None) -> Any:
    """Scale the fusion module's gradients by the IEMF gain, with the released code's noise.

    g <- k g (rng None) or k g + N(0, (std(g) + 1e-8)^2) per leaf (rng given; std is the unbiased
    standard deviation of the unscaled leaf, as `torch.Tensor.std`; 0 for one-element leaves).

    Args:
      grads: pytree of gradient arrays of the fusion module only (select it before calling).
      coefficient: [] k from `iemf_coefficient`.
      rng: optional PRNG key for the noise term.
    Returns:
      the scaled pytree (same structure and dtypes).
    """
    k = jnp.asarray(coefficient)
    if k.shape != ():
        raise ValueError(f"coefficient: has shape {tuple(k.shape)}; expected a scalar []")
    leaves, treedef = jax.tree.flatten(grads)
    if rng is None:
        return jax.tree.unflatten(treedef, [(k * g).astype(g.dtype) for g in leaves])
    keys = jax.random.split(rng, max(len(leaves), 1))
    out = []
    for key, g in zip(keys, leaves, strict=False):
        std = jnp.std(g, ddof=1) if g.size > 1 else jnp.zeros((), g.dtype)
        noise = jax.random.normal(key, g.shape, dtype=g.dtype) * (std + 1e-8)
        out.append((k * g + noise).astype(g.dtype))
    return jax.tree.unflatten(treedef, out)
