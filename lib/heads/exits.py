"""Learned exits and anytime stopping.

JEI-DNN (Regol, Chataoui, Coates 2024, "Jointly-Learned Exit and Inference for a Dynamic Neural
Network", arXiv 2310.09163; code: github.com/networkslab/dynn, `gate_training_helper.py`,
`classifier_training_helper.py`, `learnable_uncertainty_gate.py`). L exits, each with an
inference module (IM: a linear classifier on the exit's hidden state) and, for l < L - 1, a gate
(GM: a linear map of the IM's uncertainty features [p_max, entropy, margin, entropy of p^2 / sum
p^2], read with the IM's logits detached), gate probability g_l = sigmoid(gate logit).
Inference exits at the first l with g_l >= threshold (0.5), else at the last exit.
Training objective, as in the authors' code (one joint step here; the reference alternates
phases, and the two parts touch disjoint parameters, so the joint step has the same gradients):

* gates: per example the oracle exit l* = argmin_l (CE_l + lambda c_l) (c_l the normalised cost
  of exit l, the last = 1), gate targets t_l = 1[l >= l*], loss = mean_l w_l BCE(gate_l, t_l) with
  w_l = pos_weight_l where t_l = 1, else 1 (`jei_gate_targets`);
* IMs: sum_l p_l CE_l with p_l = max(0, min(g_l, 1 - sum_{k<l} g_k)) (gates detached;
  `jei_exit_weights`), rescaled by r = sum_l CE_l / sum_l p_l CE_l, divided by L. Deviation: the
  reference does not detach r, which makes its gradient that of sum_l CE_l / L (available as
  im_weighting="uniform"); we detach r, so the exit probabilities weight the gradient (default
  "weighted"). The last exit, which the reference leaves to the frozen backbone head, is trained
  too, with weight 1 - sum_{l < L-1} p_l (ours).

Dynamic Confidence (Li, Jones, Furber 2023, "Unleashing the Potential of Spiking Neural Networks
by Dynamic Confidence", ICCV 2023): an anytime model emits outputs at timesteps
t = 0..T-1; the confidence at t is the top softmax probability of the outputs accumulated so far
(`anytime_confidence`), inference stops at the first t whose confidence passes a threshold
(`dynamic_stop`), and the threshold is chosen on a validation set (`choose_dynamic_threshold`):
the lowest-latency threshold whose validation accuracy at the stop meets a target accuracy. The
spiking-network parts (spike decoding, SNN conversion) are not implemented: any anytime output
sequence works.
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

IM_WEIGHTINGS = ("weighted", "uniform")


# ----------------------------------------------------------------------------------------------
# JEI-DNN pure functions
# ----------------------------------------------------------------------------------------------


def exit_uncertainty_features(logits: Any) -> jax.Array:
    """[..., 4] JEI-DNN gate inputs of logits [..., K]: p_max, entropy (nats), margin
    p_(1) - p_(2), and the entropy of p^2 / sum p^2."""
    z = jnp.asarray(logits)
    if z.ndim < 1 or z.shape[-1] < 2:
        raise ValueError(f"logits must be [..., K] with K >= 2, got shape {z.shape}")
    z = z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(jnp.float32)
    logp = jax.nn.log_softmax(z, axis=-1)
    p = jnp.exp(logp)
    top2 = jax.lax.top_k(p, 2)[0]
    entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
    log_p2 = jax.nn.log_softmax(2.0 * logp, axis=-1)
    p2 = jnp.exp(log_p2)
    entropy_pow = -jnp.sum(jnp.where(p2 > 0, p2 * log_p2, 0.0), axis=-1)
    return jnp.stack([top2[..., 0], entropy, top2[..., 0] - top2[..., 1], entropy_pow], -1)


def default_exit_costs(num_exits: int) -> np.ndarray:
    """Normalised costs (l + 1) / L of exits l = 0..L-1 (the last costs 1)."""
    if not isinstance(num_exits, int | np.integer) or num_exits < 2:
        raise ValueError(f"need at least 2 exits, got {num_exits!r}")
    return (np.arange(num_exits) + 1.0) / num_exits


def jei_gate_targets(ce: Any, costs: Any, cost_weight: float) -> tuple[jax.Array, jax.Array]:
    """(oracle exit l* [n], gate targets [n, L - 1]) from per-exit losses ce [n, L]:
    l* = argmin_l ce_l + cost_weight * costs_l (first on ties), targets t_l = 1[l >= l*]."""
    ce = jnp.asarray(ce)
    c = jnp.asarray(costs, ce.dtype)
    if ce.ndim != 2 or c.shape != (ce.shape[1],):
        raise ValueError(f"need ce [n, L] and costs [L]; got {ce.shape} and {c.shape}")
    best = jnp.argmin(ce + cost_weight * c[None, :], axis=1)
    targets = (jnp.arange(ce.shape[1] - 1)[None, :] >= best[:, None]).astype(ce.dtype)
    return best, targets


def jei_exit_weights(gate_probs: Any) -> jax.Array:
    """[n, L] exit weights from gate probabilities g [n, L - 1]: p_l = max(0, min(g_l,
    1 - sum_{k<l} g_k)) for l < L - 1, and the last exit 1 - sum_l p_l."""
    g = jnp.asarray(gate_probs)
    if g.ndim != 2:
        raise ValueError(f"gate_probs must be [n, L - 1], got shape {g.shape}")
    before = jnp.cumsum(g, axis=1) - g
    p = jnp.maximum(0.0, jnp.minimum(g, 1.0 - before))
    return jnp.concatenate([p, jnp.maximum(0.0, 1.0 - p.sum(1, keepdims=True))], axis=1)


def jei_first_exit(gate_probs: Any, *, threshold: float = 0.5) -> jax.Array:
    """[n] exit index: the first l with g_l >= threshold, else L - 1 (the last exit)."""
    g = jnp.asarray(gate_probs)
    if g.ndim != 2:
        raise ValueError(f"gate_probs must be [n, L - 1], got shape {g.shape}")
    passed = g >= threshold
    first = jnp.argmax(passed, axis=1)
    return jnp.where(passed.any(axis=1), first, g.shape[1])


@losses.register("jei_dnn", outputs=("logits", "gate_logits"), batch=("label",))
def jei_dnn_loss(
    *,
    outputs,
    batch,
    costs=None,
    cost_weight=0.1,
    pos_weights=None,
    im_weighting: str = "weighted",
):
    """JEI-DNN's per-example objective: IM loss + gate loss (module docstring).

    outputs: "logits" [b, L, K] per-exit classifier logits, "gate_logits" [b, L - 1].
    batch: "label" [b] classes. Options: costs [L] (default (l + 1) / L), cost_weight lambda,
    pos_weights [L - 1] (default 1), im_weighting "weighted" | "uniform".
    """
    z = jnp.asarray(outputs["logits"], jnp.float32)
    gl = jnp.asarray(outputs["gate_logits"], jnp.float32)
    y = jnp.asarray(batch["label"]).astype(jnp.int32)
    num_exits = z.shape[1]
    if gl.shape[1] != num_exits - 1:
        raise ValueError(f"gate_logits must be [b, L - 1] = [b, {num_exits - 1}], got {gl.shape}")
    if im_weighting not in IM_WEIGHTINGS:
        raise ValueError(f"im_weighting must be one of {IM_WEIGHTINGS}, got {im_weighting!r}")
    c = default_exit_costs(num_exits) if costs is None else costs
    c = jnp.asarray(c, jnp.float32)
    if c.shape != (num_exits,):
        raise ValueError(f"costs must have one entry per exit ({num_exits}), got {c.shape}")
    ce = -jnp.take_along_axis(jax.nn.log_softmax(z, -1), y[:, None, None], axis=-1)[..., 0]
    if im_weighting == "weighted":
        p = jax.lax.stop_gradient(jei_exit_weights(jax.nn.sigmoid(gl)))
        sce = jax.lax.stop_gradient(ce)
        r = sce.sum(1) / jnp.maximum((p * sce).sum(1), 1e-12)
        im = jnp.sum(jax.lax.stop_gradient(p * r[:, None]) * ce, axis=1) / num_exits
    else:
        im = ce.sum(1) / num_exits
    _, t = jei_gate_targets(jax.lax.stop_gradient(ce), c, cost_weight)
    pw = jnp.ones((num_exits - 1,)) if pos_weights is None else jnp.asarray(pos_weights)
    bce = jnp.logaddexp(0.0, gl) - t * gl
    gate = jnp.mean(bce * (t * pw[None, :] + (1.0 - t)), axis=1)
    return im + gate


class ExitHeads(nn.Module):
    """Per-exit classifiers and gates: h [n, L, d] -> {"logits" [n, L, K], "gate_logits"
    [n, L - 1]}; gate l reads `exit_uncertainty_features` of exit l's detached logits."""

    num_exits: int
    num_classes: int

    @nn.compact
    def __call__(self, h):
        logits = jnp.stack(
            [nn.Dense(self.num_classes, name=f"im_{i}")(h[:, i]) for i in range(self.num_exits)],
            axis=1,
        )
        feats = exit_uncertainty_features(jax.lax.stop_gradient(logits[:, :-1]))
        gates = [
            nn.Dense(1, name=f"gate_{i}")(feats[:, i])[:, 0] for i in range(self.num_exits - 1)
        ]
        return {"logits": logits, "gate_logits": jnp.stack(gates, axis=1)}


def _exit_features(features: Any, name: str = "features") -> np.ndarray:
    x = np.asarray(features, np.float32)
    if x.ndim != 3 or x.shape[1] < 2:
        raise ValueError(f"{name} must be [n, L, d] with L >= 2 exits, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite")
    return x


def fit_jei_dnn(
    features: Any,
    labels: Any,
    *,
    num_classes: int,
    workdir: str,
    costs: Sequence[float] | None = None,
    cost_weight: float = 0.1,
    pos_weights: Sequence[float] | None = None,
    im_weighting: str = "weighted",
    train_config=None,
) -> C.HeadFit:
    """Train JEI-DNN exit heads jointly (loss "jei_dnn") through `introspect.train`.

    Args:
      features: [n, L, d] hidden state at each of the L exits (e.g. layers of an LM at the
        answer position), standardised per exit and feature with the training statistics.
      labels: [n] classes in [0, num_classes).
      costs: [L] normalised exit costs (default (l + 1) / L); cost_weight: lambda (the
        reference's CE_IC_tradeoff); pos_weights: [L - 1] weights of positive gate targets.
      train_config: loop fields (default 300 full-batch Adam steps, lr 0.05).
    Returns:
      HeadFit (model `ExitHeads`, params, stats) for `jei_dnn_predict`.
    """
    x = _exit_features(features)
    n, num_exits, _ = x.shape
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != n or y.dtype.kind not in "iu" or np.any((y < 0) | (y >= num_classes)):
        raise ValueError(f"labels must be [n] = [{n}] integer classes in [0, {num_classes})")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    c = default_exit_costs(num_exits) if costs is None else C.as_1d(costs, "costs", n=num_exits)
    if pos_weights is not None:
        C.as_1d(pos_weights, "pos_weights", n=num_exits - 1)
    if im_weighting not in IM_WEIGHTINGS:
        raise ValueError(f"im_weighting must be one of {IM_WEIGHTINGS}, got {im_weighting!r}")
    stats = C.standardize_stats(x, axis=(0,))
    model = ExitHeads(num_exits, int(num_classes))
    options = {
        "costs": [float(v) for v in c],
        "cost_weight": float(cost_weight),
        "im_weighting": im_weighting,
    }
    if pos_weights is not None:
        options["pos_weights"] = [float(v) for v in pos_weights]

    def forward(params, batch):
        return model.apply({"params": params}, C.apply_stats(batch["features"], stats))

    return C.train_head(
        model,
        {"features": x, "label": y.astype(np.int32)},
        loss={"name": "jei_dnn", "options": options},
        forward=forward,
        init_input=jnp.zeros((1, *x.shape[1:]), jnp.float32),
        workdir=workdir,
        train_config=train_config,
        spec={
            "head": "jei_dnn",
            "num_exits": num_exits,
            "num_classes": int(num_classes),
            **options,
        },  # fmt: skip
        stats=stats,
        name="jei_dnn",
    )


def jei_dnn_predict(fit: C.HeadFit, features: Any, *, threshold: float = 0.5) -> dict:
    """Exit decisions of trained JEI-DNN heads.

    Returns {"logits" [n, L, K], "gate_probs" [n, L - 1], "exit" [n], "prediction" [n],
    "confidence" [n] (top softmax probability at the exit)}.
    """
    x = _exit_features(features)
    if x.shape[1] != fit.spec["num_exits"]:
        raise ValueError(f"features have {x.shape[1]} exits, the heads {fit.spec['num_exits']}")
    out = fit.model.apply({"params": fit.params}, C.apply_stats(jnp.asarray(x), fit.stats))
    g = jax.nn.sigmoid(out["gate_logits"])
    ex = jei_first_exit(g, threshold=threshold)
    z = jnp.take_along_axis(out["logits"], ex[:, None, None], axis=1)[:, 0]
    p = jax.nn.softmax(z, -1)
    return {
        "logits": np.asarray(out["logits"]),
        "gate_probs": np.asarray(g),
        "exit": np.asarray(ex),
        "prediction": np.asarray(jnp.argmax(z, -1)),
        "confidence": np.asarray(p.max(-1)),
    }


# ----------------------------------------------------------------------------------------------
# Dynamic Confidence
# ----------------------------------------------------------------------------------------------


def anytime_confidence(outputs: Any, *, cumulative: bool = True) -> tuple[jax.Array, jax.Array]:
    """(confidence [n, T], prediction [n, T]) of anytime outputs [n, T, K]: the top softmax
    probability (and its class) of the running mean of the outputs up to t (of the output at t
    alone when cumulative=False)."""
    z = jnp.asarray(outputs)
    if z.ndim != 3 or z.shape[-1] < 2:
        raise ValueError(f"outputs must be [n, T, K] with K >= 2, got shape {z.shape}")
    z = z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(jnp.float32)
    if cumulative:
        z = jnp.cumsum(z, axis=1) / jnp.arange(1, z.shape[1] + 1, dtype=z.dtype)[None, :, None]
    p = jax.nn.softmax(z, axis=-1)
    return p.max(-1), p.argmax(-1)


def _lengths(lengths: Any, n: int, t: int) -> np.ndarray:
    if lengths is None:
        return np.full((n,), t, np.int64)
    ln = np.asarray(lengths).reshape(-1)
    if ln.shape[0] != n or ln.dtype.kind not in "iu" or np.any((ln < 1) | (ln > t)):
        raise ValueError(f"lengths must be [n] = [{n}] integers in [1, {t}]")
    return ln.astype(np.int64)


def dynamic_stop(confidence: Any, threshold: float, *, lengths: Any = None) -> np.ndarray:
    """[n] stop timestep: the first t < length with confidence >= threshold, else length - 1.

    confidence: [n, T]; lengths: optional [n] timesteps available per row (default T).
    """
    c = np.asarray(confidence, np.float64)
    if c.ndim != 2 or c.shape[1] < 1:
        raise ValueError(f"confidence must be [n, T], got shape {c.shape}")
    if np.any(np.isnan(c)):
        raise ValueError("confidence must not contain NaN")
    ln = _lengths(lengths, c.shape[0], c.shape[1])
    ok = (c >= threshold) & (np.arange(c.shape[1])[None, :] < ln[:, None])
    return np.where(ok.any(1), ok.argmax(1), ln - 1)


@dataclasses.dataclass(frozen=True)
class DynamicThreshold:
    """threshold: the chosen confidence threshold (inf = never stop early); accuracy and
    mean_steps (timesteps used, stop + 1) on the validation set; met_target: whether accuracy
    reached the target (else the most accurate threshold was returned)."""

    threshold: float
    accuracy: float
    mean_steps: float
    met_target: bool


def choose_dynamic_threshold(
    confidence: Any,
    correct: Any,
    *,
    target_accuracy: float,
    lengths: Any = None,
    num_candidates: int = 512,
) -> DynamicThreshold:
    """The lowest-latency threshold whose validation accuracy at the stop is >= target_accuracy.

    Args:
      confidence: [n, T] validation confidences (`anytime_confidence`).
      correct: [n, T] whether the prediction at each timestep is right.
      target_accuracy: in [0, 1].
      lengths: optional [n] available timesteps.
      num_candidates: thresholds tried: the distinct confidence values, thinned to this many
        quantiles, plus inf (always run to the end). Ties in latency go to higher accuracy.
    """
    c = np.asarray(confidence, np.float64)
    ok = np.asarray(correct, np.float64)
    if c.ndim != 2 or ok.shape != c.shape:
        raise ValueError(f"confidence and correct must be [n, T] alike, got {c.shape}, {ok.shape}")
    if not np.all((ok == 0) | (ok == 1)):
        raise ValueError("correct must hold 0/1 values")
    target = C.check_fraction(target_accuracy, "target_accuracy")
    if not isinstance(num_candidates, int) or num_candidates < 1:
        raise ValueError(f"num_candidates must be a positive int, got {num_candidates!r}")
    ln = _lengths(lengths, c.shape[0], c.shape[1])
    valid = np.arange(c.shape[1])[None, :] < ln[:, None]
    values = np.unique(c[valid])
    if values.size > num_candidates:
        values = np.unique(np.quantile(values, np.linspace(0, 1, num_candidates)))
    candidates = np.concatenate([values, [np.inf]])
    rows = np.arange(c.shape[0])
    best = None
    for thr in candidates:
        stop = dynamic_stop(c, thr, lengths=ln)
        acc = float(ok[rows, stop].mean())
        steps = float((stop + 1).mean())
        key = (acc >= target, -steps if acc >= target else acc, acc, -steps)
        if best is None or key > best[0]:
            best = (key, DynamicThreshold(float(thr), acc, steps, acc >= target))
    return best[1]
