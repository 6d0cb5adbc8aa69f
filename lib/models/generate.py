"""Compiled generation and teacher-forced scoring.

The whole decode loop is one `jax.lax.while_loop` inside one `jax.jit`: no Python dispatch per
token. Shapes are bucketed (batch and new-token count rounded up to powers of two, prompt length
to `runner.length_bucket`), so a program is compiled once per bucket and reused across calls.

Per-step statistics (`STAT_NAMES`) are computed from the full-vocabulary distribution inside the
loop, so confidence signals get what they need without storing [steps, vocab] logits.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from introspect.models.config import ModelConfig
from introspect.models.llama import KVCache, Steering, apply
from introspect.signals.stats import STAT_NAMES, step_statistics


@dataclasses.dataclass(frozen=True)
class DecodeSpec:
    """Static (compile-time) settings of one decode program."""

    config: ModelConfig
    num_new: int  # bucketed maximum number of new tokens (buffer length)
    sample: bool  # False = greedy
    filtered: bool  # apply top-k / top-p filtering
    want_stats: bool
    hidden_layers: tuple | None  # hidden_states indices captured during decoding
    num_hidden_slots: int  # how many steps' hidden states are kept
    steer_layer: int | None
    steer_prompt: bool  # steering also applies to the prompt tokens
    dtype: str = "float32"
    # Online early exit (LYNX): hidden_states indices whose states at a cue token feed the
    # probe, and the probe (a hashable Flax module, sigmoid(apply(variables, x)) = P(exit ok)).
    exit_layers: tuple | None = None
    exit_probe: object = None
    # Attention records: block indices (and query heads, None = all) whose weight of each step's
    # query on its own key (`decode`'s "attention") is kept; None = off (no extra computation).
    attention_layers: tuple | None = None
    attention_heads: tuple | None = None


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def prefill(params, tokens, valid, *, config: ModelConfig, dtype: str = "float32") -> KVCache:
    """The KV cache of left-padded prefixes, for many continuations to share (`decode`'s
    `prefix`).

    Args:
      tokens: [num_prefixes, length] int32, left-padded.
      valid: [num_prefixes, length] bool, False at padding.
    Returns:
      KVCache with `length` slots (index = length).
    """
    batch, length = tokens.shape
    cache = KVCache.empty(config, batch, length, jnp.dtype(dtype))
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
    _, _, cache = apply(
        params,
        tokens,
        positions,
        cache,
        config=config,
        valid=valid,
        last_only=True,
        with_logits=False,
        dtype=jnp.dtype(dtype),
    )
    return cache


def _continue_prefix(prefix, extra: int):
    """(cache, real tokens before the prompt) for rows that continue prefilled prefixes.

    Row r reuses prefix `rows[r]`'s cache, keeping slots < `keep_slot[r]` (the first `keep[r]`
    real tokens) and masking the rest, followed by `extra` empty slots. Positions continue from
    `keep[r]`, and the attention mask skips masked slots, so a row computes exactly what a
    fresh prefill of (prefix[:keep] + prompt) would (up to float rounding)."""
    pc = prefix["cache"]
    rows = prefix["rows"]
    slots = pc.valid.shape[1]
    grow = lambda a: jnp.pad(a[rows], ((0, 0), (0, extra), (0, 0), (0, 0)))
    valid = pc.valid[rows] & (jnp.arange(slots)[None, :] < prefix["keep_slot"][:, None])
    cache = KVCache(
        k=tuple(grow(a) for a in pc.k),
        v=tuple(grow(a) for a in pc.v),
        valid=jnp.pad(valid, ((0, 0), (0, extra))),
        index=jnp.int32(slots),
    )
    return cache, prefix["keep"].astype(jnp.int32)


def filter_logits(logits: jax.Array, top_k: jax.Array, top_p: jax.Array) -> jax.Array:
    """Top-k then top-p (nucleus) filtering with traced k and p.

    Args:
      logits: [batch, vocab].
      top_k: [] int, 0 = off.
      top_p: [] float, 1.0 = off. Keeps the smallest set of most likely tokens whose mass is >= p.
    Returns:
      [batch, vocab] logits with removed entries set to -inf.
    """
    vocab = logits.shape[-1]
    desc = -jnp.sort(-logits, axis=-1)
    kth = jnp.take_along_axis(desc, jnp.clip(top_k - 1, 0, vocab - 1)[None, None], axis=-1)
    kth = jnp.where(top_k > 0, kth, -jnp.inf)
    desc = jnp.where(desc >= kth, desc, -jnp.inf)
    probs = jax.nn.softmax(desc, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < top_p
    threshold = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
    threshold = jnp.maximum(threshold, kth)
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def sample_tokens(logits, keys, *, sample: bool, filtered: bool, temperature, top_k, top_p):
    """Pick one token per row and its log-probability under the untempered distribution.

    Args:
      logits: [batch, vocab] float32.
      keys: [batch, 2] PRNG keys, one per row (already folded with the step).
      sample: False = greedy (keys unused).
      filtered: apply top-k / top-p (`filter_logits`) before sampling.
    Returns:
      (token [batch] int32, log p(token) [batch]).
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    if sample:
        scaled = logits / jnp.maximum(temperature, 1e-6)
        if filtered:
            scaled = filter_logits(scaled, top_k, top_p)
        token = jax.vmap(jax.random.categorical)(keys, scaled)
    else:
        token = jnp.argmax(logits, axis=-1)
    token = token.astype(jnp.int32)
    return token, jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]


def _own_slot_weight(out, cache):
    """[batch, layers, heads] weight that the last query of an `apply` with an attention
    request puts on its own key (the token fed at this step: cache slot index - 1); None
    without the request."""
    if len(out) == 3:
        return None
    w = out[3][:, :, :, -1]  # [batch, layers, heads, slots]
    return jax.lax.dynamic_index_in_dim(w, cache.index - 1, axis=3, keepdims=False)


def _choose(spec: DecodeSpec, logits, step, row_keys, temperature, top_k, top_p, suppress=None):
    """Pick the next token for every row at `step`. logits: [batch, vocab] float32; suppress:
    None or [vocab] bool, ids that are never chosen (their logits -inf before everything else:
    log-probs and stats are those of the renormalised rest, e.g. ZIP-RC's reserved slice)."""
    if suppress is not None:
        logits = jnp.where(suppress[None, :], -jnp.inf, logits)
    keys = jax.vmap(lambda k: jax.random.fold_in(k, step))(row_keys)
    token, token_logp = sample_tokens(
        logits,
        keys,
        sample=spec.sample,
        filtered=spec.filtered,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    stats = step_statistics(logits) if spec.want_stats else None
    return token, token_logp, stats


@functools.partial(jax.jit, static_argnames=("spec",))
def decode(
    params,
    tokens,
    valid,
    row_keys,
    row_active,
    max_new,
    temperature,
    top_k,
    top_p,
    stop_ids,
    ignore_eos,
    pad_id,
    hidden_slot_of_step,
    steer_vector,
    steer_scale,
    exit_args=None,
    prefix=None,
    suppress=None,
    *,
    spec: DecodeSpec,
):
    """Prefill + compiled decode loop.

    Args:
      params: decoder parameters.
      tokens: [batch, prompt_len] int32, left-padded prompts.
      valid: [batch, prompt_len] bool, False at padding.
      row_keys: [batch, 2] uint32 PRNG keys, one per prompt (so sampling does not depend on how
        prompts were batched or sharded).
      row_active: [batch] bool, False for rows that only pad the batch bucket.
      max_new: [] int32, stop after this many tokens (<= spec.num_new).
      temperature, top_k, top_p: sampling settings (traced: no recompilation when they change).
      stop_ids: [num_stop] int32 ids that end a row (EOS and user stop tokens).
      ignore_eos: [] bool, never stop early (benchmarks).
      pad_id: [] int32 written after a row has stopped.
      hidden_slot_of_step: [num_new] int32, buffer slot for each step's hidden state or -1.
      steer_vector: [hidden] or [batch, hidden]; steer_scale: [] or [batch] (ignored when
        spec.steer_layer is None).
      exit_args: with spec.exit_layers, the online exit rule's arrays: {"next_state",
        "hit"} [states, vocab] cue-automaton tables (`introspect.probes.cues`), "variables"
        (the probe's), "q0", "q1" [] conformal thresholds. A generated token that completes a
        cue is fed to the model at the next step; the probe then reads its hidden states
        (exit_layers, concatenated) and the row ends there when the prediction set is {1}
        (`conformal.exit_decision`): nothing more is generated for it, and the loop stops once
        every row has ended. A cue on a row's last token (stop token or budget) is never
        evaluated.
      prefix: optional prefix KV reuse: {"cache": a `prefill` KVCache [num_prefixes, slots],
        "rows": [batch] int32 prefix of each row, "keep": [batch] int32 real tokens of it
        the row keeps, "keep_slot": [batch] int32 slot after the last kept one}. Row r then
        continues prefix[rows[r]][:keep[r]] with its prompt (`_continue_prefix`).
      suppress: optional [vocab] bool, token ids never generated (`_choose`).
      spec: static settings.
    Returns:
      dict with tokens [batch, num_new], logprobs [batch, num_new], lengths [batch], and
      optionally stats [batch, num_new, len(STAT_NAMES)] and hidden [layers, batch, slots, hidden].
      The hidden state of step s is the one the distribution of new token s was computed from
      (step 0: the last prompt token). With an exit rule also exit_step [batch] (index of the
      cue token the row exited at, -1 = none) and cue_probs [batch, num_new] (the probe's
      probability at each evaluated cue token, NaN elsewhere). With spec.attention_layers also
      attention [batch, num_new, layers, heads] float32: at step s the post-softmax weight that
      the query of the forward step producing token s puts on the key of the token fed at that
      step (its own position: token s - 1, the last prompt token for s = 0), per recorded block
      and query head; 0 after a row's end. Steps s >= 1 are the "attention to the previous
      generated token" of RAUQ (`introspect.signals.attention`).
    """
    cfg = spec.config
    dtype = jnp.dtype(spec.dtype)
    batch, prompt_len = tokens.shape
    num_new = spec.num_new
    if prefix is None:
        cache = KVCache.empty(cfg, batch, prompt_len + num_new, dtype)
        offset = jnp.zeros((batch,), jnp.int32)
    else:
        cache, offset = _continue_prefix(prefix, prompt_len + num_new)
    positions = offset[:, None] + jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
    lengths_prompt = offset + jnp.sum(valid, axis=1).astype(jnp.int32)

    def steering(mask):
        if spec.steer_layer is None:
            return None
        return Steering(steer_vector, steer_scale, spec.steer_layer, mask)

    prompt_mask = valid if spec.steer_prompt else jnp.zeros_like(valid)
    keep = tuple(spec.hidden_layers or ())
    exiting = spec.exit_layers is not None
    capture = (keep + tuple(spec.exit_layers or ())) or None

    def split_hidden(hs):
        """(states kept for the caller or None, exit-probe features [batch, L * hidden])."""
        if hs is None:
            return None, None
        kept = hs[: len(keep)] if keep else None
        if not exiting:
            return kept, None
        h = hs[len(keep) :, :, -1]  # [exit layers, batch, hidden]
        return kept, jnp.transpose(h, (1, 0, 2)).reshape(batch, -1).astype(jnp.float32)

    att_kw = {}
    if spec.attention_layers is not None:
        att_kw = {"attention": spec.attention_layers, "attention_heads": spec.attention_heads}
    out = apply(
        params,
        tokens,
        positions,
        cache,
        config=cfg,
        valid=valid,
        capture=capture,
        steering=steering(prompt_mask),
        last_only=True,
        dtype=dtype,
        **att_kw,
    )
    logits, hs, cache = out[:3]
    att = _own_slot_weight(out, cache)
    choose = functools.partial(
        _choose, spec, row_keys=row_keys, temperature=temperature, top_k=top_k, top_p=top_p,
        suppress=suppress,
    )  # fmt: skip
    is_stop = lambda t: jnp.any(t[:, None] == stop_ids[None, :], axis=-1) & ~ignore_eos

    def record(buffers, step, token, logp, stats, hs, att, done):
        out_tokens, out_logp, out_stats, hid, out_att = buffers
        out_tokens = out_tokens.at[:, step].set(jnp.where(done, pad_id, token))
        out_logp = out_logp.at[:, step].set(jnp.where(done, 0.0, logp))
        if stats is not None:
            out_stats = out_stats.at[:, step].set(jnp.where(done[:, None], 0.0, stats))
        if hid is not None:
            slot = hidden_slot_of_step[step]
            hid = jax.lax.cond(
                slot >= 0,
                lambda h: jax.lax.dynamic_update_slice_in_dim(h, hs.astype(h.dtype), slot, axis=2),
                lambda h: h,
                hid,
            )
        if out_att is not None:
            out_att = out_att.at[:, step].set(jnp.where(done[:, None, None], 0.0, att))
        return out_tokens, out_logp, out_stats, hid, out_att

    buffers = (
        jnp.full((batch, num_new), pad_id, jnp.int32),
        jnp.zeros((batch, num_new), jnp.float32),
        jnp.zeros((batch, num_new, len(STAT_NAMES)), jnp.float32) if spec.want_stats else None,
        jnp.zeros(
            (len(spec.hidden_layers), batch, spec.num_hidden_slots, cfg.hidden_size), jnp.float32
        )
        if spec.num_hidden_slots
        else None,
        None if att is None else jnp.zeros((batch, num_new) + att.shape[1:], jnp.float32),
    )
    hs, _ = split_hidden(hs)
    done = ~row_active
    token, logp, stats = choose(logits[:, 0], 0)
    buffers = record(buffers, 0, token, logp, stats, hs, att, done)
    out_len = jnp.where(done, 0, 1).astype(jnp.int32)
    done = done | is_stop(token)

    # Online exit state: cue-automaton state, "the token just generated completed a cue",
    # the exit step and the probe's probability at each evaluated cue.
    if exiting:
        cue_state = exit_args["next_state"][0, token]
        cue_hit = exit_args["hit"][0, token]
        exit_state = (
            cue_state,
            cue_hit,
            jnp.full((batch,), -1, jnp.int32),
            jnp.full((batch, num_new), jnp.nan, jnp.float32),
        )
    else:
        exit_state = ()

    def check_exit(step, feats, done, exit_state):
        """Evaluate the probe where the previous token (step - 1) completed a cue."""
        cue_state, cue_hit, exit_step, cue_probs = exit_state
        p = jax.nn.sigmoid(spec.exit_probe.apply(exit_args["variables"], feats))
        p = p.astype(jnp.float32)
        evaluated = cue_hit & ~done
        fire = evaluated & ((1.0 - p) <= exit_args["q1"]) & ~(p <= exit_args["q0"])
        cue_probs = cue_probs.at[:, step - 1].set(jnp.where(evaluated, p, jnp.nan))
        exit_step = jnp.where(fire, step - 1, exit_step)
        return done | fire, (cue_state, cue_hit, exit_step, cue_probs)

    def follow_cues(token, exit_state):
        cue_state, _, exit_step, cue_probs = exit_state
        nxt = exit_args["next_state"][cue_state, token]
        return nxt, exit_args["hit"][cue_state, token], exit_step, cue_probs

    def cond(state):
        step, _, _, done, _, _, _ = state
        return (step < max_new) & ~jnp.all(done)

    def body(state):
        step, cache, prev, done, out_len, buffers, exit_state = state
        pos = (lengths_prompt + step - 1)[:, None]
        ones = jnp.ones((batch, 1), bool)
        out = apply(
            params,
            prev[:, None],
            pos,
            cache,
            config=cfg,
            valid=ones,
            capture=capture,
            steering=steering(ones),
            dtype=dtype,
            **att_kw,
        )
        logits, hs, cache = out[:3]
        att = _own_slot_weight(out, cache)
        hs, feats = split_hidden(hs)
        if exiting:
            done, exit_state = check_exit(step, feats, done, exit_state)
        token, logp, stats = choose(logits[:, 0], step)
        buffers = record(buffers, step, token, logp, stats, hs, att, done)
        out_len = out_len + (~done).astype(jnp.int32)
        done = done | is_stop(token)
        if exiting:
            exit_state = follow_cues(token, exit_state)
        return step + 1, cache, token, done, out_len, buffers, exit_state

    state = (jnp.int32(1), cache, token, done, out_len, buffers, exit_state)
    _, _, _, _, out_len, buffers, exit_state = jax.lax.while_loop(cond, body, state)
    out_tokens, out_logp, out_stats, hid, out_att = buffers
    result = {"tokens": out_tokens, "logprobs": out_logp, "lengths": out_len}
    if exiting:
        result["exit_step"], result["cue_probs"] = exit_state[2], exit_state[3]
    if out_stats is not None:
        result["stats"] = out_stats
    if hid is not None:
        result["hidden"] = hid
    if out_att is not None:
        result["attention"] = out_att
    return result


@functools.partial(jax.jit, static_argnames=("config", "dtype", "want_stats", "tail"))
def score_tokens(
    params, tokens, valid, targets_mask, *, config, dtype="float32", want_stats=True, tail=None
):
    """Teacher-forced log-probabilities of every token given its prefix.

    Args:
      tokens: [batch, length] int32 (left-padded).
      valid: [batch, length] bool.
      targets_mask: [batch, length] bool, positions whose token is scored (continuations).
      tail: static; when every target lies in the last `tail` positions, the LM head (a
        [.., vocab] projection, the bulk of the cost for short continuations) runs on the last
        tail + 1 positions only. None = all positions.
    Returns:
      dict with logprobs [batch, length] (log p(token_t | tokens_<t), 0 where not a target) and
      stats [batch, length, len(STAT_NAMES)]: statistics of the distribution that predicted token t.
    """
    length = tokens.shape[1]
    n = length if tail is None else min(int(tail) + 1, length)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
    logits, _, _ = apply(
        params,
        tokens,
        positions,
        config=config,
        valid=valid,
        last_only=n if n < length else False,
        dtype=jnp.dtype(dtype),
    )
    # The distribution at position t - 1 predicts token t: logits cover positions
    # [length - n, length), so they predict the tokens at [length - n + 1, length).
    start = length - n + 1
    pred = logits[:, :-1]
    logp = jax.nn.log_softmax(pred, axis=-1)
    tok_logp = jnp.take_along_axis(logp, tokens[:, start:, None], axis=-1)[..., 0]
    mask = targets_mask[:, start:]
    out = {"logprobs": jnp.pad(jnp.where(mask, tok_logp, 0.0), ((0, 0), (start, 0)))}
    if want_stats:
        stats = jnp.where(mask[..., None], step_statistics(pred), 0.0)
        out["stats"] = jnp.pad(stats, ((0, 0), (start, 0), (0, 0)))
    return out
