"""CRew-DPO on the embedded model: pairs from its own sampled answers (introspect.posttrain.dpo).

    python -m experiments.dpo --config configs/dpo.py:smoke --workdir /tmp/dpo

1. `samples` sampled answers per train / held-out question, graded, CRew confidence = mean token
   probability; pairs (chosen = most confident right, rejected = most confident wrong).
2. `posttrain.train_dpo` (loss "dpo" or "vpo" by name, the one loop, resumable).
3. Implicit-reward margins on the train and held-out pairs, and greedy accuracy with the mean
   token probability of the answers, before and after; results/dpo/<run>/metrics.json.
"""

from __future__ import annotations

import time

import numpy as np

from introspect import data, models, posttrain, registry, results


def _greedy(lm, prompts, exs, config) -> dict:
    gen = lm.generate(prompts, max_new_tokens=int(config.max_new_tokens))
    ok = [
        data.grade(ex, t, fmt=config.prompt_format)[1] for ex, t in zip(exs, gen.texts, strict=True)
    ]
    conf = [float(np.exp(np.mean(lp))) if len(lp) else 0.0 for lp in gen.logprobs]
    return {"accuracy": float(np.mean(ok)), "mean_token_prob": float(np.mean(conf))}


def run(config, workdir: str) -> dict:
    t0 = time.perf_counter()
    registry.import_modules(config.get("imports"))
    lm = models.load(config.model, dtype=config.dtype)
    roles = data.load_roles(
        config.task,
        {"train": tuple(config.train_split), "eval": tuple(config.eval_split)},
        data_dir=config.data_dir or None,
    )
    out_dir = results.run_dir("dpo", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", {**config.to_dict(), "workdir": workdir})
    prompts = {
        r: [data.build_prompt_ids(lm.tokenizer, ex, config.prompt_format) for ex in exs]
        for r, exs in roles.items()
    }
    pairs = {
        r: posttrain.crew_pairs(
            lm,
            prompts[r],
            roles[r],
            samples=int(config.samples),
            temperature=float(config.temperature),
            max_new_tokens=int(config.max_new_tokens),
            fmt=config.prompt_format,
            seed=i,
        )  # fmt: skip
        for i, r in enumerate(("train", "eval"))
    }
    for r, p in pairs.items():
        print(f"{r}: {len(p['prompts'])} CRew pairs from {len(prompts[r])} questions")
    if not pairs["train"]["prompts"]:
        raise ValueError("no training pair: every question's answers were all wrong")
    before = _greedy(lm, prompts["eval"], roles["eval"], config)
    res = posttrain.train_dpo(lm, pairs["train"], config.dpo, workdir=workdir)
    tuned = posttrain.lora.tuned(lm, res)
    if config.export_model:
        models.save_hf(tuned, f"{out_dir}/model", overwrite=True)
    after = _greedy(tuned, prompts["eval"], roles["eval"], config)
    margins = {
        r: posttrain.pair_margins(lm, res.params, p, config.dpo)
        for r, p in pairs.items()
        if p["prompts"]
    }
    m = {
        "model": config.model,
        "task": config.task,
        "loss": config.dpo.loss.name,
        "pairs": {r: len(p["prompts"]) for r, p in pairs.items()},
        "margin": {r: float(v.mean()) for r, v in margins.items()},
        "pair_accuracy": {r: float((v > 0).mean()) for r, v in margins.items()},
        "before": before,
        "after": after,
        "train_seconds": round(res.seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"margins {m['margin']}, pair accuracy {m['pair_accuracy']}")
    print(f"greedy before {before}, after {after}")
    results.write_json(f"{out_dir}/metrics.json", m)
    print(f"results: {out_dir}/ ({m['seconds']:.0f} s)")
    return m


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "dpo", workdir_help="checkpoints and metrics.jsonl")
