"""GRPO on the embedded model through the one training loop (introspect.posttrain).

    python -m experiments.grpo --config configs/grpo.py:toy --workdir /tmp/grpo_toy
    python -m experiments.grpo --config configs/grpo.py:smoke --workdir /tmp/rlcr      # RLCR
    python -m experiments.grpo --config configs/grpo.py:smoke_rlvr --workdir /tmp/rlvr  # RLVR

1. Prompts: a task in a prompt format (RLCR tags by default) or the config's questions.
   With warmup_steps > 0, a format warm-up first (the RLCR paper's SFT+RLCR): the answer NLL
   of responses in the RLCR format with the gold answer and a fixed stated confidence
   (`warmup_rows`), through `posttrain.train_sft` (brier_coef 0); GRPO starts from it.
2. Held-out evaluation of the starting model: eval_samples sampled responses per prompt,
   scored by the RLCR parse (accuracy, Brier / ECE / AUROC of the stated confidence) and the
   training reward.
3. `posttrain.train_grpo` (rollouts, reward and advantages by name, clipped policy loss;
   resumable from <workdir>; the reward curve is <workdir>/metrics.jsonl, or
   <workdir>/grpo/metrics.jsonl after a warm-up).
4. The same evaluation of the tuned parameters; results/grpo/<run>/: config.json,
   metrics.json (before, after, curve), reward_curve.png.
"""

from __future__ import annotations

import time

import numpy as np

from introspect import data, metrics, models, posttrain, registry, results, train


def build_prompts(lm, config) -> tuple[dict[str, list], dict[str, list]]:
    """{role: prompt ids} and {role: examples} for "train" and "eval"."""
    if config.questions:
        exs = [{"id": str(i), "question": q} for i, q in enumerate(config.questions)]
        ids = [
            lm.tokenizer.apply_chat_template(
                [{"role": "user", "content": q + config.question_suffix}],
                add_generation_prompt=True,
            )
            for q in config.questions
        ]
        # A toy: the evaluation asks the training questions again.
        return {"train": ids, "eval": ids}, {"train": exs, "eval": exs}
    roles = data.load_roles(
        config.task,
        {"train": tuple(config.train_split), "eval": tuple(config.eval_split)},
        data_dir=config.data_dir or None,
    )
    prompts = {
        r: [data.build_prompt_ids(lm.tokenizer, ex, config.prompt_format) for ex in exs]
        for r, exs in roles.items()
    }
    return prompts, roles


def warmup_rows(lm, prompts, examples, config) -> dict[str, list]:
    """SFT rows teaching the RLCR format: <think>, the gold <answer>, <analysis> and a
    <confidence>, then the stop token. The confidence is config.warmup_confidence, or with
    config.warmup_confidence_random one of 0.1 .. 0.9 drawn per row (seeded), unrelated to
    correctness: the warmed-up policy then samples varied confidences for GRPO to shape."""
    stop = int(lm.stop_and_pad(())[0][0])
    rng = np.random.default_rng(int(config.grpo.seed))
    answers = []
    for ex in examples:
        conf = config.warmup_confidence
        if config.get("warmup_confidence_random", False):
            conf = round(float(rng.integers(1, 10)) / 10, 1)
        text = (
            "<think>Let me work it out.</think>\n"
            f"<answer>{ex['answer']}</answer>\n"
            "<analysis>I am not sure.</analysis>\n"
            f"<confidence>{conf}</confidence>"
        )
        answers.append(list(lm.tokenizer.encode(text, add_special_tokens=False)) + [stop])
    return {"prompts": [list(p) for p in prompts], "answers": answers,
            "correct": [1] * len(prompts)}  # fmt: skip


def evaluate(lm, prompts, examples, config) -> dict:
    """The reward and calibration of sampled responses (eval_samples per prompt)."""
    g = config.grpo
    k = int(config.eval_samples)
    rows = [p for p in prompts for _ in range(k)]
    exs = [e for e in examples for _ in range(k)]
    gen = lm.generate(
        rows,
        max_new_tokens=int(g.max_new_tokens),
        temperature=float(g.temperature),
        top_p=float(g.top_p),
        top_k=int(g.top_k),
        seed=12345,
        batch_size=min(len(rows), 64),
        progress=True,
    )
    rew = posttrain.compute_reward(g.reward.name, gen.texts, exs, g.reward.options)
    if config.prompt_format == "rlcr" and not config.questions:
        # calibration read the same way for RLVR and RLCR runs: the RLCR parse of the response
        rlcr = posttrain.compute_reward("rlcr", gen.texts, exs, {"require_think": False})
        rew = {**rlcr, "reward": rew["reward"]}
    out = {
        "reward_mean": float(rew["reward"].mean()),
        "response_length": float(np.mean([len(t) for t in gen.tokens])),
        "samples": len(rows),
        "examples": [t for t in gen.texts[: min(4, len(rows))]],
    }
    if "correct" in rew:
        out["accuracy"] = float(rew["correct"].mean())
    if "confidence" in rew:
        conf, y = rew["confidence"], rew.get("correct")
        ok = np.isfinite(conf)
        out["stated_rate"] = float(ok.mean())
        if ok.any() and y is not None:
            c, yy = conf[ok], y[ok]
            out["brier"] = float(np.mean((c - yy) ** 2))
            out["ece"] = float(metrics.ece(c, yy.astype(np.int32), num_bins=10))
            out["auroc"] = float(metrics.auroc(c, yy)) if 0 < yy.sum() < yy.size else None
    return out


def run(config, workdir: str) -> dict:
    t0 = time.perf_counter()
    registry.import_modules(config.get("imports"))
    posttrain.check_config(config.grpo)
    lm = models.load(config.model, dtype=config.dtype)
    prompts, examples = build_prompts(lm, config)
    out_dir = results.run_dir("grpo", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", {**config.to_dict(), "workdir": workdir})
    # with a warm-up: <workdir>/warmup and <workdir>/grpo (each resumable)
    grpo_dir = f"{workdir}/grpo" if int(config.warmup_steps) > 0 else workdir
    if int(config.warmup_steps) > 0:
        w = config.warmup
        w.train.num_steps = int(config.warmup_steps)
        res = posttrain.train_sft(
            lm, warmup_rows(lm, prompts["train"], examples["train"], config), w,
            workdir=f"{workdir}/warmup",
        )  # fmt: skip
        lm = posttrain.lora.tuned(lm, res)
        print(f"format warm-up: {config.warmup_steps} steps, {res.seconds:.0f} s")
    before = evaluate(lm, prompts["eval"], examples["eval"], config)
    print(f"before: {_line(before)}")
    res = posttrain.train_grpo(
        lm, prompts["train"], examples["train"], config.grpo, workdir=grpo_dir
    )
    tuned = posttrain.lora.tuned(lm, res)
    if config.export_model:
        models.save_hf(tuned, f"{out_dir}/model", overwrite=True)
    after = evaluate(tuned, prompts["eval"], examples["eval"], config)
    print(f"after:  {_line(after)}")
    curve = [
        {"step": r["step"], "reward_mean": r["reward_mean"]}
        for r in train.read_metrics(grpo_dir)
        if "reward_mean" in r
    ]
    m = {
        "model": config.model,
        "reward": config.grpo.reward.name,
        "advantage": config.grpo.advantage.name,
        "steps": int(config.grpo.train.num_steps),
        "before": before,
        "after": after,
        "curve": curve,
        "train_seconds": round(res.seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    plot_curve(curve, before, after, f"{out_dir}/reward_curve.png", title=config.grpo.reward.name)
    results.write_json(f"{out_dir}/metrics.json", m)
    print(f"results: {out_dir}/ ({m['seconds']:.0f} s); curve: {grpo_dir}/metrics.jsonl")
    return m


def _line(e) -> str:
    parts = [f"reward {e['reward_mean']:.3f}", f"length {e['response_length']:.1f}"]
    for k in ("accuracy", "stated_rate", "brier", "ece", "auroc"):
        if e.get(k) is not None:
            parts.append(f"{k} {e[k]:.3f}")
    return ", ".join(parts)


def plot_curve(curve, before, after, path, *, title) -> None:
    """Per-step batch reward (and its 5-step running mean) with the before/after evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [r["step"] for r in curve]
    y = np.asarray([r["reward_mean"] for r in curve], float)
    ax.plot(steps, y, ".", alpha=0.5, label="batch reward")
    if len(y) >= 5:
        run = np.convolve(y, np.ones(5) / 5, mode="valid")
        ax.plot(steps[4:], run, "-", label="5-step mean")
    ax.axhline(before["reward_mean"], color="grey", ls="--", label="eval before")
    ax.axhline(after["reward_mean"], color="green", ls="--", label="eval after")
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title(f"GRPO, reward {title}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    metrics.save_png(fig, path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "grpo", workdir_help="checkpoints and metrics.jsonl")
