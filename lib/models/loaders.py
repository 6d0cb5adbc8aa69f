"""Weight loaders: GGUF files (llama.cpp) and Hugging Face directories (config.json + safetensors).

Both produce `(ModelConfig, params)` where `params` is the `Decoder`'s parameter tree as numpy
arrays in the requested dtype; shapes are checked against the config before anything is returned.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable

import numpy as np

from introspect.models.config import SUPPORTED_ARCHITECTURES, ModelConfig
from introspect.models.llama import param_shapes

# Tensor encodings the GGUF loader dequantises (names as in gguf.GGMLQuantizationType).
GGUF_SUPPORTED_TYPES = (
    "F32",
    "F16",
    "BF16",
    "Q8_0",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q4_K",
    "Q5_K",
    "Q6_K",
)


class WeightsMismatchError(ValueError):
    """The checkpoint's tensors do not fit the architecture its config describes."""


# ----------------------------------------------------------------------------------------------
# Shared: assemble the parameter tree from a name -> [out, in] (PyTorch layout) tensor getter.
# ----------------------------------------------------------------------------------------------


def _assemble(
    config: ModelConfig, get: Callable[[str], np.ndarray | None], names: dict, dtype, source: str
) -> dict:
    """Build the Decoder param tree.

    `names` maps our logical names ("embed", "final_norm", "lm_head", and per-layer templates
    containing "{i}") to the checkpoint's tensor names. `get(name)` returns the tensor in
    PyTorch layout ([out, in] for matrices) or None when absent.
    """
    expected = param_shapes(config)

    def fetch(key: str, required: bool = True) -> np.ndarray | None:
        arr = get(key)
        if arr is None and required:
            raise WeightsMismatchError(f"{source}: tensor {key!r} is missing")
        return arr

    def place(tree_path: tuple, arr: np.ndarray, transpose: bool):
        arr = arr.T if transpose else arr
        node = expected
        for p in tree_path:
            node = node[p]
        if tuple(arr.shape) != tuple(node.shape):
            raise WeightsMismatchError(
                f"{source}: tensor for {'/'.join(tree_path)} has shape {tuple(arr.shape)}, the "
                f"config expects {tuple(node.shape)} (config: hidden={config.hidden_size}, "
                f"heads={config.num_heads}, kv_heads={config.num_kv_heads}, "
                f"head_dim={config.head_dim}, intermediate={config.intermediate_size}, "
                f"vocab={config.vocab_size})"
            )
        return np.ascontiguousarray(arr, dtype=dtype)

    params: dict = {
        "embed": {"embedding": place(("embed", "embedding"), fetch(names["embed"]), False)}
    }
    params["final_norm"] = {
        "scale": place(("final_norm", "scale"), fetch(names["final_norm"]), False)
    }
    if not config.tie_embeddings:
        params["lm_head"] = {"kernel": place(("lm_head", "kernel"), fetch(names["lm_head"]), True)}
    for i in range(config.num_layers):
        layer = f"layers_{i}"
        n = lambda key, i=i: names[key].format(i=i)
        tree = {
            "attn_norm": {
                "scale": place((layer, "attn_norm", "scale"), fetch(n("attn_norm")), False)
            },
            "mlp_norm": {"scale": place((layer, "mlp_norm", "scale"), fetch(n("mlp_norm")), False)},
            "attn": {},
            "mlp": {},
        }
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            entry = {"kernel": place((layer, "attn", proj, "kernel"), fetch(n(proj)), True)}
            if config.qkv_bias and proj != "o_proj":
                entry["bias"] = place(
                    (layer, "attn", proj, "bias"), fetch(n(proj + "_bias")), False
                )
            tree["attn"][proj] = entry
        if config.qk_norm:
            for norm in ("q_norm", "k_norm"):
                tree["attn"][norm] = {
                    "scale": place((layer, "attn", norm, "scale"), fetch(n(norm)), False)
                }
        for proj in ("gate_proj", "up_proj", "down_proj"):
            tree["mlp"][proj] = {
                "kernel": place((layer, "mlp", proj, "kernel"), fetch(n(proj)), True)
            }
        params[layer] = tree
    return params


def _check_unused(available: Iterable[str], used: set, source: str, ignore=()) -> None:
    extra = sorted(k for k in available if k not in used and not any(s in k for s in ignore))
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise WeightsMismatchError(
            f"{source}: {len(extra)} tensor(s) are not used by the configured architecture "
            f"(e.g. {shown}); the config and the weights disagree"
        )


# ----------------------------------------------------------------------------------------------
# GGUF
# ----------------------------------------------------------------------------------------------

_GGUF_NAMES = {
    "embed": "token_embd.weight",
    "final_norm": "output_norm.weight",
    "lm_head": "output.weight",
    "attn_norm": "blk.{i}.attn_norm.weight",
    "mlp_norm": "blk.{i}.ffn_norm.weight",
    "q_proj": "blk.{i}.attn_q.weight",
    "k_proj": "blk.{i}.attn_k.weight",
    "v_proj": "blk.{i}.attn_v.weight",
    "o_proj": "blk.{i}.attn_output.weight",
    "q_proj_bias": "blk.{i}.attn_q.bias",
    "k_proj_bias": "blk.{i}.attn_k.bias",
    "v_proj_bias": "blk.{i}.attn_v.bias",
    "q_norm": "blk.{i}.attn_q_norm.weight",
    "k_norm": "blk.{i}.attn_k_norm.weight",
    "gate_proj": "blk.{i}.ffn_gate.weight",
    "up_proj": "blk.{i}.ffn_up.weight",
    "down_proj": "blk.{i}.ffn_down.weight",
}


def _gguf_field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def _unpermute_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of Q/K rows for its "normal" RoPE ([out, in] layout).

    llama.cpp's converter reorders each head's rows from the half-split layout (rotate_half) to
    pairs; this restores the Hugging Face order.
    """
    out = w.shape[0]
    rest = w.shape[1:]
    return w.reshape(n_heads, out // n_heads // 2, 2, *rest).swapaxes(1, 2).reshape(w.shape)


def gguf_config(reader) -> ModelConfig:
    """Read the architecture from GGUF metadata."""
    arch = _gguf_field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise NotImplementedError(
            f"GGUF architecture {arch!r} is not supported (supported: {SUPPORTED_ARCHITECTURES})"
        )

    def meta(key, default=None, required=False):
        value = _gguf_field(reader, f"{arch}.{key}", default)
        if value is None and required:
            raise ValueError(f"GGUF metadata {arch}.{key} is missing")
        return value

    hidden = int(meta("embedding_length", required=True))
    heads = int(meta("attention.head_count", required=True))
    kv_heads = int(meta("attention.head_count_kv", heads))
    head_dim = int(
        meta("attention.key_length", 0) or meta("rope.dimension_count", 0) or hidden // heads
    )
    names = {t.name for t in reader.tensors}
    vocab = meta("vocab_size")
    if vocab is None:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    scaling = None
    kind = meta("rope.scaling.type")
    if kind not in (None, "none"):
        scaling = (("rope_type", kind), ("factor", float(meta("rope.scaling.factor", 1.0))))
        orig = meta("rope.scaling.original_context_length")
        if orig is not None:
            scaling += (("original_max_position_embeddings", int(orig)),)
    freq_factors = None
    if "rope_freqs.weight" in names:  # Llama 3.1+: per-frequency divisors stored as a tensor.
        tensor = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
        freq_factors = tuple(float(x) for x in np.asarray(tensor.data, np.float64).ravel())
    sliding = meta("attention.sliding_window")
    return ModelConfig(
        architecture=arch,
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length", required=True)),
        num_layers=int(meta("block_count", required=True)),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        rope_freq_factors=freq_factors,
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in names,
        qkv_bias="blk.0.attn_q.bias" in names,
        qk_norm="blk.0.attn_q_norm.weight" in names,
        sliding_window=int(sliding) if sliding else None,
        max_position_embeddings=int(meta("context_length", 4096)),
    )


def load_gguf(path: str, *, dtype=np.float32):
    """Load a GGUF checkpoint.

    Returns (config, params, reader). Quantised tensors are dequantised with the `gguf` package
    and cast to `dtype`; Q/K rows of "llama"-architecture files are restored to HF order.
    """
    import gguf
    from gguf import quants

    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # gguf raises ValueError/struct.error on garbage
        raise ValueError(f"{path} is not a readable GGUF file: {e}") from e
    config = gguf_config(reader)
    tensors = {t.name: t for t in reader.tensors}
    permuted = config.architecture in ("llama", "mistral", "smollm", "smollm2")
    used: set = set()

    def get(name: str):
        t = tensors.get(name)
        if t is None:
            return None
        used.add(name)
        qtype = t.tensor_type.name
        if qtype not in GGUF_SUPPORTED_TYPES:
            raise NotImplementedError(
                f"{path}: tensor {name!r} uses quantisation {qtype}, which introspect does not "
                f"dequantise (supported: {', '.join(GGUF_SUPPORTED_TYPES)})"
            )
        arr = quants.dequantize(t.data, t.tensor_type)
        # GGUF lists dims fastest-first; numpy data is already [rows=out, cols=in].
        arr = arr.reshape(tuple(int(d) for d in reversed(t.shape)))
        if permuted and name.endswith("attn_q.weight"):
            arr = _unpermute_rope(arr, config.num_heads)
        elif permuted and name.endswith("attn_k.weight"):
            arr = _unpermute_rope(arr, config.num_kv_heads)
        return arr

    params = _assemble(config, get, _GGUF_NAMES, dtype, source=path)
    _check_unused(tensors, used, path, ignore=("rope_freqs",))
    return config, params, reader


# ----------------------------------------------------------------------------------------------
# Hugging Face directory
# ----------------------------------------------------------------------------------------------

_HF_NAMES = {
    "embed": "model.embed_tokens.weight",
    "final_norm": "model.norm.weight",
    "lm_head": "lm_head.weight",
    "attn_norm": "model.layers.{i}.input_layernorm.weight",
    "mlp_norm": "model.layers.{i}.post_attention_layernorm.weight",
    "q_proj": "model.layers.{i}.self_attn.q_proj.weight",
    "k_proj": "model.layers.{i}.self_attn.k_proj.weight",
    "v_proj": "model.layers.{i}.self_attn.v_proj.weight",
    "o_proj": "model.layers.{i}.self_attn.o_proj.weight",
    "q_proj_bias": "model.layers.{i}.self_attn.q_proj.bias",
    "k_proj_bias": "model.layers.{i}.self_attn.k_proj.bias",
    "v_proj_bias": "model.layers.{i}.self_attn.v_proj.bias",
    "q_norm": "model.layers.{i}.self_attn.q_norm.weight",
    "k_norm": "model.layers.{i}.self_attn.k_norm.weight",
    "gate_proj": "model.layers.{i}.mlp.gate_proj.weight",
    "up_proj": "model.layers.{i}.mlp.up_proj.weight",
    "down_proj": "model.layers.{i}.mlp.down_proj.weight",
}


def hf_config(cfg: dict, source: str = "config.json") -> ModelConfig:
    """Translate a transformers config.json dict into a ModelConfig."""
    model_type = cfg.get("model_type")
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise NotImplementedError(
            f"{source}: model_type {model_type!r} is not supported "
            f"(supported: {SUPPORTED_ARCHITECTURES})"
        )
    missing = [
        k
        for k in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
        )
        if k not in cfg
    ]
    if missing:
        raise ValueError(f"{source}: missing required keys {missing}")
    heads = int(cfg["num_attention_heads"])
    # transformers >= 5 keeps RoPE settings in `rope_parameters`; older files use `rope_theta`
    # and `rope_scaling` at the top level.
    rope = dict(cfg.get("rope_parameters") or {})
    theta = rope.pop("rope_theta", cfg.get("rope_theta", 10000.0))
    legacy = cfg.get("rope_scaling") or {}
    rope = {**legacy, **rope}
    kind = rope.get("rope_type", rope.get("type", "default"))
    scaling = None
    if kind not in (None, "default"):
        scaling = tuple(sorted((k, v) for k, v in rope.items() if not isinstance(v, list | dict)))
    sliding = cfg.get("sliding_window")
    if model_type in ("qwen2", "qwen3") and not cfg.get("use_sliding_window", False):
        sliding = None
    return ModelConfig(
        architecture=model_type,
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
        rope_theta=float(theta),
        rope_scaling=scaling,
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias", False)),
        qk_norm=model_type == "qwen3",
        sliding_window=int(sliding) if sliding else None,
        max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
    )


def _read_json_object(path: str) -> dict:
    """Parse a JSON file that must hold an object; errors name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object ({{...}}), got {type(value).__name__}")
    return value


def load_hf_dir(path: str, *, dtype=np.float32):
    """Load `config.json` + `*.safetensors` (single file or sharded with an index).

    Returns (config, params).

    Raises:
      FileNotFoundError: `path` is not a directory, or config.json / the weights are missing.
      ValueError: config.json (or model.safetensors.index.json) is not valid JSON or not a JSON
        object; the message names the file.
      WeightsMismatchError: the tensors do not fit the architecture config.json describes.
    """
    from safetensors import safe_open

    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(
            f"{path}: no config.json (expected a Hugging Face model directory: config.json + "
            f"*.safetensors); found {sorted(os.listdir(path))}"
        )
    config = hf_config(_read_json_object(cfg_path), cfg_path)
    index_path = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index_path):
        weight_map = _read_json_object(index_path).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(
                f'{index_path}: expected a "weight_map" object (tensor name -> shard file)'
            )
        files = sorted(set(weight_map.values()))
    else:
        files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.safetensors weights found")
        weight_map = None
    handles = {}
    location = {}
    for fname in files:
        fpath = os.path.join(path, fname)
        if not os.path.isfile(fpath):
            raise FileNotFoundError(f"{path}: shard {fname} listed in the index is missing")
        handles[fname] = safe_open(fpath, framework="flax")
        for key in handles[fname].keys():
            location[key] = fname
    if weight_map is not None:
        absent = [k for k in weight_map if k not in location]
        if absent:
            raise WeightsMismatchError(
                f"{path}: index lists tensors not in any shard: {absent[:3]}"
            )
    used: set = set()

    def get(name: str):
        fname = location.get(name)
        if fname is None:
            return None
        used.add(name)
        return np.asarray(handles[fname].get_tensor(name), dtype=np.float32)

    params = _assemble(config, get, _HF_NAMES, dtype, source=path)
    # Tied checkpoints may still carry lm_head.weight; rotary caches are derived, not weights.
    _check_unused(location, used, path, ignore=("rotary_emb.inv_freq", "lm_head.weight"))
    return config, params
