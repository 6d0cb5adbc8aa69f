"""The first main job: the model answers arithmetic questions, graded, with token confidence.

python -m experiments.answer --config configs/answer.py:smoke
"""

from __future__ import annotations

import json
import time

import numpy as np

from introspect import data, models, results


def run(config) -> dict:
    """Run the experiment described by `config`; returns the metrics dict."""
    out_dir = results.run_dir("answer", config.run_name or None, root=config.results_root)
    results.write_json(f"{out_dir}/config.json", config.to_dict())
    t0 = time.perf_counter()
    lm = models.load(config.model, dtype=config.dtype)
    load_s = time.perf_counter() - t0
    questions = data.arithmetic_questions(
        config.num_questions,
        seed=config.seed,
        digits=config.digits,
        operators=tuple(config.operators),
        num_operands=config.num_operands,
    )
    prompts = [
        lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": config.prompt.format(question=q["question"])}],
            add_generation_prompt=True,
        )
        for q in questions
    ]
    gen = lm.generate(
        prompts,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        seed=config.seed,
        batch_size=config.batch_size,
        progress=True,
    )
    rows = []
    for q, text, logp, reason in zip(
        questions, gen.texts, gen.logprobs, gen.finish_reasons, strict=True
    ):
        extracted, correct = data.grade_numeric(text, q["answer"])
        rows.append(
            {
                **q,
                "response": text,
                "extracted": extracted,
                "correct": bool(correct),
                "mean_token_prob": float(np.mean(np.exp(logp))),
                "num_tokens": int(len(logp)),
                "finish_reason": reason,
            }
        )
    correct = np.array([r["correct"] for r in rows])
    conf = np.array([r["mean_token_prob"] for r in rows])
    metrics = {
        "model": config.model,
        "num_questions": len(rows),
        "accuracy": float(correct.mean()),
        "mean_token_prob": float(conf.mean()),
        "mean_token_prob_correct": float(conf[correct].mean()) if correct.any() else None,
        "mean_token_prob_incorrect": float(conf[~correct].mean()) if (~correct).any() else None,
        "generated_tokens": gen.num_tokens,
        "generate_seconds": round(gen.seconds, 2),
        "tokens_per_second": round(gen.num_tokens / gen.seconds, 1),
        "load_seconds": round(load_s, 2),
    }
    results.write_jsonl(f"{out_dir}/answers.jsonl", rows)
    results.write_json(f"{out_dir}/metrics.json", metrics)

    print(f"model {lm}")
    print(
        f"accuracy {metrics['accuracy']:.3f} on {len(rows)} questions "
        f"({gen.num_tokens} tokens in {gen.seconds:.1f} s, "
        f"{metrics['tokens_per_second']} tok/s incl. compile)"
    )
    print(f"{'ok':>3}  {'p_mean':>6}  {'gold':>6}  question -> answer")
    for r in rows:
        mark = "yes" if r["correct"] else "no"
        answer = r["response"].strip().replace("\n", " ")[:48]
        print(
            f"{mark:>3}  {r['mean_token_prob']:6.3f}  {r['answer']:>6}  {r['question']} -> {answer}"
        )
    print(f"results: {out_dir}/ (config.json, metrics.json, answers.jsonl)")
    print(
        json.dumps(
            {
                k: metrics[k]
                for k in ("accuracy", "mean_token_prob_correct", "mean_token_prob_incorrect")
            }
        )
    )
    return metrics


if __name__ == "__main__":
    from experiments._cli import launch

    launch(run, "answer")
