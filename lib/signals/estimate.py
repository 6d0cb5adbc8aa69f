"""Every estimator from what one generation (plus samples) gives: `Inputs` and `estimate`.

    inputs = signals.Inputs(stats=stats, mask=mask, vocab_size=V,       # greedy answer
                            answers=extracted, sample_answers=sampled,  # k samples each
                            texts=texts)
    values = signals.estimate(inputs)          # {name: [n]} for every signal it can compute
    values = signals.estimate(inputs, names=("self_certainty", "consistency"))

Each registered signal's metadata `needs` names the `Inputs` fields it reads; `estimate` runs
every signal whose fields are all present (or exactly `names`, raising a ValueError that names
the missing fields). Every value is "higher = more confident". A new estimator registers with
`signals.register(name, fn, kind=..., needs=(...), from_inputs=adapter)`, where
`adapter(inputs, **options) -> [n]`; statistics-based signals get their adapter
automatically. Signals that need a model call (p_true, context_gain) have no adapter: call them
directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from introspect.signals.logit import SIGNALS, compute


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What the estimators read; every field is optional ([n] = one row per question).

    Attributes:
      stats: {"logprob", *STAT_NAMES}: [n, T] per-token statistics of the answers.
      mask: [n, T] bool, the answer tokens.
      vocab_size: the vocabulary size (signals with needs_vocab).
      answer_mask: [n, T] bool, the final-answer tokens (answer_confidence).
      lm_logprob: [n, T] log p(y_t | y_<t) of the answer tokens without the prompt
        (`signals.unconditional_logprobs`; PMI, CPMI).
      texts: [n] the answers' texts.
      answers: [n] the graded / extracted answers (None = unparsable).
      sample_answers: [n][k] the extracted answers of k sampled responses.
      equivalent: (a, b) -> bool, when two answers mean the same (default: equal strings).
      sample_logprobs: [n, k] sequence log-likelihood of each sample (sum over its tokens).
      sample_token_logprobs: [n, k, T] token log-probs of each sample, with sample_mask.
      sample_mask: [n, k, T] bool.
      classes: [n, k] int, semantic equivalence class of each sample (from `equivalent`, an
        NLI model, ...; `sample_classes` builds them).
      similarity: [n, k, k] pairwise similarity of the samples in [0, 1] (an embedding
        model's cosine, NLI entailment, ROUGE-L, ...).
      greedy_similarity: [n, k] similarity in [0, 1] of the greedy answer to each sample
        (CoCoA).
      sample_texts: [n][k] the sampled responses' texts (lexical similarity).
      attention: [n, T, layers, heads] `Generation.attention` records of the answers (each
        token's attention to the previous one) at the RAUQ layers (`signals.attention.
        rauq_layers`) (RAUQ, with stats["logprob"] and mask).
      self_attention: [n, T, heads] each position's attention to itself at one layer
        (Attention Score; `signals.attention.attention_diagonal`), with self_attention_mask
        [n, T] (default all positions).
      features: [n, d] (or [n, layers, d]) hidden-state features of the answers.
      density: {signal name: fitted state} of the density estimators (fitted on a training
        split's features).
      sep: a fitted semantic-entropy probe (`probes.fit_sep`) for `features` taken at the
        position it was trained on (TBG or SLT).
    """

    stats: Mapping[str, Any] | None = None
    mask: Any = None
    vocab_size: int | None = None
    answer_mask: Any = None
    lm_logprob: Any = None
    texts: Sequence[str] | None = None
    answers: Sequence[str | None] | None = None
    sample_answers: Sequence[Sequence[str | None]] | None = None
    equivalent: Callable[[str, str], bool] | None = None
    sample_logprobs: Any = None
    sample_token_logprobs: Any = None
    sample_mask: Any = None
    classes: Any = None
    similarity: Any = None
    greedy_similarity: Any = None
    sample_texts: Sequence[Sequence[str]] | None = None
    attention: Any = None
    self_attention: Any = None
    self_attention_mask: Any = None
    features: Any = None
    density: Mapping[str, Any] | None = None
    sep: Any = None

    def available(self) -> frozenset[str]:
        """The names of the fields that are set."""
        return frozenset(
            f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None
        )

    def has(self, needs: Sequence[str]) -> bool:
        """Whether every field in `needs` is set (a "density:<name>" need: a fitted state)."""
        have = self.available()
        for need in needs:
            if need.startswith("density:"):
                if not self.density or need.split(":", 1)[1] not in self.density:
                    return False
            elif need not in have:
                return False
        return True


def needs_of(name: str) -> tuple[str, ...]:
    """The `Inputs` fields signal `name` reads (() when it cannot run from `Inputs`)."""
    entry = SIGNALS.info(name)
    if entry.meta.get("from_inputs") is not None:
        return tuple(entry.meta.get("needs") or ())
    if entry.meta["kind"] != "stats":
        return ()
    if name == "answer_confidence":
        return ("stats", "answer_mask")
    return ("stats", "mask") + (("vocab_size",) if entry.meta["needs_vocab"] else ())


def estimable() -> tuple[str, ...]:
    """The signals `estimate` can compute (those with an `Inputs` adapter)."""
    return tuple(n for n in SIGNALS.names() if needs_of(n))


def _run(name: str, inputs: Inputs, options: Mapping[str, Any]) -> np.ndarray:
    entry = SIGNALS.info(name)
    adapter = entry.meta.get("from_inputs")
    if adapter is not None:
        return np.asarray(adapter(inputs, **options), np.float64)
    mask = inputs.answer_mask if name == "answer_confidence" else inputs.mask
    kw = {"vocab_size": int(inputs.vocab_size)} if entry.meta["needs_vocab"] else {}
    return np.asarray(compute(name, inputs.stats, mask, **kw, **options), np.float64)


def estimate(
    inputs: Inputs,
    names: Sequence[str] | None = None,
    *,
    exclude: Sequence[str] = (),
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """{name: [n] values (higher = more confident)} of the signals computable from `inputs`.

    Args:
      inputs: what is available.
      names: the signals to compute (default: every signal whose needs are met).
      exclude: signals to skip.
      options: {name: keyword options} passed to those signals.
    Raises:
      ValueError: a named signal has no `Inputs` adapter, or its fields are missing (the
        message lists them and what the inputs have).
    """
    if not isinstance(inputs, Inputs):
        raise ValueError(f"inputs: expected signals.Inputs, got {type(inputs).__name__}")
    options = dict(options or {})
    if names is None:
        chosen = [n for n in estimable() if n not in exclude and inputs.has(needs_of(n))]
    else:
        chosen = [n for n in names if n not in exclude]
        for n in chosen:
            needs = needs_of(n)
            if not needs:
                raise ValueError(
                    f"signal {n!r} cannot be computed from signals.Inputs (a "
                    f"{SIGNALS.meta(n, 'kind')!r} signal: call it directly); estimable: "
                    f"{', '.join(estimable())}"
                )
            if not inputs.has(needs):
                missing = [x for x in needs if not inputs.has((x,))]
                raise ValueError(
                    f"signal {n!r} needs {', '.join(missing)} in signals.Inputs; the inputs "
                    f"have {', '.join(sorted(inputs.available())) or 'nothing'}"
                )
    unknown = set(options) - set(chosen)
    if unknown:
        raise ValueError(f"options for signals that are not computed: {sorted(unknown)}")
    return {n: _run(n, inputs, options.get(n, {})) for n in chosen}


def sample_classes(
    sample_answers: Sequence[Sequence[str | None]],
    equivalent: Callable[[str, str], bool] | None = None,
) -> np.ndarray:
    """[n, k] int semantic classes of each row's samples (equal / `equivalent` answers share a
    class; an unparsable answer (None) is a class of its own), numbered 0.. per row."""
    from introspect.signals.text import _clusters

    rows = [list(r) for r in sample_answers]
    if not rows or len({len(r) for r in rows}) != 1 or not rows[0]:
        raise ValueError("sample_answers: expected [n][k] answers with the same k >= 1 per row")
    out = np.zeros((len(rows), len(rows[0])), np.int64)
    for i, r in enumerate(rows):
        labels = _clusters(r, equivalent)
        remap: dict[int, int] = {}
        out[i] = [remap.setdefault(x, len(remap)) for x in labels]
    return out
