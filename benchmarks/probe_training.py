"""MLP-probe training throughput: introspect's training loop vs a plain PyTorch loop, one run.

    python benchmarks/probe_training.py [--rows 1000000] [--dim 576] [--batch 512] [--steps 400]
        [--steps-per-dispatch 50] [--repeats 3]

Both sides train the same probe on the same in-memory features [rows, dim] (float32, a planted
linear signal): standardisation (x - mean) / scale, MLP dim -> 256 -> 64 -> 1 with ReLU,
class-balanced binary cross-entropy n / (2 n_c), Adam (lr 1e-3, b1 0.9, b2 0.999, eps 1e-8),
and the same batches (row indices from the same `introspect.train.Batcher`). introspect runs the
full loop (`introspect.train.train`: sharded jit step, data batcher, metric writers, non-finite
guard, a final orbax checkpoint), once with one step per jitted call and once with
`--steps-per-dispatch` k steps per call (`train.steps_per_dispatch`: a `lax.scan` over k batches
gathered from the device-resident features, the same k optimiser steps); its steps/s is the
median of the logged intervals after the first (which holds the compile). PyTorch runs with
every core and with one thread (torch.set_num_threads; the faster counts), a warm-up of 20 steps,
then `--steps` timed steps.
The measurements alternate (introspect k = 1, introspect k, PyTorch) `--repeats` times, so each
ratio compares runs seconds apart on a machine whose load may drift. Prints one JSON object with
the per-repeat rates, the per-repeat ratios introspect (k steps per call) / PyTorch and their
median (goal: >= 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def make_data(rows: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    x *= 2.0
    x += 1.0
    w = rng.standard_normal(dim).astype(np.float32) / np.sqrt(dim)
    y = ((x - 1.0) @ w + 0.5 * rng.standard_normal(rows).astype(np.float32) > 0.3).astype(np.int8)
    return x, y


def bench_introspect(x, y, batch, steps, steps_per_dispatch):
    from introspect import probes, train

    cfg = train.default_config()
    cfg.num_steps = steps + 50
    cfg.batch_size = batch
    cfg.optimizer.name = "adam"
    cfg.optimizer.lr = 1e-3
    cfg.steps_per_dispatch = steps_per_dispatch
    cfg.log_every = 50
    cfg.checkpoint.every_steps = 0
    cfg.progress = False
    with tempfile.TemporaryDirectory() as workdir:
        t = time.perf_counter()
        probes.fit_probe(
            {"name": "mlp", "hidden": (256, 64)},
            cfg,
            {"features": x, "label": y},
            workdir=workdir,
        )
        total = time.perf_counter() - t
        rows = [r for r in train.read_metrics(workdir) if "steps_per_sec" in r]
    rates = [r["steps_per_sec"] for r in rows[1:]]
    return float(np.median(rates)), total


def bench_torch(x, y, batch, steps, threads, seed=0):
    import torch

    from introspect import probes, train

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    stats = probes.feature_stats({"features": x})
    w0, w1 = probes.class_weights(y)
    mean, scale = torch.from_numpy(stats["mean"]), torch.from_numpy(stats["scale"])
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.float32))
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    batcher = train.Batcher({"i": np.arange(len(x))}, batch, seed=seed)

    def step():
        idx = torch.from_numpy(batcher.indices(batcher.step))
        batcher.step += 1
        xb = (xt[idx] - mean) / scale
        yb = yt[idx]
        logits = model(xb)[:, 0]
        weights = torch.where(yb > 0.5, w1, w0)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, weight=weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(20):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss.detach())
    return steps / (time.perf_counter() - t), torch.__version__


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=576)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--steps-per-dispatch", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    t = time.perf_counter()
    x, y = make_data(a.rows, a.dim)
    data_s = time.perf_counter() - t
    threads = sorted({os.cpu_count() or 1, 1}, reverse=True)
    reps = []
    for _ in range(a.repeats):
        ours_1, _ = bench_introspect(x, y, a.batch, a.steps, 1)
        ours, ours_total = bench_introspect(x, y, a.batch, a.steps, a.steps_per_dispatch)
        # PyTorch with every core and with one thread (oversubscribed cores can make its OpenMP
        # threads slower than one); the faster is the baseline.
        torch_rates = {}
        for n in threads:
            torch_rates[n], torch_version = bench_torch(x, y, a.batch, a.steps, n)
        theirs = max(torch_rates.values())
        reps.append(
            {
                "introspect_steps_per_s": round(ours, 1),
                "introspect_steps_per_s_one_step_per_call": round(ours_1, 1),
                "introspect_total_s_incl_compile": round(ours_total, 1),
                "torch_steps_per_s": round(theirs, 1),
                "torch_steps_per_s_by_threads": {k: round(v, 1) for k, v in torch_rates.items()},
                "ratio": round(ours / theirs, 2),
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    ratio = float(np.median([r["ratio"] for r in reps]))

    import jax

    print(
        json.dumps(
            {
                "benchmark": "probe_training",
                "rows": a.rows,
                "dim": a.dim,
                "batch": a.batch,
                "steps": a.steps,
                "probe": "mlp 256-64 relu, standardised, class-balanced BCE, adam",
                "steps_per_dispatch": a.steps_per_dispatch,
                "repeats": reps,
                "ratio": round(ratio, 2),
                "goal": 1.5,
                "goal_met": bool(ratio >= 1.5),
                "data_seconds": round(data_s, 1),
                "jax": jax.__version__,
                "torch": torch_version,
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
