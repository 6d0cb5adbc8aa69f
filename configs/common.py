"""Config blocks shared by several experiments."""

import ml_collections

from introspect.probes import default_probe_config
from introspect.train import default_config as default_train_config


def probe_fields(
    *, num_steps: int, eval_every: int
) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
    """(probe, train) configs of a hidden-state probe: an MLP 256-64 on standardised features,
    class-balanced, BCE, L2 1e-4; Adam 1e-3 with a cosine schedule, batch 64, checkpoints every
    500 steps (and every 10 s), the last 2 kept."""
    probe = default_probe_config()
    probe.name = "mlp"
    probe.hidden = (256, 64)
    probe.l2 = 1e-4
    # The loss by name (introspect.losses.LOSSES) and its options (float options are traced).
    probe.loss.name = "bce"

    train = default_train_config()
    train.num_steps = num_steps
    train.batch_size = 64
    train.optimizer.name = "adam"
    train.optimizer.lr = 1e-3
    train.schedule.name = "cosine"
    train.schedule.warmup_steps = 50
    train.log_every = 100
    train.eval_every = eval_every
    train.checkpoint.every_steps = 500
    train.checkpoint.every_seconds = 10.0
    train.checkpoint.keep = 2
    return probe, train
