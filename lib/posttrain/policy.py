"""The policy: the Flax LM's parameters as a trainable pytree, and its token log-probs.

Sequences are laid out for a fixed-shape train step: the prompt left-padded to
`prompt_len` tokens, the response right after it, padded to `response_len`. Row i's tokens
are [pad ... pad, prompt_i, response_i, pad ... pad]; `valid` marks the real tokens and the
positions count real tokens only (left padding does not shift RoPE), exactly as in
`LM.forward`. Target t of the log-prob arrays is token t + 1: the response tokens are targets
prompt_len - 1 .. prompt_len - 1 + len(response_i) - 1 (`token_mask`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from introspect import train as train_lib
from introspect.models import llama
from introspect.posttrain import lora


def pack(
    prompts: Sequence[Sequence[int]],
    responses: Sequence[Sequence[int]],
    *,
    prompt_len: int,
    response_len: int,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Fixed-shape arrays of (prompt, response) rows.

    Returns:
      {"tokens": [n, prompt_len + response_len] int32, "valid": same bool,
       "token_mask": [n, prompt_len + response_len - 1] bool (response targets)}.
    Raises:
      ValueError: a prompt longer than prompt_len or a response longer than response_len.
    """
    n, width = len(prompts), prompt_len + response_len
    if len(responses) != n:
        raise ValueError(f"got {n} prompts but {len(responses)} responses")
    tokens = np.full((n, width), pad_id, np.int32)
    valid = np.zeros((n, width), bool)
    target = np.zeros((n, width - 1), bool)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if len(p) > prompt_len:
            raise ValueError(
                f"prompt {i} has {len(p)} tokens > prompt_len {prompt_len}; raise "
                "config.max_prompt_tokens or shorten the prompts"
            )
        if len(r) > response_len:
            raise ValueError(f"response {i} has {len(r)} tokens > response_len {response_len}")
        tokens[i, prompt_len - len(p) : prompt_len] = p
        tokens[i, prompt_len : prompt_len + len(r)] = r
        valid[i, prompt_len - len(p) : prompt_len + len(r)] = True
        target[i, prompt_len - 1 : prompt_len - 1 + len(r)] = True
    return {"tokens": tokens, "valid": valid, "token_mask": target}


def place_targets(values: Sequence[np.ndarray], *, prompt_len: int, width: int) -> np.ndarray:
    """Per-response-token values (e.g. the sampler's log-probs) in the [n, width - 1] target
    layout of `pack`."""
    out = np.zeros((len(values), width - 1), np.float32)
    for i, v in enumerate(values):
        out[i, prompt_len - 1 : prompt_len - 1 + len(v)] = np.asarray(v, np.float32)
    return out


def fixed_length(limit, seqs) -> int:
    """A fixed length for `pack`: `limit`, or the longest of `seqs` when limit is 0 (no compute
    spent on padding)."""
    return int(limit) if int(limit) > 0 else max(len(s) for s in seqs)


def logits(params, tokens, valid, *, config, dtype=jnp.float32):
    """[batch, length, vocab] next-token logits of the LM with `params` (RoPE positions count
    real tokens only, as `LM.forward`). `params`: the LM's parameters or a LoRA train state
    (`lora.merged` is applied first; the base gets no gradient)."""
    params = lora.merged(params)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
    out, _, _ = llama.apply(
        params, tokens, positions, config=config, valid=valid, capture=None, dtype=dtype
    )
    return out


def logprobs_of(logits_, tokens):
    """([batch, length - 1] log p(tokens[:, t + 1]) from logits_[:, t], [same] entropy of each
    of those next-token distributions)."""
    logp = jax.nn.log_softmax(logits_[:, :-1].astype(jnp.float32), axis=-1)
    chosen = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return chosen, entropy


def token_logprobs(params, tokens, valid, *, config, dtype=jnp.float32):
    """[batch, length - 1] log p(tokens[:, t + 1] | tokens[:, :t + 1]) under the LM with
    `params`, and the entropy of each of those next-token distributions (same shape)."""
    return logprobs_of(logits(params, tokens, valid, config=config, dtype=dtype), tokens)


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def sequence_logprobs(params, tokens, valid, mask, *, config, dtype=jnp.float32):
    """[batch] sum of the log-probs of the target tokens `mask` [batch, length - 1] selects
    (compiled once per shape: host-side passes over a dataset, e.g. a frozen reference)."""
    lp, _ = token_logprobs(params, tokens, valid, config=config, dtype=dtype)
    return jnp.sum(jnp.where(mask, lp, 0), axis=1)


def train_config(
    *, num_steps: int, batch_size: int, lr: float, log_every: int, checkpoint_every: int,
    keep: int, tensorboard: bool = False,
):  # fmt: skip
    """The loop's config for fine-tuning the LM: Adam at `lr`, gradients clipped to norm 1."""
    t = train_lib.default_config()
    t.num_steps = num_steps
    t.batch_size = batch_size
    t.optimizer.name = "adam"
    t.optimizer.lr = lr
    t.optimizer.clip_norm = 1.0
    t.log_every = log_every
    t.checkpoint.every_steps = checkpoint_every
    t.checkpoint.keep = keep
    t.tensorboard = tensorboard
    return t
