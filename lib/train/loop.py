"""The one training loop: a pure step jitted over a mesh, orbax checkpoints, metrics, progress.

    from introspect import train
    result = train.train(
        config.train,                               # see train.default_config()
        init_fn=lambda rng: model.init(rng, x0)["params"],
        loss_fn=my_loss,                            # (params, batch, rng) -> (loss, {name: value})
        data={"x": X, "y": Y},                      # arrays, a source, or a checkpointable iterator
        workdir="/tmp/run",
        eval_fn=lambda params, step: {"auroc": ...},  # optional, host-side
    )
    result.state.params

What happens:
* `make_train_step(loss_fn, tx)` builds the pure `step(state, batch, rng) -> (state, metrics)`:
  value_and_grad of the loss, the optax update (optimiser, schedule, clipping and weight decay from
  the config), metrics {loss, grad_norm, lr, **aux}. With the non-finite guard, a step whose loss
  or gradient norm is NaN/inf leaves params and optimiser state unchanged and records its index in
  `state.bad_step`.
* The step is `jax.jit`-ed over the config's mesh with NamedSharding for state (replicated, or
  split over "model"/"data" by `partition.state_shardings`) and batch (split over "data"), with
  the state donated. The step's RNG is `fold_in(state.rng, state.step)`, so it depends only on the
  seed and the step number.
* Checkpoints (orbax, `<workdir>/checkpoints`) are written every `checkpoint.every_steps` steps,
  every `checkpoint.every_seconds` seconds and at the end, keeping `checkpoint.keep`; each stores
  the data iterator's position. When the workdir has a checkpoint, the loop resumes from the newest
  good one, so a run killed at any point and started again ends with bit-identical parameters.
* Metrics (means over `log_every` steps) go to `<workdir>/metrics.jsonl`, TensorBoard files and
  the log, on process 0 only; a tqdm bar shows steps/s and the ETA.
* When the guard sees a non-finite step, the loop stops with NonFiniteError; no checkpoint is
  written after that step, so the newest checkpoint on disk is the last good state.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from introspect.sharding import DATA, batch_sharding
from introspect.train import partition
from introspect.train.checkpoint import Checkpointer
from introspect.train.config import check_batch_divisible, make_optimizer, resolve_config
from introspect.train.data import ArraySource, Batcher, as_source
from introspect.train.writers import MetricWriter

LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, Mapping[str, jax.Array]]]


class NonFiniteError(RuntimeError):
    """The loss or gradient norm became NaN/inf; training stopped."""


@flax.struct.dataclass
class TrainState:
    """step: int32 []; params, opt_state: pytrees; rng: uint32 [2] base key of the per-step RNG;
    bad_step: int32 [], index of the first step with a non-finite loss/gradient, -1 if none."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    bad_step: jax.Array


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    state: the final TrainState (device arrays, sharded as in training).
    metrics: the last logged training metrics (means over the last `log_every` steps).
    eval_metrics: the last `eval_fn` output (empty without eval_fn).
    resumed_from: the checkpoint step training resumed from, or None.
    steps_per_second: optimiser steps per second in this process (compile included).
    """

    state: TrainState
    metrics: dict[str, float]
    eval_metrics: dict[str, float]
    resumed_from: int | None
    steps_per_second: float
    seconds: float

    @property
    def params(self):
        return self.state.params


def init_train_state(params, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
    """A step-0 TrainState for `params` (rng: a uint32 [2] key)."""
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=rng,
        bad_step=jnp.full((), -1, jnp.int32),
    )


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule | None = None,
    *,
    guard_nonfinite: bool = True,
) -> Callable[[TrainState, Any, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure training step.

    Args:
      loss_fn: (params, batch, rng) -> (scalar loss, {name: scalar} auxiliary metrics).
      tx: the optax transformation.
      schedule: step -> learning rate, reported as metric "lr" (optional).
      guard_nonfinite: skip the update (and record `bad_step`) when loss or gradient norm is
        NaN/inf.
    Returns:
      step(state, batch, rng) -> (new state, {"loss", "grad_norm", ["lr"], **aux}).
    """

    def step(state: TrainState, batch, rng):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.global_norm(grads)
        bad_step = state.bad_step
        if guard_nonfinite:
            ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
            params = keep(params, state.params)
            opt_state = keep(opt_state, state.opt_state)
            bad_step = jnp.where(ok | (bad_step >= 0), bad_step, state.step)
        metrics = {"loss": loss, "grad_norm": grad_norm, **dict(aux)}
        if schedule is not None:
            metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, bad_step=bad_step
        )
        return new_state, metrics

    return step


def _is_iterator(data) -> bool:
    return all(hasattr(data, a) for a in ("__next__", "get_state", "set_state"))


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


def _mean_metrics(pending: list[dict]) -> dict[str, float]:
    rows = jax.device_get(pending)
    return {k: float(np.mean([np.asarray(r[k], np.float64) for r in rows])) for k in rows[0]}


def train(
    config: ml_collections.ConfigDict | dict | None,
    *,
    init_fn: Callable[[jax.Array], Any],
    loss_fn: LossFn,
    data,
    workdir: str,
    eval_fn: Callable[[Any, int], Mapping[str, float]] | None = None,
    name: str = "train",
) -> TrainResult:
    """Train from scratch or resume from `workdir`'s newest checkpoint, up to `num_steps`.

    Args:
      config: training config (see `default_config()`; missing fields take defaults).
      init_fn: rng -> params pytree (called under jit with the state's out_shardings).
      loss_fn: (params, batch, rng) -> (scalar loss, {name: scalar}); batch is a pytree of
        global arrays [batch_size, ...].
      data: dict of arrays [n, ...] or a source (`len`, `__getitem__(indices)`), batched by a
        `Batcher` with the config's seed/batch_size/shuffle; or an iterator with
        `__next__`/`get_state`/`set_state` yielding host-local batches
        [batch_size / processes, ...].
      workdir: checkpoints/, metrics.jsonl, tensorboard/ go here.
      eval_fn: optional (params, step) -> {name: float}, called every `eval_every` steps and at
        the end on every process; written as "eval/<name>".
      name: how the config is called in error messages.
    Returns:
      TrainResult.
    Raises:
      ValueError: a bad config field (named) or data that does not fit it.
      NonFiniteError: the loss or gradient became NaN/inf (the newest checkpoint is good).
      CheckpointError: the workdir has checkpoints but none is usable.
    """
    cfg = resolve_config(config, name=name)
    partition.initialize_distributed(cfg.distributed)
    mesh = partition.mesh_from_config(cfg, name=name)
    check_batch_divisible(cfg, mesh.shape[DATA], jax.process_count(), name=name)
    main = partition.is_main_process()
    if _is_iterator(data):
        batches = data
    else:
        source = as_source(data)
        if len(source) < cfg.batch_size:
            raise ValueError(
                f"{name}.batch_size={cfg.batch_size} is larger than the training data "
                f"({len(source)} examples)"
            )
        batches = Batcher(source, cfg.batch_size, seed=cfg.seed, shuffle=cfg.shuffle)
    local_batch = cfg.batch_size // jax.process_count()
    device_data = None
    if isinstance(batches, Batcher) and isinstance(batches.source, ArraySource):
        nbytes = sum(a.nbytes for a in batches.source.arrays.values())
        if jax.process_count() == 1 and nbytes <= cfg.device_data_max_mb * 2**20:
            device_data = jax.device_put(batches.source.arrays, NamedSharding(mesh, P()))

    tx, schedule = make_optimizer(cfg)
    init_key, step_key = jax.random.split(jax.random.PRNGKey(cfg.seed))

    def init_state():
        return init_train_state(init_fn(init_key), tx, step_key)

    abstract = jax.eval_shape(init_state)
    shardings = partition.state_shardings(abstract, mesh, cfg)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )

    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        keep=cfg.checkpoint.keep,
        asynchronous=cfg.checkpoint.asynchronous,
        verify=cfg.checkpoint.verify,
    )
    writer = MetricWriter(workdir, enabled=main, tensorboard=cfg.tensorboard, log=False)
    restored = ckpt.restore_latest(abstract)
    if restored is not None:
        resumed_from, state, data_state = restored
        if data_state is not None:
            batches.set_state(data_state)
        writer.truncate_after(resumed_from)
        if main:
            logging.info("%s: resumed from checkpoint step %d in %s", name, resumed_from, workdir)
    else:
        resumed_from = None
        state = jax.jit(init_state, out_shardings=shardings)()
        writer.write_hparams(_flatten(cfg.to_dict()))

    step_fn = make_train_step(loss_fn, tx, schedule, guard_nonfinite=cfg.guard_nonfinite)

    def jitted_body(state, batch):
        return step_fn(state, batch, jax.random.fold_in(state.rng, state.step))

    def jitted_gather_body(state, rows, arrays):
        # rows [batch] (split over "data"): each device gathers its rows of the replicated data
        batch = jax.tree.map(lambda a: a[rows], arrays)
        batch = jax.lax.with_sharding_constraint(
            batch, jax.tree.map(lambda x: batch_sharding(mesh, x.ndim), batch)
        )
        return jitted_body(state, batch)

    jstep = None
    start = int(jax.device_get(state.step))
    last_saved = start if resumed_from is not None else None
    last_save_time = time.monotonic()
    metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    pending: list[dict] = []
    t0 = t_log = time.perf_counter()
    log_start = start

    def check_finite():
        if not cfg.guard_nonfinite:
            return
        bad = int(jax.device_get(state.bad_step))
        if bad >= 0:
            latest = ckpt.latest_step()
            raise NonFiniteError(
                f"{name}: the loss or gradient norm became NaN/inf at step {bad} (0-based); "
                f"training stopped at step {done}, that update and later ones were skipped. "
                + (
                    f"The last good checkpoint is step {latest} in {ckpt.directory}."
                    if latest is not None
                    else "No checkpoint had been written yet."
                )
                + " Lower optimizer.lr, set optimizer.clip_norm, or check the data."
            )

    def save(step):
        nonlocal last_saved, last_save_time
        check_finite()
        ckpt.save(step, state, batches.get_state())
        last_saved, last_save_time = step, time.monotonic()

    def run_eval(step):
        nonlocal eval_metrics
        if eval_fn is None:
            return
        eval_metrics = {k: float(v) for k, v in eval_fn(state.params, step).items()}
        writer.write_scalars(step, {f"eval/{k}": v for k, v in eval_metrics.items()})
        if main:
            logging.info("%s: step %d eval %s", name, step, eval_metrics)

    bar = tqdm(
        total=cfg.num_steps,
        initial=start,
        unit="step",
        desc=name,
        disable=not (main and cfg.progress),
        dynamic_ncols=True,
    )
    done = start
    try:
        for done in range(start + 1, cfg.num_steps + 1):
            if device_data is not None:
                rows = batches.indices(batches.step).astype(np.int32)
                batches.step += 1
                rows = partition.global_batch(rows, mesh)
                if jstep is None:
                    jstep = jax.jit(
                        jitted_gather_body,
                        in_shardings=(shardings, batch_sharding(mesh, 1), None),
                        out_shardings=(shardings, None),
                        donate_argnums=0,
                    )
                state, step_metrics = jstep(state, rows, device_data)
            else:
                host_batch = next(batches)
                for leaf in jax.tree.leaves(host_batch):
                    if np.shape(leaf)[:1] != (local_batch,):
                        raise ValueError(
                            f"the data yielded a batch leaf of shape {np.shape(leaf)}; expected "
                            f"[{local_batch}, ...] (batch_size / processes)"
                        )
                batch = partition.global_batch(host_batch, mesh)
                if jstep is None:
                    batch_shardings = jax.tree.map(lambda x: batch_sharding(mesh, x.ndim), batch)
                    jstep = jax.jit(
                        jitted_body,
                        in_shardings=(shardings, batch_shardings),
                        out_shardings=(shardings, None),
                        donate_argnums=0,
                    )
                state, step_metrics = jstep(state, batch)
            if done == start + 1:  # the first call compiled; time-based saves count from here
                last_save_time = time.monotonic()
            pending.append(step_metrics)
            bar.update(1)

            if done % cfg.log_every == 0 or done == cfg.num_steps:
                metrics = _mean_metrics(pending)
                pending = []
                now = time.perf_counter()
                metrics["steps_per_sec"] = (done - log_start) / max(now - t_log, 1e-9)
                t_log, log_start = now, done
                writer.write_scalars(done, metrics)
                check_finite()
                bar.set_postfix(loss=f"{metrics['loss']:.4g}", refresh=False)
            if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.num_steps:
                run_eval(done)
            if done == cfg.num_steps:
                break
            due = bool(cfg.checkpoint.every_steps and done % cfg.checkpoint.every_steps == 0)
            if cfg.checkpoint.every_seconds:
                by_time = time.monotonic() - last_save_time >= cfg.checkpoint.every_seconds
                if jax.process_count() > 1:  # every host must take the same decision
                    by_time = bool(multihost_utils.broadcast_one_to_all(np.int32(by_time)))
                due = due or by_time
            if due:
                save(done)
        check_finite()
        if last_saved != cfg.num_steps:
            save(cfg.num_steps)
        run_eval(cfg.num_steps)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    seconds = time.perf_counter() - t0
    trained = done - start
    return TrainResult(
        state=state,
        metrics=metrics,
        eval_metrics=eval_metrics,
        resumed_from=resumed_from,
        steps_per_second=trained / seconds if trained else 0.0,
        seconds=seconds,
    )
