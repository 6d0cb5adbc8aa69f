"""The one training loop (DESIGN rule 3): probes, SAEs, SFT, DPO and GRPO all train through it.

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

`train` is two parts, usable on their own:

    state, run = train.setup(cfg, init_fn, data=data, workdir=workdir)   # fresh or resumed
    step_fn = run.compile(train.make_train_step(loss_fn, run.tx, run.schedule))
    start = int(state.step)
    hooks = [train.log_hook(run, start), train.checkpoint_hook(run), my_hook]
    state = train.fit(state, step_fn, run.feed, hooks, num_steps=run.config.num_steps,
                      steps_per_dispatch=run.config.steps_per_dispatch)
    run.close()

* `make_train_step(loss_fn, tx)` is the pure `step(state, batch, rng) -> (state, metrics)`:
  value_and_grad of the loss, the optax update (optimiser, schedule, clipping, weight decay from
  the config), metrics {loss, grad_norm, lr, **aux}. With the non-finite guard, a step whose loss
  or gradient norm is NaN/inf leaves params and optimiser state unchanged and records its index in
  `state.bad_step`. The step's RNG is `fold_in(state.rng, state.step)`: a function of the seed and
  the step number only.
* `setup` resolves the config, builds the mesh, the optimiser and the data feed, and restores the
  newest good orbax checkpoint in `<workdir>/checkpoints` (state and data position) or
  initialises the state under jit with the state's shardings (`partition.state_shardings`).
  In-memory data that fits `device_data_max_mb` is put on the devices once; the feed then yields
  only row indices and the compiled step gathers the rows.
* `run.compile(step)` jits n consecutive steps as one call (`lax.scan` over n stacked batches when
  n > 1) with the state donated and sharded, batches split over "data".
* `fit` runs the steps in dispatches of up to `steps_per_dispatch`, ending a dispatch at every
  multiple of a hook's `every` so periodic hooks see exact steps, and calls each hook after each
  dispatch. The hooks `train` uses: progress bar, metric log (means over `log_every` steps to
  metrics.jsonl, TensorBoard and the bar; stops with NonFiniteError after a non-finite step),
  checkpoint (when orbax's save policy says so, and at the end; never after a non-finite step,
  so the newest checkpoint on disk is the last good state), eval (`eval_fn` every `eval_every`
  steps and at the end). A run killed at any point and started again resumes from its newest
  checkpoint and ends with bit-identical parameters.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding
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


# ----------------------------------------------------------------------------------------------
# setup: config, mesh, optimiser, data feed, fresh or restored state
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """What `setup` prepared besides the state.

    config: the resolved training config; name: its name in messages.
    mesh, shardings: the device mesh and the state's NamedSharding tree.
    tx, schedule: the optax transformation and the lr schedule.
    data: the checkpointable data iterator (`get_state`/`set_state`; a Batcher or the user's).
    feed: iterator of what one step consumes: row indices [batch_size] (int32) when the data lives
      on the devices (`device_data`), else host-local batches {name: [batch_size / processes, ...]}.
    device_data: the in-memory arrays on the devices (replicated), or None.
    checkpointer, writer: orbax checkpoints and metric writers of the workdir.
    resumed_from: the checkpoint step the state was restored from, or None.
    """

    config: ml_collections.ConfigDict
    name: str
    mesh: Mesh
    shardings: Any
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    data: Any
    feed: Iterator
    device_data: dict | None
    checkpointer: Checkpointer
    writer: MetricWriter
    resumed_from: int | None

    def compile(self, step: Callable) -> Callable[[TrainState, Sequence], tuple[TrainState, dict]]:
        """`step(state, batch, rng)` -> `step_fn(state, items) -> (state, {name: [n]})`.

        `items` are n consecutive items of `feed`; they are stacked [n, ...], placed split over
        "data" on their batch dimension, and run as n steps in one jitted call (`lax.scan` when
        n > 1; one compile per distinct n) with the state donated. Step i uses the RNG
        `fold_in(state.rng, state.step)`, so n steps per call give the same result as n calls.
        `step_fn.jitted(state, stacked, device_data)` is the jax.jit object it dispatches.
        """
        mesh, device_data = self.mesh, self.device_data

        def steps(state, stacked, arrays):
            # arrays: the device-resident data (an argument, not a closed-over constant) or None

            def one(state, item):
                if arrays is not None:  # item: rows [batch]; each device gathers its rows
                    batch = jax.tree.map(lambda a: a[item], arrays)
                    batch = jax.lax.with_sharding_constraint(
                        batch, jax.tree.map(lambda x: batch_sharding(mesh, x.ndim), batch)
                    )
                else:
                    batch = item
                return step(state, batch, jax.random.fold_in(state.rng, state.step))

            n = jax.tree.leaves(stacked)[0].shape[0]
            if n == 1:
                state, metrics = one(state, jax.tree.map(lambda x: x[0], stacked))
                return state, jax.tree.map(lambda x: x[None], metrics)
            return jax.lax.scan(one, state, stacked)

        jitted = jax.jit(
            steps,
            in_shardings=(self.shardings, None, None),
            out_shardings=(self.shardings, None),
            donate_argnums=0,
        )
        local_batch = self.config.batch_size // jax.process_count()

        def place(x):
            x = np.asarray(x)
            if x.shape[1:2] != (local_batch,):
                raise ValueError(
                    f"the data yielded a batch leaf of shape {x.shape[1:]}; expected "
                    f"[{local_batch}, ...] (batch_size / processes)"
                )
            spec = NamedSharding(mesh, P(None, DATA, *([None] * (x.ndim - 2))))
            return jax.make_array_from_process_local_data(spec, x)

        # Several CPU devices (simulated: XLA_FLAGS=--xla_force_host_platform_device_count,
        # launch/local.sh): wait for each dispatch before the next. With two collective
        # programs in flight, XLA's CPU runtime can deadlock (jax 0.10: 2 processes x 2 devices
        # hang in gloo within a few hundred unsynchronised steps, 2 x 1 does not; 1 process x 8
        # devices once stopped with "only 7 of 8 threads arrived" at an all-reduce). TPU/GPU
        # runs keep dispatching ahead.
        serial = jax.default_backend() == "cpu" and jax.device_count() > 1

        def step_fn(state, items):
            stacked = jax.tree.map(lambda *xs: place(np.stack(xs)), *items)
            out = jitted(state, stacked, device_data)
            return jax.block_until_ready(out) if serial else out

        step_fn.jitted = jitted  # `.lower(...)` for AOT compiles (launch/aot_tpu.py)
        return step_fn

    def close(self) -> None:
        """Wait for pending checkpoint writes and close the files."""
        try:
            self.checkpointer.close()
        finally:
            self.writer.close()


class _Rows:
    """The feed of device-resident data: the Batcher's row indices, one step at a time."""

    def __init__(self, batcher: Batcher):
        self.batcher = batcher

    def __iter__(self):
        return self

    def __next__(self) -> np.ndarray:
        rows = self.batcher.indices(self.batcher.step).astype(np.int32)
        self.batcher.step += 1
        return rows


class StateLayout(NamedTuple):
    tx: optax.GradientTransformation
    schedule: Callable
    init_state: Callable[[], TrainState]  # the fresh state (jit it with out_shardings)
    shardings: Any  # NamedSharding tree of the state
    abstract: Any  # jax.ShapeDtypeStruct tree carrying `shardings` (restore / AOT lower)


def state_layout(cfg: ml_collections.ConfigDict, init_fn, mesh: Mesh) -> StateLayout:
    """The optimiser, the initial-state function and the train state's layout on `mesh` under a
    resolved `cfg`, without allocating it (`jax.eval_shape`): what `setup` restores into or
    initialises, and what launch/aot_tpu.py lowers on."""
    tx, schedule = make_optimizer(cfg)
    init_key, step_key = jax.random.split(jax.random.PRNGKey(cfg.seed))

    def init_state():
        return init_train_state(init_fn(init_key), tx, step_key)

    shapes = jax.eval_shape(init_state)
    shardings = partition.state_shardings(shapes, mesh, cfg)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, shardings
    )
    return StateLayout(tx, schedule, init_state, shardings, abstract)


def setup(
    config: ml_collections.ConfigDict | dict | None,
    init_fn: Callable[[jax.Array], Any],
    *,
    data,
    workdir: str,
    name: str = "train",
) -> tuple[TrainState, Run]:
    """The state to train (restored from `workdir`'s newest good checkpoint, or fresh) and its Run.

    Args: as `train`. Returns: (TrainState, Run); call `run.close()` when done.
    Raises: ValueError (a bad config field, data that does not fit it), CheckpointError.
    """
    cfg = resolve_config(config, name=name)
    partition.initialize_distributed(cfg.distributed)
    mesh = partition.mesh_from_config(cfg, name=name)
    check_batch_divisible(cfg, mesh.shape[DATA], jax.process_count(), name=name)
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
    device_data = None
    if isinstance(batches, Batcher) and isinstance(batches.source, ArraySource):
        nbytes = sum(a.nbytes for a in batches.source.arrays.values())
        if jax.process_count() == 1 and nbytes <= cfg.device_data_max_mb * 2**20:
            device_data = jax.device_put(batches.source.arrays, NamedSharding(mesh, P()))

    tx, schedule, init_state, shardings, abstract = state_layout(cfg, init_fn, mesh)

    os.makedirs(workdir, exist_ok=True)
    k = cfg.checkpoint
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        keep=k.keep,
        asynchronous=k.asynchronous,
        verify=k.verify,
        every_steps=k.every_steps,
        every_seconds=k.every_seconds,
    )
    writer = MetricWriter(
        workdir, enabled=partition.is_main_process(), tensorboard=cfg.tensorboard, log=False
    )
    try:
        restored = ckpt.restore_latest(abstract)
    except Exception:
        ckpt.close()
        writer.close()
        raise
    if restored is not None:
        resumed_from, state, data_state = restored
        if data_state is not None:
            batches.set_state(data_state)
        writer.truncate_after(resumed_from)
        if partition.is_main_process():
            logging.info("%s: resumed from checkpoint step %d in %s", name, resumed_from, workdir)
    else:
        resumed_from = None
        state = jax.jit(init_state, out_shardings=shardings)()
        writer.write_hparams(_flatten(cfg.to_dict()))
    run = Run(
        config=cfg,
        name=name,
        mesh=mesh,
        shardings=shardings,
        tx=tx,
        schedule=schedule,
        data=batches,
        feed=_Rows(batches) if device_data is not None else batches,
        device_data=device_data,
        checkpointer=ckpt,
        writer=writer,
        resumed_from=resumed_from,
    )
    return state, run


# ----------------------------------------------------------------------------------------------
# fit: the loop, and its periodic hooks
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hook:
    """A periodic hook of `fit`: `fn(step, state, metrics, last)` after every dispatch.

    every: dispatches end at multiples of this step (0 = no constraint), so a hook due every
      `every` steps sees exactly those steps.
    fn: step = steps done; metrics = {name: [n]} device arrays of the dispatch's n steps;
      last = step is the final one. It decides itself whether it is due.
    close: called when `fit` ends (also on an exception), or None.
    latest: what the hook last produced (the log's means, the eval's output).
    """

    every: int
    fn: Callable[[int, TrainState, dict, bool], None]
    close: Callable[[], None] | None = None
    latest: dict = dataclasses.field(default_factory=dict)


def fit(
    state: TrainState,
    step_fn: Callable[[TrainState, Sequence], tuple[TrainState, dict]],
    batches: Iterator,
    hooks: Sequence[Hook],
    *,
    num_steps: int,
    steps_per_dispatch: int = 1,
) -> TrainState:
    """Run `state` up to step `num_steps`, up to `steps_per_dispatch` steps per `step_fn` call.

    Args:
      state: the TrainState to continue (its `step` says where).
      step_fn: (state, [item, ...]) -> (state, {name: [n]}) for n consecutive items of `batches`.
      batches: iterator of per-step items (batches or row indices).
      hooks: called in order after each dispatch; closed when fit ends.
      num_steps: the step to stop at.
      steps_per_dispatch: the most steps per call; calls also end at multiples of it.
    Returns:
      The final state.
    """
    done = int(jax.device_get(state.step))
    stops = [h.every for h in hooks if h.every] + [steps_per_dispatch]
    try:
        while done < num_steps:
            n = min([num_steps] + [(done // e + 1) * e for e in stops]) - done
            state, metrics = step_fn(state, [next(batches) for _ in range(n)])
            done += n
            for hook in hooks:
                hook.fn(done, state, metrics, done == num_steps)
    finally:
        for hook in hooks:
            if hook.close is not None:
                hook.close()
    return state


def check_finite(state: TrainState, step: int, run: Run) -> None:
    """NonFiniteError if a step so far had a non-finite loss or gradient norm (a host sync)."""
    bad = int(jax.device_get(state.bad_step))
    if bad >= 0:
        latest = run.checkpointer.latest_step()
        raise NonFiniteError(
            f"{run.name}: the loss or gradient norm became NaN/inf at step {bad} (0-based); "
            f"training stopped at step {step}, that update and later ones were skipped. "
            + (
                f"The last good checkpoint is step {latest} in {run.checkpointer.directory}."
                if latest is not None
                else "No checkpoint had been written yet."
            )
            + " Lower optimizer.lr, set optimizer.clip_norm, or check the data."
        )


def progress_hook(run: Run, start: int) -> Hook:
    """A tqdm bar (steps/s, ETA, last logged loss in `bar.postfix`) on the main process."""
    cfg = run.config
    show = partition.is_main_process() and cfg.progress
    bar = tqdm(total=cfg.num_steps, initial=start, unit="step", desc=run.name, disable=not show,
               dynamic_ncols=True)  # fmt: skip

    def fn(step, state, metrics, last):
        bar.update(step - bar.n)

    return Hook(every=0, fn=fn, close=bar.close, latest={"bar": bar})


def log_hook(run: Run, start: int, progress: Hook | None = None) -> Hook:
    """Means of the step metrics over `log_every` steps (and at the end) to the writer, plus
    steps_per_sec; then, with the guard on, NonFiniteError if a step so far was non-finite."""
    every = run.config.log_every
    pending: list[dict] = []
    clock = {"t": time.perf_counter(), "step": start}
    latest: dict[str, float] = {}

    def fn(step, state, metrics, last):
        pending.append(metrics)
        if not (last or step % every == 0):
            return
        rows = jax.device_get(pending)
        pending.clear()
        latest.clear()
        for k in rows[0]:
            latest[k] = float(
                np.mean(np.concatenate([np.ravel(r[k]) for r in rows]), dtype=np.float64)
            )
        now = time.perf_counter()
        latest["steps_per_sec"] = (step - clock["step"]) / max(now - clock["t"], 1e-9)
        clock.update(t=now, step=step)
        run.writer.write_scalars(step, latest)
        if run.config.guard_nonfinite:
            check_finite(state, step, run)
        if progress is not None:
            progress.latest["bar"].set_postfix(loss=f"{latest['loss']:.4g}", refresh=False)

    return Hook(every=every, fn=fn, latest=latest)


def checkpoint_hook(run: Run) -> Hook:
    """Save when the checkpointer's orbax policy says so (every_steps / every_seconds) and at the
    end, after the non-finite check: no checkpoint holds a state past a non-finite step."""
    ckpt = run.checkpointer

    def fn(step, state, metrics, last):
        if last or ckpt.should_save(step):
            if run.config.guard_nonfinite:
                check_finite(state, step, run)
            ckpt.save(step, state, run.data.get_state())

    return Hook(every=run.config.checkpoint.every_steps, fn=fn)


def eval_hook(run: Run, eval_fn: Callable[[Any, int], Mapping[str, float]]) -> Hook:
    """`eval_fn(params, step)` every `eval_every` steps (0 = only at the end) and at the end,
    written as "eval/<name>"; `latest` holds its last output."""
    every = run.config.eval_every
    latest: dict[str, float] = {}

    def fn(step, state, metrics, last):
        if not (last or (every and step % every == 0)):
            return
        latest.clear()
        latest.update({k: float(v) for k, v in eval_fn(state.params, step).items()})
        run.writer.write_scalars(step, {f"eval/{k}": v for k, v in latest.items()})
        if partition.is_main_process():
            logging.info("%s: step %d eval %s", run.name, step, latest)

    return Hook(every=every, fn=fn, latest=latest)


def train(
    config: ml_collections.ConfigDict | dict | None,
    *,
    init_fn: Callable[[jax.Array], Any],
    loss_fn: LossFn,
    data,
    workdir: str,
    eval_fn: Callable[[Any, int], Mapping[str, float]] | None = None,
    name: str = "train",
    make_step: Callable[..., Callable] | None = None,
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
      make_step: (loss_fn, tx, schedule, *, guard_nonfinite) -> step(state, batch, rng), for
        steps that do more than the optimiser update (e.g. `sae.make_sae_step` renormalises
        decoder rows); default `make_train_step`.

    Data that depends on the model (on-policy rollouts, `posttrain.RolloutFeed`): an iterator
    with `bind(state)`; it is bound to the starting state and, after every step, to the new
    one (steps_per_dispatch must be 1).
    Returns:
      TrainResult.
    Raises:
      ValueError: a bad config field (named) or data that does not fit it.
      NonFiniteError: the loss or gradient became NaN/inf (the newest checkpoint is good).
      CheckpointError: the workdir has checkpoints but none is usable.
    """
    state, run = setup(config, init_fn, data=data, workdir=workdir, name=name)
    cfg = run.config
    t0 = time.perf_counter()
    start = int(jax.device_get(state.step))
    progress = progress_hook(run, start)
    log = log_hook(run, start, progress)
    evaluate = eval_hook(run, eval_fn) if eval_fn is not None else None
    hooks = [progress, log, checkpoint_hook(run)] + ([evaluate] if evaluate else [])
    bind = getattr(run.data, "bind", None)
    if bind is not None:
        # On-policy data (e.g. GRPO rollouts): the iterator samples with the current state.
        if cfg.steps_per_dispatch != 1:
            run.close()
            raise ValueError(
                f"{name}.steps_per_dispatch must be 1 when the data depends on the state "
                f"(an iterator with bind()), got {cfg.steps_per_dispatch}"
            )
        bind(state)
        hooks.insert(0, Hook(every=0, fn=lambda step, st, metrics, last: bind(st)))
    try:
        step = (make_step or make_train_step)(
            loss_fn, run.tx, run.schedule, guard_nonfinite=cfg.guard_nonfinite
        )
        state = fit(state, run.compile(step), run.feed, hooks, num_steps=cfg.num_steps,
                    steps_per_dispatch=cfg.steps_per_dispatch)  # fmt: skip
        if start >= cfg.num_steps and evaluate is not None:  # a finished run, resumed
            evaluate.fn(start, state, {}, True)
    finally:
        run.close()
    seconds = time.perf_counter() - t0
    trained = int(jax.device_get(state.step)) - start
    return TrainResult(
        state=state,
        metrics=dict(log.latest),
        eval_metrics=dict(evaluate.latest) if evaluate else {},
        resumed_from=run.resumed_from,
        steps_per_second=trained / seconds if trained else 0.0,
        seconds=seconds,
    )
