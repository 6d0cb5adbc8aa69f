"""CK-PLUG (Bi et al. 2025, "Parameters vs. Context"): confidence gain and knowledge-reliance
control, batched and compiled.

The rules follow the authors' code (github.com/byronBBL/CK-PLUG at 4af30ea,
transformers-4.49/src/transformers/generation/utils.py: `relative_top_filter` and `_ck_decoding`;
ck.py calls it with the context prompt as the main input and the bare prompt as the "student"):

* Filtered set (`relative_top_keep`): a token is kept when, in either distribution (with or
  without the context), its log-prob is >= min(log p_max + log 0.01, the 10th largest log-prob),
  i.e. p >= 0.01 * p_max or among the 10 most likely (`relative_top=0.01`, `select_top=10`).
* Confidence gain CG = H(without context) - H(with context), both entropies of the softmax
  renormalised over the filtered set (`filtered_entropies`).
* Conflict (decoding trigger): CG - margin * |H(with)| < 0 with margin 1 (the code's
  `IG + abs(entropy) * e < 0`, e = -1), i.e. CG < H(with). The paper's reading "CG < 0 flags a
  conflict" is margin 0; `conflict_margin` selects either.
* At a conflict step the next-token scores are, over the filtered set (others excluded),
      alpha * z_without + (1 - alpha) * (z_with - z_without)
  on the raw logits z (per-row constants such as log-normalisers only shift a row, so this is
  the same distribution in log-prob space). alpha = 1 follows the parameters (the bare prompt),
  alpha = 0 the pure context contrast, and alpha = 0.5 gives z_with / 2: greedy decoding then
  equals plain decoding with the context. Elsewhere the scores are z_with (filtered).
* Adaptive variant (`adaptive=True`, alpha unused): with H = H(with), Hs = H(without),
  f = 1 + |H - Hs| / (H + Hs), the weights are 2 H / (H + Hs f) on z_without and
  2 Hs / (H + Hs f) on (z_with - z_without).

Deviations: decoding is greedy only (the authors' evaluation runs use top_k=1 / argmax); filtered
tokens are excluded exactly (-inf) instead of through -1e10 / -1e3 sentinels, and entropies are
exact instead of adding 1e-9 inside the log (a difference below 1e-9 nats per kept token); rows
are batched (the authors' loop takes one prompt at a time). The authors' `ck.py` also takes a
`relative_top=0.1` argument that never reaches the filter (hard-wired to 0.01).

`generate` steps two KV caches (with and without the context) in lockstep, both fed the chosen
token, in one `lax.while_loop` in one `jit`, with the same `DecoderStep` as CNTP. `score_gain`
gives the per-token filtered entropies of given answers by teacher forcing (what
`signals.context_gain` averages).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from introspect.decoding.cntp import DecoderStep, entropy_of
from introspect.models.llama import apply
from introspect.models.lm import Generation
from introspect.models.runner import left_pad, next_power_of_two

RELATIVE_TOP = 0.01  # the authors' relative_top_filter(relative_top=0.01)
MIN_KEEP = 10  # their select_top
CONFLICT_MARGIN = 1.0  # their e = -1: conflict when CG < 1 * |H(with)|


def relative_top_keep(logp_with, logp_without, *, relative_top=RELATIVE_TOP, min_keep=MIN_KEEP):
    """[..., vocab] bool: the filtered set (kept in either distribution).

    Args:
      logp_with, logp_without: [..., vocab] log-probs (or logits: the rule is shift-invariant)
        with and without the context.
      relative_top: keep p >= relative_top * p_max ...
      min_keep: ... and at least the `min_keep` most likely tokens (static int).
    """
    vocab = logp_with.shape[-1]
    k = max(1, min(int(min_keep), vocab))

    def keep(logp):
        kth = jax.lax.top_k(logp, k)[0][..., -1]
        thresh = jnp.minimum(kth, jnp.max(logp, axis=-1) + jnp.log(relative_top))
        return logp >= thresh[..., None]

    return keep(logp_with) | keep(logp_without)


def filtered_entropies(
    logits_with, logits_without, *, relative_top=RELATIVE_TOP, min_keep=MIN_KEEP
):
    """(H(with), H(without), keep): entropies (nats) of both softmaxes renormalised over the
    filtered set `keep` [..., vocab]."""
    logits_with = jnp.asarray(logits_with, jnp.float32)
    logits_without = jnp.asarray(logits_without, jnp.float32)
    keep = relative_top_keep(
        jax.nn.log_softmax(logits_with, axis=-1),
        jax.nn.log_softmax(logits_without, axis=-1),
        relative_top=relative_top,
        min_keep=min_keep,
    )
    h_with = entropy_of(jnp.where(keep, logits_with, -jnp.inf))
    h_without = entropy_of(jnp.where(keep, logits_without, -jnp.inf))
    return h_with, h_without, keep


def is_conflict(gain, entropy_with, *, margin=CONFLICT_MARGIN):
    """The decoding trigger: gain - margin * |H(with)| < 0 (margin 1: the authors' code; 0: the
    paper's CG < 0)."""
    return gain - margin * jnp.abs(entropy_with) < 0


def combine(
    logits_with,
    logits_without,
    keep,
    entropy_with,
    entropy_without,
    *,
    alpha=0.5,
    adaptive: bool = False,
):
    """The CK-PLUG scores of a conflict step: w_par * z_without + w_ctx * (z_with - z_without)
    over `keep` (-inf elsewhere); (w_par, w_ctx) = (alpha, 1 - alpha), or the adaptive weights
    (2 H, 2 Hs) / (H + Hs f), f = 1 + |H - Hs| / (H + Hs), from the filtered entropies."""
    z_with = jnp.asarray(logits_with, jnp.float32)
    z_without = jnp.asarray(logits_without, jnp.float32)
    if adaptive:
        h, hs = entropy_with[..., None], entropy_without[..., None]
        total = jnp.maximum(h + hs, 1e-30)  # > 0 at every conflict step (CG < H needs H > 0)
        f = 1.0 + jnp.abs(h - hs) / total
        denom = jnp.maximum(h + hs * f, 1e-30)
        w_par, w_ctx = 2.0 * h / denom, 2.0 * hs / denom
    else:
        w_par, w_ctx = alpha, 1.0 - alpha
    scores = w_par * z_without + w_ctx * (z_with - z_without)
    return jnp.where(keep, scores, -jnp.inf)


def step_scores(
    logits_with,
    logits_without,
    *,
    alpha=0.5,
    adaptive: bool = False,
    relative_top=RELATIVE_TOP,
    min_keep=MIN_KEEP,
    margin=CONFLICT_MARGIN,
):
    """One CK-PLUG step on [rows, vocab] logits: (scores, gain, conflict, H(with), H(without));
    scores are the combination at conflict rows and the filtered z_with elsewhere."""
    h_with, h_without, keep = filtered_entropies(
        logits_with, logits_without, relative_top=relative_top, min_keep=min_keep
    )
    gain = h_without - h_with
    conflict = is_conflict(gain, h_with, margin=margin)
    adjusted = combine(
        logits_with, logits_without, keep, h_with, h_without, alpha=alpha, adaptive=adaptive
    )
    plain = jnp.where(keep, jnp.asarray(logits_with, jnp.float32), -jnp.inf)
    scores = jnp.where(conflict[..., None], adjusted, plain)
    return scores, gain, conflict, h_with, h_without


@dataclasses.dataclass(frozen=True)
class CKSpec:
    step: DecoderStep  # the model (static); any object with its two methods
    num_new: int  # output buffer length = loop bound (bucketed max_new_tokens)
    min_keep: int
    adaptive: bool


@functools.partial(jax.jit, static_argnames=("spec",))
def _ck_decode(
    params,
    tok_with,
    valid_with,
    tok_without,
    valid_without,
    active,
    max_new,
    stop_ids,
    pad_id,
    alpha,
    relative_top,
    margin,
    *,
    spec,
):
    rows = tok_with.shape[0]

    def prefill(tokens, valid):
        cache = spec.step.init_cache(rows, tokens.shape[1] + spec.num_new)
        positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
        logits, cache = spec.step(params, tokens, positions, cache, valid)
        return logits[:, -1], cache, jnp.sum(valid, axis=1).astype(jnp.int32)

    z_with, cache_with, pos_with = prefill(tok_with, valid_with)
    z_without, cache_without, pos_without = prefill(tok_without, valid_without)
    buf = lambda value, dtype: jnp.full((rows, spec.num_new), value, dtype)
    state = dict(
        it=jnp.int32(0),
        cache_with=cache_with,
        cache_without=cache_without,
        z_with=z_with,
        z_without=z_without,
        pos_with=pos_with,
        pos_without=pos_without,
        done=~active,
        out_len=jnp.zeros((rows,), jnp.int32),
        tokens=buf(pad_id, jnp.int32),
        logp=buf(0.0, jnp.float32),
        gain=buf(0.0, jnp.float32),
        conflict=buf(False, bool),
        h_with=buf(0.0, jnp.float32),
        h_without=buf(0.0, jnp.float32),
    )

    def cond(s):
        return (s["it"] < spec.num_new) & ~jnp.all(s["done"] | (s["out_len"] >= max_new))

    def body(s):
        scores, gain, conflict, h_with, h_without = step_scores(
            s["z_with"],
            s["z_without"],
            alpha=alpha,
            adaptive=spec.adaptive,
            relative_top=relative_top,
            min_keep=spec.min_keep,
            margin=margin,
        )
        emit = ~(s["done"] | (s["out_len"] >= max_new))
        token = jnp.where(emit, jnp.argmax(scores, axis=-1).astype(jnp.int32), pad_id)
        logp = jnp.take_along_axis(
            jax.nn.log_softmax(s["z_with"], axis=-1), token[:, None], axis=-1
        )[:, 0]
        at = emit[:, None] & (jnp.arange(spec.num_new)[None] == s["out_len"][:, None])
        put = lambda key, val: jnp.where(at, val[:, None], s[key])
        out = {
            k: put(k, v)
            for k, v in dict(
                tokens=token,
                logp=logp,
                gain=gain,
                conflict=conflict,
                h_with=h_with,
                h_without=h_without,
            ).items()
        }
        stop = jnp.any(token[:, None] == stop_ids[None], axis=-1) & emit
        # Both caches take the chosen token; finished rows write a padding slot.
        new_with, cache_with = spec.step(
            params, token[:, None], s["pos_with"][:, None], s["cache_with"], emit[:, None]
        )
        new_without, cache_without = spec.step(
            params, token[:, None], s["pos_without"][:, None], s["cache_without"], emit[:, None]
        )
        return dict(
            s,
            **out,
            it=s["it"] + 1,
            cache_with=cache_with,
            cache_without=cache_without,
            z_with=jnp.where(emit[:, None], new_with[:, 0], s["z_with"]),
            z_without=jnp.where(emit[:, None], new_without[:, 0], s["z_without"]),
            pos_with=s["pos_with"] + emit,
            pos_without=s["pos_without"] + emit,
            done=s["done"] | stop,
            out_len=s["out_len"] + emit,
        )

    state = jax.lax.while_loop(cond, body, state)
    keys = ("tokens", "logp", "gain", "conflict", "h_with", "h_without", "out_len")
    return {k: state[k] for k in keys}


def _check_pairs(lm, prompts_with_context, prompts_without_context):
    with_ids = lm.check_ids(prompts_with_context, "prompts_with_context")
    without_ids = lm.check_ids(prompts_without_context, "prompts_without_context")
    if len(with_ids) != len(without_ids):
        raise ValueError(
            f"got {len(with_ids)} prompts with the context but {len(without_ids)} without; "
            "they must pair up one to one"
        )
    return with_ids, without_ids


def _check_filter(relative_top, min_keep):
    if not 0 < relative_top <= 1:
        raise ValueError(f"relative_top must be in (0, 1], got {relative_top}")
    if int(min_keep) != min_keep or min_keep < 1:
        raise ValueError(f"min_keep must be an integer >= 1, got {min_keep}")


def generate(
    lm,
    prompts_with_context,
    prompts_without_context,
    *,
    alpha: float = 0.5,
    adaptive: bool = False,
    max_new_tokens: int = 64,
    relative_top: float = RELATIVE_TOP,
    min_keep: int = MIN_KEEP,
    conflict_margin: float = CONFLICT_MARGIN,
    batch_size: int = 8,
    progress: bool | None = None,
) -> Generation:
    """CK-PLUG greedy decoding (see the module docstring).

    Args:
      lm: an `introspect.models.LM`.
      prompts_with_context: list of token-id lists (the prompt with the retrieved passage).
      prompts_without_context: the same prompts without the passage, paired one to one.
      alpha: in [0, 1], the weight of the parametric logits at conflict steps: 1 = follow the
        model without the context, 0.5 = plain decoding with the context (the authors' scripts'
        default), 0 = the pure context contrast z_with - z_without.
      adaptive: the authors' adaptive weights from the two filtered entropies (alpha unused).
      max_new_tokens: new tokens per prompt (both caches get the same tokens).
      relative_top, min_keep: the filtered set (authors: 0.01 and 10).
      conflict_margin: a step is adjusted when CG < conflict_margin * H(with) (authors' code: 1;
        the paper's CG < 0: 0).
      batch_size: prompt pairs per compiled call.
    Returns:
      a `Generation`; logprobs are log p(token) under the model with the context (untempered).
      stats holds per new token "confidence_gain", "conflict" (1.0 where the step was adjusted),
      "entropy_with" and "entropy_without" (filtered-set entropies).
    """
    with_ids, without_ids = _check_pairs(lm, prompts_with_context, prompts_without_context)
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= alpha <= 1.0:  # (NaN fails too)
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    _check_filter(relative_top, min_keep)
    if math.isnan(conflict_margin):
        raise ValueError("conflict_margin must not be NaN")
    lm.check_context(with_ids, max_new_tokens)
    lm.check_context(without_ids, max_new_tokens)
    num_new = next_power_of_two(max_new_tokens, 8)
    spec = CKSpec(DecoderStep(lm.config, lm.dtype), num_new, int(min_keep), bool(adaptive))
    stop_ids, pad_id = lm.stop_and_pad()
    t0 = time.perf_counter()

    def run(chunk):
        batch = chunk.tokens.shape[0]
        tok_without, valid_without, _ = left_pad(
            without_ids, chunk.indices, batch=batch, pad_id=pad_id
        )
        out = _ck_decode(
            lm.params,
            *lm.runner.place(chunk.tokens, chunk.valid, tok_without, valid_without, chunk.active),
            np.int32(max_new_tokens),
            stop_ids,
            np.int32(pad_id),
            np.float32(alpha),
            np.float32(relative_top),
            np.float32(conflict_margin),
            spec=spec,
        )
        out = lm.runner.fetch(out)  # all hosts' rows on a multi-process mesh
        rows = []
        for r in range(len(chunk.indices)):
            n = int(out["out_len"][r])
            rows.append({k: v[r, :n] for k, v in out.items() if k != "out_len"})
        return rows

    results = lm.runner.map(
        with_ids,
        run,
        batch_size=batch_size,
        pad_id=pad_id,
        desc="ck-plug",
        progress=progress,
        count=lambda row: len(row["tokens"]),
    )
    toks = [r["tokens"].tolist() for r in results]
    texts, finish = lm.texts_and_finish(toks, stop_ids)
    names = {
        "confidence_gain": "gain",
        "conflict": "conflict",
        "entropy_with": "h_with",
        "entropy_without": "h_without",
    }
    return Generation(
        tokens=toks,
        logprobs=[r["logp"] for r in results],
        texts=texts,
        finish_reasons=finish,
        stats={name: [r[key].astype(np.float32) for r in results] for name, key in names.items()},
        seconds=time.perf_counter() - t0,
    )


@functools.partial(
    jax.jit, static_argnames=("config", "dtype", "last_with", "last_without", "n", "min_keep")
)
def _teacher_forced(
    params,
    tok_with,
    valid_with,
    tok_without,
    valid_without,
    relative_top,
    *,
    config,
    dtype,
    last_with,
    last_without,
    n,
    min_keep,
):
    """Filtered entropies of the distributions that predict the last n - 1 tokens of both
    batches (right-aligned continuations): ([batch, n - 1] H(with), H(without))."""

    def tail(tokens, valid, last):
        positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
        logits, _, _ = apply(
            params, tokens, positions, config=config, valid=valid, last_only=last, dtype=dtype
        )
        return logits[:, -n:-1]

    h_with, h_without, _ = filtered_entropies(
        tail(tok_with, valid_with, last_with),
        tail(tok_without, valid_without, last_without),
        relative_top=relative_top,
        min_keep=min_keep,
    )
    return h_with, h_without


def score_gain(
    lm,
    prompts_with_context,
    prompts_without_context,
    continuations,
    *,
    relative_top: float = RELATIVE_TOP,
    min_keep: int = MIN_KEEP,
    batch_size: int = 16,
    progress: bool | None = None,
) -> dict[str, list[np.ndarray]]:
    """Teacher-forced CK-PLUG statistics of given continuations (token-id lists).

    Returns:
      {"entropy_with", "entropy_without", "confidence_gain"}: per pair an [n_cont] array, at
      each continuation token the filtered-set entropies of the distributions that predicted it
      (with and without the context) and their difference H(without) - H(with).
    """
    with_ids, without_ids = _check_pairs(lm, prompts_with_context, prompts_without_context)
    conts = lm.check_ids(continuations, "continuations")
    if len(conts) != len(with_ids):
        raise ValueError(f"got {len(with_ids)} prompt pairs but {len(conts)} continuations")
    _check_filter(relative_top, min_keep)
    seqs_with = [p + c for p, c in zip(with_ids, conts, strict=True)]
    seqs_without = [p + c for p, c in zip(without_ids, conts, strict=True)]
    ctx = lm.config.max_position_embeddings
    for what, seqs in (("with", seqs_with), ("without", seqs_without)):
        for i, s in enumerate(seqs):
            if len(s) > ctx:
                raise ValueError(
                    f"prompt {what} the context + continuation {i} has {len(s)} tokens > "
                    f"context {ctx}"
                )

    def run(chunk):
        tok_without, valid_without, _ = left_pad(
            seqs_without, chunk.indices, batch=chunk.tokens.shape[0], pad_id=0
        )
        longest = max(len(conts[i]) for i in chunk.indices)
        len_with, len_without = chunk.length, tok_without.shape[1]
        n = min(next_power_of_two(longest, 8) + 1, len_with, len_without)
        h_with, h_without = _teacher_forced(
            lm.params,
            *lm.runner.place(chunk.tokens, chunk.valid, tok_without, valid_without),
            np.float32(relative_top),
            config=lm.config,
            dtype=jnp.dtype(lm.dtype),
            last_with=n if n < len_with else False,
            last_without=n if n < len_without else False,
            n=n,
            min_keep=int(min_keep),
        )
        h_with, h_without = lm.runner.fetch((h_with, h_without))
        rows = []
        for r, i in enumerate(chunk.indices):
            c = len(conts[i])
            rows.append((h_with[r, -c:], h_without[r, -c:]))
        return rows

    results = lm.runner.map(
        seqs_with, run, batch_size=batch_size, pad_id=0, desc="ck-plug score", progress=progress
    )
    return {
        "entropy_with": [r[0] for r in results],
        "entropy_without": [r[1] for r in results],
        "confidence_gain": [r[1] - r[0] for r in results],
    }
