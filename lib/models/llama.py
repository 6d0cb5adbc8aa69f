"""Flax Linen decoder for the Llama family (Llama 2/3, SmolLM2, Mistral, Qwen2/2.5, Qwen3).

The model is used through the pure function `apply(params, tokens, positions, cache, ...)`.

Conventions (the same as Hugging Face transformers, so that parity tests compare like with like):
  * `hidden_states[0]` is the token embedding, `hidden_states[i]` the residual stream after block
    i - 1, and `hidden_states[num_layers]` the output of the final RMSNorm.
  * Ragged batches are LEFT-padded. All rows share one write slot in the KV cache; `valid` marks the
    slots that hold real tokens. Positions (for RoPE) count real tokens only, so a row's output does
    not depend on how much padding it got.
  * A steering intervention adds `scale * vector` to the residual stream output of block `layer`
    (i.e. it shows up in `hidden_states[layer + 1]`) at every position where its mask is true.
  * Attention weights (`apply(..., attention=layers)`, off by default) are transformers'
    `output_attentions`: post-softmax, [batch, heads, query, key], query head h reading key/value
    head h // (num_heads // num_kv_heads); masked (padding, future, outside the sliding window)
    keys weigh exactly 0, and so does every key of a padding query.
"""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from introspect.models.config import ModelConfig, rope_inv_freq

Array = jax.Array


@flax.struct.dataclass
class KVCache:
    """Per-layer key/value cache.

    Attributes:
      k: tuple (one per layer) of [batch, max_len, num_kv_heads, head_dim].
      v: same as k.
      valid: [batch, max_len] bool, slot holds a real (non-padding) token.
      index: [] int32, next slot to write (shared by all rows).
    """

    k: tuple
    v: tuple
    valid: Array
    index: Array

    @classmethod
    def empty(cls, config: ModelConfig, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
        shape = (batch, max_len, config.num_kv_heads, config.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
        return cls(
            k=zeros,
            v=tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers)),
            valid=jnp.zeros((batch, max_len), bool),
            index=jnp.zeros((), jnp.int32),
        )


@flax.struct.dataclass
class Steering:
    """Add `scale * vector` to the residual stream after block `layer`.

    Attributes:
      vector: [hidden] or [batch, hidden] direction.
      scale: [] or [batch] multiplier.
      layer: block index (static).
      mask: optional [batch, length] bool, positions to steer (default: all).
    """

    vector: Array
    scale: Array
    layer: int = flax.struct.field(pytree_node=False)
    mask: Array | None = None


@flax.struct.dataclass
class Replace:
    """Replace the residual stream after block `layer` by `fn(args, x)` (x: [batch, length,
    hidden] -> same shape), e.g. a sparse autoencoder's reconstruction; positions where `mask`
    is False keep x.

    Attributes:
      args: a pytree passed to fn (traced: e.g. the SAE's params).
      fn: (args, x) -> x' (static: a new function object compiles a new program).
      layer: block index (static).
      mask: optional [batch, length] bool, positions to replace (default: all).
    """

    args: Any
    fn: Any = flax.struct.field(pytree_node=False)
    layer: int = flax.struct.field(pytree_node=False)
    mask: Array | None = None


class RMSNorm(nn.Module):
    eps: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (x32 * scale).astype(self.dtype)


def apply_rope(x: Array, positions: Array, inv_freq: np.ndarray) -> Array:
    """Rotate-half RoPE. x: [batch, length, heads, head_dim]; positions: [batch, length]."""
    angles = positions[..., None].astype(jnp.float32) * jnp.asarray(inv_freq, jnp.float32)
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


class Attention(nn.Module):
    config: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x, positions, key_valid, k_cache=None, v_cache=None, index=None, weights=False
    ):
        cfg = self.config
        b, t, _ = x.shape
        dense = lambda n, bias, name: nn.Dense(n, use_bias=bias, dtype=self.dtype, name=name)
        q = dense(cfg.num_heads * cfg.head_dim, cfg.qkv_bias, "q_proj")(x)
        k = dense(cfg.num_kv_heads * cfg.head_dim, cfg.qkv_bias, "k_proj")(x)
        v = dense(cfg.num_kv_heads * cfg.head_dim, cfg.qkv_bias, "v_proj")(x)
        q = q.reshape(b, t, cfg.num_heads, cfg.head_dim)
        k = k.reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        v = v.reshape(b, t, cfg.num_kv_heads, cfg.head_dim)
        if cfg.qk_norm:
            q = RMSNorm(cfg.rms_norm_eps, self.dtype, name="q_norm")(q)
            k = RMSNorm(cfg.rms_norm_eps, self.dtype, name="k_norm")(k)
        inv_freq = rope_inv_freq(cfg)
        q = apply_rope(q, positions, inv_freq)
        k = apply_rope(k, positions, inv_freq)

        if k_cache is None:  # Full-sequence attention over the given tokens.
            slot_q = jnp.arange(t)
            slot_k = slot_q
        else:  # Write this chunk at slot `index`, attend over the whole cache.
            k_cache = jax.lax.dynamic_update_slice(
                k_cache, k.astype(k_cache.dtype), (0, index, 0, 0)
            )
            v_cache = jax.lax.dynamic_update_slice(
                v_cache, v.astype(v_cache.dtype), (0, index, 0, 0)
            )
            k, v = k_cache, v_cache
            slot_q = index + jnp.arange(t)
            slot_k = jnp.arange(k.shape[1])
        # [batch, q, k] mask: causal in slot space (left padding leaves no gaps between real tokens)
        mask = key_valid[:, None, :] & (slot_k[None, None, :] <= slot_q[None, :, None])
        if cfg.sliding_window is not None:
            mask &= slot_q[None, :, None] - slot_k[None, None, :] < cfg.sliding_window

        groups = cfg.num_heads // cfg.num_kv_heads
        q = q.reshape(b, t, cfg.num_kv_heads, groups, cfg.head_dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
        scores = scores / np.sqrt(cfg.head_dim).astype(np.float32)
        scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
        probs32 = jax.nn.softmax(scores, axis=-1)
        probs = probs32.astype(v.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, -1)
        out = nn.Dense(cfg.hidden_size, use_bias=False, dtype=self.dtype, name="o_proj")(out)
        if not weights:  # static: the program without the request computes nothing more
            return out, k_cache, v_cache, None
        # [batch, heads, q, k] float32; a fully masked (padding) query row is 0, not uniform.
        w = jnp.where(mask[:, None, None], probs32, 0.0)
        return out, k_cache, v_cache, w.reshape(b, cfg.num_heads, t, -1)


class MLP(nn.Module):
    config: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        dense = lambda n, name: nn.Dense(n, use_bias=False, dtype=self.dtype, name=name)
        gate = dense(self.config.intermediate_size, "gate_proj")(x)
        up = dense(self.config.intermediate_size, "up_proj")(x)
        return dense(self.config.hidden_size, "down_proj")(nn.silu(gate) * up)


class Block(nn.Module):
    config: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x, positions, key_valid, k_cache=None, v_cache=None, index=None, weights=False
    ):
        eps = self.config.rms_norm_eps
        h = RMSNorm(eps, self.dtype, name="attn_norm")(x)
        h, k_cache, v_cache, w = Attention(self.config, self.dtype, name="attn")(
            h, positions, key_valid, k_cache, v_cache, index, weights
        )
        x = x + h
        x = x + MLP(self.config, self.dtype, name="mlp")(
            RMSNorm(eps, self.dtype, name="mlp_norm")(x)
        )
        return x, k_cache, v_cache, w


class Decoder(nn.Module):
    """The decoder. Call it through `apply` (below), which documents the arguments."""

    config: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        tokens,
        positions,
        valid,
        cache=None,
        *,
        capture=None,
        steering=None,
        last_only=False,
        with_logits=True,
        replace=None,
        attention=None,
        attention_heads=None,
    ):
        cfg = self.config
        _check_attention(cfg, attention, attention_heads)
        embed = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=self.dtype, name="embed")
        x = embed(tokens)
        if cache is None:
            key_valid = valid
        else:
            key_valid = jax.lax.dynamic_update_slice(cache.valid, valid, (0, cache.index))
        hidden = [x]
        new_k, new_v = [], []
        weights = {}
        for i in range(cfg.num_layers):
            kc = vc = None
            if cache is not None:
                kc, vc = cache.k[i], cache.v[i]
            want = attention is not None and i in attention
            x, kc, vc, w = Block(cfg, self.dtype, name=f"layers_{i}")(
                x, positions, key_valid, kc, vc, None if cache is None else cache.index, want
            )
            if want:
                weights[i] = w
            if steering is not None and steering.layer == i:
                x = x + _steering_delta(steering, x)
            if replace is not None and replace.layer == i:
                new = replace.fn(replace.args, x).astype(x.dtype)
                x = new if replace.mask is None else jnp.where(replace.mask[..., None], new, x)
            new_k.append(kc)
            new_v.append(vc)
            if i < cfg.num_layers - 1:
                hidden.append(x)
        tail = _tail(last_only)
        if tail:
            x = x[:, -tail:]
        x = RMSNorm(cfg.rms_norm_eps, self.dtype, name="final_norm")(x)
        hidden.append(x)
        if not with_logits:  # features only: skip the [batch, length, vocab] head
            logits = None
        elif cfg.tie_embeddings:
            logits = embed.attend(x)
        else:
            logits = nn.Dense(cfg.vocab_size, use_bias=False, dtype=self.dtype, name="lm_head")(x)
        new_cache = None
        if cache is not None:
            t = tokens.shape[1]
            new_cache = KVCache(tuple(new_k), tuple(new_v), key_valid, cache.index + t)
        hs = None
        if capture is not None:
            # The final norm output covers the last `tail` positions only; keep shapes uniform.
            if tail:
                hidden = [h[:, -tail:] for h in hidden]
            hs = jnp.stack([hidden[i] for i in capture])
        logits = None if logits is None else logits.astype(jnp.float32)
        if attention is None:
            return logits, hs, new_cache
        att = jnp.stack([weights[i] for i in attention], axis=1)  # [batch, layers, heads, q, k]
        if attention_heads is not None:
            att = att[:, :, np.asarray(attention_heads, np.int32)]
        if tail:
            att = att[:, :, :, -tail:]
        return logits, hs, new_cache, att


def _check_attention(config: ModelConfig, layers, heads) -> None:
    """ValueError unless `layers` (block indices) and `heads` are tuples of in-range ints."""
    for what, idx, n in (
        ("attention", layers, config.num_layers),
        ("attention_heads", heads, config.num_heads),
    ):
        if idx is None:
            continue
        if not isinstance(idx, tuple) or not idx:
            raise ValueError(f"{what} must be a non-empty tuple of ints (static), got {idx!r}")
        bad = [i for i in idx if not isinstance(i, int | np.integer) or not 0 <= i < n]
        if bad:
            raise ValueError(f"{what} {bad} out of range: the model has {n} (0 .. {n - 1})")
    if heads is not None and layers is None:
        raise ValueError("attention_heads needs attention (the layers)")


def _tail(last_only: bool | int) -> int:
    """`last_only` as a number of final positions: False/0 = all (0), True = 1, n = n."""
    if isinstance(last_only, bool):
        return int(last_only)
    if not isinstance(last_only, int) or last_only < 0:
        raise ValueError(f"last_only must be a bool or a non-negative int, got {last_only!r}")
    return last_only


def _steering_delta(steering: Steering, x: Array) -> Array:
    vec = jnp.asarray(steering.vector, x.dtype)
    scale = jnp.asarray(steering.scale, x.dtype)
    vec = vec[None, None, :] if vec.ndim == 1 else vec[:, None, :]
    scale = scale if scale.ndim == 0 else scale[:, None, None]
    delta = scale * vec
    if steering.mask is not None:
        delta = jnp.where(steering.mask[..., None], delta, 0)
    return jnp.broadcast_to(delta, x.shape)


def apply(
    params,
    tokens: Array,
    positions: Array,
    cache: KVCache | None = None,
    *,
    config: ModelConfig,
    valid: Array | None = None,
    capture: tuple[int, ...] | None = None,
    steering: Steering | None = None,
    last_only: bool | int = False,
    with_logits: bool = True,
    dtype=jnp.float32,
    replace: Replace | None = None,
    attention: tuple[int, ...] | None = None,
    attention_heads: tuple[int, ...] | None = None,
):
    """Pure forward pass.

    Args:
      params: the decoder's parameter tree (without the {"params": ...} wrapper).
      tokens: [batch, length] int32 token ids (left-padded when ragged).
      positions: [batch, length] int32 RoPE positions (count of real tokens before each token).
      cache: a KVCache to extend (prefill or decode), or None for a plain full-sequence pass.
      config: the architecture (static).
      valid: [batch, length] bool, False at padding; default all True.
      capture: indices into hidden_states (0 = embeddings ... num_layers = final-norm output) to
        return, or None for none.
      steering: an optional residual-stream intervention.
      last_only: compute logits (and captured states) for the last position only (True) or
        the last n positions (an int n; static).
      with_logits: False skips the LM head (logits None), for hidden-state features.
      dtype: compute dtype of activations.
      replace: an optional residual-stream substitution (`Replace`), after the steering of the
        same block.
      attention: block indices (static tuple, 0 .. num_layers - 1) whose attention weights to
        return, or None (the default: nothing is returned and the program is the one without
        the request).
      attention_heads: with attention, the query heads to keep (static tuple), None = all.
    Returns:
      (logits [batch, length or 1 (or n), vocab] float32,
       hidden [len(capture), batch, length or 1, hidden] or None (n in place of 1 for
       last_only=n),
       the updated KVCache or None),
      and with `attention` a fourth entry: the post-softmax weights [batch, len(attention),
      heads (or len(attention_heads)), length or 1 (or n): the queries, keys] float32 (keys: the
      given tokens, or every cache slot with a cache; masked keys 0). Layer and head order as
      given.
    """
    if valid is None:
        valid = jnp.ones(tokens.shape, bool)
    return Decoder(config, dtype).apply(
        {"params": params},
        tokens,
        positions,
        valid,
        cache,
        capture=capture,
        steering=steering,
        last_only=last_only,
        with_logits=with_logits,
        replace=replace,
        attention=attention,
        attention_heads=attention_heads,
    )


def param_shapes(config: ModelConfig) -> dict:
    """The parameter tree (jax.ShapeDtypeStruct leaves) for `config`, without allocating."""
    tokens = jnp.zeros((1, 1), jnp.int32)
    variables = jax.eval_shape(
        lambda: Decoder(config).init(jax.random.PRNGKey(0), tokens, tokens, tokens == 0)
    )
    return variables["params"]
