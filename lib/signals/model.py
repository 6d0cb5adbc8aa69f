"""Signals that query a model: scoring given (prompt, answer) pairs, P(True), context gain.

These take any object with the `introspect.models.LM` interface (`tokenizer`, `score`,
`config.vocab_size`); this module does not import `introspect.models`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from introspect import results, store
from introspect.signals.logit import compute_all, confidence_gain


def _prompt_ids(tokenizer, prompt) -> list[int]:
    """A chat prompt (str = one user turn, or a list of messages) -> ids with generation prompt."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not all(isinstance(m, dict) for m in prompt):
        raise ValueError(
            f"a prompt must be a string or a list of chat messages, got {prompt!r:.80}"
        )
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True)


def score_pairs(lm, prompts: Sequence, answers: Sequence[str], *, batch_size: int = 16) -> dict:
    """Every logit-based signal for pre-generated answers, by teacher forcing (no generation).

    Args:
      lm: a loaded model (`introspect.models.LM`).
      prompts: [n] user strings or chat message lists.
      answers: [n] non-empty answer strings (the assistant's turn).
    Returns:
      {signal name: [n] array} for every registered logit-based signal (the answer is the span;
      "answer_confidence" uses the whole answer); higher = more confident.
    """
    if len(prompts) != len(answers):
        raise ValueError(f"got {len(prompts)} prompts but {len(answers)} answers")
    for i, a in enumerate(answers):
        if not isinstance(a, str) or not a.strip():
            raise ValueError(f"answers[{i}] is empty; every answer needs text to score")
    ids = [_prompt_ids(lm.tokenizer, p) for p in prompts]
    # "length": the answer's own tokens only, no end-of-turn token appended.
    records = store.scored_records(
        lm, ids, answers, ["length"] * len(answers), batch_size=batch_size
    )
    stats, mask = store.logit_inputs(records)
    return compute_all(stats, mask, vocab_size=lm.config.vocab_size)


def score_jsonl(
    lm, path: str, *, prompt_key: str = "prompt", answer_key: str = "answer", batch_size: int = 16
) -> list[dict]:
    """Read a JSONL of {prompt, answer} records and add every logit-based signal to each.

    Raises:
      FileNotFoundError for a missing file; ValueError naming the line for malformed JSON or a
      record without the keys.
    """
    records = results.read_jsonl(path, required=(prompt_key, answer_key))
    values = score_pairs(
        lm,
        [r[prompt_key] for r in records],
        [r[answer_key] for r in records],
        batch_size=batch_size,
    )
    return [
        {**r, "signals": {k: float(v[i]) for k, v in values.items()}} for i, r in enumerate(records)
    ]


P_TRUE_TEMPLATE = (
    "Question: {question}\nProposed answer: {answer}\n"
    "Is the proposed answer correct? Reply with True or False."
)


def p_true(
    lm,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    template: str = P_TRUE_TEMPLATE,
    true_word: str = "True",
    false_word: str = "False",
) -> np.ndarray:
    """P(True) (Kadavath et al. 2022): ask the model whether the proposed answer is correct.

    The model sees `template` as the user turn; the probabilities of the assistant replying
    `true_word` vs `false_word` (whole-word log-probs, teacher-forced) are renormalised over the
    two. Returns [n] P(True) in (0, 1); higher = more confident.
    """
    if len(questions) != len(answers):
        raise ValueError(f"got {len(questions)} questions but {len(answers)} answers")
    ids = [
        _prompt_ids(lm.tokenizer, template.format(question=q, answer=a))
        for q, a in zip(questions, answers, strict=True)
    ]
    t_ids, f_ids = lm.tokenizer.encode(true_word), lm.tokenizer.encode(false_word)
    sc = lm.score(ids + ids, [t_ids] * len(ids) + [f_ids] * len(ids), return_stats=False)
    lp = sc.sum_logprobs
    lt, lf = lp[: len(ids)], lp[len(ids) :]
    return 1.0 / (1.0 + np.exp(lf - lt))


def context_gain(
    lm,
    prompts_without: Sequence,
    prompts_with: Sequence,
    answers: Sequence[str],
    *,
    relative_top: float = 0.01,
    min_keep: int = 10,
    batch_size: int = 16,
) -> np.ndarray:
    """CK-PLUG confidence gain of each answer: mean over its tokens of H(without the passage) -
    H(with it), teacher-forced twice, both entropies over the authors' filtered set.

    As in the authors' code (github.com/byronBBL/CK-PLUG, `relative_top_filter` / `_ck_decoding`),
    at each answer token the two next-token distributions are restricted to the tokens with
    p >= relative_top * p_max or among the `min_keep` most likely in either of them, and
    renormalised there before taking entropies (`introspect.decoding.ckplug.score_gain`; that
    module imports the model code, so it is imported on call).

    Args:
      prompts_without: [n] prompts (strings or chat messages) without the passage.
      prompts_with: [n] the same prompts with the retrieved passage.
      answers: [n] answer strings.
      relative_top, min_keep: the filtered set (authors: 0.01 and 10).
    Returns:
      [n]; higher = the passage made the model more confident; negative flags a knowledge
      conflict between the passage and what the model believes (the paper's reading; the
      authors' decoder adjusts the steps with CG < H(with), see `decoding.ckplug`).
    """
    from introspect.decoding import ckplug

    if not len(prompts_without) == len(prompts_with) == len(answers):
        raise ValueError(
            f"got {len(prompts_without)} prompts without context, "
            f"{len(prompts_with)} with, and {len(answers)} answers"
        )
    conts = [lm.tokenizer.encode(a) for a in answers]
    if any(not c for c in conts):
        raise ValueError("every answer needs at least one token")
    tok = ckplug.score_gain(
        lm,
        [_prompt_ids(lm.tokenizer, p) for p in prompts_with],
        [_prompt_ids(lm.tokenizer, p) for p in prompts_without],
        conts,
        relative_top=relative_top,
        min_keep=min_keep,
        batch_size=batch_size,
    )
    width = max(len(c) for c in conts)
    mask = np.zeros((len(conts), width), bool)
    h_without = np.zeros((len(conts), width), np.float32)
    h_with = np.zeros((len(conts), width), np.float32)
    for i, c in enumerate(conts):
        mask[i, : len(c)] = True
        h_without[i, : len(c)] = tok["entropy_without"][i]
        h_with[i, : len(c)] = tok["entropy_with"][i]
    return np.asarray(confidence_gain(h_without, h_with, mask))
