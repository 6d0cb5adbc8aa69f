"""Confidence signals. Every signal is documented "higher = more confident".

Logit-based (`logit.py`): from full logits, `signals.self_certainty(logits, mask)` etc., or by name
from the per-token statistics that generation and `lm.score` compute inside their compiled loops,
`signals.compute("self_certainty", stats, mask, vocab_size=V)`. Text-based (`text.py`):
verbalized confidence, linguistic hedges, sampling consistency. Model-querying (`model.py`):
`score_pairs`/`score_jsonl` (every logit signal for pre-generated answers by teacher forcing) and
`p_true`, `context_gain` (CK-PLUG, with vs without a passage).

Every signal is in the registry `SIGNALS` with metadata: `kind` ("stats" = computed from the
per-token statistics by `compute`; "samples", "text", "model", "hidden", "attention"), `prob` (a
probability in [0, 1]), `needs_tokens`, `needs_vocab`, and `needs` / `from_inputs` (the
`signals.Inputs` fields it reads and its adapter). `signals.estimate(inputs)` (also
`compute_all(inputs)`) computes every signal the inputs allow in one call.
`signals.register(...)` adds one of yours.
"""

import numpy as np

from introspect.signals import attention, claims, density, hybrid, semantic
from introspect.signals.claims import ccp, exact_match_nli, sentence_claims
from introspect.signals.estimate import Inputs, estimable, estimate, needs_of, sample_classes
from introspect.signals.info import cpmi, pmi, unconditional_logprobs
from introspect.signals.logit import (
    SIGNALS,
    answer_confidence,
    compute,
    compute_all,
    confidence_gain,
    fisher_rao,
    from_ragged,
    max_prob_margin,
    max_token_prob,
    mean_logprob,
    mean_token_prob,
    min_token_prob,
    neg_max_entropy,
    neg_mean_entropy,
    neg_perplexity,
    register,
    renyi,
    self_certainty,
    stats_signals,
    token_stats,
)
from introspect.signals.model import P_TRUE_TEMPLATE, context_gain, p_true, score_jsonl, score_pairs
from introspect.signals.stats import STAT_NAMES, step_statistics
from introspect.signals.text import (
    consistency,
    hedge_score,
    load_hedge_lexicon,
    neg_cluster_entropy,
    neg_num_distinct,
    parse_verbalized_confidence,
)
from introspect.signals.verbalized import (
    avg_conf,
    avg_conf_scores,
    multistep_confidence,
    pair_rank,
    pair_rank_scores,
    parse_multistep,
)

__all__ = [
    "avg_conf",
    "avg_conf_scores",
    "multistep_confidence",
    "pair_rank",
    "pair_rank_scores",
    "parse_multistep",
    "cpmi",
    "pmi",
    "unconditional_logprobs",
    "Inputs",
    "estimable",
    "estimate",
    "needs_of",
    "attention",
    "density",
    "fit_density",
    "ccp",
    "claims",
    "exact_match_nli",
    "sentence_claims",
    "hybrid",
    "sample_classes",
    "semantic",
    "SIGNALS",
    "STAT_NAMES",
    "answer_confidence",
    "compute",
    "compute_all",
    "confidence_gain",
    "fisher_rao",
    "from_ragged",
    "consistency",
    "context_gain",
    "hedge_score",
    "load_hedge_lexicon",
    "max_prob_margin",
    "max_token_prob",
    "mean_logprob",
    "mean_token_prob",
    "min_token_prob",
    "neg_cluster_entropy",
    "neg_max_entropy",
    "neg_mean_entropy",
    "neg_num_distinct",
    "neg_perplexity",
    "parse_verbalized_confidence",
    "P_TRUE_TEMPLATE",
    "p_true",
    "register",
    "renyi",
    "score_jsonl",
    "score_pairs",
    "self_certainty",
    "stats_signals",
    "step_statistics",
    "token_stats",
]

# The signals that are not computed from token statistics, with their metadata and, where
# `Inputs` hold what they read, their adapter for `estimate`.
register(
    "consistency", consistency, kind="samples", prob=True, needs=("answers", "sample_answers"),
    from_inputs=lambda x: [consistency(a, s, equivalent=x.equivalent)
                           for a, s in zip(x.answers, x.sample_answers, strict=True)],
)  # fmt: skip
register(
    "neg_num_distinct", neg_num_distinct, kind="samples", needs=("sample_answers",),
    from_inputs=lambda x: [neg_num_distinct(s, equivalent=x.equivalent) for s in x.sample_answers],
)  # fmt: skip
register(
    "neg_cluster_entropy", neg_cluster_entropy, kind="samples", needs=("sample_answers",),
    from_inputs=lambda x: [neg_cluster_entropy(s, equivalent=x.equivalent)
                           for s in x.sample_answers],
)  # fmt: skip
register(
    "pmi", pmi, kind="model", needs=("stats", "mask", "lm_logprob"),
    from_inputs=lambda x: pmi(x.stats["logprob"], x.lm_logprob, x.mask),
)  # fmt: skip
register(
    "cpmi", cpmi, kind="model", needs=("stats", "mask", "lm_logprob"),
    from_inputs=lambda x, **kw: cpmi(
        x.stats["logprob"], x.lm_logprob, x.stats["entropy"], x.mask, **kw
    ),
)  # fmt: skip


# Sampling / semantic estimators (`semantic.py`, LM-Polygraph's formulas); each pure function
# returns an uncertainty, so the registered signal is its negation (higher = more confident).
# SAR / TokenSAR (token relevance) and semantic density (NLI probabilities) need a
# similarity model's per-token or NLI outputs: call them directly.
def _neg(fn, *fields, **fixed):
    return lambda x, **kw: -np.asarray(fn(*(getattr(x, f) for f in fields), **fixed, **kw))


for _name, _fn, _fields in (
    ("semantic_entropy", semantic.semantic_entropy, ("sample_logprobs", "classes")),
    ("num_sem_sets", semantic.num_sem_sets, ("classes",)),
    ("eigval_laplacian", semantic.eigval_laplacian, ("similarity",)),
    ("degree_matrix", semantic.degree_matrix, ("similarity",)),
    ("eccentricity", semantic.eccentricity, ("similarity",)),
    ("kernel_language_entropy", semantic.kernel_language_entropy, ("similarity",)),
    ("sentence_sar", semantic.sentence_sar, ("sample_logprobs", "similarity")),
    ("lexical_similarity", semantic.lexical_similarity, ("sample_texts",)),
):
    register(_name, _fn, kind="samples", needs=_fields, from_inputs=_neg(_fn, *_fields))
for _variant in ("msp", "ppl", "mte"):
    register(
        f"cocoa_{_variant}", semantic.cocoa, kind="samples",
        needs=("stats", "mask", "greedy_similarity"),
        from_inputs=lambda x, _v=_variant, **kw: -np.asarray(semantic.cocoa(
            x.stats["entropy" if _v == "mte" else "logprob"], x.greedy_similarity, x.mask,
            variant=_v, **kw)),
    )  # fmt: skip


# Hidden-state density (`density.py`, LM-Polygraph's MD / RMD / RDE): fitted on a training
# split's features (`fit_density`), negated distances (higher = closer = more confident).
def _density(name, fn):
    def run(x, **kw):
        d = np.asarray(fn(x.density[name], x.features, **kw))
        if d.ndim != 1:
            raise ValueError(
                f"signal {name!r}: Inputs.features must be [n, d] (one layer) for the registry; "
                f"got a per-layer result of shape {d.shape}: call signals.density.{fn.__name__}"
            )
        return -d

    return run


for _name, _fn in (
    ("mahalanobis", density.mahalanobis),
    ("rmd", density.relative_mahalanobis),
    ("rde", density.rde),
):
    register(
        _name,
        _fn,
        kind="hidden",
        needs=("features", f"density:{_name}"),
        from_inputs=_density(_name, _fn),
    )


def _huq(x, *, aleatoric="mean_logprob", **kw):
    epistemic = np.asarray(density.mahalanobis(x.density["mahalanobis"], x.features))
    if epistemic.ndim != 1:
        raise ValueError("signal 'huq': Inputs.features must be [n, d] (one layer)")
    return -hybrid.huq(epistemic, -np.asarray(compute(aleatoric, x.stats, x.mask)), **kw)


# HUQ (`hybrid.py`): Mahalanobis ranks hybridised with the ranks of a statistics signal
# (option aleatoric=, default "mean_logprob"); options t_min, t_max, alpha (`hybrid.fit_huq`).
register(
    "huq", hybrid.huq, kind="hidden",
    needs=("features", "density:mahalanobis", "stats", "mask"), from_inputs=_huq,
)  # fmt: skip


def _sep(x):
    from introspect import probes

    return probes.sep_confidence(x.sep, x.features)


# Semantic-entropy probes (`probes.sep`): 1 - P(high semantic entropy) from one position's
# hidden states.
register("sep", _sep, kind="hidden", needs=("features", "sep"), from_inputs=_sep)


def fit_density(features, names=("mahalanobis", "rde"), *, background=None, options=None):
    """{name: fitted state} for `Inputs.density` from a training split's features [n, d]:
    "mahalanobis", "rmd" (needs `background` features, e.g. a general corpus), "rde";
    options: {name: keyword options of its fit function}."""
    fits = {
        "mahalanobis": density.fit_mahalanobis,
        "rde": density.fit_rde,
        "rmd": lambda f, **kw: density.fit_relative_mahalanobis(f, background, **kw),
    }
    unknown = set(names) - set(fits)
    if unknown:
        raise ValueError(f"fit_density: unknown {sorted(unknown)}; known: {sorted(fits)}")
    if "rmd" in names and background is None:
        raise ValueError("fit_density: 'rmd' needs background= features (a general corpus)")
    options = dict(options or {})
    return {n: fits[n](features, **options.get(n, {})) for n in names}


# Attention-based (`attention.py`, LM-Polygraph's RAUQ / AttentionScore), negated. Focus needs
# full distributions, an IDF table and keyword masks: call signals.attention.focus directly.
register(
    "rauq", attention.rauq, kind="attention", needs=("stats", "mask", "attention"),
    from_inputs=lambda x, **kw: -attention.rauq(x.stats["logprob"], x.attention, x.mask, **kw),
)  # fmt: skip
register(
    "attention_score", attention.attention_score, kind="attention", needs=("self_attention",),
    from_inputs=lambda x, **kw: -attention.attention_score(
        x.self_attention, x.self_attention_mask, **kw
    ),
)  # fmt: skip
register("hedge", hedge_score, kind="text", prob=True, needs=("texts",),
         from_inputs=lambda x: hedge_score(x.texts))  # fmt: skip
register("verbalized", parse_verbalized_confidence, kind="text", prob=True)
register("p_true", p_true, kind="model", prob=True)
# Claim-conditioned probability (`claims.py`) of long-form answers: call signals.ccp directly.
register("ccp", ccp, kind="model", prob=True)
register("multistep", multistep_confidence, kind="text", prob=True)
register("context_gain", context_gain, kind="model")
