"""Small deterministic optimisers for the calibrators (pure JAX, jit-able)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax


def newton_minimize(
    f: Callable[[jax.Array], jax.Array], x0: jax.Array, *, max_iter: int = 100, tol: float = 1e-10
) -> jax.Array:
    """Minimises a smooth convex `f` of a small vector `x0` [d] by damped Newton steps.

    Each step solves (H + lambda I) s = -g, halving s until f decreases (lambda grows when the
    Hessian is not positive definite). Stops when the step is below tol * (1 + |x|).
    """
    grad = jax.grad(f)
    hess = jax.hessian(f)
    d = x0.shape[0]
    eye = jnp.eye(d, dtype=x0.dtype)

    def cond(state):
        _, it, done = state
        return (it < max_iter) & ~done

    def body(state):
        x, it, _ = state
        g = grad(x)
        h = hess(x)
        scale = jnp.maximum(jnp.max(jnp.abs(jnp.diag(h))), 1e-12)
        lam = 1e-10 * scale
        step = -jnp.linalg.solve(h + lam * eye, g)
        step = jnp.where(jnp.all(jnp.isfinite(step)), step, -g / scale)
        fx = f(x)

        def ls_cond(s):
            t, k = s
            return (k < 40) & ~(f(x + t * step) <= fx)

        t, _ = lax.while_loop(
            ls_cond, lambda s: (s[0] * 0.5, s[1] + 1), (jnp.asarray(1.0, x.dtype), 0)
        )
        ok = f(x + t * step) <= fx
        x_new = jnp.where(ok, x + t * step, x)
        small = jnp.max(jnp.abs(x_new - x)) <= tol * (1 + jnp.max(jnp.abs(x)))
        return x_new, it + 1, small | ~ok

    x, _, _ = lax.while_loop(cond, body, (x0, 0, jnp.asarray(False)))
    return x


def lbfgs_minimize(
    f: Callable[[jax.Array], jax.Array], x0: jax.Array, *, max_iter: int = 500, tol: float = 1e-9
) -> jax.Array:
    """Minimises a smooth `f` of a flat vector `x0` [d] with optax L-BFGS (zoom line search).

    Stops when the gradient norm is below tol * (1 + |f|) or after max_iter iterations.
    """
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def cond(state):
        x, s, it, gnorm, val = state
        return (it < max_iter) & (gnorm > tol * (1 + jnp.abs(val)))

    def body(state):
        x, s, it, _, _ = state
        val, g = value_and_grad(x, state=s)
        updates, s = opt.update(g, s, x, value=val, grad=g, value_fn=f)
        x = optax.apply_updates(x, updates)
        return x, s, it + 1, jnp.linalg.norm(g), val

    inf = jnp.asarray(jnp.inf, x0.dtype)
    zero = jnp.asarray(0.0, x0.dtype)
    x, *_ = lax.while_loop(cond, body, (x0, opt.init(x0), 0, inf, zero))
    return x
