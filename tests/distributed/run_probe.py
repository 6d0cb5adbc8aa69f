"""The probe-training part of experiments/train_probe.py (configs/train_probe.py:smoke's probe
and training fields: MLP 256-64 on standardised features, class-balanced BCE + L2, Adam with a
cosine schedule, batch 64) on synthetic features, in one process of a (simulated) multi-host run.

    launch/local.sh --processes 2 --devices 4 -- .venv/bin/python tests/distributed/run_probe.py \
        --workdir /tmp/w --out /tmp/p.npz --steps 40

The features are a seeded function of nothing (every process builds the same ones), so the
only difference between runs is the process/device layout. Writes the final parameters to --out
(process 0) and prints one JSON line {"processes", "devices", "step", "resumed_from", ...}.

--die_after K (with --die_process P): process P SIGKILLs itself when it reads its K-th training
batch, i.e. mid-run and without any cleanup, as a crashed host would.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# First, before anything touches JAX: join the run the launcher describes (if any).
from introspect.train import partition

partition.maybe_initialize_distributed()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs.train_probe import get_config  # noqa: E402
from introspect import probes, sharding, train  # noqa: E402


def features(n: int = 128, dim: int = 192, seed: int = 0) -> dict[str, np.ndarray]:
    """[n, dim] features whose label depends (noisily) on a few directions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    w = rng.normal(size=(dim,)).astype(np.float32) / np.sqrt(dim)
    y = (x @ w + 0.5 * rng.normal(size=n) > 0).astype(np.int8)
    return {"features": x, "label": y, "id": np.arange(n, dtype=np.int32)}


class DieAfter:
    """A source that SIGKILLs this process at its `k`-th read of `batch` rows."""

    def __init__(self, source, k: int, batch: int):
        self.source, self.k, self.batch, self.reads = source, k, batch, 0

    def __len__(self):
        return len(self.source)

    def __getitem__(self, idx):
        if np.size(idx) == self.batch:
            self.reads += 1
            if self.reads >= self.k:
                print(f"process {jax.process_index()}: SIGKILL at batch read {self.reads}",
                      file=sys.stderr, flush=True)  # fmt: skip
                os.kill(os.getpid(), signal.SIGKILL)
        return self.source[idx]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--checkpoint_every", type=int, default=10)
    ap.add_argument("--log_every", type=int, default=10)
    ap.add_argument("--keep", type=int, default=10, help="checkpoints kept")
    ap.add_argument("--die_after", type=int, default=0)
    ap.add_argument("--die_process", type=int, default=1)
    a = ap.parse_args()

    config = get_config("smoke")
    cfg = config.train
    cfg.num_steps = a.steps
    cfg.schedule.warmup_steps = 5
    cfg.log_every = a.log_every
    cfg.eval_every = 0  # held-out metrics at the end only
    cfg.checkpoint.every_steps = a.checkpoint_every
    cfg.checkpoint.every_seconds = 0.0  # step-based only: the same checkpoints every run
    cfg.checkpoint.keep = a.keep  # asynchronous, as configured: collective background writes
    cfg.tensorboard = False
    cfg.progress = False

    data = features()
    store = train.ArraySource(data)
    train_idx, val_idx = np.arange(96), np.arange(96, 128)
    source = probes.Subset(store, train_idx)
    local = cfg.batch_size // jax.process_count()
    if a.die_after and jax.process_index() == a.die_process:
        source = DieAfter(source, a.die_after, local)
    fit = probes.fit_probe(
        config.probe,
        cfg,
        source,
        workdir=a.workdir,
        val_source=probes.Subset(store, val_idx),
    )
    flat = {
        sharding.path_name(p): np.asarray(x)
        for p, x in jax.tree_util.tree_flatten_with_path(fit.variables["params"])[0]
    }
    if partition.is_main_process():
        np.savez(a.out, **flat)
        print(json.dumps({
            "processes": jax.process_count(),
            "devices": jax.device_count(),
            "local_devices": jax.local_device_count(),
            "step": int(fit.result.state.step),
            "resumed_from": fit.result.resumed_from,
            "eval": fit.result.eval_metrics,
        }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
