"""A tiny synthetic task for the training-loop tests (shared by the tests and run_tiny_train.py).

Data: x [n, 16] standard normal, y = 1[x @ w + noise > 0]. Model: MLP 16 -> 32 -> 1 with dropout
(so the per-step RNG matters for bit-exact resumption).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

DIM, HIDDEN = 16, 32


def make_data(n: int = 512, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    w = rng.standard_normal(DIM)
    y = (x @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.float32)
    return {"x": x, "y": y}


def init_fn(rng):
    k1, k2 = jax.random.split(rng)
    return {
        "w1": jax.random.normal(k1, (DIM, HIDDEN)) / np.sqrt(DIM),
        "b1": jnp.zeros((HIDDEN,)),
        "w2": jax.random.normal(k2, (HIDDEN, 1)) / np.sqrt(HIDDEN),
        "b2": jnp.zeros((1,)),
    }


def loss_fn(params, batch, rng):
    h = jax.nn.relu(batch["x"] @ params["w1"] + params["b1"])
    keep = jax.random.bernoulli(rng, 0.9, h.shape)
    h = jnp.where(keep, h / 0.9, 0.0)
    z = (h @ params["w2"] + params["b2"])[:, 0]
    loss = jnp.mean(jnp.logaddexp(0.0, z) - batch["y"] * z)
    return loss, {"accuracy": jnp.mean((z > 0) == (batch["y"] > 0))}


class SlowSource:
    """A source that sleeps per batch (to give a test time to kill the process mid-run)."""

    def __init__(self, arrays, sleep: float):
        self.arrays, self.sleep = arrays, sleep

    def __len__(self):
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, idx):
        time.sleep(self.sleep)
        return {k: v[idx] for k, v in self.arrays.items()}


def script_args(default_steps: int):
    """The flags of the training scripts these tests run in fresh processes
    (run_tiny_train.py, tests/sae/run_sae_train.py)."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=default_steps)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data", type=int, default=-1)
    p.add_argument("--model", type=int, default=1)
    p.add_argument("--fsdp", action="store_true")
    p.add_argument("--every", type=int, default=20)
    return p.parse_args()


def apply_script_args(cfg, a) -> None:
    """Set a training config's steps, batch, mesh, sharding and checkpointing from
    `script_args` (one cosine warm-up schedule, quiet: no progress bar)."""
    cfg.num_steps = a.steps
    cfg.batch_size = a.batch
    cfg.schedule.name = "cosine"
    cfg.schedule.warmup_steps = 10
    cfg.mesh.data = a.data
    cfg.mesh.model = a.model
    cfg.sharding.fsdp = a.fsdp
    cfg.sharding.min_size = 0
    cfg.checkpoint.every_steps = a.every
    cfg.checkpoint.keep = 2
    cfg.log_every = 10
    cfg.progress = False
