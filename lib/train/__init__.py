"""The one training loop (DESIGN rule 3): probes, SAEs, SFT, DPO and GRPO all train through it.

    from introspect import train
    cfg = train.default_config()           # every field documented there
    result = train.train(cfg, init_fn=..., loss_fn=..., data=..., workdir=...)

Pieces: `make_train_step` (the pure step), `train` (mesh-sharded jit, orbax checkpoints with
automatic resume, metric writers, progress bar, NaN/inf guard), `Batcher`/`ArraySource` (data
with a checkpointable position), `Checkpointer`, `MetricWriter`, the optimiser/schedule
registries and `partition` (mesh, shardings, multi-host helpers).
"""

from introspect.train import partition
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
    NonFiniteError,
    TrainResult,
    TrainState,
    init_train_state,
    make_train_step,
    train,
)
from introspect.train.partition import initialize_distributed, is_main_process
from introspect.train.writers import MetricWriter, read_metrics

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "ArraySource",
    "Batcher",
    "CheckpointError",
    "IncompatibleCheckpointError",
    "Checkpointer",
    "MetricWriter",
    "NonFiniteError",
    "TrainResult",
    "TrainState",
    "as_source",
    "default_config",
    "epoch_batches",
    "fingerprint",
    "init_train_state",
    "initialize_distributed",
    "is_main_process",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "partition",
    "read_metrics",
    "register_optimizer",
    "register_schedule",
    "resolve_config",
    "train",
]
