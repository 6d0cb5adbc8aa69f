"""RoPE frequency rules against transformers: Llama-3 scaling in all three regimes (kept,
interpolated, divided), linear scaling, and GGUF's stored `rope_freqs` factors (Llama 3.1+)."""

import dataclasses
import math

import jax
import numpy as np
import pytest
import torch
import transformers
from tiny_models import (
    llamacpp_llama3_rope_factors,
    random_ids,
    write_gguf_from_hf,
    write_tiny,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from introspect import models
from introspect.models import loaders

HF_ATOL = 1e-4  # float32 logits vs transformers, tiny random weights
INV_FREQ_RTOL = 1e-6  # transformers computes in float32, introspect in float64
SEQ = 64  # long enough for the scaled low frequencies to change the logits


def _llama3(theta, factor, low, high, old):
    return dict(
        rope_type="llama3",
        rope_theta=theta,
        factor=factor,
        low_freq_factor=low,
        high_freq_factor=high,
        original_max_position_embeddings=old,
    )


# (hidden, heads, head_dim, rope_parameters): every llama3 entry hits all three regimes.
ROPE_CASES = {
    "llama3.1-8b": (4096, 32, 128, _llama3(500000.0, 8.0, 1.0, 4.0, 8192)),
    "llama3.2-tiny": (64, 4, 16, _llama3(10000.0, 8.0, 1.0, 4.0, 64)),
    "llama3-odd-factors": (96, 2, 48, _llama3(20000.0, 32.0, 2.0, 16.0, 256)),
    "linear-2": (64, 4, 16, dict(rope_type="linear", rope_theta=10000.0, factor=2.0)),
    "linear-qwen-head": (128, 4, 64, dict(rope_type="linear", rope_theta=1e6, factor=6.5)),
}


def _regimes(rope, head_dim):
    """Which Llama-3 regime each frequency falls in: 'kept', 'interpolated' or 'divided'."""
    inv = 1.0 / rope["rope_theta"] ** (np.arange(0, head_dim, 2) / head_dim)
    wavelen = 2 * math.pi / inv
    old = rope["original_max_position_embeddings"]
    return np.where(
        wavelen < old / rope["high_freq_factor"],
        "kept",
        np.where(wavelen > old / rope["low_freq_factor"], "divided", "interpolated"),
    )


@pytest.mark.parametrize("case", list(ROPE_CASES))
def test_rope_inv_freq_matches_transformers(case):
    hidden, heads, head_dim, rope = ROPE_CASES[case]
    hf_cfg = transformers.LlamaConfig(
        vocab_size=32,
        hidden_size=hidden,
        intermediate_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=heads,
        head_dim=head_dim,
        max_position_embeddings=8 * rope.get("original_max_position_embeddings", 512),
        rope_parameters=dict(rope),
    )
    ref, attention_factor = ROPE_INIT_FUNCTIONS[rope["rope_type"]](hf_cfg, None)
    assert attention_factor == 1.0  # introspect scales no logits; these types must not either
    # Through the config.json translation, as the loader sees it.
    config = loaders.hf_config(hf_cfg.to_dict())
    ours = models.rope_inv_freq(config)
    assert ours.shape == (head_dim // 2,)
    np.testing.assert_allclose(ours, ref.numpy().astype(np.float64), rtol=INV_FREQ_RTOL, atol=0)
    if rope["rope_type"] == "llama3":
        assert set(_regimes(rope, head_dim)) == {"kept", "interpolated", "divided"}
        base = models.rope_inv_freq(dataclasses.replace(config, rope_scaling=None))
        kept = _regimes(rope, head_dim) == "kept"
        np.testing.assert_array_equal(ours[kept], base[kept])
        assert np.all(ours[~kept] < base[~kept])


def test_legacy_rope_scaling_key_is_read():
    """config.json files written by transformers < 5 keep `rope_scaling` at the top level."""
    legacy = {
        "model_type": "llama",
        "vocab_size": 32,
        "hidden_size": 64,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "linear", "factor": 2.0},
    }
    config = loaders.hf_config(legacy)
    base = 1.0 / 10000.0 ** (np.arange(0, 16, 2) / 16)
    np.testing.assert_allclose(models.rope_inv_freq(config), base / 2.0, rtol=1e-12)


def test_rope_inv_freq_errors():
    cfg = models.ModelConfig(
        vocab_size=8,
        hidden_size=16,
        intermediate_size=16,
        num_layers=1,
        num_heads=2,
        num_kv_heads=2,
        head_dim=8,
        rope_scaling=(("rope_type", "yarn"), ("factor", 2.0)),
    )
    with pytest.raises(NotImplementedError, match="'yarn'.*supported: default, linear, llama3"):
        models.rope_inv_freq(cfg)
    with pytest.raises(ValueError, match="rope_freq_factors has 3 entries, expected"):
        dataclasses.replace(cfg, rope_scaling=None, rope_freq_factors=(1.0, 2.0, 3.0))


# ----------------------------------------------------------------------------------------------
# End to end: logits of tiny models with scaled RoPE against transformers.
# ----------------------------------------------------------------------------------------------

_apply = jax.jit(models.apply, static_argnames=("config",))


def _logits(config, params, ids):
    positions = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int32), ids.shape)
    return np.asarray(_apply(params, ids, positions, config=config)[0])


def _hf_logits(hf_model, ids):
    with torch.no_grad():
        return hf_model(torch.tensor(ids, dtype=torch.long)).logits.numpy()


@pytest.fixture(scope="module")
def rope_models(tmp_path_factory):
    """{variant: (hf directory, transformers model)} for the scaled-RoPE tiny variants."""
    out = {}
    for seed, variant in enumerate(("llama3-long", "llama-linear"), start=100):
        path = str(tmp_path_factory.mktemp(f"rope-{variant}"))
        out[variant] = (path, write_tiny(path, variant, seed=seed))
    return out


@pytest.fixture(scope="module")
def rope_ids():
    return random_ids(np.random.default_rng(21), 2, SEQ)


def test_linear_scaling_logits_parity(rope_models, rope_ids):
    path, hf_model = rope_models["llama-linear"]
    config, params = loaders.load_hf_dir(path)
    assert config.rope_scaling_dict == {"rope_type": "linear", "factor": 4.0}
    ref = _hf_logits(hf_model, rope_ids)
    np.testing.assert_allclose(_logits(config, params, rope_ids), ref, atol=HF_ATOL, rtol=0)
    # The scaling matters at this length: ignoring it is far off (so the parity can fail).
    plain = _logits(dataclasses.replace(config, rope_scaling=None), params, rope_ids)
    assert np.abs(plain - ref).max() > 100 * HF_ATOL


def test_linear_scaling_from_gguf_metadata(rope_models, rope_ids, tmp_path):
    _, hf_model = rope_models["llama-linear"]
    path = tmp_path / "linear.gguf"
    write_gguf_from_hf(path, hf_model, rope_linear_factor=4.0)
    config, params, _ = loaders.load_gguf(str(path))
    assert config.rope_scaling_dict == {"rope_type": "linear", "factor": 4.0}
    ref = _hf_logits(hf_model, rope_ids)
    np.testing.assert_allclose(_logits(config, params, rope_ids), ref, atol=HF_ATOL, rtol=0)


def test_llama3_scaling_logits_parity_all_regimes(rope_models, rope_ids):
    path, hf_model = rope_models["llama3-long"]
    config, params = loaders.load_hf_dir(path)
    rope = hf_model.config.rope_parameters
    assert set(_regimes(rope, config.head_dim)) == {"kept", "interpolated", "divided"}
    ref = _hf_logits(hf_model, rope_ids)
    np.testing.assert_allclose(_logits(config, params, rope_ids), ref, atol=HF_ATOL, rtol=0)
    plain = _logits(dataclasses.replace(config, rope_scaling=None), params, rope_ids)
    assert np.abs(plain - ref).max() > 100 * HF_ATOL


def test_gguf_rope_freqs_tensor_is_applied(rope_models, rope_ids, tmp_path):
    """A Llama-3 GGUF carries its scaling as `rope_freqs.weight` (per-frequency divisors) and no
    scaling metadata; the loader must divide the frequencies by it."""
    _, hf_model = rope_models["llama3-long"]
    head_dim = hf_model.config.head_dim
    factors = llamacpp_llama3_rope_factors(hf_model.config.rope_parameters, head_dim)
    assert factors.min() == 1.0 and factors.max() == 8.0  # kept and divided both present
    with_freqs = tmp_path / "llama3-freqs.gguf"
    write_gguf_from_hf(with_freqs, hf_model, rope_freqs=factors)
    config, params, _ = loaders.load_gguf(str(with_freqs))
    assert config.rope_scaling is None
    np.testing.assert_array_equal(np.asarray(config.rope_freq_factors, np.float32), factors)
    ref_inv, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_model.config, None)
    np.testing.assert_allclose(models.rope_inv_freq(config), ref_inv.numpy(), rtol=INV_FREQ_RTOL)
    ref = _hf_logits(hf_model, rope_ids)
    np.testing.assert_allclose(_logits(config, params, rope_ids), ref, atol=HF_ATOL, rtol=0)
    # The same file without the tensor is a plain-RoPE model, far from the reference.
    without = tmp_path / "llama3-nofreqs.gguf"
    write_gguf_from_hf(without, hf_model)
    config0, params0, _ = loaders.load_gguf(str(without))
    assert config0.rope_freq_factors is None
    assert np.abs(_logits(config0, params0, rope_ids) - ref).max() > 100 * HF_ATOL
