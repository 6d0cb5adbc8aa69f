"""Mixture of weak and strong experts (Mowst; Zeng et al. 2024, "Mixture of Weak & Strong Experts on
Graphs", ICLR 2024; code: github.com/facebookresearch/mowst-gnn, `train_test_engine.py`).

Implemented: the confidence part. The weak expert's confidence is a function of the dispersion of
its predicted distribution p = softmax(z) over K classes (`compute_confidence` in the code):

    variance:  D(p) = Var_k(p_k) / Var(one-hot)  (population variances; Var(one-hot) = (K-1)/K^2)
    entropy:   D(p) = 1 - H(p) / ln K

and C = D(p)^alpha (the code's `model1_conf ** args.alpha`). Training minimises
C * L_weak + (1 - C) * L_strong per example (`mowst_loss`); at inference the weak expert answers
with probability C (`mowst_route` with a key) or, deterministically, when C >= a threshold. The
learned-gate variant ("simple gate" in the code) replaces D^alpha by g = sigmoid(MLP([D_var,
D_ent])) trained with the same loss (`fit_mowst_gate`, through `probes.fit_probe` with the
registered loss "mowst_gate"). Cascading (`mowst_cascade`) answers with the weak expert where the
gate passes the threshold and defers the rest to the strong expert (`decoding.selective.cascade`);
`choose_route_threshold` picks the threshold on validation under a budget for the strong expert.

Not implemented: the graph part (MLP weak expert + GNN strong expert and their alternating
training); here both experts are given (frozen) and only the gate is learned, so the experts'
losses enter as data. Deviation (ours, optional): `strong_cost` adds lambda (1 - g) to the gate's
loss to charge for calling the strong expert (0 = the paper's loss).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect import losses
from introspect.heads import _common as C

DISPERSIONS = ("variance", "entropy")


def mowst_dispersion(logits: Any, *, kind: str = "variance") -> jax.Array:
    """[n] dispersion-based confidence in [0, 1] of logits [n, K] (module docstring)."""
    z = jnp.asarray(logits)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be [n, K] with K >= 2, got shape {z.shape}")
    if kind not in DISPERSIONS:
        raise ValueError(f"kind must be one of {DISPERSIONS}, got {kind!r}")
    z = z if jnp.issubdtype(z.dtype, jnp.floating) else z.astype(jnp.float32)
    k = z.shape[1]
    logp = jax.nn.log_softmax(z, axis=-1)
    p = jnp.exp(logp)
    if kind == "variance":
        return jnp.var(p, axis=-1) / ((k - 1) / k**2)
    entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
    return 1.0 - entropy / jnp.log(k)


def mowst_confidence(logits: Any, *, kind: str = "variance", alpha: float = 1.0) -> jax.Array:
    """[n] C = D(p)^alpha (alpha > 0 sharpens or flattens the confidence)."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return jnp.clip(mowst_dispersion(logits, kind=kind), 0.0, 1.0) ** alpha


def _triple(weak_loss, strong_loss, confidence):
    a = jnp.asarray(weak_loss)
    b = jnp.asarray(strong_loss)
    c = jnp.asarray(confidence)
    if not (a.ndim == 1 and a.shape == b.shape == c.shape):
        raise ValueError(
            f"weak_loss, strong_loss and confidence must be [n] alike, got {a.shape}, {b.shape}, "
            f"{c.shape}"
        )
    return a, b, c


def mowst_loss(weak_loss: Any, strong_loss: Any, confidence: Any) -> jax.Array:
    """[n] C * L_weak + (1 - C) * L_strong (per-example expert losses, e.g. cross-entropies)."""
    a, b, c = _triple(weak_loss, strong_loss, confidence)
    return c * a + (1.0 - c) * b


def mowst_mix(weak_probs: Any, strong_probs: Any, confidence: Any) -> jax.Array:
    """[n, K] C * p_weak + (1 - C) * p_strong (the mixture's predictive distribution)."""
    pw, ps = jnp.asarray(weak_probs), jnp.asarray(strong_probs)
    c = jnp.asarray(confidence)
    if pw.ndim != 2 or pw.shape != ps.shape or c.shape != (pw.shape[0],):
        raise ValueError(f"need probs [n, K] alike and confidence [n]; got {pw.shape}, "
                         f"{ps.shape}, {c.shape}")  # fmt: skip
    return c[:, None] * pw + (1.0 - c[:, None]) * ps


def mowst_route(confidence: Any, *, threshold: float | None = None, key=None) -> jax.Array:
    """[n] bool, True = use the weak expert: sampled with probability C (key given; the paper's
    inference), or C >= threshold (deterministic)."""
    c = jnp.asarray(confidence)
    if c.ndim != 1:
        raise ValueError(f"confidence must be [n], got shape {c.shape}")
    if (key is None) == (threshold is None):
        raise ValueError("give exactly one of threshold= (deterministic) or key= (sampled)")
    if key is not None:
        return jax.random.uniform(key, c.shape) < c
    return c >= threshold


@losses.register("mowst_gate", outputs=("logits",), batch=("weak_loss", "strong_loss"))
def mowst_gate_loss(*, outputs, batch, strong_cost=0.0):
    """g L_weak + (1 - g) (L_strong + strong_cost), g = sigmoid(gate logit) [b]."""
    g = jax.nn.sigmoid(jnp.asarray(outputs["logits"], jnp.float32))
    lw = jnp.asarray(batch["weak_loss"], jnp.float32)
    ls = jnp.asarray(batch["strong_loss"], jnp.float32)
    return g * lw + (1.0 - g) * (ls + strong_cost)


def mowst_gate_features(weak_logits: Any, extra: Any = None) -> np.ndarray:
    """[n, 2 (+ e)] gate inputs: [D_variance, D_entropy] of the weak expert's logits, with
    optional extra features [n, e] appended (the code's original_data="true")."""
    z = C.as_2d(weak_logits, "weak_logits")
    d = np.stack([np.asarray(mowst_dispersion(z, kind=k)) for k in DISPERSIONS], axis=1).astype(
        np.float32
    )
    if extra is None:
        return d
    return np.concatenate([d, C.as_2d(extra, "extra", n=z.shape[0])], axis=1)


def fit_mowst_gate(
    weak_logits: Any,
    weak_loss: Any,
    strong_loss: Any,
    *,
    workdir: str,
    extra_features: Any = None,
    strong_cost: float = 0.0,
    probe_config: Mapping[str, Any] | None = None,
    train_config=None,
):
    """Learn the gate g = sigmoid(MLP(dispersions)) minimising g L_weak + (1 - g) L_strong.

    Args:
      weak_logits: [n, K] the weak expert's logits on training examples.
      weak_loss, strong_loss: [n] each expert's loss on them (e.g. cross-entropy of the true
        class, or 1 - correct).
      extra_features: optional [n, e] appended to the dispersions.
      strong_cost: lambda >= 0 charged per strong call (ours; 0 = the paper).
      probe_config: overrides of `probes.default_probe_config()` (default MLP (16,)).
    Returns:
      `probes.ProbeFit` (its "label" for the logged accuracy is 1[L_weak <= L_strong]).
    """
    from introspect import probes

    x = mowst_gate_features(weak_logits, extra_features)
    lw = C.as_1d(weak_loss, "weak_loss", dtype=np.float32, n=x.shape[0])
    ls = C.as_1d(strong_loss, "strong_loss", dtype=np.float32, n=x.shape[0])
    if strong_cost < 0:
        raise ValueError(f"strong_cost must be >= 0, got {strong_cost}")
    probe = {
        "name": "mlp",
        "hidden": (16,),
        "class_balanced": False,
        "loss": {"name": "mowst_gate", "options": {"strong_cost": float(strong_cost)}},
    }
    probe.update(dict(probe_config or {}))
    cfg = C.full_batch(train_config, x.shape[0], C.head_train_config)
    data = {"features": x, "label": (lw <= ls).astype(np.float32), "weak_loss": lw,
            "strong_loss": ls}  # fmt: skip
    return probes.fit_probe(probe, cfg, data, workdir=workdir, meta={"head": "mowst"})


def mowst_gate(fit, weak_logits: Any, extra_features: Any = None) -> np.ndarray:
    """[n] learned gate g (probability of keeping the weak expert's answer)."""
    from introspect import probes

    x = mowst_gate_features(weak_logits, extra_features)
    return probes.predict(fit.model, fit.variables, x)


def mowst_cascade(weak_answers, gate: Any, strong_answers, *, threshold: float = 0.5):
    """(answers [n], deferred [n] bool): the weak expert's answer where gate >= threshold, else
    the strong expert's (`decoding.selective.cascade`; strong_answers may hold None where the
    strong expert was not run)."""
    from introspect.decoding.selective import cascade

    return cascade(weak_answers, np.asarray(gate, np.float64), strong_answers, threshold=threshold)


def choose_route_threshold(
    gate: Any, weak_correct: Any, strong_correct: Any, *, strong_budget: float = 1.0
) -> tuple[float, float, float]:
    """(threshold, accuracy, strong fraction) on validation: the threshold on the gate with the
    best cascade accuracy whose share of strong calls is <= strong_budget (ties: fewer strong
    calls). Candidates: each distinct gate value and +inf (always strong) and -inf (never)."""
    g = C.as_1d(gate, "gate")
    wc = C.as_1d(weak_correct, "weak_correct", n=g.shape[0])
    sc = C.as_1d(strong_correct, "strong_correct", n=g.shape[0])
    budget = C.check_fraction(strong_budget, "strong_budget")
    best = None
    for thr in np.concatenate([[-np.inf], np.unique(g), [np.inf]]):
        weak = g >= thr
        frac = float(1.0 - weak.mean())
        if frac > budget + 1e-12:
            continue
        acc = float(np.where(weak, wc, sc).mean())
        key = (acc, -frac)
        if best is None or key > best[0]:
            best = (key, (float(thr), acc, frac))
    return best[1]
