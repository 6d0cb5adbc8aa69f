"""Training probes through the one training loop, prediction, and saving/loading with orbax.

    fit = probes.fit_probe(config.probe, config.train, train_source, workdir=...,
                           val_source=val_source)
    p = probes.predict(fit.model, fit.variables, val_source)     # [n] probabilities
    probes.save_probe(path, fit)
    model, variables, spec = probes.load_probe(path)

A source has columns "features" [n, features] and "label" [n] in {0, 1} (a FeatureStore, a
Subset of one, or a dict of arrays). The loss is picked by name from `introspect.losses.LOSSES`
(`probe.loss.name`, default "bce"; `probe.loss.options` are its options), so the objective is

    mean_i w_i loss(outputs={"logits": probe(x_i)}, batch={"label": y_i, ...}) + l2 * 0.5 * |K|^2

with w_i = n / (2 n_c) for the class c of row i when `class_balanced`, else 1, and K the Dense
kernels. With "bce" and a logistic probe this is scikit-learn's
LogisticRegression(C=1 / (l2 * n), class_weight="balanced") objective divided by n, so both have
the same minimiser. A loss of your own: `@losses.register("my_loss")` in your module, import it,
set `probe.loss.name = "my_loss"`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from introspect import losses, sharding
from introspect import train as train_lib
from introspect.probes import models
from introspect.train.data import as_source, epoch_batches


def default_probe_config() -> ml_collections.ConfigDict:
    """Fields of a probe config (a comment over each)."""
    c = ml_collections.ConfigDict()
    # "logistic" (linear) or "mlp".
    c.name = "mlp"
    # MLP hidden widths (ignored by "logistic").
    c.hidden = (256, 64)
    # Standardise inputs with the training features' mean and std.
    c.standardize = True
    # Weight rows by n / (2 n_c) so both classes count equally.
    c.class_balanced = True
    # L2 strength on the kernels (biases not penalised); sklearn's C = 1 / (l2 * n_train).
    c.l2 = 0.0
    c.loss = ml_collections.ConfigDict()
    # A loss registered in introspect.losses.LOSSES (bce, focal, brier, log, spherical, ... or
    # one of yours, registered with @losses.register("name") in a module you import).
    c.loss.name = "bce"
    # Its keyword options, e.g. {"gamma": 2.0} for focal (float options are traced arrays).
    c.loss.options = ml_collections.ConfigDict()
    # Rows per prediction call.
    c.predict_batch_size = 1024
    return c


def resolve_probe_config(config, *, name: str = "probe") -> ml_collections.ConfigDict:
    """Defaults updated with `config`; ValueError naming a bad or unknown field."""
    out = default_probe_config()
    for key, value in (config or {}).items():
        if key not in out:
            raise ValueError(
                f"unknown probe config field '{name}.{key}'; known: {', '.join(sorted(out))}"
            )
        if key == "loss":
            for k, v in (value or {}).items():
                if k not in out.loss:
                    raise ValueError(f"unknown field '{name}.loss.{k}'; known: name, options")
                out.loss[k] = ml_collections.ConfigDict(dict(v or {})) if k == "options" else v
        else:
            out[key] = tuple(value) if key == "hidden" else value
    models.PROBES.check(out.name, field=f"{name}.name")
    losses.resolve_options(out.loss.name, out.loss.options.to_dict(), field=f"{name}.loss")
    if not (isinstance(out.l2, int | float) and out.l2 >= 0):
        raise ValueError(f"{name}.l2 must be >= 0, got {out.l2!r}")
    if out.predict_batch_size < 1:
        raise ValueError(f"{name}.predict_batch_size must be >= 1, got {out.predict_batch_size}")
    if out.name == "mlp" and (not out.hidden or any(int(h) < 1 for h in out.hidden)):
        raise ValueError(f"{name}.hidden must be positive widths, got {out.hidden!r}")
    return out


def build_model(config: ml_collections.ConfigDict):
    """The Flax probe module of a resolved probe config."""
    hidden = None if config.name == "logistic" else tuple(config.hidden)
    return models.make_probe(config.name, hidden=hidden, standardize=config.standardize)


@dataclasses.dataclass
class ProbeFit:
    """model: the Flax module; variables: {"params", "stats"}; spec: JSON description (config,
    input dim, meta); result: the training loop's TrainResult."""

    model: object
    variables: dict
    spec: dict
    result: train_lib.TrainResult


def _check_source(source, what: str):
    source = as_source(source)
    if len(source) == 0:
        raise ValueError(f"{what} is empty")
    row = source[np.arange(1)]
    for col in ("features", "label"):
        if col not in row:
            raise ValueError(f"{what} needs columns 'features' and 'label'; got {sorted(row)}")
    if np.ndim(row["features"]) != 2:
        raise ValueError(f"{what}['features'] must be [n, features], got rows of shape "
                         f"{np.shape(row['features'])[1:]}")  # fmt: skip
    return source


def fit_probe(
    probe_config,
    train_config,
    train_source,
    *,
    workdir: str,
    val_source=None,
    meta: Mapping | None = None,
) -> ProbeFit:
    """Train a probe with `introspect.train.train` (checkpointed and resumable in `workdir`).

    Args:
      probe_config: probe fields (see `default_probe_config`).
      train_config: training-loop fields (see `introspect.train.default_config`).
      train_source: source with "features" [n, features] and "label" [n].
      workdir: the loop's workdir (checkpoints, metrics.jsonl, tensorboard).
      val_source: optional held-out source; its AUROC/accuracy/loss are logged as eval metrics.
      meta: extra JSON to keep in the probe's spec (e.g. model name, layers).
    Returns:
      ProbeFit.
    """
    from introspect import metrics as metrics_lib

    cfg = resolve_probe_config(probe_config)
    train_source = _check_source(train_source, "train_source")
    labels = np.asarray(train_source[np.arange(len(train_source))]["label"], np.float32)
    w0, w1 = models.class_weights(labels) if cfg.class_balanced else (1.0, 1.0)
    stats = models.feature_stats(train_source) if cfg.standardize else None
    dim = int(np.shape(train_source[np.arange(1)]["features"])[1])
    model = build_model(cfg)
    l2 = float(cfg.l2)

    def variables_of(params):
        return {"params": params, "stats": stats} if cfg.standardize else {"params": params}

    def init_fn(rng):
        return model.init(rng, jnp.zeros((1, dim), jnp.float32))["params"]

    def forward(params, batch, rng):
        del rng
        return {"logits": model.apply(variables_of(params), batch["features"])}

    def accuracy(outputs, batch):
        return {"accuracy": jnp.mean((outputs["logits"] > 0) == (batch["label"] > 0.5))}

    named_loss = losses.objective(
        forward,
        cfg.loss.to_dict(),
        penalty=(lambda params: l2 * models.l2_penalty(params)) if l2 else None,
        metrics=accuracy,
        field="probe.loss",
    )

    def loss_fn(params, batch, rng):
        y = jnp.asarray(batch["label"], jnp.float32)
        return named_loss(params, {**batch, "label": y, "weight": jnp.where(y > 0.5, w1, w0)}, rng)

    eval_fn = None
    if val_source is not None:
        val_source = _check_source(val_source, "val_source")
        y_val = np.asarray(val_source[np.arange(len(val_source))]["label"], np.float32)

        def eval_fn(params, step):
            p = predict(model, variables_of(params), val_source, batch_size=cfg.predict_batch_size)
            out = {"accuracy": float(np.mean((p > 0.5) == (y_val > 0.5)))}
            eps = 1e-7
            out["bce"] = float(
                -np.mean(y_val * np.log(p + eps) + (1 - y_val) * np.log(1 - p + eps))
            )
            if 0 < y_val.sum() < y_val.size:
                out["auroc"] = float(metrics_lib.auroc(p, y_val))
            return out

    result = train_lib.train(
        train_config,
        init_fn=init_fn,
        loss_fn=loss_fn,
        data=train_source,
        workdir=workdir,
        eval_fn=eval_fn,
        name="train",
    )
    params = sharding.to_host(result.state.params)  # gathered on a multi-process mesh
    variables = jax.tree.map(np.asarray, variables_of(params))
    spec = {
        "probe": cfg.to_dict(),
        "input_dim": dim,
        "class_weights": [w0, w1],
        "meta": dict(meta or {}),
    }
    spec["probe"]["hidden"] = list(cfg.hidden)
    return ProbeFit(model=model, variables=variables, spec=spec, result=result)


_apply_cache: dict = {}


def predict(model, variables, features, *, batch_size: int = 1024) -> np.ndarray:
    """Probabilities [n] of the positive class.

    Args:
      model: a probe module; variables: its {"params", "stats"}.
      features: [n, features] array, or a source with a "features" column.
      batch_size: rows per compiled call (the last batch is padded, so one shape).
    """
    if isinstance(features, np.ndarray | jax.Array):
        source = as_source({"features": np.asarray(features)})
    else:
        source = as_source(features)
    n = len(source)
    if n == 0:
        return np.zeros((0,), np.float32)
    batch_size = min(batch_size, n)
    apply = _apply_cache.get(model)
    if apply is None:
        apply = _apply_cache.setdefault(
            model, jax.jit(lambda v, x: jax.nn.sigmoid(model.apply(v, x)))
        )
    out = []
    for batch, real in epoch_batches(source, batch_size):
        x = np.asarray(batch["features"])
        if x.ndim != 2:
            raise ValueError(f"features must be [n, features], got a batch of shape {x.shape}")
        out.append(np.asarray(apply(variables, x))[:real])
    return np.concatenate(out).astype(np.float32)


def save_probe(directory: str, fit: ProbeFit) -> str:
    """Save a probe (variables + spec) with orbax to `directory` (must not exist)."""
    directory = os.path.abspath(directory)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        ckptr.save(
            directory,
            args=ocp.args.Composite(
                variables=ocp.args.StandardSave(fit.variables), spec=ocp.args.JsonSave(fit.spec)
            ),
        )
    return directory


def load_probe(directory: str):
    """(model, variables, spec) of a probe saved by `save_probe`."""
    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no saved probe at {directory}")
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        spec = ckptr.restore(directory, args=ocp.args.Composite(spec=ocp.args.JsonRestore()))[
            "spec"
        ]
        variables = ckptr.restore(
            directory, args=ocp.args.Composite(variables=ocp.args.StandardRestore())
        )["variables"]
    model = build_model(resolve_probe_config(spec["probe"]))
    return model, jax.tree.map(np.asarray, variables), spec
