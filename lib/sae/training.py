"""Training an SAE with the one training loop (`introspect.train`): config, step, `fit`.

    from introspect import sae
    cfg = sae.default_config()            # kind, num_latents, k, l1, ..., train (the loop's)
    cfg.kind = "topk"; cfg.num_latents = 4608; cfg.k = 32
    params = sae.fit(x, cfg, workdir="/tmp/sae")     # x [n, d_in] float32; resumable

`fit` runs `train.train` (mesh, optimiser, data feed, fresh or restored orbax state, progress
bar, metric log with the NaN/inf guard, checkpoints, eval) with one SAE-specific training step
around `train.make_train_step` (`train.train(..., make_step=)`):

1. the loss (picked by name from `introspect.losses`, `config.loss.name`; default by kind:
   sae_topk / sae_relu_l1 / sae_jumprelu) through `losses.objective`; the decoder enters the
   forward through `models.project_rows`, so its gradient has no component along the rows;
2. the optimiser update of `config.train.optimizer` (`make_train_step`: value_and_grad,
   clipping, schedule, non-finite guard);
3. `models.constrain`: decoder rows renormalised to unit norm, JumpReLU thresholds >= 0;
4. the dead-latent counter updated: tokens_since_active = 0 for a latent active on some row
   of the batch, else + batch_size (capped at dead_tokens).

Steps 3 and 4 come after the optimiser update, so `fit` passes `make_sae_step` as the loop's
`make_step` rather than only a loss.

**Where the non-trained state lives.** The loop's TrainState has a fixed set of fields (step,
params, opt_state, rng, bad_step) and trains every leaf of `params`. The input scale and the
dead-latent counter therefore live in the parameter tree as an explicit non-trained collection,
`params["stats"]`: the forward reads it under `stop_gradient` (its gradient is exactly zero, so
Adam's moments for it stay zero and its update is zero), and step 4 overwrites it after the
optimiser. It is checkpointed with the parameters (bit-exact resume), sharded like them, and
`encode`/`decode` read the input scale from it.

**Input normalisation.** `fit` computes s = sqrt(d_in / mean_i ||x_i||^2) over the training
rows (float64, streamed) and b_dec's initial value = s * mean(x); the SAE works on x_n = s * x
and decodes back to the raw space (`stats.input_scale`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introspect import losses, sharding
from introspect import train as train_lib
from introspect.sae import api, models, objectives
from introspect.train.data import as_source

# Above 2^24 a float32 counter no longer counts single tokens exactly.
_MAX_DEAD_TOKENS = 2**24


def default_config() -> ml_collections.ConfigDict:
    """Every field of an SAE config (a comment over each), with `train` the loop's config."""
    c = ml_collections.ConfigDict()
    # "topk" (Gao et al.), "jumprelu" (Rajamanoharan et al.) or "relu" (ReLU + L1).
    c.kind = "topk"
    # Dictionary size L (latents); decoder rows are the learned directions [L, d_in].
    c.num_latents = 1024
    # Active latents per row of a TopK SAE (1 <= k <= num_latents).
    c.k = 32
    # L1 coefficient of the ReLU SAE (per row: ||x_n - x_hat_n||^2 + l1 * sum z, x_n normalised
    # to E ||x_n||^2 = d_in).
    c.l1 = 1.0
    # L0 coefficient of the JumpReLU SAE (per row: ... + l0 * number of active latents).
    c.l0 = 0.01
    # JumpReLU: initial threshold and the bandwidth epsilon of the rectangle pseudo-derivative.
    c.threshold_init = 0.1
    c.bandwidth = 0.05
    # TopK AuxK loss: dead latents used (0 = off, -1 = d_in // 2 as Gao et al.) and its weight.
    c.aux_k = -1
    c.aux_coef = 1.0 / 32.0
    # A latent is dead after this many training tokens without activity (Gao et al.: 10M; at
    # most 2^24 so the float32 counter stays exact).
    c.dead_tokens = 1_000_000
    # "auto" (TopK decodes sparsely from its k latents, ReLU/JumpReLU densely), "sparse",
    # "dense" (TopK through the dense [n, L] x [L, d_in] product: a reference / benchmark).
    c.decode = "auto"
    # Scale inputs so that E ||x||^2 = d_in (stored in params["stats"]["input_scale"]).
    c.normalize_input = True
    # Rows per jitted call in `metrics` and the eval hook.
    c.metrics_batch_size = 4096
    c.loss = ml_collections.ConfigDict()
    # A loss registered in introspect.losses ("" = by kind: sae_topk, sae_relu_l1,
    # sae_jumprelu; also sae_mse, or one of yours).
    c.loss.name = ""
    # Its options; the default loss of a kind takes its coefficient from aux_coef / l1 / l0
    # unless set here.
    c.loss.options = ml_collections.ConfigDict()

    t = train_lib.default_config()
    t.num_steps = 2000
    t.batch_size = 1024
    t.optimizer.name = "adam"
    t.optimizer.lr = 1e-3
    t.optimizer.b2 = 0.999
    t.steps_per_dispatch = 10
    t.log_every = 100
    t.checkpoint.every_steps = 500
    t.checkpoint.keep = 2
    t.tensorboard = False  # tensorboardX imports PyTorch (seconds); turn on when wanted
    c.train = t
    return c


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def resolve_config(config=None, *, name: str = "sae") -> ml_collections.ConfigDict:
    """Defaults updated with `config` (train fields resolved by `train.resolve_config`),
    validated; a ValueError names any bad or unknown field.

    Args:
      config: a (partial) SAE config, ConfigDict or dict; None = defaults.
      name: how the config is called in messages.
    Returns:
      A new, complete ConfigDict.
    """
    out = default_config()
    train_fields = out.train.to_dict()
    if config is not None:
        if not isinstance(config, ml_collections.ConfigDict | dict):
            raise ValueError(f"{name} must be a ConfigDict or dict, got {type(config).__name__}")
        for key, value in config.items():
            if key not in out:
                raise ValueError(
                    f"unknown SAE config field '{name}.{key}'; known: {', '.join(sorted(out))}"
                )
            if key == "train":
                if not isinstance(value, ml_collections.ConfigDict | dict):
                    raise ValueError(f"{name}.train must be a ConfigDict or dict, got {value!r}")
                # The user's train fields over the SAE's train defaults (not the loop's).
                train_fields = _deep_update(out.train.to_dict(), value)
            elif key == "loss":
                for k, v in (value or {}).items():
                    if k not in ("name", "options"):
                        raise ValueError(f"unknown field '{name}.loss.{k}'; known: name, options")
                    out.loss[k] = ml_collections.ConfigDict(dict(v or {})) if k == "options" else v
            else:
                with out.ignore_type():
                    out[key] = value
    if not _int(out.num_latents) or out.num_latents < 1:
        raise ValueError(f"{name}.num_latents: expected an integer >= 1, got {out.num_latents!r}")
    models.spec_from_config(out, name=name)  # kind, k, decode
    for key, lo in (("l1", 0.0), ("l0", 0.0), ("aux_coef", 0.0), ("threshold_init", 0.0)):
        if not (_number(out[key]) and out[key] >= lo):
            raise ValueError(f"{name}.{key}: expected a finite number >= {lo}, got {out[key]!r}")
    if not (_number(out.bandwidth) and out.bandwidth > 0):
        raise ValueError(f"{name}.bandwidth: expected a number > 0, got {out.bandwidth!r}")
    if not (_int(out.aux_k) and out.aux_k >= -1):
        raise ValueError(
            f"{name}.aux_k: expected -1 (d_in // 2), 0 (off) or a latent count, got {out.aux_k!r}"
        )
    if not (_number(out.dead_tokens) and 1 <= out.dead_tokens <= _MAX_DEAD_TOKENS):
        raise ValueError(
            f"{name}.dead_tokens: expected a number in [1, 2^24], got {out.dead_tokens!r}"
        )
    if not (_int(out.metrics_batch_size) and out.metrics_batch_size >= 1):
        raise ValueError(
            f"{name}.metrics_batch_size: expected an integer >= 1, got {out.metrics_batch_size!r}"
        )
    if not isinstance(out.normalize_input, bool):
        raise ValueError(f"{name}.normalize_input: expected a bool, got {out.normalize_input!r}")
    out.train = train_lib.resolve_config(train_fields, name=f"{name}.train")
    loss_name = out.loss.name or objectives.DEFAULT_LOSS[out.kind]
    losses.resolve_options(loss_name, loss_config(out)["options"], field=f"{name}.loss")
    return out


def _deep_update(base: dict, given) -> dict:
    out = dict(base)
    for key, value in given.items():
        if isinstance(value, ml_collections.ConfigDict | dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def loss_config(config) -> dict:
    """{"name", "options"} of the loss `config` trains with (default loss of its kind, its
    coefficient from the config's field unless `loss.options` sets it)."""
    name = config.loss.name or objectives.DEFAULT_LOSS[config.kind]
    options = dict(config.loss.options.to_dict()) if config.loss.options else {}
    if name in objectives.DEFAULT_OPTIONS:
        option, field = objectives.DEFAULT_OPTIONS[name]
        options.setdefault(option, float(config[field]))
    return {"name": name, "options": options}


def make_spec(config, d_in: int) -> models.SAESpec:
    """The SAESpec of a resolved config for inputs of width d_in (aux_k -1 -> d_in // 2)."""
    spec = models.spec_from_config(config)
    aux_k = config.aux_k if config.aux_k >= 0 else max(d_in // 2, 1)
    return spec.replace(aux_k=int(min(aux_k, config.num_latents)))


# ----------------------------------------------------------------------------------------------
# Data: validation and the statistics of the input normalisation
# ----------------------------------------------------------------------------------------------


def _training_data(x, column: str):
    """(data for the loop, column name, d_in). Arrays are checked whole, sources in chunks by
    `input_stats`."""
    if isinstance(x, np.ndarray | jax.Array) or not hasattr(x, "__getitem__"):
        arr = np.asarray(models.check_inputs(x, None), np.float32)
        return {"x": arr}, "x", int(arr.shape[1])
    source = as_source(x)
    n = len(source)
    if n == 0:
        raise ValueError("x: the source is empty; expected at least one row")
    row = source[np.arange(1)]
    if column not in row:
        raise ValueError(f"x: the source has no column {column!r}; it has {sorted(row)}")
    first = np.asarray(row[column])
    if first.ndim != 2:
        raise ValueError(f"x[{column!r}]: rows have shape {first.shape[1:]}; expected [d_in]")
    return source, column, int(first.shape[1])


def input_stats(source, column: str, d_in: int, *, chunk: int = 65536) -> tuple[float, np.ndarray]:
    """(mean_i ||x_i||^2, mean_i x_i [d_in]) over a source, float64, streamed; ValueError on a
    non-finite value or a row of the wrong width."""
    n = len(source)
    sq, total = 0.0, np.zeros((d_in,), np.float64)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        x = np.asarray(source[rows][column])
        models.check_inputs(x, d_in, name=f"x (rows {start}..{rows[-1]})")
        x = x.astype(np.float64)
        sq += float(np.sum(x * x))
        total += x.sum(axis=0)
    return sq / n, total / n


# ----------------------------------------------------------------------------------------------
# The training step and fit
# ----------------------------------------------------------------------------------------------

_FIRED = "_fired"


def _train_metrics(outputs, batch):
    del batch
    x = outputs["input"]
    centred = x - jnp.mean(x, axis=0)
    return {
        "mse": jnp.mean(outputs["sq_error"]),
        "fvu": jnp.sum(outputs["sq_error"]) / jnp.maximum(jnp.sum(centred * centred), 1e-30),
        "l0": jnp.mean(outputs["active"]),
        "dead_fraction": outputs["dead_fraction"],
        "aux_error": jnp.mean(outputs["aux_error"]),
        _FIRED: outputs["fired"],
    }


def make_sae_step(loss_fn, tx, schedule, spec: models.SAESpec, *, guard_nonfinite: bool = True):
    """The SAE training step: `train.make_train_step` + unit decoder rows + dead-latent counter.

    Args:
      loss_fn: (params, batch, rng) -> (loss, aux) whose aux has "_fired" [L] bool.
      tx, schedule: the loop's optimiser and schedule (`run.tx`, `run.schedule`).
      spec: the SAESpec (dead_tokens).
      guard_nonfinite: as in the loop (a non-finite step changes nothing).
    Returns:
      step(state, batch, rng) -> (state, metrics) for `run.compile`.
    """
    base = train_lib.make_train_step(loss_fn, tx, schedule, guard_nonfinite=guard_nonfinite)

    def step(state, batch, rng):
        new, metrics = base(state, batch, rng)
        metrics = dict(metrics)
        fired = metrics.pop(_FIRED)
        tokens = jax.tree.leaves(batch)[0].shape[0]
        old = state.params
        params = models.constrain(new.params)
        since = old["stats"]["tokens_since_active"]
        since = jnp.where(fired, 0.0, jnp.minimum(since + tokens, spec.dead_tokens))
        params["stats"] = {"input_scale": old["stats"]["input_scale"], "tokens_since_active": since}
        if guard_nonfinite:
            ok = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
            params = jax.tree.map(lambda a, b: jnp.where(ok, a, b), params, old)
        return new.replace(params=params), metrics

    return step


def fit(
    x: Any,
    config=None,
    *,
    workdir: str,
    eval_x: Any = None,
    column: str = "features",
    return_result: bool = False,
):
    """Train an SAE on x with the one training loop (checkpointed in, and resumed from, workdir).

    Args:
      x: [n, d_in] float array, or a source (`len`, `source[indices] -> {column: [m, d_in]}`,
        e.g. a FeatureStore) read in batches.
      config: SAE config (see `default_config`; missing fields take defaults).
      workdir: the loop's workdir (checkpoints/, metrics.jsonl).
      eval_x: optional [m, d_in] held-out rows; `metrics` on them is logged as eval/<name>
        every `train.eval_every` steps and at the end.
      column: the column of a source holding the rows.
      return_result: also return the loop's TrainResult.
    Returns:
      params (numpy arrays, the module docstring of `introspect.sae.models`): "decoder"
      [num_latents, d_in] with unit rows, ...; or (params, TrainResult) with return_result.
    Raises:
      ValueError: a bad config field, x not 2-D / not finite / empty, eval_x of another width.
    """
    cfg = resolve_config(config)
    data, key, d_in = _training_data(x, column)
    spec = make_spec(cfg, d_in)
    if isinstance(data, dict):
        arr = data["x"]
        mean_sq = float(np.einsum("nd,nd->", arr, arr, dtype=np.float64)) / arr.shape[0]
        mean = arr.mean(axis=0, dtype=np.float64)
    else:
        mean_sq, mean = input_stats(data, key, d_in)
    if eval_x is not None:
        eval_x = np.asarray(models.check_inputs(eval_x, d_in, name="eval_x"), np.float32)
    scale = math.sqrt(d_in / mean_sq) if (cfg.normalize_input and mean_sq > 0) else 1.0
    b_dec = (mean * scale).astype(np.float32)

    def init_fn(rng):
        return models.init_params(
            rng,
            d_in=d_in,
            num_latents=cfg.num_latents,
            kind=cfg.kind,
            input_scale=scale,
            b_dec=b_dec,
            threshold=cfg.threshold_init,
        )

    def forward(params, batch, rng):
        del rng
        return models.forward(params, batch[key], spec=spec, train=True)

    loss_fn = losses.objective(forward, loss_config(cfg), metrics=_train_metrics, field="sae.loss")
    eval_fn = None
    if eval_x is not None:

        def eval_fn(params, step):
            del step
            return api.metrics(sharding.to_host(params), eval_x, config=cfg)

    result = train_lib.train(
        cfg.train,
        init_fn=init_fn,
        loss_fn=loss_fn,
        data=data,
        workdir=workdir,
        eval_fn=eval_fn,
        name="sae.train",
        make_step=functools.partial(make_sae_step, spec=spec),
    )
    params = sharding.to_host(result.state.params)  # gathered on a multi-process mesh
    return (params, result) if return_result else params
