"""Teacher-divergence confidence weights for self-training (hand keypoint / mask domain adaptation).

Ohkawa, Li, Fu, Furuta, Kitani, Sato, "Domain Adaptive Hand Keypoint and Pixel Localization in the
Wild", ECCV 2022 (arXiv 2203.08344). Two teacher networks predict keypoints and hand masks on an
unlabelled target image; the student is trained on their pseudo-labels, each image weighted by a
confidence that falls as the two teachers disagree:

    d(x) = pose_weight * D_pose(T1(x), T2(x)) + seg_weight * D_seg(T1(x), T2(x))
    w(x) = 2 (1 - sigmoid(scale * d(x)))        form="sigmoid" (default)
    w(x) = exp(-scale * d(x))                    form="exp" (introspect's METHODS.md wording)

Source: the authors' release github.com/tkhkaeio/Hand-Pose-Seg-DA, `run_joint.py`
(`uct_weight = 2 * (1 - torch.sigmoid(cfg.da_para.sigmoid_weight * loss_select))`): the weight is
1 at d = 0 and falls to 0 as d grows, with d named like a task loss ("loss_select"). That release
omits the teacher code and the value of `sigmoid_weight`, so the divergence here is the task
losses evaluated between the two teachers (an assumption, stated): SmoothL1 (beta 1, PyTorch's
default) between keypoint predictions, the same as the repository's pose loss, and for masks the
binary cross-entropy of one teacher's probabilities against the other's, symmetrised (the
repository's segmentation loss is BCE). `scale` defaults to 1 (unpublished). Both weight forms
are decreasing in d, equal 1 at d = 0 and agree to first order up to the factor 2
(2(1 - sigmoid(s d)) = 1 - s d / 2 + O(d^3), exp(-s d) = 1 - s d + O(d^2)).

Shapes: predictions [batch, ...] (keypoints [batch, J, 2|3] or heatmaps [batch, J, H, W]; masks
[batch, H, W] probabilities); divergences and weights are [batch].
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = [
    "DIVERGENCES",
    "WEIGHT_FORMS",
    "hand_pseudo_label_weights",
    "teacher_confidence",
    "teacher_divergence",
]

DIVERGENCES = ("smooth_l1", "l1", "l2", "bce", "js")
WEIGHT_FORMS = ("sigmoid", "exp")


def _pair(a: Any, b: Any, names: tuple[str, str], validate: bool) -> tuple[jax.Array, jax.Array]:
    x = V.as_array(a, names[0])
    y = V.as_array(b, names[1])
    if validate:
        V.check_min_rank(x, names[0], 1, "[batch, ...]")
        V.check_not_empty(x, names[0])
        V.check_same_shape(x, y, names[0], names[1])
        V.check_finite(x, names[0])
        V.check_finite(y, names[1])
    dt = jnp.result_type(V.as_float(x).dtype, V.as_float(y).dtype)
    return jnp.asarray(x, dt), jnp.asarray(y, dt)


def _mean_rows(x: jax.Array) -> jax.Array:
    """[batch, ...] -> [batch], the mean over everything after the batch axis."""
    return x.reshape(x.shape[0], -1).mean(axis=1) if x.ndim > 1 else x


def teacher_divergence(
    *,
    pred_a: Any,
    pred_b: Any,
    kind: str = "smooth_l1",
    beta: float = 1.0,
    eps: float = 1e-7,
    validate: bool = True,
) -> jax.Array:
    """Per-example divergence between two teachers' predictions, the mean over all entries.

    kind:
      "smooth_l1": Huber with threshold beta: 0.5 e^2 / beta if |e| < beta else |e| - beta / 2
        (PyTorch SmoothL1Loss), e = a - b; for keypoint coordinates / offsets / heatmaps.
      "l1": |a - b|.  "l2": (a - b)^2.
      "bce": symmetric binary cross-entropy of probabilities, (BCE(a; b) + BCE(b; a)) / 2 with
        BCE(p; q) = -[q log p + (1 - q) log(1 - p)], p clipped to [eps, 1 - eps]; for masks.
      "js": binary Jensen-Shannon divergence of probabilities (nats, in [0, log 2]).

    Args:
      pred_a, pred_b: [batch, ...] the two teachers' predictions (probabilities in [0, 1] for
        "bce" / "js").
      kind: one of DIVERGENCES.
      beta: [] SmoothL1 threshold > 0 (may be traced).
      eps: [] probability clipping for "bce" / "js", in (0, 0.5).
      validate: check the input.
    Returns:
      [batch] divergence >= 0.
    """
    V.check_choice(kind, "kind", DIVERGENCES)
    a, b = _pair(pred_a, pred_b, ("pred_a", "pred_b"), validate)
    if kind in ("bce", "js") and validate:
        V.check_probabilities(a, "pred_a")
        V.check_probabilities(b, "pred_b")
    bt = V.coefficient(beta, "beta", 0.0, lo_open=True)
    ep = V.coefficient(eps, "eps", 0.0, 0.5, lo_open=True, hi_open=True)
    return _divergence_core(a, b, jnp.asarray(bt, a.dtype), jnp.asarray(ep, a.dtype), kind=kind)


@functools.partial(jax.jit, static_argnames="kind")
def _divergence_core(a, b, bt, ep, *, kind):
    if kind == "smooth_l1":
        e = jnp.abs(a - b)
        d = jnp.where(e < bt, 0.5 * e**2 / bt, e - 0.5 * bt)
    elif kind == "l1":
        d = jnp.abs(a - b)
    elif kind == "l2":
        d = (a - b) ** 2
    else:
        pa, pb = jnp.clip(a, ep, 1 - ep), jnp.clip(b, ep, 1 - ep)
        if kind == "bce":

            def bce(p, q):
                return -(q * jnp.log(p) + (1 - q) * jnp.log1p(-p))

            d = 0.5 * (bce(pa, pb) + bce(pb, pa))
        else:
            pm = 0.5 * (pa + pb)

            def kl(p, q):
                return p * jnp.log(p / q) + (1 - p) * jnp.log((1 - p) / (1 - q))

            d = jnp.maximum(0.5 * (kl(pa, pm) + kl(pb, pm)), 0.0)
    return _mean_rows(d)


def teacher_confidence(
    *, divergence: Any, scale: float = 1.0, form: str = "sigmoid", validate: bool = True
) -> jax.Array:
    """Pseudo-label confidence weights from the teachers' divergence.

    form "sigmoid": w = 2 (1 - sigmoid(scale * d)) (the authors' code); "exp": w = exp(-scale * d).

    Args:
      divergence: [...] d >= 0 (e.g. `teacher_divergence`).
      scale: [] the sharpness > 0 (may be traced; unpublished in the paper, default 1).
      form: one of WEIGHT_FORMS.
      validate: check the input.
    Returns:
      [...] weights in (0, 1], 1 where the teachers agree.
    """
    V.check_choice(form, "form", WEIGHT_FORMS)
    d = V.as_array(divergence, "divergence")
    if validate:
        V.check_range(d, "divergence", 0.0, float("inf"), what="divergences >= 0")
    d = jnp.asarray(V.as_float(d))
    s = V.coefficient(scale, "scale", 0.0, lo_open=True)
    return _confidence_core(d, jnp.asarray(s, d.dtype), form=form)


@functools.partial(jax.jit, static_argnames="form")
def _confidence_core(d, s, *, form):
    if form == "sigmoid":
        return 2.0 * jax.nn.sigmoid(-s * d)  # = 2 (1 - sigmoid(s d)), stable for large d
    return jnp.exp(-s * d)


def hand_pseudo_label_weights(
    *,
    keypoints_a: Any,
    keypoints_b: Any,
    masks_a: Any = None,
    masks_b: Any = None,
    scale: float = 1.0,
    pose_weight: float = 1.0,
    seg_weight: float = 1.0,
    form: str = "sigmoid",
    mask_divergence: str = "bce",
    validate: bool = True,
) -> jax.Array:
    """Per-image confidence of the two teachers' keypoint (+ mask) pseudo-labels.

    d = pose_weight * smooth_l1(keypoints_a, keypoints_b) + seg_weight * D(masks_a, masks_b),
    w = `teacher_confidence(d)`. (The authors' task losses carry weights 1e7 on the dense pose
    offsets and 100 on the masks; set pose_weight / seg_weight to match a given setup.) D is the
    symmetric BCE by default (the repository's mask loss); it equals the masks' entropy, not 0,
    when two soft masks agree; mask_divergence="js" is 0 at agreement.

    Args:
      keypoints_a, keypoints_b: [batch, ...] the teachers' keypoints (or heatmaps / offsets).
      masks_a, masks_b: optional [batch, H, W] the teachers' hand-mask probabilities (both or
        neither).
      scale: [] sharpness > 0.  pose_weight, seg_weight: [] >= 0.
      form: "sigmoid" (the authors' code) or "exp".
      mask_divergence: a `teacher_divergence` kind for the masks ("bce", "js", ...).
      validate: check the input.
    Returns:
      [batch] weights in (0, 1].
    """
    V.check_choice(mask_divergence, "mask_divergence", DIVERGENCES)
    if (masks_a is None) != (masks_b is None):
        raise ValueError("masks_a and masks_b: pass both teachers' masks or neither")
    pw = V.coefficient(pose_weight, "pose_weight", 0.0)
    d = pw * teacher_divergence(
        pred_a=keypoints_a, pred_b=keypoints_b, kind="smooth_l1", validate=validate
    )
    if masks_a is not None:
        sw = V.coefficient(seg_weight, "seg_weight", 0.0)
        ds = teacher_divergence(
            pred_a=masks_a, pred_b=masks_b, kind=mask_divergence, validate=validate
        )
        if validate and ds.shape != d.shape:
            raise ValueError(
                f"masks_a: batch size {ds.shape[0]} differs from keypoints_a's {d.shape[0]}; "
                "expected the same images"
            )
        d = d + sw * ds
    return teacher_confidence(divergence=d, scale=scale, form=form, validate=False)
