"""Teacher-forced scoring of short continuations: the LM head on the continuation span only
(`score_tokens(..., tail=)`, what `LM.score` does) vs the head over every position.

    python benchmarks/scoring.py [--batch 16] [--prompt-len 128] [--cont-len 2] [--repeats 3]

P(True) scores one or two tokens after a ~100-token prompt; with a 49k-token vocabulary the
[batch, length, vocab] head and its log-softmax dominate a full-sequence pass. Prints one JSON
object: the median seconds of each variant (compiled, warmed up) and their ratio, same run.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--cont-len", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from introspect import models
    from introspect.models import generate as gen_lib

    lm = models.load("smollm2-135m-instruct")
    rng = np.random.default_rng(0)
    length = args.prompt_len + args.cont_len
    tokens = rng.integers(3, lm.config.vocab_size, size=(args.batch, length)).astype(np.int32)
    valid = np.ones(tokens.shape, bool)
    target = np.zeros(tokens.shape, bool)
    target[:, -args.cont_len :] = True
    kw = dict(config=lm.config, dtype=lm.dtype, want_stats=False)

    def timed(tail):
        run = lambda: jax.block_until_ready(  # noqa: E731
            gen_lib.score_tokens(lm.params, tokens, valid, target, tail=tail, **kw)
        )
        out = run()  # compile
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        return float(np.median(times)), np.asarray(out["logprobs"])

    full_s, full = timed(None)
    tail_s, part = timed(args.cont_len)
    print(
        json.dumps(
            {
                "batch": args.batch,
                "length": length,
                "continuation": args.cont_len,
                "full_head_s": round(full_s, 4),
                "tail_head_s": round(tail_s, 4),
                "speedup": round(full_s / tail_s, 2),
                "max_abs_diff": float(np.abs(full - part).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
