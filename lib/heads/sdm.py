"""SDM activation and SDM calibration (Schmaltz 2025, "Similarity-Distance-Magnitude Universal
Verification", arXiv 2502.20167; reference code: github.com/ReexpressAI/sdm,
`research_code/code/sdm_model.py`, `utils_classification.py`, `utils_train_main.py`).

Implemented: the confidence part (activation, per-class CDF calibration, the high-probability
region). Not implemented: SDM networks / LLM fine-tuning, the DKW sample-size bands and the
iterated-learning offsets of the robust estimator (Eq. 12-13, 28), the 1-D CNN exemplar adaptor.

Similarity q (`sdm_similarity`): the number of nearest training neighbours, in order of
distance, whose true label equals their prediction and equals the test prediction (stopping at
the first that does not; the first match is skipped for training points, it is the point
itself). Distance: d0 = the (squared L2, as faiss IndexFlatL2) distance to the nearest training
point; its quantile per true class c is 1 - CDF_c(d0) over the calibration points with q > 0,
and d = min_c of these (`sdm_distance_quantile`). Magnitude: the logits z.

    sdm(z; q, d)_k = (2 + q)^(d (z_k - max z)) / sum_j (2 + q)^(d (z_j - max z))   (Eq. 7)

(q = e - 2, d = 1 is the softmax.) Calibration (`fit_sdm`, over a held-out calibration set):
per true class c the empirical CDF of sdm(...)_c over the calibration points of class c;
u_k = CDF_k(sdm_k) (1 at or above the largest value; Eq. 9); the soft q-bin
q~ = u_yhat * ln(2 + q') with q' = q, or 0 when the SDM argmax differs from argmax z (a flip);
the rescaled output sdm(W u; q~, 1) with a learned [K, K] rescaler W (no bias), trained by the
change-of-base NLL -log_{2 + q~} p_y (Eq. 10-11); a point is OOD when floor(q~) <= 0 or the
rescaled argmax flips. The high-probability region (Alg. 3): the smallest q~ bin b such that,
for every class c, the (1 - alpha) quantile of the rescaled p_c over non-OOD calibration points of
class c with q~ >= b is >= alpha; test points with q~ >= b whose prediction set
{c : p_c >= threshold_c} is {yhat} are "index-conditional" (estimated class-conditional accuracy
alpha).

Deviations: the rescaler starts at the identity (the reference: PyTorch's default Linear init) and
is trained full-batch with Adam through `introspect.train` (the reference: batch size 1, early
stopping at the minimum epoch loss); logs use log-softmax instead of log(x + eps).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from introspect import losses
from introspect.heads import _common as C

Q_OFFSET = 2.0


# ----------------------------------------------------------------------------------------------
# Activation (pure jnp)
# ----------------------------------------------------------------------------------------------


def _sdm(z: jax.Array, log_base: jax.Array, scale: jax.Array, log: bool) -> jax.Array:
    a = (z - jnp.max(z, axis=-1, keepdims=True)) * scale * log_base
    if log:
        return jax.nn.log_softmax(a, axis=-1) / log_base
    return jax.nn.softmax(a, axis=-1)


def sdm_activation(
    logits: Any,
    q: Any,
    *,
    distance_quantile: Any = None,
    log: bool = False,
    q_offset: float = Q_OFFSET,
) -> jax.Array:
    """The SDM activation sdm(z; q, d) (module docstring, Eq. 7).

    Args:
      logits: [n, K] logits z.
      q: [n] (or [n, 1]) similarity values >= 0.
      distance_quantile: optional [n] (or [n, K]) distance quantiles d in [0, 1] (None = 1).
      log: return log_{q_offset + q} of the output (the training form).
      q_offset: the base offset (2 in the paper).
    Returns:
      [n, K] probabilities (or logs in base q_offset + q).
    """
    z = jnp.asarray(logits)
    if z.ndim != 2:
        raise ValueError(f"logits must be [n, K], got shape {z.shape}")
    z = z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(jnp.float32)
    qa = jnp.asarray(q, z.dtype).reshape(-1)
    if qa.shape[0] != z.shape[0]:
        raise ValueError(f"q must be [n] with n = {z.shape[0]}, got shape {np.shape(q)}")
    d = jnp.ones((z.shape[0], 1), z.dtype) if distance_quantile is None else distance_quantile
    d = jnp.asarray(d, z.dtype)
    if d.ndim == 1:
        d = d[:, None]
    if d.shape not in ((z.shape[0], 1), z.shape):
        raise ValueError(f"distance_quantile must be [n] or [n, K] = {z.shape}, got {d.shape}")
    if float(q_offset) <= 1.0:
        raise ValueError(f"q_offset must be > 1 (a base > 1), got {q_offset}")
    if not isinstance(z, jax.core.Tracer):
        if not bool(jnp.all(jnp.isfinite(z))):
            raise ValueError("logits must be finite")
    if not isinstance(qa, jax.core.Tracer):
        if not bool(jnp.all(jnp.isfinite(qa) & (qa >= 0))):
            raise ValueError("q must be finite and >= 0")
    if not isinstance(d, jax.core.Tracer):
        if not bool(jnp.all((d >= 0) & (d <= 1))):
            raise ValueError("distance_quantile must be in [0, 1]")
    log_base = jnp.log(float(q_offset) + qa)[:, None]
    return _sdm(z, log_base, d, log)


# ----------------------------------------------------------------------------------------------
# Similarity, distance and empirical CDFs (pure numpy)
# ----------------------------------------------------------------------------------------------


def sdm_nearest(query: Any, support: Any, *, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(squared L2 distances [n, k], indices [n, k]) of the k nearest support rows, nearest
    first (ties by index), as faiss.IndexFlatL2.search."""
    x = C.as_2d(query, "query").astype(np.float64)
    s = C.as_2d(support, "support").astype(np.float64)
    if x.shape[1] != s.shape[1]:
        raise ValueError(f"query has {x.shape[1]} features, support {s.shape[1]}")
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = min(int(k), s.shape[0])
    d2 = (x * x).sum(1)[:, None] + (s * s).sum(1)[None, :] - 2.0 * x @ s.T
    d2 = np.maximum(d2, 0.0)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d2, idx, 1).astype(np.float32), idx.astype(np.int64)


def sdm_similarity(
    neighbor_labels: Any,
    neighbor_predictions: Any,
    prediction: Any,
    *,
    exclude_first: bool = False,
) -> np.ndarray:
    """Similarity q [n]: leading run of neighbours with label == their prediction == `prediction`.

    Args:
      neighbor_labels, neighbor_predictions: [n, k] true labels and predictions of each point's
        nearest training points, nearest first.
      prediction: [n] the points' own predictions (argmax of their logits).
      exclude_first: skip neighbour 0 (for training points, whose nearest point is themselves).
    """
    lab = np.asarray(neighbor_labels)
    pred = np.asarray(neighbor_predictions)
    yhat = np.asarray(prediction).reshape(-1)
    if lab.ndim != 2 or lab.shape != pred.shape or lab.shape[0] != yhat.shape[0]:
        raise ValueError(
            f"neighbor_labels and neighbor_predictions must be [n, k] and prediction [n]; got "
            f"{lab.shape}, {pred.shape}, {yhat.shape}"
        )
    match = (lab == pred) & (pred == yhat[:, None])
    if exclude_first:
        if match.shape[1] < 2:
            raise ValueError("exclude_first needs at least 2 neighbours per point")
        match = match[:, 1:]
    return np.cumprod(match, axis=1).sum(1).astype(np.int64)


def sdm_support_stats(
    embeddings: Any,
    logits: Any,
    support_embeddings: Any,
    support_labels: Any,
    support_logits: Any,
    *,
    k: int = 1000,
    is_training_support: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(q [n], d0 [n]) of points against the training support (`sdm_nearest` + `sdm_similarity`).

    is_training_support: the points ARE the support (skip the identity match: q from neighbours
    1.., d0 = distance to neighbour 1).
    """
    yhat = np.argmax(C.as_2d(logits, "logits"), axis=1)
    s_pred = np.argmax(C.as_2d(support_logits, "support_logits"), axis=1)
    s_lab = np.asarray(support_labels).reshape(-1)
    if s_lab.shape[0] != s_pred.shape[0]:
        raise ValueError("support_labels and support_logits must have one row per support point")
    dist, idx = sdm_nearest(embeddings, support_embeddings, k=k)
    q = sdm_similarity(s_lab[idx], s_pred[idx], yhat, exclude_first=is_training_support)
    d0 = dist[:, 1] if is_training_support else dist[:, 0]
    return q, d0.astype(np.float64)


def class_cdfs(values: Any, labels: Any, num_classes: int, *, mask: Any = None) -> list[np.ndarray]:
    """Per class c the sorted `values` [n] of the points with `labels` == c (and `mask`)."""
    v = C.as_1d(values, "values")
    y = np.asarray(labels).reshape(-1)
    if y.shape != v.shape:
        raise ValueError(f"labels must be [n] = {v.shape}, got {y.shape}")
    m = np.ones_like(v, bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    return [np.sort(v[m & (y == c)]) for c in range(int(num_classes))]


def cdf_index(
    sorted_values: np.ndarray, values: Any, *, reverse: bool = False, saturate: bool = False
) -> np.ndarray:
    """Empirical CDF position of `values` in `sorted_values` as the reference's getCDFIndex:
    searchsorted(left) / m (1 - that with reverse); 0 for an empty CDF; with saturate, 1 for a
    value >= the largest."""
    v = np.asarray(values, np.float64)
    m = sorted_values.size
    if m == 0:
        return np.zeros_like(v)
    out = np.searchsorted(sorted_values, v, side="left") / m
    if reverse:
        out = 1.0 - out
    if saturate:
        out = np.where(v >= sorted_values[-1], 1.0, out)
    return out


def sdm_distance_quantile(d0: Any, distance_cdfs: Sequence[np.ndarray]) -> np.ndarray:
    """d [n] = min over classes c of 1 - CDF_c(d0) (distance CDFs per true class, `class_cdfs`
    of calibration d0 over points with q > 0); an empty class gives 0."""
    d0 = C.as_1d(d0, "d0")
    if not distance_cdfs:
        raise ValueError("distance_cdfs must hold one sorted array per class")
    per = np.stack([cdf_index(c, d0, reverse=True) for c in distance_cdfs], axis=1)
    return per.min(axis=1)


def sdm_cdf_quantiles(sdm_output: Any, output_cdfs: Sequence[np.ndarray]) -> np.ndarray:
    """u [n, K]: u_k = CDF_k(sdm_k) over the calibration outputs of true class k (saturating)."""
    s = C.as_2d(sdm_output, "sdm_output", dtype=np.float64)
    if s.shape[1] != len(output_cdfs):
        raise ValueError(f"sdm_output has {s.shape[1]} classes, output_cdfs {len(output_cdfs)}")
    return np.stack(
        [cdf_index(output_cdfs[k], s[:, k], saturate=True) for k in range(s.shape[1])], axis=1
    )


def sdm_soft_qbin(
    cdf_quantiles: Any, q: Any, prediction: Any, *, flipped: Any = None, q_offset: float = Q_OFFSET
) -> np.ndarray:
    """q~ [n] = u[yhat] * ln(q_offset + q'), q' = 0 where `flipped` (the SDM argmax differs from
    the logits' argmax), else q."""
    u = C.as_2d(cdf_quantiles, "cdf_quantiles", dtype=np.float64)
    q = C.as_1d(q, "q", n=u.shape[0])
    yhat = np.asarray(prediction).reshape(-1)
    qp = q if flipped is None else np.where(np.asarray(flipped, bool), 0.0, q)
    return u[np.arange(u.shape[0]), yhat] * np.log(float(q_offset) + qp)


def swift_quantile(values: np.ndarray, proportion: float) -> float:
    """The reference's quantile: sorted(values)[min(int(proportion * m), m - 1)]."""
    v = np.sort(np.asarray(values, np.float64))
    return float(v[min(int(proportion * v.size), v.size - 1)])


def sdm_thresholds(
    rescaled: Any, soft_qbin: Any, labels: Any, is_ood: Any, *, alpha: float = 0.95
) -> tuple[np.ndarray, float, float]:
    """The high-probability region (Alg. 3 / calculateOutputThresholdsAdaptive).

    Args:
      rescaled: [n, K] rescaled calibration outputs; soft_qbin: [n] q~; labels: [n] true classes;
      is_ood: [n] bool (excluded); alpha: the target class-conditional accuracy (>= 1 / K).
    Returns:
      (thresholds [K], min_qbin (inf when no bin qualifies), the accuracy estimate: alpha, or 0
      when no bin qualifies).
    """
    r = C.as_2d(rescaled, "rescaled", dtype=np.float64)
    n, k = r.shape
    b = C.as_1d(soft_qbin, "soft_qbin", n=n)
    y = np.asarray(labels).reshape(-1)
    ood = np.asarray(is_ood, bool).reshape(-1)
    if y.shape[0] != n or ood.shape[0] != n:
        raise ValueError("labels and is_ood must have one entry per row of rescaled")
    alpha = float(alpha)
    if not 1.0 / k <= alpha < 1.0:
        raise ValueError(f"alpha must be in [1 / num_classes, 1), got {alpha}")
    keep = ~ood
    for candidate in np.unique(b[keep]):
        thresholds = np.zeros(k)
        for c in range(k):
            vals = r[keep & (y == c) & (b >= candidate), c]
            if vals.size:
                thresholds[c] = max(swift_quantile(vals, 1.0 - alpha), 0.0)
        if np.all(thresholds >= alpha):
            return thresholds, float(candidate), alpha
    return np.zeros(k), float("inf"), 0.0


# ----------------------------------------------------------------------------------------------
# Calibration: the rescaler (trained through introspect.train) and the full pipeline
# ----------------------------------------------------------------------------------------------


def _identity_init(key, shape, dtype=jnp.float32):
    del key
    return jnp.eye(shape[0], shape[1], dtype=dtype)


class _Rescaler(nn.Module):
    """u [n, K] -> u @ W (W [K, K], no bias, initialised to the identity)."""

    num_classes: int

    @nn.compact
    def __call__(self, u):
        return nn.Dense(
            self.num_classes,
            use_bias=False,
            kernel_init=_identity_init,
            name="rescaler",
        )(u)


@losses.register("sdm_rescaler", outputs=("log_probs",), batch=("label",))
def sdm_rescaler_loss(*, outputs, batch):
    """-log_{2 + q~} p_y: the NLL of the rescaled SDM output in its own base (Eq. 11)."""
    lp = jnp.asarray(outputs["log_probs"], jnp.float32)
    y = jnp.asarray(batch["label"]).astype(jnp.int32)
    return -jnp.take_along_axis(lp, y[:, None], axis=1)[:, 0]


def sdm_rescale(cdf_quantiles: Any, soft_qbin: Any, rescaler: Any, *, log: bool = False):
    """sdm(u W; q~, 1) [n, K] (W [K, K]: u @ W as a Dense kernel; torch's weight transposed)."""
    u = jnp.asarray(cdf_quantiles, jnp.float32)
    w = jnp.asarray(rescaler, jnp.float32)
    if u.ndim != 2 or w.shape != (u.shape[1], u.shape[1]):
        raise ValueError(f"need u [n, K] and rescaler [K, K]; got {u.shape} and {w.shape}")
    return sdm_activation(u @ w, soft_qbin, log=log)


@dataclasses.dataclass
class SDMCalibration:
    """What `fit_sdm` learns from the calibration set (see the module docstring)."""

    num_classes: int
    alpha: float
    q_offset: float
    distance_cdfs: list[np.ndarray]
    output_cdfs: list[np.ndarray]
    rescaler: np.ndarray
    thresholds: np.ndarray
    min_qbin: float
    class_conditional_accuracy: float
    spec: dict


def _forward_stats(logits, q, d0, distance_cdfs, q_offset):
    z = C.as_2d(logits, "logits", dtype=np.float64)
    q = C.as_1d(q, "q", n=z.shape[0])
    if np.any(q < 0):
        raise ValueError("q must be >= 0")
    d = sdm_distance_quantile(C.as_1d(d0, "d0", n=z.shape[0]), distance_cdfs)
    out = np.asarray(sdm_activation(z, q, distance_quantile=d, q_offset=q_offset), np.float64)
    yhat = np.argmax(z, axis=1)
    flipped = np.argmax(out, axis=1) != yhat
    return z, q, d, out, yhat, flipped


def fit_sdm(
    logits: Any,
    labels: Any,
    q: Any,
    d0: Any,
    *,
    workdir: str | None = None,
    alpha: float = 0.95,
    train_rescaler: bool = True,
    train_config=None,
    q_offset: float = Q_OFFSET,
) -> SDMCalibration:
    """SDM calibration over a held-out calibration set.

    Args:
      logits: [n, K] the classifier's logits on the calibration points.
      labels: [n] their true classes.
      q, d0: [n] similarity and nearest distance against the training support
        (`sdm_support_stats`).
      workdir: the training loop's workdir (needed when train_rescaler).
      alpha: target class-conditional accuracy of the high-probability region.
      train_rescaler: learn W (else the identity).
      train_config: loop fields for the rescaler (default 300 full-batch Adam steps, lr 0.05).
    Returns:
      SDMCalibration.
    """
    z = C.as_2d(logits, "logits", dtype=np.float64)
    n, k = z.shape
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != n or not np.all((y >= 0) & (y < k)) or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be [n] = [{n}] integer classes in [0, {k})")
    q = C.as_1d(q, "q", n=n)
    if np.any(q < 0):
        raise ValueError("q must be >= 0")
    d0 = C.as_1d(d0, "d0", n=n)
    distance_cdfs = class_cdfs(d0, y, k, mask=q > 0)
    _, _, _, out, yhat, flipped = _forward_stats(z, q, d0, distance_cdfs, q_offset)
    output_cdfs = class_cdfs(out[np.arange(n), y], y, k)
    u = sdm_cdf_quantiles(out, output_cdfs)
    qbin = sdm_soft_qbin(u, q, yhat, flipped=flipped, q_offset=q_offset)
    w = np.eye(k, dtype=np.float32)
    result = None
    if train_rescaler:
        if workdir is None:
            raise ValueError("fit_sdm needs workdir= to train the rescaler")
        model = _Rescaler(k)

        def forward(params, batch):
            base = jnp.log(q_offset + batch["qbin"])[:, None]
            zz = model.apply({"params": params}, batch["u"])
            return {"log_probs": _sdm(zz, base, jnp.ones_like(base), True)}

        fit = C.train_head(
            model,
            {
                "u": u.astype(np.float32),
                "qbin": qbin.astype(np.float32),
                "label": y.astype(np.int32),
            },  # fmt: skip
            loss={"name": "sdm_rescaler"},
            forward=forward,
            init_input=jnp.zeros((1, k), jnp.float32),
            workdir=workdir,
            train_config=train_config,
            spec={"head": "sdm_rescaler"},
            name="sdm_rescaler",
        )
        w = np.asarray(fit.params["rescaler"]["kernel"], np.float32)
        result = fit.result
    rescaled = np.asarray(sdm_rescale(u, qbin, w), np.float64)
    is_ood = (np.floor(qbin) <= 0) | (np.argmax(rescaled, axis=1) != yhat)
    thresholds, min_qbin, acc = sdm_thresholds(rescaled, qbin, y, is_ood, alpha=alpha)
    spec = {
        "num_calibration": int(n),
        "num_ood": int(is_ood.sum()),
        "rescaler_loss": None if result is None else float(result.metrics.get("loss", np.nan)),
    }
    return SDMCalibration(
        num_classes=k,
        alpha=float(alpha),
        q_offset=float(q_offset),
        distance_cdfs=distance_cdfs,
        output_cdfs=output_cdfs,
        rescaler=w,
        thresholds=thresholds,
        min_qbin=min_qbin,
        class_conditional_accuracy=acc,
        spec=spec,
    )


def sdm_predict(cal: SDMCalibration, logits: Any, q: Any, d0: Any) -> dict[str, np.ndarray]:
    """Calibrated SDM outputs of new points (the reference's single_pass_forward, centroid).

    Returns {"prediction" [n] argmax of the logits, "distance_quantile" [n], "sdm" [n, K]
    (Eq. 7), "cdf_quantiles" [n, K], "soft_qbin" [n], "rescaled" [n, K], "confidence" [n]
    = rescaled[prediction], "is_ood" [n] bool, "index_conditional" [n] bool}.
    """
    z, q, d, out, yhat, flipped = _forward_stats(logits, q, d0, cal.distance_cdfs, cal.q_offset)
    if z.shape[1] != cal.num_classes:
        raise ValueError(f"logits have {z.shape[1]} classes, the calibration {cal.num_classes}")
    u = sdm_cdf_quantiles(out, cal.output_cdfs)
    qbin = sdm_soft_qbin(u, q, yhat, flipped=flipped, q_offset=cal.q_offset)
    rescaled = np.asarray(sdm_rescale(u, qbin, cal.rescaler), np.float64)
    is_ood = (np.floor(qbin) <= 0) | (np.argmax(rescaled, axis=1) != yhat)
    qbin = np.where(np.argmax(rescaled, axis=1) != yhat, 0.0, qbin)
    in_set = rescaled >= cal.thresholds[None, :]
    singleton = (in_set.sum(1) == 1) & in_set[np.arange(z.shape[0]), yhat]
    valid = ~is_ood & (qbin >= cal.min_qbin) & singleton & (cal.class_conditional_accuracy > 0.0)
    return {
        "prediction": yhat,
        "distance_quantile": d,
        "sdm": out,
        "cdf_quantiles": u,
        "soft_qbin": qbin,
        "rescaled": rescaled,
        "confidence": rescaled[np.arange(z.shape[0]), yhat],
        "is_ood": is_ood,
        "index_conditional": valid,
    }
