"""Confidence-triggered early stopping of a reasoning trace (ConCISE-style).

The trace is generated in chunks. After each chunk the model is asked, for every unfinished row,
to answer right away: `exit_text` is appended and up to `answer_tokens` tokens are decoded
greedily. The answer's confidence is the mean probability of its tokens (CRew answer-token
confidence). A row stops as soon as that confidence reaches `threshold` and keeps the forced
answer; rows that never get there run to `max_new_tokens` and are answered the same way at the
end. Each round is two compiled batched calls (continue, probe), so the number of calls is
bounded by 2 * ceil(max_new_tokens / chunk), not by the number of tokens.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class EarlyStopResult:
    """traces: [n] reasoning text kept; answers: [n] forced answer text; confidence: [n];
    trace_tokens: [n] reasoning tokens used; stopped_early: [n] bool."""

    traces: list[str]
    answers: list[str]
    confidence: np.ndarray
    trace_tokens: np.ndarray
    stopped_early: np.ndarray


def generate(
    lm,
    prompts,
    *,
    max_new_tokens: int = 256,
    chunk: int = 32,
    exit_text: str = "\nFinal answer:",
    answer_tokens: int = 8,
    threshold: float = 0.9,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 32,
) -> EarlyStopResult:
    """Reason in chunks; stop a row once its forced answer is confident enough.

    Args:
      lm: an `introspect.models.LM`.
      prompts: list of token-id lists (chat prompts with the generation prompt).
      max_new_tokens: reasoning budget per row.
      chunk: reasoning tokens between two confidence probes.
      exit_text: appended to the trace to force an answer.
      answer_tokens: tokens decoded greedily for the forced answer.
      threshold: stop when the answer's mean token probability >= threshold.
    Returns:
      EarlyStopResult.
    """
    if chunk < 1 or max_new_tokens < 1 or answer_tokens < 1:
        raise ValueError("chunk, max_new_tokens and answer_tokens must be >= 1")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    prompts = lm.check_ids(prompts, "prompts")
    exit_ids = lm.tokenizer.encode(exit_text)
    n = len(prompts)
    traces = [[] for _ in range(n)]
    answers = [""] * n
    conf = np.zeros(n)
    active = np.ones(n, bool)
    early = np.zeros(n, bool)
    ended = np.zeros(n, bool)  # the model closed its turn by itself
    round_ = 0
    while active.any():
        rows = np.flatnonzero(active)
        budget_left = max_new_tokens - min(len(traces[i]) for i in rows)
        step = min(chunk, budget_left)
        if step > 0:
            gen = lm.generate(
                [prompts[i] + traces[i] for i in rows],
                max_new_tokens=step,
                temperature=temperature,
                seed=seed + round_,
                batch_size=batch_size,
            )
            for i, toks, reason in zip(rows, gen.tokens, gen.finish_reasons, strict=True):
                if reason == "stop":
                    toks = toks[:-1]  # drop the end-of-turn token; the answer is forced below
                    ended[i] = True
                traces[i] = traces[i] + toks[: max_new_tokens - len(traces[i])]
        probe = lm.generate(
            [prompts[i] + traces[i] + exit_ids for i in rows],
            max_new_tokens=answer_tokens,
            batch_size=batch_size,
        )
        for i, text, logp in zip(rows, probe.texts, probe.logprobs, strict=True):
            answers[i] = text
            conf[i] = float(np.mean(np.exp(logp))) if len(logp) else 0.0
            out_of_budget = len(traces[i]) >= max_new_tokens or ended[i]
            if conf[i] >= threshold or out_of_budget:
                active[i] = False
                early[i] = conf[i] >= threshold and not out_of_budget
        round_ += 1
    return EarlyStopResult(
        traces=[lm.tokenizer.decode(t, skip_special_tokens=True) for t in traces],
        answers=answers,
        confidence=conf,
        trace_tokens=np.array([len(t) for t in traces]),
        stopped_early=early,
    )
