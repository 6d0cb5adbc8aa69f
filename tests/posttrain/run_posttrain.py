"""SFT, DPO and GRPO for a few steps on a tiny model in a fresh process
(the 1- vs 8-device test runs it under XLA_FLAGS=--xla_force_host_platform_device_count=8).

    python tests/posttrain/run_posttrain.py --model DIR --workdir W --out params.npz

SFT and GRPO train LoRA adapters (rank 4), DPO the full model.

Writes every trainer's final parameters (flattened "trainer/path" names) to --out and prints
one JSON line {"devices", "trainers", "specs"}.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import numpy as np

from introspect import models, posttrain, sharding


def _rows(seed, n, keys):
    rng = np.random.default_rng(seed)
    out = {k: [rng.integers(5, 2000, rng.integers(2, 7)).tolist() for _ in range(n)] for k in keys}
    out["correct"] = (rng.random(n) < 0.7).astype(int).tolist()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    lm = models.load(a.model)

    def common(c, lr, lora=False):
        c.train.batch_size = 8
        c.train.num_steps = 3
        # SGD: Adam divides each gradient entry by its own running RMS, so an entry that is ~0 by
        # cancellation (tied embedding rows of unseen tokens) turns reduction-order noise
        # (1e-9) into an lr-sized update; SGD keeps 1 vs 8 devices comparable at 1e-6.
        c.train.optimizer.name = "sgd"
        c.train.optimizer.lr = lr
        c.train.tensorboard = False
        c.train.progress = False
        if lora:
            c.lora.rank = 4
        return c

    results = {}
    sft = common(posttrain.sft_config(), 0.5, lora=True)
    sft.max_prompt_tokens, sft.max_response_tokens = 8, 12
    results["sft"] = posttrain.train_sft(
        lm, _rows(0, 16, ("prompts", "answers")), sft, workdir=f"{a.workdir}/sft"
    )
    dpo = common(posttrain.dpo_config(), 0.5)
    results["dpo"] = posttrain.train_dpo(
        lm, _rows(1, 16, ("prompts", "chosen", "rejected")), dpo, workdir=f"{a.workdir}/dpo"
    )
    qs = ["Is the sky blue?", "Do cats bark?", "Is fire cold?", "Can birds fly?"]
    chat = [[{"role": "user", "content": q}] for q in qs]
    prompts = [lm.tokenizer.apply_chat_template(m, add_generation_prompt=True) for m in chat]
    grpo = common(posttrain.grpo_config(), 0.5, lora=True)
    grpo.reward.name, grpo.reward.options = "starts_with", {"prefix": "a"}
    grpo.group_size, grpo.prompts_per_step = 4, 2
    grpo.max_new_tokens, grpo.max_prompt_tokens = 4, max(map(len, prompts))
    grpo.advantage.name = "ucas"  # the token-level path: an extra sharded forward per step
    grpo.loss.options = {"clip_eps": 0.2, "kl_coef": 0.05}
    exs = [{"id": str(i), "question": q} for i, q in enumerate(qs)]
    results["grpo"] = posttrain.train_grpo(lm, prompts, exs, grpo, workdir=f"{a.workdir}/grpo")

    flat, specs = {}, {}
    for name, res in results.items():
        for path, x in jax.tree_util.tree_flatten_with_path(res.params)[0]:
            key = f"{name}/{sharding.path_name(path)}"
            flat[key] = np.asarray(jax.device_get(x))
            specs[key] = str(x.sharding.spec) if hasattr(x.sharding, "spec") else ""
    np.savez(a.out, **flat)
    print(json.dumps({"devices": jax.device_count(), "trainers": sorted(results),
                      "specs": specs}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
