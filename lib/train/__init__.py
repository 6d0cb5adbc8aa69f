"""The one training loop (DESIGN rule 3): probes, SAEs, SFT, DPO and GRPO all train through it.

    from introspect import train
    cfg = train.default_config()           # every field documented there
    result = train.train(cfg, init_fn=..., loss_fn=..., data=..., workdir=...)

Pieces: `make_train_step` (the pure step), `train` = `setup` (config, mesh, optimiser, data feed,
fresh or restored state) + `fit` (the loop: k steps per jitted dispatch, periodic hooks for the
progress bar, metric log with the NaN/inf guard, orbax checkpoints, eval), `Batcher`/
`ArraySource` (data with a checkpointable position), `Checkpointer`, `MetricWriter`, the
optimiser/schedule registries and `partition` (mesh, shardings, multi-host helpers).
"""

from introspect.train import classp, partition
from introspect.train.checkpoint import (
    Checkpointer,
    CheckpointError,
    IncompatibleCheckpointError,
    fingerprint,
)
from introspect.train.config import (
    OPTIMIZERS,
    SCHEDULES,
    default_config,
    make_optimizer,
    make_schedule,
    register_optimizer,
    register_schedule,
    resolve_config,
)
from introspect.train.data import ArraySource, Batcher, as_source, epoch_batches
from introspect.train.loop import (
    Hook,
    NonFiniteError,
    Run,
    TrainResult,
    TrainState,
    check_finite,
    checkpoint_hook,
    eval_hook,
    fit,
    init_train_state,
    log_hook,
    make_train_step,
    progress_hook,
    setup,
    state_layout,
    train,
)
from introspect.train.partition import (
    initialize_distributed,
    is_main_process,
    maybe_initialize_distributed,
)
from introspect.train.writers import MetricWriter, read_metrics

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "ArraySource",
    "Batcher",
    "CheckpointError",
    "IncompatibleCheckpointError",
    "Checkpointer",
    "Hook",
    "MetricWriter",
    "NonFiniteError",
    "Run",
    "TrainResult",
    "TrainState",
    "as_source",
    "check_finite",
    "checkpoint_hook",
    "classp",
    "default_config",
    "epoch_batches",
    "eval_hook",
    "fingerprint",
    "fit",
    "init_train_state",
    "initialize_distributed",
    "is_main_process",
    "log_hook",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "maybe_initialize_distributed",
    "partition",
    "progress_hook",
    "read_metrics",
    "register_optimizer",
    "register_schedule",
    "resolve_config",
    "setup",
    "state_layout",
    "train",
]
