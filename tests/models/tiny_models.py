"""Tiny random checkpoints written by transformers, shared by the model tests."""

import json
import os

import numpy as np
import torch
import transformers

TINY_VOCAB = 49152  # the SmolLM2 tokenizer's vocabulary, so tiny dirs get a real tokenizer
COMMON = dict(
    vocab_size=TINY_VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)

# name -> (transformers config class, extra kwargs, save kwargs)
TINY_VARIANTS = {
    # Llama 3 with its RoPE scaling, untied head. Original context 16 puts the head's
    # frequencies in two regimes of the rule (interpolated, scaled); the shortest wavelength
    # (2 pi) is above high_freq_wavelen = 16 / 4, so none is kept ("llama3-long" has all three).
    "llama3": (
        "LlamaConfig",
        dict(
            tie_word_embeddings=False,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=10000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
        ),
        {},
    ),
    # Llama 2 style, tied, saved in several safetensors shards with an index.
    "llama-sharded": ("LlamaConfig", dict(tie_word_embeddings=True), dict(max_shard_size="2MB")),
    # Qwen2: q/k/v bias.
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True), {}),
    # Qwen3: q/k RMSNorm and a head_dim that is not hidden / heads.
    "qwen3": ("Qwen3Config", dict(tie_word_embeddings=False, head_dim=32), {}),
    # Mistral: sliding-window attention (window shorter than the test sequences).
    "mistral": ("MistralConfig", dict(tie_word_embeddings=False, sliding_window=5), {}),
    # Llama 3 RoPE scaling with original context 64: wavelengths 2 pi (< 64 / 4: kept),
    # 19.9 and 62.8 (interpolated), 199 and up (> 64: divided by the factor).
    "llama3-long": (
        "LlamaConfig",
        dict(
            tie_word_embeddings=True,
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=10000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
        {},
    ),
    # Linear RoPE scaling ("position interpolation"): every frequency divided by the factor.
    "llama-linear": (
        "LlamaConfig",
        dict(
            tie_word_embeddings=True,
            rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=4.0),
        ),
        {},
    ),
}


def _randomize(model, seed):
    """Give every tensor (biases and norm scales included) non-trivial random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def write_tiny(path, variant, seed=0):
    """Write a tiny random checkpoint of `variant` to `path`; return the transformers model."""
    cls_name, extra, save_kw = TINY_VARIANTS[variant]
    config = getattr(transformers, cls_name)(**COMMON, **extra)
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name.replace("Config", "ForCausalLM"))(config)
    model = _randomize(model.float().eval(), seed)
    model.save_pretrained(path, **save_kw)
    return model


def write_tokenizer_files(path, tokenizer):
    """tokenizer.json + tokenizer_config.json of the embedded model, so `models.load(dir)` works."""
    tokenizer.backend.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "chat_template": tokenizer.chat_template,
                "eos_token": tokenizer.eos_token,
                "bos_token": tokenizer.bos_token,
                "pad_token": tokenizer.pad_token,
            },
            f,
        )


def random_ids(rng, batch, length, vocab=TINY_VOCAB):
    return np.asarray(rng.integers(3, vocab, size=(batch, length)), np.int32)


def write_word_tokenizer(path, vocab_size=TINY_VOCAB):
    """A word-level tokenizer.json ("<unk>", "<eos>", "w2", "w3", ...) + tokenizer_config.json
    (EOS "<eos>"), so that `models.load(dir)` works on a tiny checkpoint without the embedded
    model's tokenizer. Every id below `vocab_size` decodes."""
    import tokenizers

    words = ["<unk>", "<eos>"] + [f"w{i}" for i in range(2, vocab_size)]
    backend = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>")
    )
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    backend.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<eos>"}, f)


# ----------------------------------------------------------------------------------------------
# transformers Llama -> GGUF, laid out the way llama.cpp's converter lays it out.
# ----------------------------------------------------------------------------------------------

_GGUF_GLOBAL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GGUF_LAYER = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def llamacpp_permute(w, n_heads):
    """llama.cpp's reordering of Q/K rows (half-split RoPE layout -> interleaved pairs)."""
    return (
        w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def llamacpp_llama3_rope_factors(rope, head_dim):
    """The `rope_freqs.weight` llama.cpp's converter writes for Llama-3 RoPE scaling, [dim // 2].

    Written from convert_hf_to_gguf.py's rule: 1 where the wavelength is below
    old_context / high_freq_factor, `factor` above old_context / low_freq_factor, and
    1 / ((1 - s) / factor + s) with s = (old_context / wavelength - low) / (high - low) between.
    """
    dim, base = head_dim, rope["rope_theta"]
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    old = rope["original_max_position_embeddings"]
    out = []
    for k in range(0, dim, 2):
        wavelen = 2 * np.pi * base ** (k / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, np.float32)


def write_gguf_from_hf(
    path, hf_model, *, qtype="F32", override=None, rope_freqs=None, rope_linear_factor=None
):
    """Write a transformers Llama as a GGUF file, laid out the way llama.cpp's converter does.

    Args:
      qtype: GGML type of the 2-D weights ("F32", "F16", "Q8_0", ... quantised by gguf-py;
        norms stay F32).
      override: {gguf tensor name: type} exceptions ("IQ4_NL": gguf-py cannot quantise it, so
        zero bytes are written, which makes a valid file).
      rope_freqs: optional [head_dim // 2] `rope_freqs.weight` tensor to store.
      rope_linear_factor: optional factor written as `rope.scaling.type = linear`.
    """
    import gguf

    cfg = hf_model.config
    w = gguf.GGUFWriter(os.fspath(path), "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    if rope_linear_factor is not None:
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(rope_linear_factor))
    if rope_freqs is not None:
        w.add_tensor("rope_freqs.weight", np.asarray(rope_freqs, np.float32))
    for name, t in hf_model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue  # llama.cpp stores a tied head once, as token_embd
        arr = t.numpy().astype(np.float32)
        if name.startswith("model.layers."):
            _, _, i, rest = name.split(".", 3)
            gname = f"blk.{i}.{_GGUF_LAYER[rest.rsplit('.', 1)[0]]}.weight"
        else:
            gname = _GGUF_GLOBAL[name]
        if gname.endswith("attn_q.weight"):
            arr = llamacpp_permute(arr, cfg.num_attention_heads)
        elif gname.endswith("attn_k.weight"):
            arr = llamacpp_permute(arr, cfg.num_key_value_heads)
        kind = (override or {}).get(gname, qtype if arr.ndim == 2 else "F32")
        qt = gguf.GGMLQuantizationType[kind]
        if kind == "F32":
            w.add_tensor(gname, arr)
        elif kind == "F16":
            w.add_tensor(gname, arr.astype(np.float16))
        elif kind == "IQ4_NL":
            raw = np.zeros(gguf.quants.quant_shape_to_byte_shape(arr.shape, qt), np.uint8)
            w.add_tensor(gname, raw, raw_dtype=qt)
        else:
            w.add_tensor(gname, gguf.quants.quantize(arr, qt), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
