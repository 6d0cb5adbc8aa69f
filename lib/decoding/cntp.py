"""Cautious next-token prediction (CNTP), batched and compiled.

The rules follow the authors' code (github.com/wyzjack/CNTP at 105b0968,
`_sample_reflect_perplexity` in custom_transformers_packages/*/transformers/generation/utils.py,
also the README's "Key Code Snippet"):

* The distribution CNTP looks at is the *processed* one, softmax of the logits after temperature,
  top-k and top-p (in that order, as transformers' warpers): its entropy H sets the number of trials
  N = int(1 + (N_max - 1) * clip((H - H_lo) / (H_hi - H_lo), 0, 1)), and every trial token is
  sampled from it and scored by its processed probability. (The authors add 1e-10 inside the log of
  the entropy; here masked tokens contribute exactly 0 instead: a difference below vocab * 1e-10.)
* With N > 1 the model samples N continuations from the same state, each until it emits one of the
  authors' punctuation tokens (`punctuation_ids`: the first id of `tokenizer.encode(p)` for p in
  . , newline ? ! : ; ) ] }) or a stop token or the length limit, and keeps the one with the lowest
  perplexity exp(-mean log q) under the processed distribution q; with N = 1 it takes one ordinary
  sampling step.
* The authors do not cap a trial's length; `max_segment` (default None = no cap) is an optional
  extra bound.

`Generation.logprobs` stay the untempered log-probs of the kept tokens, as for `lm.generate`.

Batching: each prompt owns `max_trials` rows of the batch; outside a segment they are identical
(they share the random key, so they draw the same token), inside one they diverge. A finished
trial idles (its slot is written as padding, so it neither attends to it nor advances) until the
prompt's other trials finish; then the winner's KV cache and outputs are copied to all its rows.
The whole thing is one `lax.while_loop` in one `jit`: no Python call per token.

With `max_trials = 1` the output equals `lm.generate` sampling with the same seed.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from introspect.models import generate as gen_lib
from introspect.models.config import ModelConfig
from introspect.models.llama import KVCache, apply
from introspect.models.lm import Generation
from introspect.models.runner import next_power_of_two

PUNCTUATION = (".", ",", "\n", "?", "!", ":", ";", ")", "]", "}")


@dataclasses.dataclass(frozen=True)
class DecoderStep:
    """The model CNTP decodes with: the Flax decoder with a KV cache.

    Any object with the same two methods (hashable: it is a static argument) can stand in, e.g.
    a constructed logit function in a test: `init_cache(rows, max_len)` -> a cache pytree whose
    per-row leaves have `rows` as their leading dimension, and `__call__(params, tokens,
    positions, cache, valid)` -> (logits [rows, tokens.shape[1], vocab] float32, new cache).
    """

    config: ModelConfig
    dtype: str = "float32"

    def init_cache(self, rows: int, max_len: int):
        return KVCache.empty(self.config, rows, max_len, jnp.dtype(self.dtype))

    def __call__(self, params, tokens, positions, cache, valid):
        logits, _, cache = apply(
            params,
            tokens,
            positions,
            cache,
            config=self.config,
            valid=valid,
            last_only=True,
            dtype=jnp.dtype(self.dtype),
        )
        return logits, cache


@dataclasses.dataclass(frozen=True)
class CNTPSpec:
    step: DecoderStep  # the model (static)
    num_new: int  # output buffer length (bucketed max_new_tokens)
    max_steps: int  # loop iterations bound (idle trial steps count); cache = prompt + this
    trials: int  # N_max
    filtered: bool


def best_trials(seg_logp, seg_len, seg_trials, *, trials: int):
    """The trial CNTP keeps for each prompt: the lowest perplexity (highest mean log-prob).

    Args:
      seg_logp: [prompts * trials] summed log-probs of each trial's segment so far (under the
        processed distribution, as the authors score trials).
      seg_len: [prompts * trials] tokens in each trial's segment.
      seg_trials: [prompts] how many of the `trials` rows of a prompt are in its segment.
      trials: rows per prompt (N_max).
    Returns:
      [prompts] int32 index in 0..trials-1 of the kept trial. Empty trials and rows beyond
      `seg_trials` never win; ties go to the lowest index.
    """
    rows = seg_logp.shape[0]
    trial_of = jnp.arange(rows) % trials
    prompt_of = jnp.arange(rows) // trials
    score = jnp.where(seg_len > 0, seg_logp / jnp.maximum(seg_len, 1), -jnp.inf)
    score = jnp.where(trial_of < seg_trials[prompt_of], score, -jnp.inf)
    return jnp.argmax(score.reshape(rows // trials, trials), axis=1).astype(jnp.int32)


def punctuation_ids(tokenizer) -> list[int]:
    """The token ids that end a CNTP trial, by the authors' rule: for each character p of
    PUNCTUATION, the first id of `tokenizer.encode(p)` without special tokens.

    The stop set is exactly these (at most 10) ids, not every token whose text contains a
    punctuation mark. On a byte-level BPE vocabulary (GPT-2 style: SmolLM2, Llama 3, Qwen) each
    character alone is one token ("." -> ".", "\n" -> "Ċ", ...), so merged tokens that contain
    punctuation ("...", " .", "),", ").", the double newline "ĊĊ") do not end a trial. On a
    SentencePiece vocabulary the first id can be a word-boundary piece; the rule is reproduced
    as written, whatever ids it yields.
    """
    out = []
    for p in PUNCTUATION:
        ids = tokenizer.encode(p, add_special_tokens=False)
        if ids:
            out.append(int(ids[0]))
    return out


def punctuation_mask(tokenizer, vocab_size: int) -> np.ndarray:
    """[vocab] bool: True exactly at `punctuation_ids(tokenizer)` (the tokens that end a trial)."""
    out = np.zeros((vocab_size,), bool)
    ids = [i for i in punctuation_ids(tokenizer) if 0 <= i < vocab_size]
    out[ids] = True
    return out


def processed_logits(logits, temperature, top_k, top_p, *, filtered: bool):
    """The logits CNTP samples from and scores with: temperature, then top-k / top-p (removed
    tokens at -inf), exactly as `lm.generate` samples. logits: [rows, vocab]."""
    scaled = logits / jnp.maximum(temperature, 1e-6)
    return gen_lib.filter_logits(scaled, top_k, top_p) if filtered else scaled


def entropy_of(logits):
    """Entropy (nats) of softmax(logits) over the last axis; -inf logits contribute 0."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(logp) * jnp.where(jnp.isfinite(logp), logp, 0.0), axis=-1)


def num_trials(entropy, *, max_trials: int, h_low: float, h_high: float):
    """N = int(1 + (N_max - 1) * clip((H - H_lo) / (H_hi - H_lo), 0, 1)) (elementwise)."""
    frac = jnp.clip((entropy - h_low) / (h_high - h_low), 0.0, 1.0)
    return (1 + (max_trials - 1) * frac).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("spec",))
def _cntp_decode(
    params,
    tokens,
    valid,
    prompt_keys,
    prompt_active,
    max_new,
    temperature,
    top_k,
    top_p,
    stop_ids,
    pad_id,
    is_punct,
    h_low,
    h_high,
    max_segment,
    *,
    spec,
):
    m = spec.trials
    n_prompts, prompt_len = tokens.shape
    rows = n_prompts * m
    prompt_of = jnp.arange(rows) // m
    trial_of = jnp.arange(rows) % m
    rep = lambda x: jnp.repeat(x, m, axis=0)
    tokens, valid = rep(tokens), rep(valid)
    row_keys = rep(prompt_keys)

    cache = spec.step.init_cache(rows, prompt_len + spec.max_steps)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
    logits, cache = spec.step(params, tokens, positions, cache, valid)
    next_logits = logits[:, -1]
    state = dict(
        it=jnp.int32(0),
        cache=cache,
        next_logits=next_logits,
        pos=jnp.sum(valid, axis=1).astype(jnp.int32),
        done=~rep(prompt_active),
        out_tokens=jnp.full((rows, spec.num_new), pad_id, jnp.int32),
        out_logp=jnp.zeros((rows, spec.num_new), jnp.float32),
        out_len=jnp.zeros((rows,), jnp.int32),
        seg_active=jnp.zeros((n_prompts,), bool),
        seg_trials=jnp.ones((n_prompts,), jnp.int32),
        trial_done=jnp.zeros((rows,), bool),
        seg_logp=jnp.zeros((rows,), jnp.float32),
        seg_len=jnp.zeros((rows,), jnp.int32),
        segments=jnp.zeros((n_prompts,), jnp.int32),
    )

    def resolve(s, which):
        """Copy the best trial of every prompt in `which` [P] onto all of that prompt's rows."""
        best = best_trials(s["seg_logp"], s["seg_len"], s["seg_trials"], trials=m)
        src = jnp.where(which[prompt_of], prompt_of * m + best[prompt_of], jnp.arange(rows))
        take = lambda x: jnp.take(x, src, axis=0)
        s = dict(s)
        # every per-row cache leaf (the KV cache's k, v, valid; not its shared write index)
        s["cache"] = jax.tree.map(
            lambda x: take(x) if x.ndim and x.shape[0] == rows else x, s["cache"]
        )
        for key in ("next_logits", "pos", "done", "out_tokens", "out_logp", "out_len"):
            s[key] = take(s[key])
        s["seg_active"] = s["seg_active"] & ~which
        s["trial_done"] = jnp.where(which[prompt_of], False, s["trial_done"])
        return s

    def cond(s):
        return (s["it"] < spec.max_steps) & ~jnp.all(s["done"] | (s["out_len"] >= max_new))

    def body(s):
        # 1. Prompts outside a segment decide how many trials this step gets (rows identical),
        # from the entropy of the processed (tempered, filtered) distribution.
        processed = processed_logits(
            s["next_logits"], temperature, top_k, top_p, filtered=spec.filtered
        )
        entropy = entropy_of(processed[::m])
        n = num_trials(entropy, max_trials=m, h_low=h_low, h_high=h_high)
        finished = s["done"] | (s["out_len"] >= max_new)
        start = ~s["seg_active"] & (n > 1) & ~finished[::m]
        seg_trials = jnp.where(start, n, s["seg_trials"])
        seg_active = s["seg_active"] | start
        in_seg = seg_active[prompt_of]
        fresh = start[prompt_of]
        trial_done = jnp.where(fresh, trial_of >= n[prompt_of], s["trial_done"])
        seg_logp = jnp.where(fresh, 0.0, s["seg_logp"])
        seg_len = jnp.where(fresh, 0, s["seg_len"])
        emit = ~finished & ~(in_seg & trial_done)

        # 2. Sample: shared key per prompt outside segments, one key per trial inside.
        keys = jax.vmap(jax.random.fold_in)(row_keys, s["out_len"])
        keys = jnp.where(in_seg[:, None], jax.vmap(jax.random.fold_in)(keys, 1 + trial_of), keys)
        # (the same draw as `gen_lib.sample_tokens`; logp is untempered, q the processed one)
        token = jax.vmap(jax.random.categorical)(keys, processed).astype(jnp.int32)
        pick = lambda lp: jnp.take_along_axis(lp, token[:, None], axis=-1)[:, 0]
        logp = pick(jax.nn.log_softmax(s["next_logits"], axis=-1))
        logq = pick(jax.nn.log_softmax(processed, axis=-1))
        token = jnp.where(emit, token, pad_id)
        idx = jnp.minimum(s["out_len"], spec.num_new - 1)
        put = lambda buf, val: jnp.where(
            emit[:, None] & (jnp.arange(spec.num_new)[None] == idx[:, None]), val[:, None], buf
        )
        out_tokens = put(s["out_tokens"], token)
        out_logp = put(s["out_logp"], logp)
        out_len = s["out_len"] + emit
        stop = jnp.any(token[:, None] == stop_ids[None], axis=-1) & emit
        done = s["done"] | stop
        seg_logp = seg_logp + jnp.where(emit & in_seg, logq, 0.0)
        seg_len = seg_len + (emit & in_seg)
        capped = (max_segment > 0) & (seg_len >= max_segment)  # max_segment 0 = no cap
        ends = is_punct[token] | stop | capped | (out_len >= max_new)
        trial_done = trial_done | (emit & in_seg & ends)

        # 3. One forward step for every row; idle rows write a padding slot and keep their state.
        logits, cache = spec.step(
            params, token[:, None], s["pos"][:, None], s["cache"], emit[:, None]
        )
        next_logits = jnp.where(emit[:, None], logits[:, 0], s["next_logits"])
        s = dict(
            s,
            it=s["it"] + 1,
            cache=cache,
            next_logits=next_logits,
            pos=s["pos"] + emit,
            done=done,
            out_tokens=out_tokens,
            out_logp=out_logp,
            out_len=out_len,
            seg_active=seg_active,
            seg_trials=seg_trials,
            trial_done=trial_done,
            seg_logp=seg_logp,
            seg_len=seg_len,
            segments=s["segments"] + start,
        )

        # 4. Segments whose trials have all finished: keep the lowest-perplexity trial.
        all_done = jnp.all((trial_done | s["done"]).reshape(n_prompts, m), axis=1)
        which = seg_active & all_done
        return jax.lax.cond(jnp.any(which), lambda x: resolve(x, which), lambda x: x, s)

    state = jax.lax.while_loop(cond, body, state)
    state = resolve(state, state["seg_active"])  # a segment cut by the length limit
    lead = jnp.arange(n_prompts) * m
    return {
        "tokens": state["out_tokens"][lead],
        "logprobs": state["out_logp"][lead],
        "lengths": state["out_len"][lead],
        "segments": state["segments"],
    }


def generate(
    lm,
    prompts,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    max_trials: int = 10,
    h_low: float = 0.01,
    h_high: float = 1.5,
    max_segment: int | None = None,
    max_steps: int | None = None,
    batch_size: int = 8,
    progress: bool | None = None,
) -> Generation:
    """CNTP generation for ragged prompts (see the module docstring).

    Args:
      lm: an `introspect.models.LM`.
      prompts: list of token-id lists.
      max_new_tokens: tokens kept per prompt.
      temperature, top_p, top_k: sampling of every trial (temperature must be > 0).
      seed: row i's randomness depends on (seed, i) only; max_trials = 1 reproduces
        `lm.generate(..., temperature, seed=seed)` token for token.
      max_trials: N_max. Each prompt uses max_trials rows of the batch.
      h_low, h_high: entropy range (nats) mapped linearly onto 1..N_max trials.
      max_segment: an optional cap on a trial's length in tokens; None or 0 = no cap (the
        authors': a trial runs to a punctuation token, a stop token or max_new_tokens).
      max_steps: loop bound including idle steps (default 2 * max_new_tokens, bucketed). A
        finished trial idles while a longer one of the same segment runs, so a row can reach
        this bound before max_new_tokens (its text is then cut); raise it if that happens.
      batch_size: prompts per compiled call (the batch holds batch_size * max_trials rows).
        Under the LM's mesh the prompts of a call are split over "data" (each prompt's trials
        stay on its device) and the parameters keep their tensor-parallel layout.
      progress: show a progress bar (default: when there is more than one call).
    Returns:
      a `Generation` (tokens, logprobs, texts, finish_reasons); `stats` holds {"segments": [n]
      multi-trial segments per prompt}.
    """
    prompts = lm.check_ids(prompts, "prompts")
    if temperature <= 0:
        raise ValueError(f"CNTP samples its trials: temperature must be > 0, got {temperature}")
    if max_trials < 1:
        raise ValueError(f"max_trials must be >= 1, got {max_trials}")
    if not h_high > h_low:
        raise ValueError(f"h_high ({h_high}) must exceed h_low ({h_low})")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if max_segment is None:
        max_segment = 0
    if max_segment < 0:
        raise ValueError(f"max_segment must be None, 0 (no cap) or >= 1, got {max_segment}")
    lm.check_context(prompts, max_new_tokens)
    num_new = next_power_of_two(max_new_tokens, 8)
    steps = next_power_of_two(max_steps or 2 * max_new_tokens, 8)
    spec = CNTPSpec(
        DecoderStep(lm.config, lm.dtype), num_new, steps, max_trials, top_k > 0 or top_p < 1.0
    )
    is_punct = _punct_cache(lm.tokenizer, lm.config.vocab_size)
    stop_ids, pad_id = lm.stop_and_pad()
    base = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()

    def run(chunk):
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, jnp.asarray(chunk.row_ids))
        out = _cntp_decode(
            lm.params,
            *lm.runner.place(chunk.tokens, chunk.valid, keys, chunk.active),
            np.int32(max_new_tokens),
            np.float32(temperature),
            np.int32(top_k),
            np.float32(top_p),
            stop_ids,
            np.int32(pad_id),
            is_punct,
            np.float32(h_low),
            np.float32(h_high),
            np.int32(max_segment),
            spec=spec,
        )
        out = lm.runner.fetch(out)  # all hosts' rows on a multi-process mesh
        rows = []
        for r in range(len(chunk.indices)):
            n = int(out["lengths"][r])
            rows.append((out["tokens"][r, :n].tolist(), out["logprobs"][r, :n], out["segments"][r]))
        return rows

    results = lm.runner.map(
        prompts,
        run,
        batch_size=batch_size,
        pad_id=pad_id,
        desc="cntp",
        progress=progress,
        count=lambda row: len(row[0]),
    )
    toks = [r[0] for r in results]
    texts, finish = lm.texts_and_finish(toks, stop_ids)
    return Generation(
        tokens=toks,
        logprobs=[r[1] for r in results],
        texts=texts,
        finish_reasons=finish,
        stats={"segments": [np.array([r[2]]) for r in results]},
        seconds=time.perf_counter() - t0,
    )


@functools.lru_cache(maxsize=8)
def _punct_cache(tokenizer, vocab_size):
    return punctuation_mask(tokenizer, vocab_size)
