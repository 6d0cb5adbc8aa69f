"""Train a small TopK SAE in a fresh process (the fault-tolerance and sharding tests of tests/sae).

    python tests/sae/run_sae_train.py --workdir W --out params.npz [--steps 120] [--sleep 0.01]
        [--batch 64] [--data -1] [--model 1] [--fsdp] [--every 20]

Prints one JSON line {"resumed_from", "step", "devices", "specs", "error"}; writes the final
params (flattened names, "stats/..." included) to --out.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
import train_tiny_task  # noqa: E402  (SlowSource, the scripts' flags)

from introspect import sae  # noqa: E402

D_IN, ATOMS, ACTIVE = 16, 32, 3


def planted(n: int, *, d: int = D_IN, atoms: int = ATOMS, active: int = ACTIVE, seed: int = 0,
            noise: float = 0.01):  # fmt: skip
    """(x [n, d] float32, atoms [atoms, d]): each row is `active` random unit atoms with
    coefficients in [0.5, 1.5], plus Gaussian noise of std `noise` per feature."""
    rng = np.random.default_rng(seed)
    dictionary = rng.standard_normal((atoms, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    idx = np.argsort(rng.random((n, atoms)), axis=1)[:, :active]
    coef = rng.uniform(0.5, 1.5, (n, active))
    x = np.einsum("nk,nkd->nd", coef, dictionary[idx]) + noise * rng.standard_normal((n, d))
    return x.astype(np.float32), dictionary.astype(np.float32)


def main() -> int:
    a = train_tiny_task.script_args(default_steps=120)
    cfg = sae.default_config()
    cfg.kind = "topk"
    cfg.num_latents = 64
    cfg.k = 4
    cfg.aux_k = 8
    cfg.dead_tokens = 256  # some latents die within the run, so AuxK runs too
    train_tiny_task.apply_script_args(cfg.train, a)
    cfg.train.optimizer.lr = 3e-3
    cfg.train.steps_per_dispatch = 5
    x, _ = planted(1024)
    data = train_tiny_task.SlowSource({"features": x}, a.sleep) if a.sleep else x
    try:
        params, result = sae.fit(data, cfg, workdir=a.workdir, return_result=True)
    except ValueError as e:
        print(json.dumps({"error": str(e), "devices": jax.device_count()}))
        return 3
    flat = {
        "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
        for path, v in jax.tree_util.tree_leaves_with_path(params)
    }
    np.savez(a.out, **flat)
    specs = {
        "/".join(str(getattr(k, "key", k)) for k in path): str(v.sharding.spec)
        for path, v in jax.tree_util.tree_leaves_with_path(result.state.params)
    }
    print(
        json.dumps(
            {
                "resumed_from": result.resumed_from,
                "step": int(result.state.step),
                "devices": jax.device_count(),
                "specs": specs,
                "dead_fraction": result.metrics.get("dead_fraction"),
                "error": None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
