"""ConfTuner SFT on the model's own graded answers (introspect.posttrain.sft).

    python -m experiments.sft --config configs/sft.py:smoke --workdir /tmp/sft

1. The model answers the train and held-out questions greedily; answers are graded.
2. Held-out evaluation of the starting model: tokenized Brier, expected stated confidence
   (the confidence-token distribution after the cue), its Brier score, ECE and AUROC.
3. `posttrain.train_sft` (answer NLL + tokenized Brier, the one loop, resumable).
4. The same evaluation after; results/sft/<run>/: config.json, metrics.json.
"""

from __future__ import annotations

import time

import numpy as np

from introspect import data, metrics, models, posttrain, registry, results


def _eval(lm, rows, cfg) -> dict:
    out = posttrain.confidence_eval(lm, rows, cfg)
    y = np.asarray(rows["correct"])
    if 0 < y.sum() < y.size:
        conf = posttrain.sft.stated_confidence(lm, rows, cfg)
        out["auroc"] = float(metrics.auroc(conf, y))
    return out


def run(config, workdir: str) -> dict:
    t0 = time.perf_counter()
    registry.import_modules(config.get("imports"))
    lm = models.load(config.model, dtype=config.dtype)
    roles = data.load_roles(
        config.task,
        {"train": tuple(config.train_split), "eval": tuple(config.eval_split)},
        data_dir=config.data_dir or None,
    )
    out_dir = results.run_dir("sft", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", {**config.to_dict(), "workdir": workdir})
    rows = {}
    for role, exs in roles.items():
        prompts = [data.build_prompt_ids(lm.tokenizer, ex, config.prompt_format) for ex in exs]
        rows[role] = posttrain.confidence_rows(
            lm, prompts, exs, fmt=config.prompt_format,
            max_new_tokens=int(config.sft.max_new_tokens),
        )  # fmt: skip
        print(f"{role}: {len(exs)} answers, {np.mean(rows[role]['correct']):.3f} right")
    before = _eval(lm, rows["eval"], config.sft)
    print(f"before: {before}")
    res = posttrain.train_sft(lm, rows["train"], config.sft, workdir=workdir)
    tuned = posttrain.lora.tuned(lm, res)
    if config.export_model:
        models.save_hf(tuned, f"{out_dir}/model", overwrite=True)
    after = _eval(tuned, rows["eval"], config.sft)
    print(f"after:  {after}")
    m = {
        "model": config.model,
        "task": config.task,
        "before": before,
        "after": after,
        "train_accuracy": float(np.mean(rows["train"]["correct"])),
        "train_seconds": round(res.seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    results.write_json(f"{out_dir}/metrics.json", m)
    print(f"results: {out_dir}/ ({m['seconds']:.0f} s)")
    return m


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "sft", workdir_help="checkpoints and metrics.jsonl")
