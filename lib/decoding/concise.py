"""ConCISE confidence injection: a confident phrase in place of a reflection.

ConCISE (Qiao et al. 2025, "Confidence-guided Compression in Step-by-step Efficient
Reasoning") attributes redundant reflection to low internal confidence and counters it two ways:
Confidence Injection, which puts a short confident phrase where the model is about to reflect
("Wait", "Hmm", "let me double-check", ...), and Early Stopping, which ends the trace once a
confidence detector says the answer is settled (`decoding.early_stop`). The paper uses both to
build compressed reasoning traces for fine-tuning (SFT / SimPO); this module runs the injection
at inference, batched:

    out = decoding.concise.inject_confidence(lm, prompts, max_injections=2)

Each round continues every unfinished row in one batched `lm.generate` call; a row whose new
text contains a reflection cue (`probes.CueMatcher`, case-insensitive) is cut at the token where
the cue starts, the phrase is appended, and the row goes on in the next round; after
`max_injections` injections, or when a round has no cue, the row keeps its text. The number of
calls is at most max_injections + 1. The default cues and phrase are ours (the paper's exact
lists are not published in code); pass your own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from introspect.probes.cues import CueMatcher, token_pieces

REFLECTION_CUES = ("wait", "hmm", "let me double", "let me check", "let me verify",
                   "alternatively")  # fmt: skip
CONFIDENT_PHRASE = " I am confident in this step, so I will continue."


@dataclasses.dataclass
class InjectionResult:
    """texts: [n] decoded traces (phrases included); tokens: [n] their ids; injections: [n]
    phrases inserted; generated: [n] tokens the model generated (phrases not counted)."""

    texts: list[str]
    tokens: list[list[int]]
    injections: np.ndarray
    generated: np.ndarray


def inject_confidence(
    lm,
    prompts: Sequence[Sequence[int]],
    *,
    cues: Sequence[str] = REFLECTION_CUES,
    phrase: str = CONFIDENT_PHRASE,
    max_injections: int = 2,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 32,
) -> InjectionResult:
    """Generate with ConCISE's confidence injection at reflection cues.

    Args:
      lm: an `introspect.models.LM`.
      prompts: token-id lists (chat prompts with the generation prompt).
      cues: reflection cue strings (case-insensitive substrings of the decoded text).
      phrase: the confident text put in place of a reflection.
      max_injections: phrases per row at most (0 = plain generation).
      max_new_tokens: generated tokens per row (the phrases do not count).
      temperature, seed, batch_size: as `lm.generate` (seed + round for later rounds).
    Returns:
      InjectionResult.
    """
    if max_injections < 0 or max_new_tokens < 1:
        raise ValueError(
            f"max_injections must be >= 0 and max_new_tokens >= 1, got {max_injections}, "
            f"{max_new_tokens}"
        )
    matcher = CueMatcher(cues)
    phrase_ids = list(lm.tokenizer.encode(phrase, add_special_tokens=False))
    if not phrase_ids:
        raise ValueError("phrase must encode to at least one token")
    prompts = lm.check_ids(prompts, "prompts")
    n = len(prompts)
    traces: list[list[int]] = [[] for _ in range(n)]
    generated = np.zeros(n, np.int64)
    injections = np.zeros(n, np.int64)
    active = np.ones(n, bool)
    round_ = 0
    while active.any():
        rows = np.flatnonzero(active)
        budget = max_new_tokens - generated[rows]
        gen = lm.generate(
            [prompts[i] + traces[i] for i in rows],
            max_new_tokens=int(budget.max()),
            temperature=temperature,
            seed=seed + round_,
            batch_size=batch_size,
        )
        for i, left, toks in zip(rows, budget, gen.tokens, strict=True):
            toks = list(toks)[: int(left)]
            hits = matcher.scan(token_pieces(lm.tokenizer, toks)) if toks else []
            if injections[i] < max_injections and hits:
                start = hits[0][1]  # the token where the first cue starts
                traces[i] += toks[:start] + phrase_ids
                generated[i] += start
                injections[i] += 1
                if generated[i] >= max_new_tokens:
                    active[i] = False
                continue
            traces[i] += toks
            generated[i] += len(toks)
            active[i] = False
        round_ += 1
    return InjectionResult(
        texts=[lm.tokenizer.decode(t, skip_special_tokens=True) for t in traces],
        tokens=traces,
        injections=injections,
        generated=generated,
    )
