"""Logit-based confidence signals. Higher = more confident, for every signal.

Each signal has two entry points that compute the same number:

* `<name>(logits, mask, *, tokens=None, ...)`: from full logits [batch, length, vocab]. Alignment
  (the standard one for a causal LM): `logits[b, t]` is the distribution that predicted the token
  in slot t + 1, and `mask[b, t]` says whether that predicted token belongs to the response.
  `tokens[b, t]` is that predicted token (only the signals that need p(y) take it). So for a
  forward pass over `prompt + response`, the response is scored at positions
  `len(prompt) - 1 .. len(prompt) + len(response) - 2`.
* `compute(name, stats, mask, **options)`: from per-token statistics, the dict that
  `token_stats` returns and that generation / `lm.score` produce inside their compiled loops
  (`logprob` of the chosen token and the STAT_NAMES statistics of its distribution, [batch, length]
  each). One generation pass therefore gives every logit-based signal.

Masked means are over positions where mask is True; an all-False row gives NaN-free 0 for sums and
the neutral value documented per signal (it is better to drop such rows before ranking). Masked-out
positions are ignored entirely (padding may hold anything, NaN included).

Input checks (`introspect._checks`): shapes always (also under `jit`); on concrete arrays, logits
with a NaN or +inf (or only -inf) at a response position, or statistics with a NaN there, raise a
ValueError instead of giving a NaN signal (under `jit` the values are not inspected).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V
from introspect.registry import Registry
from introspect.signals.stats import STAT_NAMES, step_statistics

Stats = dict  # {"logprob", *STAT_NAMES}: [batch, length] each


def token_stats(logits: jax.Array, tokens: jax.Array | None = None) -> Stats:
    """Per-position statistics from full logits.

    Args:
      logits: [batch, length, vocab].
      tokens: optional [batch, length] int, the token each position predicted (for `logprob`).
    Returns:
      dict of [batch, length] float32 arrays: STAT_NAMES, plus "logprob" when tokens are given.
    """
    logits = V.as_array(logits, "logits")
    V.check_min_rank(logits, "logits", 1, "[batch, length, vocab]")
    if tokens is not None:
        tokens = V.as_array(tokens, "tokens")
        V.check_shape(tokens, "tokens", logits.shape[:-1], f"{logits.shape[:-1]} (logits[..., 0])")
    stats = step_statistics(logits)
    out = {name: stats[..., k] for k, name in enumerate(STAT_NAMES)}
    if tokens is not None:
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        out["logprob"] = jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), -1)[..., 0]
    return out


def from_ragged(logprobs, stats: dict | None = None) -> tuple[Stats, np.ndarray]:
    """Pad per-sequence outputs (e.g. `Generation.logprobs`/`.stats` or `Scores`) into arrays.

    Args:
      logprobs: list of [n_i] arrays, log p of each chosen token.
      stats: optional {name: list of [n_i] arrays} for STAT_NAMES.
    Returns:
      (stats dict of [batch, max_n] arrays incl. "logprob", mask [batch, max_n] bool).
    """
    n = max((len(x) for x in logprobs), default=0)
    mask = np.zeros((len(logprobs), max(n, 1)), bool)
    out = {"logprob": np.zeros(mask.shape, np.float32)}
    for name in stats or {}:
        out[name] = np.zeros(mask.shape, np.float32)
    for i, lp in enumerate(logprobs):
        mask[i, : len(lp)] = True
        out["logprob"][i, : len(lp)] = lp
        for name, rows in (stats or {}).items():
            out[name][i, : len(lp)] = rows[i]
    return out, mask


def _stat(stats: Stats, key: str, mask) -> jax.Array:
    """stats[key] [batch, length], checked: present, and (concrete) no NaN where mask is True."""
    if key not in stats:
        raise ValueError(
            f"stats: has no {key!r} (keys {sorted(stats)}); expected the statistics "
            f"{STAT_NAMES} and 'logprob' (see token_stats)"
        )
    x = V.as_array(stats[key], f"stats[{key!r}]")
    V.check_no_nan(x, f"stats[{key!r}]", mask)
    return x


def _masked_mean(x, mask):
    w = mask.astype(x.dtype)
    return jnp.sum(jnp.where(mask, x, 0), -1) / jnp.maximum(jnp.sum(w, -1), 1.0)


def _masked_max(x, mask, empty=0.0):
    return jnp.where(jnp.any(mask, -1), jnp.max(jnp.where(mask, x, -jnp.inf), -1), empty)


def _masked_min(x, mask, empty=0.0):
    return jnp.where(jnp.any(mask, -1), jnp.min(jnp.where(mask, x, jnp.inf), -1), empty)


# ---------------------------------------------------------------------------------------------
# Signals on statistics (the registry's form). mask: [batch, length] bool. Returns [batch].
# ---------------------------------------------------------------------------------------------


def _mean_token_prob(stats, mask):
    """Mean over response tokens of p(y_t). Empty row: 0."""
    return _masked_mean(jnp.exp(_stat(stats, "logprob", mask)), mask)


def _min_token_prob(stats, mask):
    """Smallest p(y_t) over response tokens (the weakest link). Empty row: 0."""
    return _masked_min(jnp.exp(_stat(stats, "logprob", mask)), mask)


def _max_token_prob(stats, mask):
    """Largest p(y_t) over response tokens. Empty row: 0."""
    return _masked_max(jnp.exp(_stat(stats, "logprob", mask)), mask)


def _neg_mean_entropy(stats, mask):
    """-(mean token entropy) in nats. Empty row: 0."""
    return -_masked_mean(_stat(stats, "entropy", mask), mask)


def _neg_max_entropy(stats, mask):
    """-(largest token entropy) in nats. Empty row: 0."""
    return -_masked_max(_stat(stats, "entropy", mask), mask)


def _neg_perplexity(stats, mask):
    """-exp(-mean log p(y_t)): minus the perplexity of the response. Empty row: -1."""
    return -jnp.exp(-_masked_mean(_stat(stats, "logprob", mask), mask))


def _mean_logprob(stats, mask):
    """Mean log p(y_t) (= -log perplexity; ranks like neg_perplexity). Empty row: 0."""
    return _masked_mean(_stat(stats, "logprob", mask), mask)


def _self_certainty(stats, mask, *, vocab_size: int):
    """Self-certainty (Kang et al., Scalable Best-of-N via Self-Certainty): mean over response
    tokens of KL(U || p_t) = logsumexp_t - mean_logit_t - log V. Empty row: 0."""
    lse, mean_logit = _stat(stats, "logsumexp", mask), _stat(stats, "mean_logit", mask)
    kl = lse - mean_logit - jnp.log(jnp.float32(vocab_size))
    return _masked_mean(kl, mask)


def _answer_confidence(stats, mask, *, reduce: str = "mean"):
    """CRew answer-token confidence: the probability mass of the final-answer tokens (mask marks
    the answer tokens). reduce="mean": mean p(y_t); "product": prod p(y_t) = exp(sum log p).
    Empty row: 0 (mean) or 1 (product)."""
    if reduce == "mean":
        return _mean_token_prob(stats, mask)
    if reduce == "product":
        return jnp.exp(jnp.sum(jnp.where(mask, _stat(stats, "logprob", mask), 0.0), -1))
    raise ValueError(f"reduce must be 'mean' or 'product', got {reduce!r}")


def _max_prob_margin(stats, mask):
    """Mean over tokens of the top-1 minus top-2 probability (1 = certain, 0 = a tie)."""
    return _masked_mean(_stat(stats, "max_prob", mask) - _stat(stats, "second_prob", mask), mask)


def _sqrt_mass(stats, mask):
    """log sum_j sqrt(q_j) for q = softmax(z / 2) (<= 0.5 log V)."""
    return _stat(stats, "logsumexp_quarter", mask) - 0.5 * _stat(stats, "logsumexp_half", mask)


def _renyi(stats, mask, *, vocab_size: int):
    """Mean over tokens of the Renyi divergence (alpha 1/2) of q = softmax(z / 2) from the
    uniform distribution: log V - 2 log sum_j sqrt(q_j) (>= 0; 0 = uniform); higher = further
    from uniform = more confident. Equals LM-Polygraph's RenyiNeg (alpha 0.5, temperature 2,
    from RAINPROOF) plus the constant 2 log V, so the ranking is the same
    (`benchmarks/vs_lm_polygraph.py` checks it per question)."""
    return _masked_mean(math.log(vocab_size) - 2.0 * _sqrt_mass(stats, mask), mask)


def _fisher_rao(stats, mask, *, vocab_size: int):
    """Mean over tokens of the Fisher-Rao distance of q = softmax(z / 2) to the uniform
    distribution, (2 / pi) arccos(sum_j sqrt(q_j / V)) in [0, 1]; higher = further from uniform
    = more confident. Equals LM-Polygraph's FisherRao (temperature 2) value for value
    (`benchmarks/vs_lm_polygraph.py` checks it per question); LM-Polygraph documents both as
    "higher = more uncertain", but both grow away from the uniform distribution."""
    bc = jnp.exp(_sqrt_mass(stats, mask) - 0.5 * math.log(vocab_size))
    return _masked_mean(2.0 / np.pi * jnp.arccos(jnp.clip(bc, 0.0, 1.0)), mask)


# Every signal by name. Metadata of an entry:
#   kind: "stats" (fn(stats, mask, **options) on per-token statistics; `compute` runs these),
#         "samples" / "text" / "model" (other call forms, see each function);
#   prob: the value is a probability in [0, 1] (raw ECE / Brier are meaningful);
#   needs_tokens: reads p(y_t), so the chosen tokens (stats["logprob"]) are required;
#   needs_vocab: takes `vocab_size=` (the full-vocabulary size).
#   needs / from_inputs: the `signals.Inputs` fields the signal reads and its adapter
#         (inputs, **options) -> [batch] for `signals.estimate` (statistics-based signals get
#         one automatically).
SIGNALS: Registry[Callable] = Registry(
    "signal",
    defaults={"kind": "stats", "prob": False, "needs_tokens": False, "needs_vocab": False,
              "needs": (), "from_inputs": None},
)  # fmt: skip
SIGNALS.register("mean_token_prob", _mean_token_prob, prob=True, needs_tokens=True)
SIGNALS.register("min_token_prob", _min_token_prob, prob=True, needs_tokens=True)
SIGNALS.register("max_token_prob", _max_token_prob, prob=True, needs_tokens=True)
SIGNALS.register("neg_mean_entropy", _neg_mean_entropy)
SIGNALS.register("neg_max_entropy", _neg_max_entropy)
SIGNALS.register("neg_perplexity", _neg_perplexity, needs_tokens=True)
SIGNALS.register("mean_logprob", _mean_logprob, needs_tokens=True)
SIGNALS.register("self_certainty", _self_certainty, needs_vocab=True)
SIGNALS.register("answer_confidence", _answer_confidence, prob=True, needs_tokens=True)
SIGNALS.register("max_prob_margin", _max_prob_margin, prob=True)
SIGNALS.register("renyi", _renyi, needs_vocab=True)
SIGNALS.register("fisher_rao", _fisher_rao, prob=True, needs_vocab=True)


def register(
    name: str,
    fn: Callable | None = None,
    *,
    kind: str = "stats",
    prob: bool = False,
    needs_tokens: bool = False,
    needs_vocab: bool = False,
    needs: tuple[str, ...] = (),
    from_inputs: Callable | None = None,
    overwrite: bool = False,
):
    """Registers a signal; without `fn`, returns a decorator.

    A "stats" signal is `fn(stats, mask, **options) -> [batch]` (higher = more confident) and is
    then run by `compute` / `compute_all` on what generation already computed. Any other
    signal joins `signals.estimate` with `from_inputs(inputs, **options) -> [batch]` and the
    `signals.Inputs` fields it reads in `needs` ("density:<name>" = a fitted density state).
    Raises ValueError for a taken name (unless `overwrite`) or a bad kind / needs.
    """
    if kind not in ("stats", "samples", "text", "model", "hidden", "attention"):
        raise ValueError(
            "kind: expected 'stats', 'samples', 'text', 'model', 'hidden' or 'attention', got "
            f"{kind!r}"
        )
    if from_inputs is not None and not needs:
        raise ValueError(f"signal {name!r}: from_inputs needs the Inputs fields it reads (needs=)")
    return SIGNALS.register(
        name,
        fn,
        overwrite=overwrite,
        kind=kind,
        prob=prob,
        needs_tokens=needs_tokens,
        needs_vocab=needs_vocab,
        needs=tuple(needs),
        from_inputs=from_inputs,
    )


def stats_signals() -> tuple[str, ...]:
    """Names of the signals computed from per-token statistics (what `compute_all` runs)."""
    return SIGNALS.names(kind="stats")


def compute(name: str, stats: Stats, mask, **options) -> jax.Array:
    """Run the statistics-based signal `name`. Raises ValueError for unknown names."""
    entry = SIGNALS.info(name)
    if entry.meta["kind"] != "stats":
        raise ValueError(
            f"signal {name!r} is a {entry.meta['kind']!r} signal, not computed from token "
            f"statistics; call signals.{getattr(entry.obj, '__name__', name)} directly. "
            f"Statistics-based signals: {', '.join(stats_signals())}"
        )
    mask = jnp.asarray(mask, bool)
    for key, value in stats.items():
        if jnp.shape(value) != mask.shape:
            raise ValueError(f"stats[{key!r}] has shape {jnp.shape(value)}, mask has {mask.shape}")
    if entry.meta["needs_tokens"] and "logprob" not in stats:
        raise ValueError(f"signal {name!r} needs the chosen tokens' log-probs (stats['logprob'])")
    return entry.obj(stats, mask, **options)


def compute_all(
    stats, mask=None, *, vocab_size: int | None = None, exclude=()
) -> dict[str, np.ndarray]:
    """Every statistics-based signal (but `exclude`) on the same statistics: {name: [batch]};
    or, given a `signals.Inputs`, every signal it has the inputs for (`signals.estimate`).

    `vocab_size` goes to the signals whose metadata says needs_vocab; "answer_confidence" uses
    the whole mask as the answer span (exclude it and call `compute` with an answer mask to do
    better).
    """
    from introspect.signals.estimate import Inputs, estimate

    if isinstance(stats, Inputs):
        if mask is not None or vocab_size is not None:
            raise ValueError("compute_all(inputs): mask and vocab_size belong in the Inputs")
        return estimate(stats, exclude=exclude)
    if mask is None or vocab_size is None:
        raise ValueError("compute_all(stats, mask, vocab_size=...): mask and vocab_size needed")
    return {
        name: np.asarray(
            compute(
                name,
                stats,
                mask,
                **({"vocab_size": vocab_size} if SIGNALS.meta(name, "needs_vocab") else {}),
            )
        )
        for name in stats_signals()
        if name not in exclude
    }


# ---------------------------------------------------------------------------------------------
# The same signals on full logits.
# ---------------------------------------------------------------------------------------------


def _from_logits(name: str):
    fn = SIGNALS.get(name)
    needs_tokens = SIGNALS.meta(name, "needs_tokens")
    needs_vocab = SIGNALS.meta(name, "needs_vocab")

    def signal(logits, mask, *, tokens=None, shifted: bool = False, **options):
        logits = V.as_array(logits, "logits")
        V.check_rank(logits, "logits", 3, "[batch, length, vocab]")
        mask = V.as_mask(mask, logits.shape[:2])
        if needs_tokens and tokens is None:
            raise ValueError(
                f"{name}: pass tokens=[batch, length], the token each position predicted"
            )
        if shifted:
            # The Best-of-N authors' script reads the distribution one position later than the
            # one that predicted each response token; offered for reproduction only.
            mask = jnp.pad(mask[:, :-1], ((0, 0), (1, 0)))
        if tokens is not None:
            tokens = V.as_array(tokens, "tokens")
            V.check_shape(tokens, "tokens", mask.shape, f"{tuple(mask.shape)} [batch, length]")
            vocab = logits.shape[-1]
            V.check_class_labels(tokens, "tokens", vocab, mask, what=f"token ids in [0, {vocab})")
        V.check_logits(logits, "logits", mask)
        stats = token_stats(logits, tokens)
        if needs_vocab:
            options.setdefault("vocab_size", logits.shape[-1])
        return fn(stats, mask, **options)

    signal.__name__ = name
    tokens_doc = ", tokens [batch, length]" if needs_tokens else ""
    signal.__doc__ = (
        f"{fn.__doc__}\n\n    From full logits: logits [batch, length, vocab], mask "
        f"[batch, length]{tokens_doc} (see the module docstring for the alignment); shifted=True "
        "moves the mask one position later (the Best-of-N authors' script).\n"
        "    Returns [batch]; higher = more confident."
    )
    return signal


mean_token_prob = _from_logits("mean_token_prob")
min_token_prob = _from_logits("min_token_prob")
max_token_prob = _from_logits("max_token_prob")
neg_mean_entropy = _from_logits("neg_mean_entropy")
neg_max_entropy = _from_logits("neg_max_entropy")
neg_perplexity = _from_logits("neg_perplexity")
mean_logprob = _from_logits("mean_logprob")
self_certainty = _from_logits("self_certainty")
answer_confidence = _from_logits("answer_confidence")
max_prob_margin = _from_logits("max_prob_margin")
renyi = _from_logits("renyi")
fisher_rao = _from_logits("fisher_rao")


def confidence_gain(entropy_without, entropy_with, mask):
    """CK-PLUG confidence gain: mean over response tokens of H(without context) - H(with context).

    Args:
      entropy_without: [batch, length] token entropies when the model sees no context passage.
      entropy_with: [batch, length] token entropies of the same tokens with the passage.
      mask: [batch, length] bool, response tokens.
    Returns:
      [batch]; higher = the context made the model more confident (negative flags a knowledge
      conflict).
    """
    entropy_without = V.as_array(entropy_without, "entropy_without")
    entropy_with = V.as_array(entropy_with, "entropy_with")
    V.check_rank(entropy_with, "entropy_with", 2, "[batch, length]")
    V.check_same_shape(entropy_without, entropy_with, "entropy_without", "entropy_with")
    mask = V.as_mask(mask, entropy_with.shape)
    V.check_no_nan(entropy_without, "entropy_without", mask)
    V.check_no_nan(entropy_with, "entropy_with", mask)
    return _masked_mean(V.as_float(entropy_without) - V.as_float(entropy_with), mask)
