"""Local-Lipschitz reward penalty (off-policy GAIL) and the per-sample reward confidence it implies.

Blondé, Strasser, Kalousis, "Lipschitzness Is All You Need To Tame Off-policy Generative
Adversarial Imitation Learning" (Machine Learning 2022, arXiv 2006.16785). The learned reward
(the discriminator D) must be locally k-Lipschitz: a gradient penalty on its input gradient at
points x~ near the data, added to the discriminator loss,

    penalty = scale * mean_x~ max(0, ||grad_x D(x~)||_2 - k)^2          one-sided (default)
                      mean_x~ (||grad_x D(x~)||_2 - k)^2                 two-sided
    x~ = u x_policy + (1 - u) x_expert, u ~ U[0, 1] per sample           variant "wgan" (default)
    x~ = x_expert + N(0, noise_std^2)                                    variant "dragan"
    x~ = x_policy + N(0, noise_std^2)                                    variant "nagard"

Source: the authors' code, github.com/lionelblonde/liayn-pytorch, `agents/sam_agent.py`
(`grad_pen`) with the defaults of `helpers/argparsers.py` / `tasks/train_mujoco_sam.yaml`:
k = `grad_pen_targ` = 1, scale = `grad_pen_scale` = 10, one-sided, variant "wgan", noise std 10;
the norm is taken over all of D's inputs together (state and action concatenated), and the code
draws the interpolation coefficient independently for each input (one u per leaf here). Its
"bare" variant at the data points themselves gives the reward modifier exp(-penalty) the code
monitors (`mod_r`): `lipschitz_confidence`, a per-sample confidence in the reward (1 where the
reward is locally k-Lipschitz). The paper's core is imitation learning; only the penalty and
this confidence are here.

Inputs are pytrees of arrays with a leading [batch] axis; `fn` maps ONE example (the pytree
without the batch axis) to a scalar reward / discriminator logit, and is vmapped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V

__all__ = [
    "VARIANTS",
    "input_gradient_norms",
    "lipschitz_confidence",
    "lipschitz_penalty",
    "penalty_points",
    "reward_lipschitz_penalty",
]

VARIANTS = ("wgan", "dragan", "nagard", "bare")


def _batch(inputs: Any, name: str) -> tuple[list[jax.Array], Any, int]:
    leaves, treedef = jax.tree.flatten(inputs)
    if not leaves:
        raise ValueError(
            f"{name}: has no arrays; expected a [batch, ...] array or a pytree of them"
        )
    arrs = []
    for i, leaf in enumerate(leaves):
        a = V.as_array(leaf, f"{name} (leaf {i})")
        if a.ndim < 1 or a.shape[0] == 0:
            raise ValueError(
                f"{name} (leaf {i}): has shape {tuple(a.shape)}; expected a non-empty leading "
                "[batch] axis"
            )
        arrs.append(jnp.asarray(V.as_float(a)))
    n = arrs[0].shape[0]
    for i, a in enumerate(arrs):
        if a.shape[0] != n:
            raise ValueError(
                f"{name} (leaf {i}): batch size {a.shape[0]} differs from leaf 0's {n}; "
                "expected one leading [batch] axis shared by every leaf"
            )
    return arrs, treedef, n


def input_gradient_norms(fn: Callable[[Any], jax.Array], inputs: Any) -> jax.Array:
    """||grad_x fn(x)||_2 per example, over all leaves of x together.

    Args:
      fn: one example (pytree, no batch axis) -> [] scalar.
      inputs: pytree of [batch, ...] arrays.
    Returns:
      [batch] gradient norms.
    """
    if not callable(fn):
        raise ValueError(f"fn: expected a callable example -> scalar, got {type(fn).__name__}")
    arrs, treedef, _ = _batch(inputs, "inputs")
    x = jax.tree.unflatten(treedef, arrs)

    def one(ex):
        out = fn(ex)
        if jnp.shape(out) != ():
            raise ValueError(
                f"fn: returned shape {tuple(jnp.shape(out))} for one example; expected a scalar []"
            )
        return out

    grads = jax.vmap(jax.grad(one))(x)
    sq = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in jax.tree.leaves(grads))
    return jnp.sqrt(sq)


def lipschitz_penalty(
    fn: Callable[[Any], jax.Array],
    inputs: Any,
    *,
    target: float = 1.0,
    one_sided: bool = True,
) -> jax.Array:
    """Per-example max(0, ||grad fn|| - k)^2 (one-sided) or (||grad fn|| - k)^2.

    Args:
      fn: one example -> [] scalar.
      inputs: pytree of [batch, ...] arrays (the penalty points).
      target: [] k >= 0 (may be traced).
      one_sided: penalise only norms above k (the paper's default).
    Returns:
      [batch] penalties.
    """
    norms = input_gradient_norms(fn, inputs)
    k = V.as_dtype(V.coefficient(target, "target", 0.0), dtype=norms.dtype)
    gap = norms - k
    return jnp.maximum(gap, 0.0) ** 2 if one_sided else gap**2


def penalty_points(
    rng: jax.Array,
    *,
    policy_inputs: Any,
    expert_inputs: Any,
    variant: str = "wgan",
    noise_std: float = 10.0,
) -> Any:
    """Where the penalty is evaluated (see the module docstring), a pytree like the inputs.

    Args:
      rng: PRNG key.
      policy_inputs, expert_inputs: pytrees of [batch, ...] arrays of the same structure/shapes.
      variant: one of VARIANTS ("bare": the policy points themselves).
      noise_std: [] perturbation std of "dragan" / "nagard" (the code: 10).
    Returns:
      pytree of [batch, ...] points.
    """
    V.check_choice(variant, "variant", VARIANTS)
    p, treedef, n = _batch(policy_inputs, "policy_inputs")
    e, treedef_e, n_e = _batch(expert_inputs, "expert_inputs")
    if treedef != treedef_e or any(a.shape != b.shape for a, b in zip(p, e, strict=True)):
        raise ValueError(
            "policy_inputs and expert_inputs: structures or shapes differ "
            f"({[tuple(a.shape) for a in p]} vs {[tuple(b.shape) for b in e]}); expected the same"
        )
    sd = V.coefficient(noise_std, "noise_std", 0.0)
    keys = jax.random.split(rng, len(p))
    out = []
    for key, a, b in zip(keys, p, e, strict=True):
        if variant == "wgan":
            u = jax.random.uniform(key, (a.shape[0],) + (1,) * (a.ndim - 1), dtype=a.dtype)
            out.append(u * a + (1.0 - u) * b)
        elif variant == "dragan":
            out.append(b + V.as_dtype(sd, dtype=b.dtype) * jax.random.normal(key, b.shape, b.dtype))
        elif variant == "nagard":
            out.append(a + V.as_dtype(sd, dtype=a.dtype) * jax.random.normal(key, a.shape, a.dtype))
        else:
            out.append(a)
    return jax.tree.unflatten(treedef, out)


def reward_lipschitz_penalty(
    fn: Callable[[Any], jax.Array],
    *,
    policy_inputs: Any,
    expert_inputs: Any,
    rng: jax.Array,
    variant: str = "wgan",
    target: float = 1.0,
    scale: float = 10.0,
    one_sided: bool = True,
    noise_std: float = 10.0,
) -> jax.Array:
    """The discriminator's gradient-penalty term: scale * mean penalty at `penalty_points`.

    Differentiable in fn's parameters (close over them); add it to the discriminator loss.

    Args:
      fn: one example -> [] reward / discriminator logit.
      policy_inputs, expert_inputs: pytrees of [batch, ...] arrays.
      rng: PRNG key (interpolation / perturbation).
      variant, target, scale, one_sided, noise_std: see the module docstring (defaults: the
        authors' code).
    Returns:
      [] the penalty.
    """
    pts = penalty_points(
        rng,
        policy_inputs=policy_inputs,
        expert_inputs=expert_inputs,
        variant=variant,
        noise_std=noise_std,
    )
    pen = lipschitz_penalty(fn, pts, target=target, one_sided=one_sided)
    sc = V.coefficient(scale, "scale", 0.0)
    return V.as_dtype(sc, dtype=pen.dtype) * jnp.mean(pen)


def lipschitz_confidence(
    fn: Callable[[Any], jax.Array], inputs: Any, *, target: float = 1.0
) -> jax.Array:
    """exp(-max(0, ||grad fn(x)|| - k)^2) per example: 1 where the reward is locally k-Lipschitz.

    The authors' code's reward modifier `mod_r` (variant "bare": the points themselves).

    Returns:
      [batch] confidences in (0, 1].
    """
    return jnp.exp(-lipschitz_penalty(fn, inputs, target=target, one_sided=True))
