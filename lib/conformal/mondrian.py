"""Mondrian (group-conditional) conformal thresholds and LYNX's binary exit rule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from introspect import _checks as V
from introspect.conformal import thresholds as T


def mondrian_quantiles(
    scores: jax.Array,
    groups: jax.Array,
    *,
    num_groups: int,
    alpha: float,
    validate: bool = True,
    on_infinite: str = "warn",
) -> jax.Array:
    """Per-group split-conformal thresholds (Mondrian conformal prediction).

    For each group g with n_g calibration points, q_g is the ceil((n_g + 1)(1 - alpha))-th
    smallest score of that group (+inf if that rank exceeds n_g, including empty groups).
    Guarantee: for a test point whose group is g and which is exchangeable with group g's
    calibration points, P(S <= q_g | group = g) >= 1 - alpha, for every g separately
    (and < 1 - alpha + 1 / (n_g + 1) for almost surely distinct scores). Class-conditional
    conformal is the case groups = labels.

    Args:
      scores: [n] calibration nonconformity scores.
      groups: [n] int group ids in [0, num_groups).
      num_groups: G, the number of groups (static).
      alpha: miscoverage level in (0, 1).
      validate: shape / value checks; False skips them.
      on_infinite: "warn" | "raise" | "ignore" for groups whose threshold is +inf.
    Returns:
      [G] thresholds.
    """
    if validate:
        scores = V.as_float_array(scores, "scores", ndim=1)
        T.check_on_infinite(on_infinite)
        T.check_level(alpha, "alpha")
        V.check_not_empty(scores, "scores")
        num_groups = V.check_int_option(num_groups, "num_groups", 1)
        groups = V.as_class_labels(groups, "groups", num_groups, f"group ids in [0, {num_groups})")
        V.check_same_shape(scores, groups, "scores", "groups")
        V.check_no_nan(scores, "scores")
    else:
        scores, groups = jnp.asarray(scores), jnp.asarray(groups)
    if V.is_concrete(alpha):
        q, finite, counts = _mondrian_jit(scores, groups, num_groups=num_groups, alpha=float(alpha))
    else:
        q, finite, counts = _mondrian(scores, groups, num_groups=num_groups, alpha=alpha)
    if validate and V.is_concrete(finite) and not bool(jnp.all(finite)):
        bad = [int(g) for g in jnp.nonzero(~finite)[0]]
        sizes = [int(counts[g]) for g in bad]
        T.report_infinite(
            f"Mondrian threshold is +inf for group(s) {bad} with {sizes} calibration point(s); "
            f"alpha = {float(alpha)} needs n_g >= {T.min_calibration_size(float(alpha))}.",
            on_infinite,
        )
    return q.astype(scores.dtype)


def _mondrian(scores, groups, *, num_groups, alpha):
    n = scores.shape[0]
    _, s_sorted = jax.lax.sort((groups, scores), num_keys=2)
    counts = jnp.bincount(groups, length=num_groups)
    starts = jnp.cumsum(counts) - counts
    k = T.conformal_rank_dynamic(counts, alpha)
    finite = k <= counts
    q = jnp.where(finite, s_sorted[jnp.clip(starts + k - 1, 0, n - 1)], jnp.inf)
    return q, finite, counts


_mondrian_jit = jax.jit(_mondrian, static_argnames=("num_groups", "alpha"))


def class_conditional_quantiles(
    scores: jax.Array,
    labels: jax.Array,
    *,
    num_classes: int,
    alpha: float,
    validate: bool = True,
    on_infinite: str = "warn",
) -> jax.Array:
    """Class-conditional thresholds: `mondrian_quantiles` with the true label as the group.

    Guarantee: P(Y in C(X) | Y = k) >= 1 - alpha for every class k, when the sets are built with
    `prediction_sets(probs, q[None, :] ...)`, i.e. label k enters the set iff s(x, k) <= q_k.

    Args:
      scores: [n] calibration scores s(x_i, y_i).
      labels: [n] true labels in [0, num_classes).
    Returns:
      [K] per-class thresholds.
    """
    return mondrian_quantiles(
        scores,
        labels,
        num_groups=num_classes,
        alpha=alpha,
        validate=validate,
        on_infinite=on_infinite,
    )


@struct.dataclass
class ExitDecision:
    """Result of LYNX's conformal exit rule.

    Attributes:
      prediction_set: [..., 2] bool; [..., 0] is "0 in S", [..., 1] is "1 in S". The four
        possible sets are {}, {0}, {1} and {0, 1}.
      exit: [...] bool, True iff S == {1}.
    """

    prediction_set: jax.Array
    exit: jax.Array


def exit_thresholds(
    p: jax.Array,
    labels: jax.Array,
    *,
    delta: float,
    validate: bool = True,
    on_infinite: str = "warn",
) -> tuple[jax.Array, jax.Array]:
    """LYNX's class-conditional split-conformal thresholds (q0, q1) for a binary probe.

    Positives (forced answer correct, y = 1) score 1 - p, negatives score p; per class c,
    q_c = the ceil((n_c + 1)(1 - delta))-th smallest score (+inf if that rank exceeds n_c).
    Guarantee (with `exit_decision`): P(exit | y = 0) <= P(0 not in S | y = 0) <= delta for a test
    cue exchangeable with the negative calibration cues.

    Args:
      p: [n] probe probabilities P(forced answer correct) on the calibration cues.
      labels: [n] 0/1 correctness of the forced answers.
      delta: per-class miscoverage in (0, 1).
    Returns:
      (q0, q1), two scalars.
    """
    if validate:
        T.check_level(delta, "delta")
        p = V.as_float_array(p, "p", ndim=1)
        V.check_not_empty(p, "p")
        labels = V.as_class_labels(labels, "labels", 2, "0/1 correctness of the forced answers")
        V.check_same_shape(p, labels, "p", "labels")
        V.check_probabilities(p, "p")
    scores = jnp.where(labels == 1, 1.0 - p, p)
    q = mondrian_quantiles(
        scores, labels, num_groups=2, alpha=delta, validate=validate, on_infinite=on_infinite
    )
    return q[0], q[1]


def exit_decision(p: jax.Array, q0: jax.Array, q1: jax.Array) -> ExitDecision:
    """LYNX's exit rule: S = {1 if 1 - p <= q1} U {0 if p <= q0}; exit iff S == {1}.

    Guarantee: with (q0, q1) from `exit_thresholds` at level delta, a cue whose forced answer is
    wrong triggers an exit with probability <= delta (exchangeability with the calibration cues).

    Args:
      p: [...] probe probabilities at the cues.
      q0, q1: scalar (or broadcastable) thresholds.
    Returns:
      ExitDecision with prediction_set [..., 2] and exit [...].
    """
    p = jnp.asarray(p)
    has1 = (1.0 - p) <= q1
    has0 = p <= q0
    return ExitDecision(prediction_set=jnp.stack([has0, has1], axis=-1), exit=has1 & ~has0)
