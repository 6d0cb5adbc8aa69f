"""Regression with a per-sample variance: POCO's Gaussian negative log-likelihood.

Dwivedi, Schmid, Yi, Black, Tzionas, "POCO: 3D Pose and Shape Estimation with Confidence", 3DV 2024
(arXiv 2308.12965). The regressor predicts a mean and a variance per sample (and per output
dimension); training minimises the Gaussian NLL, so the variance learns the expected squared
error and serves as an (inverse) confidence:

    nll = 0.5 * ((y - mu)^2 / (sigma^2 + eps) + log(sigma^2 + eps))     [+ 0.5 log(2 pi)]

Source: the authors' code, github.com/saidwivedi/POCO, `pocolib/losses/losses.py`
(`smpl_losses_uncertainty`, loss_ver "norm_flow_res_gaus": `0.5 * (pow(pred - gt, 2) /
(var + eps) + log(var + eps)).mean()`, eps = 1e-8) and the log-variance head of loss_ver
"gauss_logsigma" (`var = exp(s)`), here `0.5 * ((y - mu)^2 exp(-s) + s)` (eps unused). The
constant 0.5 log(2 pi) is left out by default, as in the code (`include_constant=True` adds it).
POCO's Dual Conditioning Strategy (what the variance head sees) is an architecture choice, not a
loss, and is not here.

By name: the contract loss "gaussian_nll" (`config.loss.name = "gaussian_nll"`): the mean from
`outputs["mean"]` and the variance from `outputs["variance"]` or `outputs["log_variance"]`, or
both from `outputs["logits"]` [batch, ..., 2] (mean, log-variance); the target is
`batch["target"]`, else `batch["label"]`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from introspect import _checks as V
from introspect.losses.registry import register

__all__ = ["gaussian_nll"]


def gaussian_nll(
    *,
    mean: Any,
    target: Any,
    variance: Any = None,
    log_variance: Any = None,
    eps: float = 1e-8,
    include_constant: bool = False,
    validate: bool = True,
) -> jax.Array:
    """Per-example Gaussian NLL with a predicted variance (POCO), averaged over output dims.

    Pass exactly one of `variance` (sigma^2 >= 0) and `log_variance` (s = log sigma^2).

    Args:
      mean: [batch, ...] predicted mean mu.
      target: [batch, ...] regression target y (same shape).
      variance: [batch, ...] predicted variance sigma^2 >= 0, or
      log_variance: [batch, ...] predicted log-variance s.
      eps: [] added to sigma^2 with `variance` (POCO: 1e-8; may be traced).
      include_constant: add 0.5 log(2 pi) (the exact NLL) per element.
      validate: check the input.
    Returns:
      [batch] loss (mean over the dims after the batch axis; a [batch] input is per element).
    """
    if (variance is None) == (log_variance is None):
        raise ValueError("gaussian_nll: pass exactly one of variance and log_variance")
    mu = V.as_array(mean, "mean")
    y = V.as_array(target, "target")
    name = "variance" if variance is not None else "log_variance"
    v = V.as_array(variance if variance is not None else log_variance, name)
    if validate:
        V.check_min_rank(mu, "mean", 1, "[batch, ...]")
        V.check_not_empty(mu, "mean")
        V.check_same_shape(mu, y, "mean", "target")
        V.check_same_shape(mu, v, "mean", name)
        V.check_finite(mu, "mean")
        V.check_finite(y, "target")
        if variance is not None:
            V.check_range(v, "variance", 0.0, float("inf"), what="variances >= 0")
        else:
            V.check_finite(v, "log_variance")
    dt = jnp.result_type(V.as_float(mu).dtype, V.as_float(y).dtype, V.as_float(v).dtype)
    mu, y, v = jnp.asarray(mu, dt), jnp.asarray(y, dt), jnp.asarray(v, dt)
    sq = (y - mu) ** 2
    if variance is not None:
        e = V.as_dtype(V.coefficient(eps, "eps", 0.0), dtype=dt)
        var = v + e
        nll = 0.5 * (sq / var + jnp.log(var))
    else:
        nll = 0.5 * (sq * jnp.exp(-v) + v)
    if include_constant:
        nll = nll + 0.5 * math.log(2 * math.pi)
    return nll.reshape(nll.shape[0], -1).mean(axis=1) if nll.ndim > 1 else nll


def _field(outputs, batch, keys):
    for src in (outputs, batch):
        for k in keys:
            if k in src:
                return src[k]
    return None


@register("gaussian_nll", outputs=("mean", "log_variance"), batch=("target",))
def _gaussian_nll(*, outputs, batch, eps=1e-8, include_constant=False):
    """Contract adapter: (mean, variance | log_variance) from the outputs, target from the batch."""
    target = _field({}, batch, ("target", "label"))
    if target is None:
        raise ValueError(
            "loss 'gaussian_nll' needs 'target' (or 'label') in the batch; batch has "
            f"{sorted(batch)}"
        )
    if "mean" in outputs:
        if "variance" in outputs:
            return gaussian_nll(
                mean=outputs["mean"],
                target=target,
                variance=outputs["variance"],
                eps=eps,
                include_constant=include_constant,
                validate=False,
            )
        if "log_variance" in outputs:
            return gaussian_nll(
                mean=outputs["mean"],
                target=target,
                log_variance=outputs["log_variance"],
                include_constant=include_constant,
                validate=False,
            )
    elif "logits" in outputs and jnp.shape(outputs["logits"])[-1:] == (2,):
        z = outputs["logits"]
        return gaussian_nll(
            mean=z[..., 0],
            target=target,
            log_variance=z[..., 1],
            include_constant=include_constant,
            validate=False,
        )
    raise ValueError(
        "loss 'gaussian_nll' needs outputs 'mean' with 'variance' or 'log_variance', or "
        f"'logits' [..., 2] (mean, log-variance); outputs have {sorted(outputs)}"
    )
