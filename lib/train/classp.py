"""CLASSP: continual learning through adjustment suppression and sparsity promotion (an optimiser).

Ludwig, "CLASSP: a Biologically-Inspired Approach to Continual Learning through Adjustment
Suppression and Sparsity Promotion" (2024; DOI 10.13140/RG.2.2.20942.06724, code
github.com/oswaldoludwig/CLASSP). Per weight w with gradient g:

    if g^2 > threshold:                              sparsity: only significant gradients update
        S <- S + |g|^p                               S: the weight's accumulated |g|^p
        w <- w - lr * g / (eps + S)^(1/p)            decay: often-updated weights move less
    else: w and S unchanged

A generalised AdaGrad (p = 2 without the threshold is AdaGrad with S = sum g^2). Source: the
author's pseudo-code in the README of the released code (`If grad^2 > threshold`, `grad_sum <-
grad_sum + |grad|^p`, `scaling_factor <- alpha / (eps + grad_sum)^(1/p)`) and its defaults in
`CLASSP.py` (lr 0.2, threshold 0.5, eps 1e-5, power 1, apply_scaling True). Deviations from
`CLASSP.py`: its test `(grad ** 2).any() > threshold` compares a boolean to the threshold (for
threshold in [0, 1) it is true whenever any entry of the tensor is nonzero) and its
`add_(grad.abs()) ** power` discards the power, so the code accumulates |g| and updates every
coordinate; here the test is per coordinate and |g|^p is accumulated, as the pseudo-code and the
paper describe.
`apply_scaling=False` is the plain thresholded step -lr * g.

In the trainer: `train.optimizer.name = "classp"` (registered in OPTIMIZERS); `optimizer.lr` and
the schedule give lr, and `optimizer.classp_threshold`, `classp_power`, `classp_eps` (if present
in the config) the rest.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from introspect.train.config import register_optimizer

__all__ = ["ClasspState", "classp", "scale_by_classp"]


class ClasspState(NamedTuple):
    """grad_sum: per-parameter accumulated |g|^p (a pytree like the parameters)."""

    grad_sum: optax.Updates


def _check(threshold: float, power: float, eps: float) -> None:
    for name, value, ok, want in (
        ("threshold", threshold, lambda v: v >= 0, ">= 0"),
        ("power", power, lambda v: v > 0, "> 0"),
        ("eps", eps, lambda v: v > 0, "> 0"),
    ):
        if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
            raise ValueError(f"classp {name}: expected a finite number {want}, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"classp {name}: expected a finite number {want}, got {value!r}")


def scale_by_classp(
    *, threshold: float = 0.5, power: float = 1.0, eps: float = 1e-5, apply_scaling: bool = True
) -> optax.GradientTransformation:
    """The CLASSP direction, before the learning rate: g / (eps + S)^(1/p) where g^2 > threshold.

    Args:
      threshold: update a coordinate only where g^2 > threshold (>= 0; 0 = every nonzero g).
      power: p > 0 of the accumulated |g|^p and of the 1/p root.
      eps: > 0, added to S before the root.
      apply_scaling: divide by (eps + S)^(1/p) (False: the thresholded gradient itself).
    Returns:
      an optax GradientTransformation with state ClasspState.
    """
    _check(threshold, power, eps)

    def init_fn(params: Any) -> ClasspState:
        return ClasspState(grad_sum=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates: Any, state: ClasspState, params: Any = None):
        del params

        def one(g, s):
            active = g * g > threshold
            s_new = s + jnp.where(active, jnp.abs(g) ** power, 0.0).astype(s.dtype)
            step = g / (eps + s_new) ** (1.0 / power) if apply_scaling else g
            return jnp.where(active, step, 0.0).astype(g.dtype), s_new

        pairs = jax.tree.map(one, updates, state.grad_sum)
        is_pair = lambda x: isinstance(x, tuple)
        new_updates = jax.tree.map(lambda p: p[0], pairs, is_leaf=is_pair)
        new_sum = jax.tree.map(lambda p: p[1], pairs, is_leaf=is_pair)
        return new_updates, ClasspState(grad_sum=new_sum)

    return optax.GradientTransformation(init_fn, update_fn)


def classp(
    learning_rate: optax.ScalarOrSchedule = 0.2,
    *,
    threshold: float = 0.5,
    power: float = 1.0,
    eps: float = 1e-5,
    apply_scaling: bool = True,
) -> optax.GradientTransformation:
    """CLASSP: `scale_by_classp` followed by -learning_rate (a float or an optax schedule).

    Defaults are the released code's (lr 0.2, threshold 0.5, eps 1e-5, power 1).
    """
    return optax.chain(
        scale_by_classp(threshold=threshold, power=power, eps=eps, apply_scaling=apply_scaling),
        optax.scale_by_learning_rate(learning_rate),
    )


def _build(o, lr: optax.Schedule) -> optax.GradientTransformation:
    get = o.get if hasattr(o, "get") else (lambda k, d: getattr(o, k, d))
    return classp(
        lr,
        threshold=float(get("classp_threshold", 0.5)),
        power=float(get("classp_power", 1.0)),
        eps=float(get("classp_eps", 1e-5)),
    )


register_optimizer("classp", _build)
