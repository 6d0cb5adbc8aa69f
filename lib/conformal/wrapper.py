"""`Conformalized`: wrap any score function and a calibration set into a pure set predictor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from introspect import _checks as V
from introspect.conformal import thresholds as T
from introspect.conformal.classification import SCORES, nonconformity, prediction_sets
from introspect.conformal.mondrian import class_conditional_quantiles
from introspect.conformal.split import quantile

ScoreFn = Callable[[Any, jax.Array], jax.Array]


def binary_score(p: jax.Array, labels: jax.Array) -> jax.Array:
    """Score of a binary confidence p = P(label 1): 1 - p for label 1, p for label 0.

    This is LAC on the two-class distribution (1 - p, p); with class-conditional thresholds it is
    LYNX's exit calibration. p: [n] in [0, 1], labels: [n] in {0, 1} -> [n].
    """
    p = jnp.asarray(p)
    return jnp.where(jnp.asarray(labels) == 1, 1.0 - p, p)


@struct.dataclass
class Conformalized:
    """A calibrated split-conformal set predictor for a fixed score function.

    `predict(outputs)` returns C(x) = {k: s(x, k) <= q} ([N, K] bool), q the threshold
    (`class_conditional`: q_k per label). It is a pure function of `outputs`: jit / vmap freely.

    Guarantee: if the score function was fixed before seeing the calibration set and the n
    calibration points and a test point are exchangeable, P(Y in C(X)) >= 1 - alpha (marginal),
    and < 1 - alpha + 1 / (n + 1) when scores are almost surely distinct; with
    `class_conditional`, P(Y in C(X) | Y = k) >= 1 - alpha for every class k. A threshold of +inf
    (too few calibration points) gives the trivial full set.

    Attributes:
      thresholds: [] or [K] (class-conditional).
      n: calibration size; alpha: miscoverage level; num_classes: K.
      score: the score function s(outputs, labels) -> [N], or the name of a built-in.
      class_conditional: per-class thresholds.
    """

    thresholds: jax.Array
    n: int = struct.field(pytree_node=False)
    alpha: float = struct.field(pytree_node=False)
    num_classes: int = struct.field(pytree_node=False)
    score: str | ScoreFn = struct.field(pytree_node=False)
    class_conditional: bool = struct.field(pytree_node=False)
    score_kwargs: tuple = struct.field(pytree_node=False, default=())

    def label_scores(self, outputs: Any) -> jax.Array:
        """[N, K] scores s(x, k) of every label for a batch of outputs (leading axis N)."""
        fn = _score_fn(self.score, dict(self.score_kwargs))
        n = jax.tree_util.tree_leaves(outputs)[0].shape[0]
        per_label = lambda k: fn(outputs, jnp.full((n,), k, jnp.int32))
        return jax.lax.map(per_label, jnp.arange(self.num_classes)).T

    def predict(self, outputs: Any) -> jax.Array:
        """[N, K] bool prediction sets for a batch of outputs (see the class docstring)."""
        if self.score in ("aps", "raps", "lac") and not self.class_conditional:
            return prediction_sets(
                outputs,
                self.thresholds,
                score=self.score,
                validate=False,
                **dict(self.score_kwargs),
            )
        return self.label_scores(outputs) <= self.thresholds

    __call__ = predict


def _score_fn(score, kwargs) -> ScoreFn:
    if callable(score):
        return score
    if score == "binary":
        return binary_score
    return lambda probs, labels: nonconformity(probs, labels, score=score, validate=False, **kwargs)


def conformalize(
    score: str | ScoreFn,
    outputs: Any,
    labels: jax.Array,
    *,
    alpha: float,
    num_classes: int | None = None,
    class_conditional: bool = False,
    k_reg: int = 1,
    lam: float = 0.0,
    validate: bool = True,
    on_infinite: str = "warn",
) -> Conformalized:
    """Calibrate a score function on (outputs, label) pairs; returns a `Conformalized` predictor.

    Args:
      score: a function s(outputs, labels) -> [n] (larger = less conforming; it must accept any
        int label array so that every candidate label can be scored), or a built-in name:
        "lac" / "aps" / "raps" (outputs = [n, K] probabilities; APS / RAPS deterministic) or
        "binary" (outputs = [n] confidence that the label is 1, e.g. a probe's probability or a
        reward model's P(correct); K = 2).
      outputs: model outputs for the calibration set, any pytree with leading axis n.
      labels: [n] int labels in [0, num_classes).
      alpha: miscoverage level in (0, 1).
      num_classes: K (inferred for "lac" / "aps" / "raps" / "binary").
      class_conditional: one threshold per label (Mondrian on the label).
      k_reg, lam: RAPS options.
    Returns:
      Conformalized (see its docstring for the guarantee).
    """
    builtin = isinstance(score, str)
    if builtin and score not in SCORES + ("binary",):
        raise ValueError(
            f"score must be a callable or one of {SCORES + ('binary',)}; got {score!r}."
        )
    if builtin and score in SCORES:
        num_classes = int(jnp.shape(outputs)[-1])
    elif builtin:
        num_classes = 2
    num_classes = V.check_int_option(num_classes, "num_classes", 2)
    kwargs = {"k_reg": k_reg, "lam": lam} if score == "raps" else {}
    labels = labels if validate else jnp.asarray(labels)
    if validate:
        labels = V.as_class_labels(labels, "labels", num_classes)
        T.check_level(alpha, "alpha")
        leaves = jax.tree_util.tree_leaves(outputs)
        if not leaves or any(jnp.shape(x)[:1] != labels.shape for x in leaves):
            raise ValueError(
                f"outputs must have leading axis n = {labels.shape[0]} (as labels); got leaf "
                f"shapes {[tuple(jnp.shape(x)) for x in leaves]}."
            )
    if builtin and score in SCORES:
        s = nonconformity(outputs, labels, score=score, validate=validate, **kwargs)
    else:
        if builtin and validate:
            p = V.as_float_array(outputs, "outputs", ndim=1)
            V.check_probabilities(p, "outputs")
        s = jnp.asarray(_score_fn(score, kwargs)(outputs, labels))
        if s.shape != labels.shape:
            raise ValueError(f"score must return shape [n] = {labels.shape}; got {s.shape}.")
    if class_conditional:
        q = class_conditional_quantiles(
            s,
            labels,
            num_classes=num_classes,
            alpha=alpha,
            validate=validate,
            on_infinite=on_infinite,
        )
    else:
        q = quantile(s, alpha=alpha, validate=validate, on_infinite=on_infinite)
    return Conformalized(
        thresholds=q,
        n=int(labels.shape[0]),
        alpha=float(alpha),
        num_classes=int(num_classes),
        score=score,
        class_conditional=bool(class_conditional),
        score_kwargs=tuple(sorted(kwargs.items())),
    )
