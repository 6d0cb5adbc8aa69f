"""The public SAE functions on raw inputs: encode, decode (dense and sparse), metrics.

Every function takes the parameters `fit` returned and the SAE config it was trained with
(`config=`; the kind, k and JumpReLU bandwidth are read from it), validates its input with a
ValueError that says what was wrong and what was expected, and runs jitted.

    codes = sae.encode(params, x, config=cfg)                    # [n, L] dense
    values, indices = sae.encode_topk(params, x, config=cfg)     # [n, k], [n, k]
    x_hat = sae.decode_sparse(params, values, indices, config=cfg)
    sae.metrics(params, x, config=cfg)   # {"fvu", "explained_variance", "l0", "dead_fraction", ...}
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks
from introspect.sae import models


def _spec(params, config) -> tuple[models.SAESpec, int, int]:
    if config is None:
        raise ValueError("config: expected the SAE config the parameters were trained with")
    spec = models.spec_from_config(config, name="config")
    num_latents, d_in = models.check_params(params, spec)
    return spec, num_latents, d_in


def _as_params(params) -> dict:
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), dict(params))


def encode(params: dict, x: Any, *, config) -> jax.Array:
    """Dense codes of raw inputs.

    Args:
      params: SAE parameters (from `fit`).
      x: [n, d_in] raw inputs.
      config: the SAE config (kind, k, bandwidth).
    Returns:
      [n, num_latents] float32 codes (a TopK row has at most k non-zeros).
    """
    spec, _, d_in = _spec(params, config)
    x = models.check_inputs(x, d_in)
    return models._encode(_as_params(params), jnp.asarray(x), spec)


def encode_topk(
    params: dict, x: Any, *, config, k: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """The k largest codes of each row as (values, indices): the sparse form of a TopK code.

    For a TopK SAE with k = config.k this *is* the code (values >= 0; a value of 0 means the
    latent was selected but inactive). For ReLU/JumpReLU SAEs it is the k largest activations
    of the dense code (a truncation).

    Args:
      params: SAE parameters; x: [n, d_in] raw inputs; config: the SAE config.
      k: how many latents per row (default config.k).
    Returns:
      (values [n, k] float32, indices [n, k] int32), values in descending order.
    """
    spec, num_latents, d_in = _spec(params, config)
    k = spec.k if k is None else _checks.check_int_option(k, "k", 1)
    if k > num_latents:
        raise ValueError(
            f"k={k} is larger than the SAE's num_latents={num_latents}; expected "
            "1 <= k <= num_latents"
        )
    x = jnp.asarray(models.check_inputs(x, d_in))
    p = _as_params(params)
    if spec.kind == "topk":
        return models._encode_topk(p, x, k)
    return models._encode_topk_of_codes(p, x, spec, k)


def decode(params: dict, codes: Any, *, config) -> jax.Array:
    """Reconstruction of dense codes (the dense [n, L] x [L, d_in] product).

    Args:
      params: SAE parameters; codes: [n, num_latents]; config: the SAE config.
    Returns:
      [n, d_in] reconstructions in the raw input space.
    """
    _, num_latents, _ = _spec(params, config)
    codes = models.check_inputs(codes, num_latents, name="codes", what="num_latents")
    return models._decode(_as_params(params), jnp.asarray(codes))


def decode_sparse(params: dict, values: Any, indices: Any, *, config) -> jax.Array:
    """Reconstruction from k active latents per row: gather k decoder rows, weighted sum.

    Args:
      params: SAE parameters.
      values: [n, k] activations of the listed latents.
      indices: [n, k] integer latent indices in [0, num_latents).
      config: the SAE config.
    Returns:
      [n, d_in] reconstructions in the raw input space (equal to `decode` of the dense codes).
    """
    _, num_latents, _ = _spec(params, config)
    values = _checks.as_array(values, "values")
    _checks.check_rank(values, "values", 2, "[n, k]")
    indices = _checks.as_array(indices, "indices")
    _checks.check_shape(indices, "indices", values.shape, f"{tuple(values.shape)} (as values)")
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(f"indices: dtype {indices.dtype}; expected integer latent indices")
    values = _checks.as_float(values)
    _checks.check_finite(values, "values")
    if _checks.is_concrete(indices) and indices.size:
        lo, hi = int(np.min(indices)), int(np.max(indices))
        if lo < 0 or hi >= num_latents:
            raise ValueError(
                f"indices: range [{lo}, {hi}]; expected latent indices in [0, {num_latents})"
            )
    return models._decode_sparse(
        _as_params(params), jnp.asarray(values), jnp.asarray(indices, jnp.int32)
    )


@functools.partial(jax.jit, static_argnames=("spec",))
def _metric_sums(params, x, mask, spec):
    out = models.forward(params, x, spec=spec, train=False)
    m = mask.astype(jnp.float32)
    x_n = out["input"]
    return {
        "sse": jnp.sum(out["sq_error"] * m),
        "sum_sq": jnp.sum(jnp.sum(jnp.square(x_n), axis=-1) * m),
        "sum_x": jnp.sum(x_n * m[:, None], axis=0),
        "active": jnp.sum(out["active"] * m),
        "fired": out["fired"],  # padding rows repeat a real row: they fire nothing new
    }


def metrics(params: dict, x: Any, *, config, batch_size: int | None = None) -> dict[str, float]:
    """Reconstruction and sparsity of the SAE on x.

    fvu = sum_i ||x_i - x_hat_i||^2 / sum_i ||x_i - mean(x)||^2 (fraction of variance
    unexplained); explained_variance = 1 - fvu; l0 = mean active latents per row;
    dead_fraction = fraction of latents active on no row of x; mse = mean squared error per
    entry in the raw space.

    Args:
      params: SAE parameters; x: [n, d_in] raw inputs; config: the SAE config.
      batch_size: rows per jitted call (default config.metrics_batch_size or 4096).
    Returns:
      {"fvu", "explained_variance", "l0", "dead_fraction", "mse"} as Python floats.
    """
    spec, num_latents, d_in = _spec(params, config)
    x = np.asarray(models.check_inputs(x, d_in))
    n = x.shape[0]
    if batch_size is None:
        batch_size = int(config.get("metrics_batch_size", 4096))
    batch_size = min(_checks.check_int_option(batch_size, "batch_size", 1), n)
    p = _as_params(params)
    sse = sum_sq = active = 0.0
    sum_x = np.zeros((d_in,), np.float64)
    fired = np.zeros((num_latents,), bool)
    for start in range(0, n, batch_size):
        chunk = x[start : start + batch_size]
        real = chunk.shape[0]
        if real < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - real, axis=0)])
        mask = np.arange(batch_size) < real
        s = jax.device_get(_metric_sums(p, jnp.asarray(chunk), jnp.asarray(mask), spec))
        sse += float(s["sse"])
        sum_sq += float(s["sum_sq"])
        active += float(s["active"])
        sum_x += np.asarray(s["sum_x"], np.float64)
        fired |= np.asarray(s["fired"])
    total_var = sum_sq - float(np.dot(sum_x, sum_x)) / n
    fvu = sse / total_var if total_var > 0 else float("nan")
    scale = float(models.input_scale(p))
    return {
        "fvu": fvu,
        "explained_variance": 1.0 - fvu,
        "l0": active / n,
        "dead_fraction": float(1.0 - fired.mean()),
        "mse": sse / (n * d_in) / scale**2,
    }
