"""Train the tiny task in a fresh process (used by the fault-tolerance and sharding tests).

    python tests/train/run_tiny_train.py --workdir W --out params.npz [--steps 200] [--sleep 0.01]
        [--batch 64] [--data -1] [--model 1] [--fsdp]

Prints one JSON line {"resumed_from", "step", "devices", "specs", "error"}; writes the final params
(float32 leaves, flattened names) to --out.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
import train_tiny_task as task

from introspect import train


def main() -> int:
    a = task.script_args(default_steps=200)
    cfg = train.default_config()
    task.apply_script_args(cfg, a)
    cfg.optimizer.name = "adamw"
    cfg.optimizer.lr = 1e-2
    cfg.optimizer.weight_decay = 1e-3
    cfg.optimizer.clip_norm = 1.0
    cfg.tensorboard = False  # tensorboardX imports PyTorch (seconds per fresh process)
    data = task.make_data()
    source = task.SlowSource(data, a.sleep) if a.sleep else data
    try:
        result = train.train(
            cfg, init_fn=task.init_fn, loss_fn=task.loss_fn, data=source, workdir=a.workdir
        )
    except ValueError as e:
        print(json.dumps({"error": str(e), "devices": jax.device_count()}))
        return 3
    params = jax.device_get(result.state.params)
    np.savez(a.out, **{k: np.asarray(v) for k, v in params.items()})
    print(
        json.dumps(
            {
                "resumed_from": result.resumed_from,
                "step": int(result.state.step),
                "devices": jax.device_count(),
                "specs": {k: str(v.sharding.spec) for k, v in result.state.params.items()},
                "error": None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
