"""ECE (15 bins) and AUROC on 10 million samples: introspect vs scikit-learn and torchmetrics.

    python benchmarks/metrics.py [--n 10000000] [--repeats 5]

Prints one JSON object: median wall-clock seconds per call (inputs are numpy arrays for every
library; repetitions are interleaved across libraries so load changes hit all alike;
introspect's first, compiling call is reported separately as compile_s), the ratios, whether
the goals are met (AUROC >= 5x scikit-learn, ECE >= 2x torchmetrics), and the metric values
next to a float64 numpy reference. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import binary_auroc, binary_calibration_error

import introspect.metrics as M


def _timed(fns: dict, repeats: int) -> dict:
    """Median seconds per call of each function, after one first (compiling) call each.

    The repetitions are interleaved (a, b, c, a, b, c, ...) so that a change in machine load
    during the run affects every library alike. Returns {name: (median, first, value)}.
    """
    first, value, times = {}, {}, {k: [] for k in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        value[name] = jax.block_until_ready(fn())
        first[name] = time.perf_counter() - t0
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
    return {k: (statistics.median(times[k]), first[k], value[k]) for k in fns}


def _ece_reference(conf: np.ndarray, correct: np.ndarray, num_bins: int) -> float:
    c = conf.astype(np.float64)
    edges = np.arange(num_bins + 1) / num_bins
    idx = np.clip(np.searchsorted(edges, c, side="right") - 1, 0, num_bins - 1)
    count = np.bincount(idx, minlength=num_bins)
    gap = np.bincount(idx, weights=correct - c, minlength=num_bins)
    return float(np.abs(gap).sum() / count.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    conf = rng.random(args.n, dtype=np.float32)  # float32: ~10^6 ties among 10^7 samples
    correct = (rng.random(args.n) < conf.astype(np.float64) ** 1.2).astype(np.int64)
    conf_t, correct_t = torch.from_numpy(conf), torch.from_numpy(correct)
    r = args.repeats

    ece = _timed(
        {
            "ours": lambda: M.ece(conf, correct, num_bins=15),
            "ours_nv": lambda: M.ece(conf, correct, num_bins=15, validate=False),
            "tm": lambda: binary_calibration_error(conf_t, correct_t, n_bins=15, norm="l1"),
            "tm_nv": lambda: binary_calibration_error(
                conf_t, correct_t, n_bins=15, norm="l1", validate_args=False
            ),
        },
        r,
    )
    auc = _timed(
        {
            "ours": lambda: M.auroc(conf, correct),
            "ours_nv": lambda: M.auroc(conf, correct, validate=False),
            "sk": lambda: roc_auc_score(correct, conf),
            "tm": lambda: binary_auroc(conf_t, correct_t),
        },
        r,
    )
    ece_ours, ece_compile, ece_val = ece["ours"]
    ece_ours_nv = ece["ours_nv"][0]
    ece_tm, _, ece_tm_val = ece["tm"]
    ece_tm_nv = ece["tm_nv"][0]
    auc_ours, auc_compile, auc_val = auc["ours"]
    auc_ours_nv = auc["ours_nv"][0]
    auc_sk, _, auc_sk_val = auc["sk"]
    auc_tm, _, auc_tm_val = auc["tm"]

    ece_ratio = ece_tm / ece_ours
    auc_ratio = auc_sk / auc_ours
    report = {
        "n": args.n,
        "dtype": "float32",
        "repeats": r,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "jax": jax.__version__,
            "jax_backend": jax.default_backend(),
            "torch_threads": torch.get_num_threads(),
        },
        "ece_15_bins": {
            "introspect_s": round(ece_ours, 4),
            "introspect_no_validation_s": round(ece_ours_nv, 4),
            "introspect_compile_s": round(ece_compile, 4),
            "torchmetrics_s": round(ece_tm, 4),
            "torchmetrics_no_validation_s": round(ece_tm_nv, 4),
            "speedup_vs_torchmetrics": round(ece_ratio, 2),
            "speedup_vs_torchmetrics_both_unvalidated": round(ece_tm_nv / ece_ours_nv, 2),
            "value_introspect": float(ece_val),
            "value_torchmetrics": float(ece_tm_val),
            "value_float64_reference": _ece_reference(conf, correct, 15),
        },
        "auroc": {
            "introspect_s": round(auc_ours, 4),
            "introspect_no_validation_s": round(auc_ours_nv, 4),
            "introspect_compile_s": round(auc_compile, 4),
            "sklearn_s": round(auc_sk, 4),
            "torchmetrics_s": round(auc_tm, 4),
            "speedup_vs_sklearn": round(auc_ratio, 2),
            "speedup_vs_torchmetrics": round(auc_tm / auc_ours, 2),
            "value_introspect": float(auc_val),
            "value_sklearn": float(auc_sk_val),
            "value_torchmetrics": float(auc_tm_val),
        },
        "goals": {
            "auroc_at_least_5x_sklearn": bool(auc_ratio >= 5),
            "ece_at_least_2x_torchmetrics": bool(ece_ratio >= 2),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
