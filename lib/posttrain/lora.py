"""LoRA adapters for the post-training trainers (SFT, DPO, GRPO): W + (alpha / rank) A B.

    cfg = posttrain.grpo_config()
    cfg.lora.rank = 8                          # 0 = full fine-tuning (the default)
    result = posttrain.train_grpo(lm, prompts, examples, cfg, workdir=DIR)
    tuned = lm.with_params(posttrain.lora.merged(result.params))   # LM layout

The trainable state is {"base": the LM's parameters, "lora": adapters}: the adapters mirror the
base tree at each target kernel W [in, out] with {"a": [in, rank], "b": [rank, out]}; A starts
Gaussian with std 1 / rank (B at 0, so training starts at the base model), as in the LoRA
paper (Hu et al. 2021; peft initialises A Kaiming-uniform instead). The base is frozen twice:
`stop_gradient` in the forward (no weight gradients are computed for it) and the optimiser's
`frozen` patterns (no update, no Adam moments). The forward merges W + (alpha / rank) A B per
target kernel each step, the usual functional-JAX formulation; it materialises one extra copy of
each target kernel at a time, not of the model. The base travels in the checkpoint with the
adapters (a resumed run needs nothing else); `merged` gives the full parameters for `LM`,
generation and the confidence benchmark.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from introspect import sharding

# The frozen part of a LoRA train state, as `train.optimizer.frozen` patterns: the base and
# the scale alpha / rank.
FROZEN = ("^base/", "^lora/scale$")


def lora_config() -> ml_collections.ConfigDict:
    """LoRA fields of the post-training configs (`config.lora`)."""
    c = ml_collections.ConfigDict()
    # Adapter rank; 0 = full fine-tuning.
    c.rank = 0
    # Scale alpha: the update is (alpha / rank) A B.
    c.alpha = 16.0
    # Regular expressions searched in kernel paths ("layers_3/attn/q_proj/kernel"): the kernels
    # that get adapters. Default: the attention query and value projections (the LoRA paper's).
    c.targets = (r"attn/(q_proj|v_proj)/kernel$",)
    return c


def enabled(config) -> bool:
    """Whether `config.lora` (absent = off) asks for adapters."""
    lora = config.get("lora") if hasattr(config, "get") else None
    return lora is not None and int(lora.rank) > 0


def is_lora(params) -> bool:
    """Whether `params` is a LoRA train state ({"base", "lora"})."""
    return isinstance(params, dict) and set(params) == {"base", "lora"}


def check(lora, params) -> None:
    """ValueError naming the field: rank, alpha or targets that match no 2-D kernel."""
    if int(lora.rank) < 0:
        raise ValueError(f"config.lora.rank must be >= 0 (0 = off), got {lora.rank}")
    if not float(lora.alpha) > 0:
        raise ValueError(f"config.lora.alpha must be > 0, got {lora.alpha}")
    if int(lora.rank) > 0 and not _targets(params, lora.targets):
        raise ValueError(
            f"config.lora.targets {tuple(lora.targets)} match no 2-D kernel of the model "
            "(paths look like 'layers_0/attn/q_proj/kernel')"
        )


def _targets(params, patterns) -> list[str]:
    out = []
    for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = sharding.path_name(path)
        if jnp.ndim(x) == 2 and any(re.search(p, name) for p in patterns):
            out.append(name)
    return out


def init(rng: jax.Array, params, lora) -> dict[str, Any]:
    """The LoRA train state {"base": params, "lora": adapters} (B = 0: the base model)."""
    check(lora, params)
    r = int(lora.rank)
    names = set(_targets(params, lora.targets))
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    keys = jax.random.split(rng, len(leaves))
    adapters: dict = {}
    for key, (path, w) in zip(keys, leaves, strict=True):
        name = sharding.path_name(path)
        if name not in names:
            continue
        node = adapters
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = {
            "a": jax.random.normal(key, (w.shape[0], r), jnp.float32).astype(w.dtype) / r,
            "b": jnp.zeros((r, w.shape[1]), w.dtype),
        }
    return {"base": params, "lora": {"scale": jnp.float32(float(lora.alpha) / r), **adapters}}


def merged(params):
    """Full parameters in the LM's layout: W + scale A B at each adapted kernel (the base
    without gradient); a non-LoRA tree is returned as is."""
    if not is_lora(params):
        return params
    adapters = params["lora"]
    scale = jax.lax.stop_gradient(adapters["scale"])

    def merge(base, node):
        if isinstance(node, dict) and set(node) == {"a", "b"}:
            return base + (scale * (node["a"] @ node["b"])).astype(base.dtype)
        return {k: merge(base[k], node[k]) if k in node else base[k] for k in base}

    base = jax.lax.stop_gradient(params["base"])
    return merge(base, {k: v for k, v in adapters.items() if k != "scale"})


def tuned(lm, result):
    """`lm` with a post-training run's parameters (a TrainResult or its params; LoRA merged)."""
    params = getattr(result, "params", result)
    return lm.with_params(merged(params))


def trainable_init(lm, config):
    """init_fn for the loop: the LM's parameters, or the LoRA state when config.lora.rank > 0."""
    if not enabled(config):
        return lambda rng: lm.params
    check(config.lora, lm.params)
    return lambda rng: init(rng, lm.params, config.lora)


def train_config(config):
    """config.train with LoRA's frozen base added to optimizer.frozen (a copy)."""
    t = ml_collections.ConfigDict(config.train.to_dict())
    if enabled(config):
        t.optimizer.frozen = tuple(t.optimizer.get("frozen", ())) + FROZEN
    return t
