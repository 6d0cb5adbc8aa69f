"""Best-of-N: N samples per question in one batched generation call, then a choice rule.

samples = best_of_n.sample(lm, prompts, n=8, max_new_tokens=128, temperature=0.8)
answers = [[extract(t) for t in row] for row in samples.texts]
picked = best_of_n.choose(answers, samples.signals["self_certainty"], method="borda",
                          power=0.5)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from introspect import signals as signals_lib
from introspect.decoding.vote import borda_vote, majority_vote, select_by_score

METHODS = ("score", "majority", "borda")


@dataclasses.dataclass
class Samples:
    """N samples for each of P prompts.

    texts: [P][N] decoded samples; tokens: [P][N] token ids;
    signals: {name: [P, N] array} for every logit-based signal in `signals.SIGNALS` except
      "answer_confidence" (which needs an answer span); higher = more confident.
    """

    texts: list[list[str]]
    tokens: list[list[list[int]]]
    signals: dict[str, np.ndarray]


def sample(
    lm,
    prompts: Sequence[Sequence[int]],
    *,
    n: int,
    max_new_tokens: int = 128,
    temperature: float = 0.8,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool | None = None,
) -> Samples:
    """Draw `n` samples per prompt with one batched `lm.generate` call (prompt-major order).

    temperature = 0 makes every sample the greedy continuation (so n = 1 is plain greedy).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    prompts = [list(p) for p in prompts]
    flat = [p for p in prompts for _ in range(n)]
    gen = lm.generate(
        flat,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=seed,
        return_stats=True,
        batch_size=batch_size,
        progress=progress,
    )
    stats, mask = signals_lib.from_ragged(gen.logprobs, gen.stats)
    values = {
        name: v.reshape(len(prompts), n)
        for name, v in signals_lib.compute_all(
            stats, mask, vocab_size=lm.config.vocab_size, exclude=("answer_confidence",)
        ).items()
    }
    return Samples(
        texts=[gen.texts[i * n : (i + 1) * n] for i in range(len(prompts))],
        tokens=[gen.tokens[i * n : (i + 1) * n] for i in range(len(prompts))],
        signals=values,
    )


def choose(
    answers: Sequence[Sequence[str | None]],
    scores=None,
    *,
    method: str = "borda",
    power: float = 0.5,
) -> list[str | None]:
    """One answer per question from its N candidates.

    Args:
      answers: [P][N] extracted answers (None = unparsable).
      scores: [P, N] confidence per sample (needed for "score" and "borda").
      method: "score" (highest-scoring sample), "majority", or "borda" (with `power`).
    Returns:
      [P] chosen answers.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "majority":
        if scores is None:
            raise ValueError(f"method {method!r} needs scores [P, N]")
        scores = np.asarray(scores)
        if scores.shape[0] != len(answers):
            raise ValueError(f"scores has {scores.shape[0]} rows for {len(answers)} questions")
    out = []
    for i, row in enumerate(answers):
        if method == "majority":
            out.append(majority_vote(row))
        elif method == "score":
            out.append(select_by_score(row, scores[i]))
        else:
            out.append(borda_vote(row, scores[i], power=power))
    return out
