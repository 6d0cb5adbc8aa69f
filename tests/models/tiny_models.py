"""Tiny random checkpoints written by transformers, shared by the model tests."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

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
    # Llama 3 with its RoPE scaling, untied head. original context 16 puts the head's
    # frequencies in all three regimes of the rule (kept, scaled, interpolated).
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
