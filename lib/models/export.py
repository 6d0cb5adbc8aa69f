"""Export a model as a Hugging Face directory (inverse of `load_hf_dir`, `Tokenizer.from_hf_dir`).

    from introspect import models
    lm = models.load("smollm2-135m-instruct")
    models.save_hf(lm, "out/smollm2-hf")           # or params=fine_tuned, dtype="bfloat16"
    models.load("out/smollm2-hf")                  # the same config and parameters
    transformers.AutoModelForCausalLM.from_pretrained("out/smollm2-hf")  # works too

The directory holds:

* `config.json`: transformers' config for the architecture (`model_type`, `architectures`, sizes,
  `head_dim`, `rms_norm_eps`, RoPE as `rope_theta` + `rope_scaling` (transformers 4) and
  `rope_parameters` (transformers 5), `tie_word_embeddings`, `attention_bias`, sliding window,
  token ids, `torch_dtype`/`dtype`). `loaders.hf_config` reads it back to the same `ModelConfig`
  (exceptions below).
* `model.safetensors`: one file, tensors named as in `loaders._HF_NAMES` in PyTorch layout (our
  kernels are [in, out], HF's [out, in]); a tied head is stored once, as the embedding. The Q/K
  rows are already in Hugging Face order (the GGUF loader undid llama.cpp's permutation).
* `tokenizer.json`, `tokenizer_config.json` (chat template, special tokens) and
  `generation_config.json` (BOS/PAD and every end-of-generation id) — `save_tokenizer`.

Round-trip caveats (`models.load(exported)` vs the exported LM):

* "smollm"/"smollm2" architectures are written as transformers' "llama" (the same network), so
  `ModelConfig.architecture` reads back as "llama".
* GGUF `rope_freqs` (`ModelConfig.rope_freq_factors`, Llama 3.x GGUFs) have no config.json field:
  they are written as the linear or Llama-3 `rope_scaling` that gives the same frequencies
  (checked to rtol 1e-5), else NotImplementedError. The loaded config then has `rope_scaling`
  instead of `rope_freq_factors`.
* A GGUF-derived `rope_scaling` tuple reads back sorted by key (the same dict).
* A sliding window on a "llama" model is written as `sliding_window`, which `models.load` reads
  but transformers' Llama ignores.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from introspect import sharding
from introspect.models.config import ModelConfig, rope_inv_freq
from introspect.models.loaders import _HF_NAMES

__all__ = ["EXPORT_DTYPES", "hf_config_dict", "save_hf", "save_tokenizer"]

# dtypes `save_hf` writes (the ones `models.load` computes in).
EXPORT_DTYPES = ("float32", "bfloat16", "float16")

# transformers' class per model_type.
_HF_CLASSES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}

# Where each logical tensor of `loaders._HF_NAMES` lives in the Decoder tree ("{i}": the layer);
# the inverse of `loaders._assemble`. "kernel" leaves are transposed ([in, out] -> [out, in]).
_TREE_PATHS = {
    "embed": ("embed", "embedding"),
    "final_norm": ("final_norm", "scale"),
    "lm_head": ("lm_head", "kernel"),
    "attn_norm": ("layers_{i}", "attn_norm", "scale"),
    "mlp_norm": ("layers_{i}", "mlp_norm", "scale"),
    **{p: ("layers_{i}", "attn", p, "kernel") for p in ("q_proj", "k_proj", "v_proj", "o_proj")},
    **{f"{p}_bias": ("layers_{i}", "attn", p, "bias") for p in ("q_proj", "k_proj", "v_proj")},
    **{n: ("layers_{i}", "attn", n, "scale") for n in ("q_norm", "k_norm")},
    **{p: ("layers_{i}", "mlp", p, "kernel") for p in ("gate_proj", "up_proj", "down_proj")},
}
assert set(_TREE_PATHS) == set(_HF_NAMES), "export._TREE_PATHS must cover loaders._HF_NAMES"


# ----------------------------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------------------------


def _fit_llama3(config: ModelConfig) -> list[tuple]:
    """Candidate Llama-3 `rope_scaling`s whose rule gives `config.rope_freq_factors`."""
    ff = np.asarray(config.rope_freq_factors, np.float64)
    dim = config.head_dim
    wavelen = 2 * np.pi * config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    factor = float(ff.max())
    mid = (ff > 1 + 1e-6) & (ff < factor * (1 - 1e-6))
    # Between the regimes 1 / ff = (1 - s) / factor + s, s = (old / wavelen - low) / (high - low).
    s = (1 / ff[mid] - 1 / factor) / (1 - 1 / factor)
    guesses = []
    if mid.sum() >= 2:  # s is linear in 1 / wavelen: fit it, taking low = 1 (Meta's value)
        a, b = np.polyfit(1 / wavelen[mid], s, 1)
        if b < 0:
            high = 1 - 1 / b
            guesses.append((1.0, high, a * (high - 1)))
    if mid.sum() >= 1:  # Meta's low = 1, high = 4; the first interpolated point gives old
        guesses.append((1.0, 4.0, wavelen[mid][0] * (3 * s[0] + 1)))
    guesses += [(1.0, 4.0, float(old)) for old in (8192, 4096, 16384, 32768, 2048)]

    def snap(x):
        r = round(x, 3)
        return (int(r) if r == int(r) else r) if abs(x - r) <= 1e-5 * max(abs(x), 1.0) else x

    return [
        (
            ("factor", factor),
            ("high_freq_factor", float(snap(high))),
            ("low_freq_factor", low),
            ("original_max_position_embeddings", int(round(old))),
            ("rope_type", "llama3"),
        )
        for low, high, old in guesses
        if old >= 1
    ]


def _rope_scaling(config: ModelConfig) -> dict | None:
    """The `rope_scaling` dict of config.json (None: plain RoPE)."""
    if config.rope_freq_factors is None:
        return config.rope_scaling_dict or None
    want = rope_inv_freq(config)

    def candidates():
        yield None
        yield config.rope_scaling
        yield (("factor", float(config.rope_freq_factors[0])), ("rope_type", "linear"))
        yield from _fit_llama3(config)

    for scaling in candidates():
        trial = dataclasses.replace(config, rope_freq_factors=None, rope_scaling=scaling or None)
        if np.allclose(rope_inv_freq(trial), want, rtol=1e-5, atol=0):
            return dict(scaling) if scaling else None
    raise NotImplementedError(
        "save_hf: this model's GGUF rope_freqs (ModelConfig.rope_freq_factors) match neither "
        "linear nor Llama-3 RoPE scaling, so config.json cannot express them"
    )


def _model_type(config: ModelConfig) -> str:
    arch = config.architecture
    model_type = "llama" if arch in ("smollm", "smollm2") else arch
    if model_type not in _HF_CLASSES:
        raise NotImplementedError(
            f"save_hf: architecture {arch!r} has no Hugging Face export "
            f"(supported: {', '.join(_HF_CLASSES)}, smollm, smollm2)"
        )
    # What hf_config infers from model_type alone must hold for the model.
    if model_type == "qwen2" and not config.qkv_bias:
        raise NotImplementedError(
            "save_hf: a qwen2 model without q/k/v bias cannot be written as a Hugging Face qwen2 "
            "config (transformers' Qwen2 always has the bias)"
        )
    if config.qk_norm != (model_type == "qwen3"):
        raise NotImplementedError(
            f"save_hf: q/k RMSNorm is {'on' if config.qk_norm else 'off'} for a {model_type} "
            "model; Hugging Face configs have it exactly for qwen3"
        )
    return model_type


def hf_config_dict(config: ModelConfig, tokenizer=None, *, dtype: str = "float32") -> dict:
    """transformers' config.json for `config` (the inverse of `loaders.hf_config`).

    `tokenizer` (an `introspect.models.Tokenizer`, optional) supplies bos/eos/pad token ids.
    """
    model_type = _model_type(config)
    scaling = _rope_scaling(config)
    tok = tokenizer
    out = {
        "architectures": [_HF_CLASSES[model_type]],
        "model_type": model_type,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_position_embeddings,
        "rms_norm_eps": float(config.rms_norm_eps),
        "rope_theta": float(config.rope_theta),
        "rope_scaling": scaling,
        "rope_parameters": {
            "rope_type": "default",
            **(scaling or {}),
            "rope_theta": float(config.rope_theta),
        },
        "tie_word_embeddings": bool(config.tie_embeddings),
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": None if tok is None else tok.bos_token_id,
        "eos_token_id": None if tok is None else tok.eos_token_id,
        "pad_token_id": None if tok is None else tok.pad_token_id,
        "torch_dtype": dtype,
        "dtype": dtype,
    }
    if scaling and "type" in scaling and "rope_type" not in scaling:
        del out["rope_parameters"]["rope_type"]  # legacy spelling: keep the dict as it was
    if model_type == "llama":
        out["mlp_bias"] = False
    if model_type != "qwen2" and (config.qkv_bias or model_type != "mistral"):
        out["attention_bias"] = bool(config.qkv_bias)
    if model_type in ("qwen2", "qwen3"):
        out["use_sliding_window"] = config.sliding_window is not None
        out["sliding_window"] = config.sliding_window
        # transformers' Qwen slides from layer max_window_layers on; ours slide everywhere.
        out["max_window_layers"] = 0 if config.sliding_window is not None else config.num_layers
    elif model_type == "mistral" or config.sliding_window is not None:
        out["sliding_window"] = config.sliding_window  # Mistral's default is 4096, not None
    return out


# ----------------------------------------------------------------------------------------------
# Tokenizer files
# ----------------------------------------------------------------------------------------------


def save_tokenizer(tokenizer, path: str | os.PathLike, *, model_max_length: int | None = None):
    """Write `tokenizer` (an `introspect.models.Tokenizer`) into the directory `path` so that
    `Tokenizer.from_hf_dir(path)` (and transformers' AutoTokenizer) reads it back.

    Writes tokenizer.json (the fast tokenizer, with its pre/post-processing and added tokens),
    tokenizer_config.json (chat template, special-token texts) and generation_config.json
    (bos/pad ids and every end-of-generation id, `tokenizer.eos_token_ids`). Existing files of
    those names are replaced.
    """
    path = os.fspath(path)
    tokenizer.backend.save(os.path.join(path, "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "chat_template": tokenizer.chat_template,
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": tokenizer.unk_token,
    }
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    _write_json(os.path.join(path, "tokenizer_config.json"), config)
    generation = {
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if tokenizer.eos_token_ids:
        generation["eos_token_id"] = list(tokenizer.eos_token_ids)
    _write_json(os.path.join(path, "generation_config.json"), generation)


def _write_json(path: str, value: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------


def _check_params(lm, params) -> None:
    """ValueError when `params` do not have lm.params' tree and shapes (`LM.with_params`'s rule)."""
    want, want_def = jax.tree_util.tree_flatten_with_path(lm.params)
    got, got_def = jax.tree.flatten(params)
    if want_def != got_def:
        detail = "the tree differs"
    else:
        detail = next(
            (
                f"{jax.tree_util.keystr(p)} has shape {np.shape(g)}, expected {w.shape}"
                for (p, w), g in zip(want, got, strict=True)
                if tuple(np.shape(g)) != tuple(w.shape)
            ),
            None,
        )
        if detail is None:
            return
    raise ValueError(
        "params do not fit this model: expected the tree and shapes of lm.params "
        f"({lm.config.architecture}, {lm.config.num_layers} layers); {detail}"
    )


def _hf_tensors(config: ModelConfig, params, dtype, write: bool) -> dict[str, np.ndarray]:
    """{HF tensor name: [out, in] array in `dtype`} of a Decoder param tree (empty unless `write`;
    every process gathers, in the same order)."""
    leaves = {
        tuple(k.key for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    tensors, used = {}, set()
    for key, name in _HF_NAMES.items():
        layers = range(config.num_layers) if "{i}" in name else [None]
        for i in layers:
            path = tuple(p.format(i=i) for p in _TREE_PATHS[key])
            if path not in leaves:
                continue  # e.g. no lm_head when tied, no bias without qkv_bias
            used.add(path)
            leaf = leaves[path]
            if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
                leaf = sharding.to_host(leaf)  # a collective: every process takes part
            if write:
                arr = sharding.to_host(leaf).astype(dtype, copy=False)
                tensors[name.format(i=i)] = np.ascontiguousarray(
                    arr.T if path[-1] == "kernel" else arr
                )
    left = sorted("/".join(p) for p in set(leaves) - used)
    if left:
        raise ValueError(f"save_hf: parameters with no Hugging Face name: {left[:5]}")
    return tensors


# ----------------------------------------------------------------------------------------------
# save_hf
# ----------------------------------------------------------------------------------------------


def _check_target(path: str, overwrite: bool) -> None:
    if os.path.lexists(path) and not os.path.isdir(path):
        raise FileExistsError(f"save_hf: {path} exists and is not a directory")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(
            f"save_hf: {path} exists and is not empty; pass overwrite=True to replace it"
        )


def _move_into_place(tmp: str, path: str, overwrite: bool) -> None:
    """Rename the finished `tmp` to `path` (an empty directory at `path` is replaced; a
    non-empty one only with `overwrite`, moved aside first and deleted after the rename)."""
    parent, base = os.path.split(path)
    try:
        os.rename(tmp, path)  # POSIX: succeeds when path is absent or an empty directory
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not overwrite:
            raise FileExistsError(
                f"save_hf: {path} exists and is not empty; pass overwrite=True to replace it"
            ) from None
    old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
    os.rename(path, old)  # onto the empty directory `old`
    try:
        os.rename(tmp, path)
    except OSError:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_hf(
    lm,
    path: str | os.PathLike,
    *,
    params=None,
    dtype=None,
    overwrite: bool = False,
) -> str:
    """Write `lm` as a Hugging Face model directory (config.json, model.safetensors, tokenizer).

    `models.load(path)` gives back the same config, tokenizer and (in `dtype`) the same
    parameters; transformers' `AutoModelForCausalLM.from_pretrained(path)` loads it too. See the
    module docstring for the files and the round-trip caveats.

    Args:
      lm: an `introspect.models.LM`.
      path: the directory to create. It is written atomically: into a temporary directory next
        to it, then renamed; a failure leaves nothing behind.
      params: parameters to write instead of `lm.params`, in the LM's layout (e.g. fine-tuned
        ones, as `lm.with_params` takes them); jax arrays (sharded ones are gathered) or numpy.
      dtype: tensor dtype of the file, one of EXPORT_DTYPES; None = `lm.dtype`.
      overwrite: replace an existing non-empty directory (else FileExistsError).
    Returns:
      `path` as a string.
    Raises:
      ValueError: `params` do not fit the model, or `dtype` is not supported.
      FileExistsError: `path` is a file, or a non-empty directory without overwrite=True.
      NotImplementedError: the architecture (or its RoPE) has no config.json spelling.

    Multi-process runs (`jax.process_count() > 1`): call it on every process. Parameters are
    gathered to host memory on every process (`process_allgather`, a collective), only process 0
    (`jax.process_index() == 0`) writes, and all processes wait for it before returning (should
    process 0 fail while writing, the others wait at that barrier). The argument checks run on
    every process before any collective, so a bad call fails everywhere.
    """
    path = os.path.abspath(os.fspath(path))
    dtype = lm.dtype if dtype is None else dtype
    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in EXPORT_DTYPES:
        raise ValueError(f"save_hf: dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    np_dtype = np.dtype(jnp.dtype(name))
    if params is None:
        params = lm.params
    else:
        _check_params(lm, params)
    config_json = hf_config_dict(lm.config, lm.tokenizer, dtype=name)
    _check_target(path, overwrite)
    writer = jax.process_index() == 0
    tensors = _hf_tensors(lm.config, params, np_dtype, writer)
    if writer:
        from safetensors.numpy import save_file

        parent, base = os.path.split(path)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            _write_json(os.path.join(tmp, "config.json"), config_json)
            save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
            del tensors
            save_tokenizer(lm.tokenizer, tmp, model_max_length=lm.config.max_position_embeddings)
            _move_into_place(tmp, path, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"introspect.save_hf:{path}")
    return path
