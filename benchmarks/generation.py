"""Greedy generation throughput: introspect vs transformers, same GGUF, float32, one run.

    python benchmarks/generation.py [--new-tokens 64] [--batches 1,32] [--repeats 2]

Both generate exactly `--new-tokens` tokens per prompt (EOS ignored) from the same chat prompts
(token ids shared). introspect's compile time is measured by a warm-up call and reported apart;
the timed calls reuse the compiled program. Prints one JSON object: tokens/s per side and the
ratio introspect / transformers per batch size (goal: >= 1.3 at batch 1, >= 1.25 at batch 32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def chat_prompts(tokenizer, n: int) -> list[list[int]]:
    from introspect import data

    qs = data.arithmetic_questions(n, seed=123, digits=3, operators=("+", "-", "*"))
    topics = ["", " Explain briefly.", " Show your reasoning step by step, then give the answer."]
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q["question"] + topics[i % 3]}], add_generation_prompt=True
        )
        for i, q in enumerate(qs)
    ]


def bench_introspect(lm, prompts, new_tokens, repeats):
    t = time.perf_counter()
    lm.generate(prompts, max_new_tokens=new_tokens, ignore_eos=True, batch_size=len(prompts))
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        gen = lm.generate(
            prompts, max_new_tokens=new_tokens, ignore_eos=True, batch_size=len(prompts)
        )
        times.append(time.perf_counter() - t)
        assert gen.num_tokens == new_tokens * len(prompts)
    return min(times), compile_s, gen


def bench_transformers(model, prompts, new_tokens, repeats, pad_id):
    import torch

    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for r, p in enumerate(prompts):  # left padding, as for batched decoding
        ids[r, length - len(p) :] = torch.tensor(p)
        mask[r, length - len(p) :] = 1
    kw = dict(
        attention_mask=mask,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=pad_id,
    )
    with torch.no_grad():
        model.generate(ids, **{**kw, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = model.generate(ids, **kw)
            times.append(time.perf_counter() - t)
    return min(times), out[:, length:].tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()

    import torch
    import transformers

    from introspect import models

    lm = models.load(args.model)
    path = models.resolve(args.model)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).eval()
    pad_id = lm.tokenizer.pad_token_id
    report = {
        "benchmark": "generation",
        "model": args.model,
        "dtype": "float32",
        "new_tokens": args.new_tokens,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
        "results": [],
    }
    for batch in [int(b) for b in args.batches.split(",")]:
        prompts = chat_prompts(lm.tokenizer, batch)
        ours_s, compile_s, gen = bench_introspect(lm, prompts, args.new_tokens, args.repeats)
        ref_s, ref_tokens = bench_transformers(hf, prompts, args.new_tokens, args.repeats, pad_id)
        n = batch * args.new_tokens
        # transformers' min_new_tokens bans EOS while ours keeps generating after it: compare
        # the sequences up to our first EOS.
        eos = set(lm.tokenizer.eos_token_ids)
        cut = [next((j for j, t in enumerate(a) if t in eos), len(a)) for a in gen.tokens]
        same = float(
            np.mean([a[:c] == b[:c] for a, b, c in zip(gen.tokens, ref_tokens, cut, strict=True)])
        )
        report["results"].append(
            {
                "batch": batch,
                "prompt_tokens": [min(map(len, prompts)), max(map(len, prompts))],
                "introspect_tok_s": round(n / ours_s, 2),
                "transformers_tok_s": round(n / ref_s, 2),
                "ratio": round(ref_s / ours_s, 3),
                "goal": 1.3 if batch == 1 else 1.25,
                "introspect_compile_s": round(compile_s, 1),
                "identical_until_eos": same,
            }
        )
        print(json.dumps(report["results"][-1]), flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
