"""The SAE training of experiments/rise.py (configs/rise.py:smoke's TopK SAE: 1024 latents, k 16,
batch 256, Adam) on synthetic sparse activations, in one process of a (simulated) multi-host run.

    launch/local.sh --processes 2 --devices 1 -- .venv/bin/python tests/distributed/run_sae.py \
        --workdir /tmp/w --out /tmp/sae.npz --steps 20

Every process builds the same activations (a seeded function of nothing), so the only difference
between runs is the process/device layout. Writes the trained parameters to --out (process 0)
and prints one JSON line {"processes", "devices"}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

# First, before anything touches JAX: join the run the launcher describes (if any).
from introspect.train import partition

partition.maybe_initialize_distributed()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs.rise import get_config  # noqa: E402
from introspect import sae  # noqa: E402


def activations(n: int = 2048, d: int = 576, atoms: int = 64, seed: int = 0) -> np.ndarray:
    """[n, d] sums of a few of `atoms` random directions with exponential weights, plus noise."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(atoms, d)).astype(np.float32)
    codes = rng.exponential(size=(n, atoms)) * (rng.random((n, atoms)) < 0.1)
    return (codes.astype(np.float32) @ basis + 0.1 * rng.normal(size=(n, d))).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    cfg = get_config("smoke").sae
    cfg.train.num_steps = a.steps
    cfg.train.eval_every = 0
    cfg.train.log_every = a.steps
    cfg.train.checkpoint.every_steps = 0
    cfg.train.progress = False
    params = sae.fit(activations(), cfg, workdir=a.workdir)
    if partition.is_main_process():
        arrays = {k: np.asarray(v) for k, v in params.items() if not isinstance(v, dict)}
        np.savez(a.out, **arrays)
        print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
