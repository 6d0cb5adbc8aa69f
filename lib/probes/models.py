"""Probe models on hidden-state features: logistic (linear) and MLP, with input standardisation.

A probe maps features [batch, features] to one logit per row; `sigmoid(logit)` is the probability
of the positive class (e.g. "the answer will be correct", LYNX's "the forced exit is correct").

Variables of a probe: {"params": trainable Dense kernels/biases, "stats": {"mean", "scale"}}. The
"stats" collection holds the standardisation x -> (x - mean) / scale computed once from the
training features (`feature_stats`); the training loop only trains "params".

Probes are trained with a loss picked by name from `introspect.losses` (default "bce"); here:
`l2_penalty` (0.5 * sum of squared kernels; biases are not penalised, as in scikit-learn) and
class-balanced weights n / (2 n_c) for a row of class c (`class_weights`), as in LYNX and
scikit-learn's "balanced".
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from introspect.registry import Registry


class MLPProbe(nn.Module):
    """Standardise -> [Dense(h) -> ReLU for h in hidden] -> Dense(1) -> logit.

    Attributes:
      hidden: widths of the hidden layers; () is a logistic (linear) probe.
      standardize: apply the "stats" collection's (x - mean) / scale first.
    """

    hidden: Sequence[int] = (256, 64)
    standardize: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [batch, features] -> logits [batch] (float32)."""
        x = jnp.asarray(x, jnp.float32)
        if self.standardize:
            d = x.shape[-1]
            mean = self.variable("stats", "mean", lambda: jnp.zeros((d,), jnp.float32))
            scale = self.variable("stats", "scale", lambda: jnp.ones((d,), jnp.float32))
            x = (x - mean.value) / scale.value
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(int(width), name=f"hidden_{i}")(x))
        return nn.Dense(1, name="out")(x)[..., 0]


class LogisticProbe(MLPProbe):
    """A linear probe: standardise -> Dense(1) -> logit (logistic regression)."""

    hidden: Sequence[int] = ()


# Probe modules by name; metadata "hidden_layers": whether the `hidden` widths apply.
PROBES: Registry[type[nn.Module]] = Registry("probe")
PROBES.register("logistic", LogisticProbe, hidden_layers=False)
PROBES.register("mlp", MLPProbe, hidden_layers=True)


def make_probe(name: str, *, hidden: Sequence[int] | None = None, standardize: bool = True):
    """A probe module by registry name ("logistic", "mlp"); `hidden` overrides the MLP widths."""
    cls = PROBES.get(name)
    if not PROBES.meta(name, "hidden_layers", True):
        if hidden:
            raise ValueError(f"a {name} probe has no hidden layers, got hidden={hidden}")
        return cls(standardize=standardize)
    hidden = (256, 64) if hidden is None else tuple(int(h) for h in hidden)
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be >= 1, got {hidden}")
    return cls(hidden=hidden, standardize=standardize)


def feature_stats(source, *, column: str = "features", chunk: int = 65536, eps: float = 1e-6):
    """Mean and scale (population std, floored at `eps`; 1 where a feature is constant) of
    `source[column]` [n, features], streamed in chunks with float64 accumulation.

    Returns:
      {"mean": [features] float32, "scale": [features] float32}.
    """
    from introspect.train.data import as_source

    source = as_source(source)
    n = len(source)
    if n == 0:
        raise ValueError("cannot compute feature statistics of an empty source")
    total = sq = None
    for start in range(0, n, chunk):
        x = np.asarray(source[np.arange(start, min(start + chunk, n))][column], np.float64)
        if x.ndim != 2:
            raise ValueError(f"{column!r} must be [n, features], got a chunk of shape {x.shape}")
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
    mean = total / n
    var = np.maximum(sq / n - mean * mean, 0.0)
    std = np.sqrt(var)
    scale = np.where(std > eps, std, 1.0)
    return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32)}


def class_weights(labels) -> tuple[float, float]:
    """(w_0, w_1) = (n / (2 n_0), n / (2 n_1)) for binary labels [n].

    ValueError if a class is absent."""
    y = np.asarray(labels)
    n, n1 = y.size, int(np.sum(y > 0.5))
    n0 = n - n1
    if n0 == 0 or n1 == 0:
        raise ValueError(
            f"class-balanced weights need both classes; got {n0} negatives and {n1} positives"
        )
    return n / (2.0 * n0), n / (2.0 * n1)


def l2_penalty(params) -> jax.Array:
    """0.5 * sum of squared Dense kernels (biases excluded)."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return 0.5 * sum(
        jnp.sum(jnp.square(x)) for path, x in leaves if getattr(path[-1], "key", "") == "kernel"
    )
