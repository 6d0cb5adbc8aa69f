"""ZIP-RC (introspect.heads.zip_rc): reserved logits predict P(correct) and remaining length.

    python -m experiments.zip_rc --config configs/zip_rc.py:smoke --workdir /tmp/zip_rc

1. The model samples `samples` answers per train and held-out question (its own rollouts, as
   the authors train on on-policy samples); answers are graded; unfinished ones are dropped
   (their remaining length is unknown).
2. Every answer position gets the target length_bin(remaining) + correct * L
   (`zip_rc.pack_rollouts`).
3. Held-out evaluation of the starting model (its slice is untrained): slice CE, reward and
   length accuracy, AUROC and Brier of P(correct) (the reward marginal's mass on "right") at
   the first answer token and averaged over the answer, mean absolute error of the expected
   remaining length.
4. `zip_rc.train_zip_rc` (CE on the slice + KL to the starting model's top-k, the one loop;
   `zip.trainable = "slice"`: only the slice's head rows, on the frozen final hidden states).
5. The same evaluation after, plus the KL to the starting model off the slice and the
   probability the unmasked softmax puts on the slice (why sampling masks it);
   results/zip_rc/<run>/: config.json, metrics.json, table.md.
"""

from __future__ import annotations

import time

import numpy as np

from introspect import data, metrics, models, registry, results
from introspect.heads import zip_rc


def _rollouts(lm, examples, config) -> tuple[dict, dict]:
    """Sampled, graded, finished answers: (pack_rollouts arrays, {"correct", "question",
    "lengths", "dropped", "slice_tokens"})."""
    prompts = [data.build_prompt_ids(lm.tokenizer, ex, config.prompt_format) for ex in examples]
    rep = [p for p in prompts for _ in range(config.samples)]
    gen = lm.generate(
        rep,
        max_new_tokens=int(config.max_new_tokens),
        temperature=float(config.temperature),
        top_p=float(config.top_p),
        seed=int(config.seed),
    )
    ids = set(zip_rc.slice_ids_for(lm.config.vocab_size, config.zip).tolist())
    keep_p, keep_a, correct, question = [], [], [], []
    for i, (toks, text, fin) in enumerate(
        zip(gen.tokens, gen.texts, gen.finish_reasons, strict=True)
    ):
        if fin != "stop":
            continue
        ex = examples[i // config.samples]
        keep_p.append(rep[i])
        keep_a.append(list(toks))
        correct.append(int(data.grade(ex, text, fmt=config.prompt_format)[1]))
        question.append(i // config.samples)
    arrays = zip_rc.pack_rollouts(
        keep_p,
        keep_a,
        correct,
        pad_id=lm.stop_and_pad(())[1],
        num_rewards=len(config.zip.reward_values),
        edges=config.zip.edges,
        prompt_len=int(config.zip.max_prompt_tokens),
        response_len=int(config.zip.max_response_tokens),
    )
    info = {
        "correct": np.asarray(correct),
        "question": np.asarray(question),
        "lengths": np.asarray([len(a) for a in keep_a]),
        "dropped": len(rep) - len(keep_a),
        "slice_tokens": sum(t in ids for toks in gen.tokens for t in toks),
    }
    return arrays, info


def _eval(lm, arrays, info, config, teacher=None) -> dict:
    p, mass = zip_rc.predict_joint(lm, arrays, config.zip, with_slice_mass=True)
    out = zip_rc.evaluate(lm, arrays, config.zip, teacher_params=teacher, joints=p, slice_mass=mass)
    m = arrays["zip_mask"]
    first = np.argmax(m, axis=1)
    p_first = np.asarray(zip_rc.expected_reward(p[np.arange(len(m)), first]))
    p_all = np.asarray(zip_rc.expected_reward(p))
    p_mean = (p_all * m).sum(1) / m.sum(1)
    y = info["correct"]
    if 0 < y.sum() < y.size:
        out["auroc_first"] = float(metrics.auroc(p_first, y))
        out["auroc_mean"] = float(metrics.auroc(p_mean, y))
    out["brier_first"] = float(np.mean((p_first - y) ** 2))
    # remaining tokens after each labelled position vs the expected remaining length
    left = np.cumsum(m[:, ::-1], axis=1)[:, ::-1] - 1
    pred = np.asarray(zip_rc.expected_remaining(p, edges=config.zip.edges))
    out["remaining_mae"] = float(np.abs(pred - left)[m].mean())
    return out


def run(config, workdir: str) -> dict:
    t0 = time.perf_counter()
    registry.import_modules(config.get("imports"))
    lm = models.load(config.model, dtype=config.dtype)
    examples = {"train": [], "eval": []}
    for task in config.tasks:
        roles = data.load_roles(
            task,
            {"train": tuple(config.train_split), "eval": tuple(config.eval_split)},
            data_dir=config.data_dir or None,
        )
        for role in examples:
            examples[role] += roles[role]
    out_dir = results.run_dir("zip_rc", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", {**config.to_dict(), "workdir": workdir})
    arrays, info = {}, {}
    for role, exs in examples.items():
        arrays[role], info[role] = _rollouts(lm, exs, config)
        i = info[role]
        print(
            f"{role}: {len(exs)} questions, {len(i['correct'])} finished answers "
            f"({i['dropped']} dropped), {i['correct'].mean():.3f} right, "
            f"mean length {i['lengths'].mean():.1f}, slice tokens sampled {i['slice_tokens']}"
        )
    t_roll = time.perf_counter() - t0
    before = _eval(lm, arrays["eval"], info["eval"], config)
    print(f"before: {before}")
    res = zip_rc.train_zip_rc(lm, arrays["train"], config.zip, workdir=workdir)
    tuned = zip_rc.tuned(lm, res, config.zip)
    after = _eval(tuned, arrays["eval"], info["eval"], config, teacher=lm.params)
    print(f"after:  {after}")
    base_rate = float(info["train"]["correct"].mean())
    y = info["eval"]["correct"]
    m = {
        "model": config.model,
        "tasks": list(config.tasks),
        "before": before,
        "after": after,
        "base_rate_brier": float(np.mean((base_rate - y) ** 2)),
        "train_answers": int(len(info["train"]["correct"])),
        "eval_answers": int(len(y)),
        "train_accuracy": base_rate,
        "eval_accuracy": float(y.mean()),
        "rollout_seconds": round(t_roll, 1),
        "train_seconds": round(res.seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    results.write_json(f"{out_dir}/metrics.json", m)
    rows = ["| | slice CE | reward acc | length acc | AUROC (first) | AUROC (mean) | Brier (first) "
            "| remaining MAE | KL to start | slice mass |", "|" + "---|" * 10]  # fmt: skip
    for name, r in (("start", before), ("ZIP-RC", after)):
        rows.append(
            f"| {name} | {r['ce']:.3f} | {r['reward_accuracy']:.3f} | "
            f"{r['length_accuracy']:.3f} | {r.get('auroc_first', float('nan')):.3f} | "
            f"{r.get('auroc_mean', float('nan')):.3f} | {r['brier_first']:.3f} | "
            f"{r['remaining_mae']:.2f} | {r.get('kl', 0.0):.4f} | {r['slice_mass']:.3g} |"
        )
    rows.append(f"\nBase-rate Brier (train accuracy {base_rate:.3f}): {m['base_rate_brier']:.3f}")
    results.write_text(f"{out_dir}/table.md", "\n".join(rows) + "\n")
    print(f"results: {out_dir}/ ({m['seconds']:.0f} s)")
    return m


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "zip_rc", workdir_help="checkpoints and metrics.jsonl")
