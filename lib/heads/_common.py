"""Helpers shared by the learned confidence heads: input checks, a small training config, and
training a Flax head through the one training loop (`introspect.train`) with a named loss."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

EPS = 1e-7


def as_1d(x: Any, name: str, *, dtype=np.float64, n: int | None = None) -> np.ndarray:
    """`x` as a finite 1-D array (of length `n` when given); ValueError naming `name` otherwise."""
    a = np.asarray(x, dtype)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array [n], got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries (one per example), got {a.shape[0]}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN/inf)")
    return a


def as_2d(x: Any, name: str, *, dtype=np.float32, n: int | None = None) -> np.ndarray:
    """`x` as a finite [n, d] array; ValueError naming `name` otherwise."""
    a = np.asarray(x, dtype)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, d], got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows (one per example), got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN/inf)")
    return a


def check_unit(a: np.ndarray, name: str) -> np.ndarray:
    """ValueError unless every value of `a` is in [0, 1]."""
    if a.size and (np.min(a) < 0 or np.max(a) > 1):
        raise ValueError(f"{name} must be in [0, 1], got values in [{np.min(a)}, {np.max(a)}]")
    return a


def check_fraction(value: float, name: str, *, low_open: bool = False) -> float:
    """A float in [0, 1] ((0, 1] with low_open), else ValueError."""
    v = float(value)
    if not (0.0 < v <= 1.0 if low_open else 0.0 <= v <= 1.0):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def logit(p: Any) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def head_train_config(num_steps: int = 300, lr: float = 0.05) -> ml_collections.ConfigDict:
    """Training-loop fields for a small head: full batch (batch_size 0 = set to n by the fitter),
    Adam with a cosine schedule, one log line and one checkpoint at the end, no bar/TensorBoard."""
    from introspect import train

    cfg = train.default_config()
    cfg.num_steps = num_steps
    cfg.batch_size = 0
    cfg.optimizer.lr = lr
    cfg.schedule.name = "cosine"
    cfg.log_every = num_steps
    cfg.checkpoint.every_steps = 0
    cfg.progress = False
    cfg.tensorboard = False
    return cfg


def full_batch(train_config, n: int, default: Callable[[], ml_collections.ConfigDict]):
    """`train_config` (or `default()`) with batch_size 0 replaced by min(n, 4096)."""
    cfg = train_config if train_config is not None else default()
    if isinstance(cfg, Mapping) and not isinstance(cfg, ml_collections.ConfigDict):
        cfg = ml_collections.ConfigDict(dict(cfg))
    if not cfg.get("batch_size"):
        cfg = cfg.copy_and_resolve_references()
        cfg.batch_size = int(min(n, 4096))
    return cfg


@dataclasses.dataclass
class HeadFit:
    """A Flax head trained by `train_head`.

    model: the module; params: its trained parameters (numpy); stats: input standardisation
    {"mean", "scale"} (numpy) or None; spec: JSON description; result: the loop's TrainResult.
    """

    model: Any
    params: Any
    stats: dict | None
    spec: dict
    result: Any


def standardize_stats(x: np.ndarray, axis: tuple[int, ...] = (0,)) -> dict:
    """{"mean", "scale"} over `axis` (population std, 1 where a feature is constant)."""
    mean = x.mean(axis=axis, dtype=np.float64)
    std = x.std(axis=axis, dtype=np.float64)
    return {
        "mean": mean.astype(np.float32),
        "scale": np.where(std > 1e-6, std, 1.0).astype(np.float32),
    }


def train_head(
    model,
    data: Mapping[str, np.ndarray],
    *,
    loss: Mapping[str, Any],
    forward: Callable[[Any, Mapping[str, Any]], Mapping[str, jax.Array]],
    init_input: jax.Array,
    workdir: str,
    train_config,
    spec: Mapping[str, Any],
    stats: dict | None = None,
    name: str = "train",
) -> HeadFit:
    """Train `model` with the named loss through `introspect.train.train`.

    Args:
      model: a Flax module; `model.init(rng, init_input)["params"]` gives its parameters.
      data: in-memory arrays [n, ...] (the loop's source).
      loss: {"name": a loss registered in `introspect.losses.LOSSES`, "options": {...}}.
      forward: (params, batch) -> outputs dict the loss reads.
      init_input: an input batch for initialisation.
      workdir, train_config: the loop's workdir and config (batch_size 0 = full batch).
      spec: JSON description kept with the fit.
      stats: standardisation statistics kept with the fit (applied by `forward` itself).
    """
    from introspect import losses, sharding
    from introspect import train as train_lib

    n = len(next(iter(data.values())))
    cfg = full_batch(train_config, n, head_train_config)

    def init_fn(rng):
        return model.init(rng, init_input)["params"]

    loss_fn = losses.objective(lambda p, b, rng: forward(p, b), dict(loss), field=f"{name}.loss")
    result = train_lib.train(
        cfg, init_fn=init_fn, loss_fn=loss_fn, data=dict(data), workdir=workdir, name=name
    )
    params = sharding.to_host(result.state.params)  # gathered on a multi-process mesh
    return HeadFit(model=model, params=params, stats=stats, spec=dict(spec), result=result)


def apply_stats(x: jax.Array, stats: dict | None) -> jax.Array:
    """(x - mean) / scale, or x when stats is None."""
    if stats is None:
        return x
    return (x - jnp.asarray(stats["mean"])) / jnp.asarray(stats["scale"])
