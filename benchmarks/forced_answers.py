"""LYNX forced-exit answers at every cue of a trace: prefix KV reuse (each trace prefilled once,
every cue's answer continues its cut: `decoding.lynx.forced_answers`) vs prefilling
prompt + trace[:cut] + exit string from scratch for every cue (`LM.generate` on the
concatenations, what the labels cost before the reuse).

    python benchmarks/forced_answers.py [--traces 32] [--max-new 96] [--answer-tokens 8]

The traces are greedy SmolLM2 reasoning on synthetic word problems with the cues "\\n\\n" and
". " (the LYNX smoke setting). Both variants run twice; the second (compiled) run is timed.
Prints one JSON object: seconds of each, their ratio (same run), the number of forced answers
and whether the answers agree token for token.
"""

from __future__ import annotations

import argparse
import json
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=32)
    ap.add_argument("--max-new", type=int, default=96)
    ap.add_argument("--answer-tokens", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    from introspect import data, decoding, models, probes

    cues, exit_text = ("\n\n", ". "), "\nFinal answer:"
    lm = models.load("smollm2-135m-instruct")
    examples = data.load_task("synthetic_easy", "test", num=args.traces)
    prompts = [data.build_prompt_ids(lm.tokenizer, e, "cot") for e in examples]
    gen = lm.generate(prompts, max_new_tokens=args.max_new, batch_size=args.batch)
    traces = [
        t[:-1] if f == "stop" else t for t, f in zip(gen.tokens, gen.finish_reasons, strict=True)
    ]
    exits = [
        (r, int(c))
        for r, t in enumerate(gen.tokens)
        for c in probes.evaluable_cues(lm.tokenizer, t, cues)
    ]

    def reuse():
        return decoding.lynx.forced_answers(
            lm,
            prompts,
            traces,
            exits,
            cues=cues,
            exit_text=exit_text,
            answer_tokens=args.answer_tokens,
            batch_size=args.batch,
            progress=False,
        )

    def scratch():
        full = [
            prompts[r] + decoding.lynx.forced_exit_ids(lm.tokenizer, traces[r], c, cues, exit_text)
            for r, c in exits
        ]
        return lm.generate(
            full, max_new_tokens=args.answer_tokens, batch_size=args.batch, progress=False
        )

    def timed(fn):
        fn()  # compile every bucket
        t = time.perf_counter()
        out = fn()
        return time.perf_counter() - t, out

    reuse_s, a = timed(reuse)
    scratch_s, b = timed(scratch)
    print(
        json.dumps(
            {
                "traces": args.traces,
                "forced_answers": len(exits),
                "mean_prefix_tokens": round(
                    sum(len(prompts[r]) + c for r, c in exits) / max(1, len(exits)), 1
                ),
                "reuse_s": round(reuse_s, 3),
                "scratch_s": round(scratch_s, 3),
                "speedup": round(scratch_s / reuse_s, 2),
                "same_answers": a.tokens == b.tokens,
            }
        )
    )


if __name__ == "__main__":
    main()
