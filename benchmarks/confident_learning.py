"""Confident learning on 1M x 10 predictions: introspect.cleaning vs cleanlab 2.9.0.

    python benchmarks/confident_learning.py [--n 1000000] [--classes 10] [--noise 0.2]
                                            [--repeats 3]

Prints one JSON object: seconds per `find_label_issues` call with the default rule
(prune_by_noise_rate) for cleanlab with n_jobs=1 and with its default n_jobs (physical cores,
multiprocessing), and for introspect (cold = first call including XLA compilation; warm = median
of `--repeats` later calls, interleaved with cleanlab's; NumPy inputs for everybody, so
validation and the host-to-device copy count). Wall-clock and this process's CPU seconds (CPU
time misses cleanlab's worker processes), the speed-up ratios (goal: >= 5x on warm wall-clock),
and the parity check: the masks of every rule and the confident joint must be identical.
Data: softmax predictions of a noisy model around true labels, 20% of the given labels flipped
uniformly. Needs the [parity] extra (cleanlab). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import cleanlab
import jax
import numpy as np
from cleanlab.count import compute_confident_joint
from cleanlab.filter import find_label_issues as cl_find_label_issues

from introspect import cleaning


def make_data(n: int, k: int, noise: float, seed: int):
    """float32 softmax predictions around the true labels; `noise` of the labels re-drawn."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)).astype(np.float32) * 1.5
    logits[np.arange(n), true] += 3.0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).astype(np.float32)
    labels = true.copy()
    flip = rng.random(n) < noise
    labels[flip] = rng.integers(0, k, int(flip.sum()))
    return labels, p


def _clock(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # cleanlab's advisory warnings

    labels, p = make_data(args.n, args.classes, args.noise, args.seed)
    fns = {
        "introspect": lambda: cleaning.find_label_issues(labels, p),
        "cleanlab_n_jobs_1": lambda: cl_find_label_issues(labels, p, n_jobs=1),
        "cleanlab_default": lambda: cl_find_label_issues(labels, p),
    }
    cold = {}
    for name, fn in fns.items():
        _, wall, _ = _clock(fn)
        cold[name] = wall
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    results = {}
    for _ in range(args.repeats):  # interleaved, so that load changes hit every library alike
        for name, fn in fns.items():
            results[name], w, c = _clock(fn)
            wall[name].append(w)
            cpu[name].append(c)
    med = {name: statistics.median(v) for name, v in wall.items()}
    med_cpu = {name: statistics.median(v) for name, v in cpu.items()}

    ours = np.asarray(results["introspect"])
    identical = {
        "prune_by_noise_rate": bool(np.array_equal(ours, results["cleanlab_n_jobs_1"]))
        and bool(np.array_equal(ours, results["cleanlab_default"]))
    }
    for filter_by in cleaning.FILTERS[1:]:
        ref = cl_find_label_issues(labels, p, filter_by=filter_by, n_jobs=1)
        mine = np.asarray(cleaning.find_label_issues(labels, p, filter_by=filter_by))
        identical[filter_by] = bool(np.array_equal(mine, ref))
    identical["confident_joint"] = bool(
        np.array_equal(
            np.asarray(cleaning.confident_joint(labels, p)), compute_confident_joint(labels, p)
        )
    )

    speedup_1 = med["cleanlab_n_jobs_1"] / med["introspect"]
    speedup_default = med["cleanlab_default"] / med["introspect"]
    report = {
        "n": args.n,
        "classes": args.classes,
        "noise": args.noise,
        "dtype": "float32",
        "repeats": args.repeats,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "jax": jax.__version__,
            "jax_backend": jax.default_backend(),
            "cleanlab": cleanlab.__version__,
        },
        "issues_found": int(ours.sum()),
        "introspect": {
            "warm_s": round(med["introspect"], 4),
            "warm_cpu_s": round(med_cpu["introspect"], 4),
            "cold_s": round(cold["introspect"], 4),
        },
        "cleanlab_n_jobs_1": {
            "s": round(med["cleanlab_n_jobs_1"], 4),
            "cpu_s": round(med_cpu["cleanlab_n_jobs_1"], 4),
        },
        "cleanlab_default_n_jobs": {
            "s": round(med["cleanlab_default"], 4),
            "parent_cpu_s": round(med_cpu["cleanlab_default"], 4),
        },
        "speedup_vs_cleanlab_n_jobs_1": round(speedup_1, 2),
        "speedup_vs_cleanlab_default": round(speedup_default, 2),
        "cpu_speedup_vs_cleanlab_n_jobs_1": round(
            med_cpu["cleanlab_n_jobs_1"] / med_cpu["introspect"], 2
        ),
        "identical": identical,
        "goals": {"at_least_5x_vs_cleanlab_n_jobs_1": bool(speedup_1 >= 5)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
