"""The training loop's config: defaults, validation with errors that name the field, optimisers.

A training config is an `ml_collections.ConfigDict` (usually `config.train` of an experiment)::

    from introspect import train
    cfg = train.default_config()
    cfg.num_steps = 2000
    cfg.optimizer.name = "adamw"; cfg.optimizer.lr = 3e-4; cfg.optimizer.weight_decay = 0.01
    cfg.schedule.name = "cosine"; cfg.schedule.warmup_steps = 100

`resolve_config(cfg)` fills in every missing field from `default_config()`, rejects unknown fields
and bad values with a ValueError that names the field (`train.optimizer.lr must be > 0, got -1`).
Optimisers and schedules are picked by name from `OPTIMIZERS` and `SCHEDULES`; a new one is one
function registered with `register_optimizer` / `register_schedule`, with no edit to the loop.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from introspect import sharding
from introspect.registry import Registry

# ----------------------------------------------------------------------------------------------
# Defaults
# ----------------------------------------------------------------------------------------------


def default_config() -> ml_collections.ConfigDict:
    """Every field the loop reads, with its default (a comment over each field)."""
    c = ml_collections.ConfigDict()
    # Seed of parameter initialisation, the per-step RNG and the data order.
    c.seed = 0
    # Optimiser steps to run in total (a resumed run continues up to this step).
    c.num_steps = 1000
    # Global batch size (all devices and hosts together); must be divisible by the data axis.
    c.batch_size = 256
    # Shuffle the training data (a fresh permutation per epoch, a pure function of seed + epoch).
    c.shuffle = True
    # In-memory arrays (a dict or ArraySource) up to this many MiB are put on the devices once
    # (replicated) and each step gathers its rows inside the jitted step, so only the row
    # indices travel per step (single-process runs; 0 = always feed batches from the host).
    c.device_data_max_mb = 4096
    # Optimiser steps per jitted call: k steps run inside one `lax.scan` over k batches (same
    # result as k calls, fewer dispatches and host round trips). The loop regains control at
    # multiples of k and of log_every / eval_every / checkpoint.every_steps, so those stay exact;
    # time-based checkpoints are decided at those points. 1 = one step per call.
    c.steps_per_dispatch = 1

    c.optimizer = ml_collections.ConfigDict()
    # One of OPTIMIZERS: sgd, momentum, adam, adamw, lamb, lion, rmsprop, adafactor.
    c.optimizer.name = "adam"
    # Peak learning rate (> 0); the schedule multiplies it.
    c.optimizer.lr = 1e-3
    # Adam-family moments and epsilon; `momentum`/`nesterov` for sgd-momentum and rmsprop.
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.momentum = 0.9
    c.optimizer.nesterov = False
    # Decoupled weight decay (0 = off) on parameters with ndim >= 2 only (not biases), through the
    # optimiser's own optax decay (OPTIMIZERS entries with weight_decay=True: sgd, adamw, lamb,
    # lion; other optimisers reject weight_decay > 0).
    c.optimizer.weight_decay = 0.0
    # CLASSP (name "classp"): a weight moves only where grad^2 > classp_threshold, by
    # lr * grad / (classp_eps + sum of its past |grad|^classp_power)^(1 / classp_power).
    c.optimizer.classp_threshold = 0.5
    c.optimizer.classp_power = 1.0
    c.optimizer.classp_eps = 1e-5
    # Clip gradients to this global L2 norm before the optimiser (0 = off).
    c.optimizer.clip_norm = 0.0
    # Frozen parameters: regular expressions searched in each parameter's path ("a/b/kernel");
    # a matching parameter gets no update and no optimiser state (optax.multi_transform with
    # set_to_zero), e.g. ("^base/",) for LoRA's frozen base. () = train everything.
    c.optimizer.frozen = ()

    c.schedule = ml_collections.ConfigDict()
    # One of SCHEDULES: constant, cosine, linear, rsqrt (after the warm-up).
    c.schedule.name = "constant"
    # Linear warm-up from 0 to the peak learning rate over this many steps.
    c.schedule.warmup_steps = 0
    # cosine/linear decay to lr * end_factor at num_steps.
    c.schedule.end_factor = 0.0

    # Device mesh ("data", "model") and the parameter layout (fsdp, min_size, rules): the one
    # scheme shared with inference, fields documented in introspect.sharding.default_config().
    placement = sharding.default_config()
    c.mesh = placement.mesh
    c.sharding = placement.sharding

    c.checkpoint = ml_collections.ConfigDict()
    # Save every this many steps (0 = only by time and at the end; orbax FixedIntervalPolicy) ...
    c.checkpoint.every_steps = 1000
    # ... and whenever this many seconds have passed since the newest checkpoint (0 = off; orbax
    # ContinuousCheckpointingPolicy: with no checkpoint yet, the first step boundary saves).
    c.checkpoint.every_seconds = 0.0
    # Keep the newest this many checkpoints.
    c.checkpoint.keep = 3
    # Write checkpoints in a background thread (orbax async checkpointing).
    c.checkpoint.asynchronous = True
    # Store a bit-exact fingerprint of the state with each checkpoint and check it on restore.
    c.checkpoint.verify = True

    # Average and write the training metrics every this many steps.
    c.log_every = 100
    # Call the loop's `eval_fn` every this many steps and at the end (0 = only at the end).
    c.eval_every = 0
    # Progress bar (steps/s, ETA) on process 0.
    c.progress = True
    # Also write TensorBoard event files to <workdir>/tensorboard (needs tensorboardX).
    c.tensorboard = True
    # Stop with NonFiniteError when the loss or gradient norm is NaN/inf (the update is skipped).
    c.guard_nonfinite = True
    # Call jax.distributed.initialize() (multi-host); also on when INTROSPECT_DISTRIBUTED=1.
    c.distributed = False
    return c


# ----------------------------------------------------------------------------------------------
# Optimisers and schedules (registries)
# ----------------------------------------------------------------------------------------------

OptimizerBuilder = Callable[
    [ml_collections.ConfigDict, optax.Schedule], optax.GradientTransformation
]
ScheduleBuilder = Callable[[ml_collections.ConfigDict, float, int], optax.Schedule]

# name -> builder(optimizer_config, lr_schedule); metadata `weight_decay` (bool): the builder
# applies `optimizer_config.weight_decay` itself, decoupled and masked by `decay_mask`.
OPTIMIZERS: Registry[OptimizerBuilder] = Registry("optimiser", defaults={"weight_decay": False})
# name -> builder(schedule_config, peak_lr, decay_steps) -> (step -> lr), used after the warm-up.
SCHEDULES: Registry[ScheduleBuilder] = Registry("schedule")


def register_optimizer(
    name: str, builder: OptimizerBuilder, *, weight_decay: bool = False, overwrite: bool = False
) -> None:
    """Register `builder(optimizer_config, lr_schedule) -> optax.GradientTransformation`.

    weight_decay: True when the builder applies `optimizer_config.weight_decay` itself (decoupled,
      masked by `decay_mask`); resolve_config rejects weight_decay > 0 for other optimisers.
    """
    OPTIMIZERS.register(name, builder, weight_decay=weight_decay, overwrite=overwrite)


def register_schedule(name: str, builder: ScheduleBuilder, *, overwrite: bool = False) -> None:
    """Register `builder(schedule_config, peak_lr, decay_steps) -> step -> lr` (after warm-up)."""
    SCHEDULES.register(name, builder, overwrite=overwrite)


def decay_mask(params):
    """True for parameters that get weight decay: arrays with ndim >= 2 (kernels, embeddings)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def _adam_args(o) -> dict:
    return {"b1": o.b1, "b2": o.b2, "eps": o.eps}


def _decay(o) -> dict:
    return {"weight_decay": o.weight_decay, "mask": decay_mask}


register_optimizer(
    # Plain SGD: weight decay added to the gradient before the lr scaling is exactly decoupled.
    "sgd",
    lambda o, lr: optax.chain(optax.add_decayed_weights(o.weight_decay, decay_mask), optax.sgd(lr)),
    weight_decay=True,
)
register_optimizer(
    "momentum", lambda o, lr: optax.sgd(lr, momentum=o.momentum, nesterov=o.nesterov)
)
register_optimizer("adam", lambda o, lr: optax.adam(lr, **_adam_args(o)))
register_optimizer(
    "adamw", lambda o, lr: optax.adamw(lr, **_adam_args(o), **_decay(o)), weight_decay=True
)
register_optimizer(
    "lamb", lambda o, lr: optax.lamb(lr, **_adam_args(o), **_decay(o)), weight_decay=True
)
register_optimizer(
    "lion", lambda o, lr: optax.lion(lr, b1=o.b1, b2=o.b2, **_decay(o)), weight_decay=True
)
register_optimizer("rmsprop", lambda o, lr: optax.rmsprop(lr, eps=o.eps, momentum=o.momentum))
register_optimizer("adafactor", lambda o, lr: optax.adafactor(lr))

register_schedule("constant", lambda s, lr, n: optax.constant_schedule(lr))
register_schedule(
    "cosine", lambda s, lr, n: optax.cosine_decay_schedule(lr, max(n, 1), alpha=s.end_factor)
)
register_schedule(
    "linear", lambda s, lr, n: optax.linear_schedule(lr, lr * s.end_factor, max(n, 1))
)
register_schedule(
    "rsqrt", lambda s, lr, n: lambda step: lr * jax.lax.rsqrt(jnp.maximum(step, 0) + 1.0)
)


# ----------------------------------------------------------------------------------------------
# Resolution and validation
# ----------------------------------------------------------------------------------------------


def _merge(defaults: ml_collections.ConfigDict, given, prefix: str) -> None:
    for key, value in given.items():
        name = f"{prefix}.{key}"
        if key not in defaults:
            raise ValueError(
                f"unknown training config field {name!r}; known fields at this level: "
                f"{', '.join(sorted(defaults.keys()))}"
            )
        if isinstance(defaults[key], ml_collections.ConfigDict):
            if not isinstance(value, ml_collections.ConfigDict | dict):
                raise ValueError(f"{name} must be a ConfigDict/dict, got {value!r}")
            _merge(defaults[key], value, name)
        else:
            try:
                defaults[key] = value
            except TypeError as e:  # ConfigDict is type-safe: 2.5 cannot go into an int field
                raise ValueError(
                    f"{name} must be a {type(defaults[key]).__name__}, got {value!r}"
                ) from e


def _check(ok: bool, field: str, message: str, value) -> None:
    if not ok:
        raise ValueError(f"{field} {message}, got {value!r}")


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _known(registry: Registry, name, field: str, register: str) -> None:
    try:
        registry.check(name, field=field)
    except ValueError as e:
        raise ValueError(f"{e} (or register one with {register})") from None


def resolve_config(
    config: ml_collections.ConfigDict | dict | None, *, name: str = "train"
) -> ml_collections.ConfigDict:
    """Defaults updated with `config`, validated; a ValueError names any bad field.

    Args:
      config: a (partial) training config; None = all defaults.
      name: how the config is called in error messages (e.g. "config.train").
    Returns:
      A new ConfigDict with every field of `default_config()`.
    """
    out = default_config()
    if config is not None:
        if not isinstance(config, ml_collections.ConfigDict | dict):
            raise ValueError(f"{name} must be a ConfigDict or dict, got {type(config).__name__}")
        _merge(out, config, name)
    f = lambda field: f"{name}.{field}"

    _check(_is_int(out.seed), f("seed"), "must be an int", out.seed)
    _check(
        _is_int(out.num_steps) and out.num_steps >= 1,
        f("num_steps"),
        "must be an int >= 1",
        out.num_steps,
    )
    _check(
        _is_int(out.batch_size) and out.batch_size >= 1,
        f("batch_size"),
        "must be an int >= 1",
        out.batch_size,
    )

    o = out.optimizer
    _known(OPTIMIZERS, o.name, f("optimizer.name"), "register_optimizer")
    _check(_is_number(o.lr) and o.lr > 0, f("optimizer.lr"), "must be a finite number > 0", o.lr)
    for key in ("b1", "b2", "momentum"):
        v = o[key]
        _check(_is_number(v) and 0 <= v < 1, f(f"optimizer.{key}"), "must be in [0, 1)", v)
    _check(_is_number(o.eps) and o.eps > 0, f("optimizer.eps"), "must be > 0", o.eps)
    _check(
        _is_number(o.weight_decay) and o.weight_decay >= 0,
        f("optimizer.weight_decay"),
        "must be >= 0",
        o.weight_decay,
    )
    if o.weight_decay > 0 and not OPTIMIZERS.meta(o.name, "weight_decay"):
        raise ValueError(
            f"{f('optimizer.weight_decay')}={o.weight_decay} needs an optimiser with decoupled "
            f"weight decay ({', '.join(OPTIMIZERS.names(weight_decay=True))}); "
            f"{o.name!r} has none (adam with weight decay is adamw)"
        )
    _check(
        _is_number(o.clip_norm) and o.clip_norm >= 0,
        f("optimizer.clip_norm"),
        "must be >= 0 (0 = no clipping)",
        o.clip_norm,
    )

    frozen = o.frozen
    _check(
        isinstance(frozen, list | tuple) and all(isinstance(x, str) for x in frozen),
        f("optimizer.frozen"),
        "must be a tuple of regular expressions",
        frozen,
    )
    for pattern in frozen:
        try:
            re.compile(pattern)
        except re.error as e:
            msg = f"{f('optimizer.frozen')}: bad regular expression {pattern!r}: {e}"
            raise ValueError(msg) from None

    s = out.schedule
    _known(SCHEDULES, s.name, f("schedule.name"), "register_schedule")
    _check(
        _is_int(s.warmup_steps) and 0 <= s.warmup_steps < out.num_steps,
        f("schedule.warmup_steps"),
        f"must be an int in [0, num_steps={out.num_steps})",
        s.warmup_steps,
    )
    _check(
        _is_number(s.end_factor) and s.end_factor >= 0,
        f("schedule.end_factor"),
        "must be >= 0",
        s.end_factor,
    )

    _check(
        _is_int(out.mesh.data) and (out.mesh.data >= 1 or out.mesh.data == -1),
        f("mesh.data"),
        "must be -1 (all remaining devices) or an int >= 1",
        out.mesh.data,
    )
    _check(
        _is_int(out.mesh.model) and out.mesh.model >= 1,
        f("mesh.model"),
        "must be an int >= 1",
        out.mesh.model,
    )
    _check(
        isinstance(out.sharding.fsdp, bool), f("sharding.fsdp"), "must be a bool", out.sharding.fsdp
    )
    sharding.check_rules(out.sharding.rules, field=f("sharding.rules"))
    _check(
        _is_int(out.sharding.min_size) and out.sharding.min_size >= 0,
        f("sharding.min_size"),
        "must be an int >= 0",
        out.sharding.min_size,
    )

    k = out.checkpoint
    _check(
        _is_int(k.every_steps) and k.every_steps >= 0,
        f("checkpoint.every_steps"),
        "must be an int >= 0 (0 = only by time and at the end)",
        k.every_steps,
    )
    _check(
        _is_number(k.every_seconds) and k.every_seconds >= 0,
        f("checkpoint.every_seconds"),
        "must be >= 0 (0 = off)",
        k.every_seconds,
    )
    _check(_is_int(k.keep) and k.keep >= 1, f("checkpoint.keep"), "must be an int >= 1", k.keep)
    _check(
        _is_number(out.device_data_max_mb) and out.device_data_max_mb >= 0,
        f("device_data_max_mb"),
        "must be >= 0",
        out.device_data_max_mb,
    )
    _check(
        _is_int(out.steps_per_dispatch) and out.steps_per_dispatch >= 1,
        f("steps_per_dispatch"),
        "must be an int >= 1",
        out.steps_per_dispatch,
    )
    _check(
        _is_int(out.log_every) and out.log_every >= 1,
        f("log_every"),
        "must be an int >= 1",
        out.log_every,
    )
    _check(
        _is_int(out.eval_every) and out.eval_every >= 0,
        f("eval_every"),
        "must be an int >= 0 (0 = only at the end)",
        out.eval_every,
    )
    return out


def check_batch_divisible(
    config: ml_collections.ConfigDict, data_axis: int, processes: int, *, name: str = "train"
) -> None:
    """ValueError naming `batch_size` unless it splits evenly over devices and hosts."""
    per = math.lcm(data_axis, processes)
    if config.batch_size % per:
        raise ValueError(
            f"{name}.batch_size={config.batch_size} must be divisible by the mesh's data axis "
            f"size ({data_axis} devices) and the number of processes ({processes}); "
            f"e.g. use {-(-config.batch_size // per) * per}"
        )


# ----------------------------------------------------------------------------------------------
# Building the optimiser
# ----------------------------------------------------------------------------------------------


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """step -> learning rate: linear warm-up, then `schedule.name` (config from resolve_config)."""
    s, lr, n = config.schedule, float(config.optimizer.lr), int(config.num_steps)
    main = SCHEDULES[s.name](s, lr, n - s.warmup_steps)
    if s.warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, lr, s.warmup_steps)
    return optax.join_schedules([warmup, main], [s.warmup_steps])


def make_optimizer(
    config: ml_collections.ConfigDict,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optax transformation, lr schedule) from a resolved training config.

    Chain: clip_by_global_norm (if clip_norm > 0) -> the registered optimiser with the schedule
    as its learning rate. With weight_decay > 0 the optimiser's own optax decay applies it
    decoupled (AdamW-style: `-lr(step) * weight_decay * param`, after the preconditioner) to the
    parameters `decay_mask` selects (ndim >= 2, not biases).
    """
    o = config.optimizer
    schedule = make_schedule(config)
    tx = OPTIMIZERS.get(o.name)(o, schedule)
    if o.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(o.clip_norm), tx)
    if o.frozen:
        tx = optax.multi_transform(
            {"train": tx, "frozen": optax.set_to_zero()}, frozen_labels(tuple(o.frozen))
        )
    return tx, schedule


def frozen_labels(patterns: tuple[str, ...]):
    """params -> the same tree of "frozen" / "train" labels (a path matching any pattern is
    frozen; paths as `sharding.path_name`)."""

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: (
                "frozen"
                if any(re.search(p, sharding.path_name(path)) for p in patterns)
                else "train"
            ),
            params,
        )

    return labels
