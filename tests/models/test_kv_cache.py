"""KV-cache decoding equals the full forward pass for the attention variants.

For the sliding-window (Mistral, window 5 < the 16-token sequences), q/k-norm (Qwen3) and
q/k/v-bias (Qwen2) tiny checkpoints: a prefill, a 3-token chunk and then one token at a time
through `introspect.models.apply` with a `KVCache` must give, at every real position, the logits
of one full-sequence `apply`; both must equal transformers' logits for the same tokens. One row of
the batch is left-padded, so the cache's slot-space masks (causal, window) see padding. (Plain and
scaled-RoPE Llama are covered by test_runtime's generation test.)
"""

import dataclasses

import jax
import numpy as np
import pytest
import torch
from tiny_models import random_ids, write_tiny

from introspect import models
from introspect.models import loaders

VARIANTS = ("mistral", "qwen3", "qwen2")
CACHE_ATOL = 1e-5  # cache vs full pass, both float32 introspect
HF_ATOL = 1e-4  # introspect vs transformers, float32
LENGTH, PAD, MAX_LEN = 16, 4, 24
CHUNKS = (6, 3) + (1,) * (LENGTH - 9)  # prefill 6, a 3-token chunk, then single tokens

_apply = jax.jit(models.apply, static_argnames=("config",))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{variant: (config, params, transformers model)}."""
    out = {}
    for seed, variant in enumerate(VARIANTS, start=200):
        path = str(tmp_path_factory.mktemp(f"kv-{variant}"))
        hf_model = write_tiny(path, variant, seed=seed)
        config, params = loaders.load_hf_dir(path)
        out[variant] = (config, params, hf_model)
    return out


def _batch():
    """Row 0: LENGTH real tokens; row 1: PAD padding slots then LENGTH - PAD real tokens."""
    tokens = random_ids(np.random.default_rng(31), 2, LENGTH)
    valid = np.ones((2, LENGTH), bool)
    valid[1, :PAD] = False
    tokens[1, :PAD] = 0
    positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0).astype(np.int32)
    return tokens, positions, valid


def _full(config, params, tokens, positions, valid):
    return np.asarray(_apply(params, tokens, positions, config=config, valid=valid)[0])


def _cached(config, params, tokens, positions, valid):
    cache = models.KVCache.empty(config, tokens.shape[0], MAX_LEN)
    outs, start = [], 0
    for size in CHUNKS:
        part = slice(start, start + size)
        logits, _, cache = _apply(
            params, tokens[:, part], positions[:, part], cache, config=config, valid=valid[:, part]
        )
        outs.append(np.asarray(logits))
        start += size
    return np.concatenate(outs, axis=1), cache


def _hf_rows(hf_model, tokens, valid):
    """transformers' logits for each row's real tokens alone (no padding), [length_i, vocab]."""
    with torch.no_grad():
        return [
            hf_model(torch.tensor(row[ok][None], dtype=torch.long)).logits[0].numpy()
            for row, ok in zip(tokens, valid, strict=True)
        ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_decode_equals_full_forward(checkpoints, variant):
    config, params, hf_model = checkpoints[variant]
    tokens, positions, valid = _batch()
    full = _full(config, params, tokens, positions, valid)
    cached, cache = _cached(config, params, tokens, positions, valid)
    assert cached.shape == full.shape == (2, LENGTH, config.vocab_size)
    assert int(cache.index) == LENGTH
    expect_valid = np.zeros((2, MAX_LEN), bool)
    expect_valid[:, :LENGTH] = valid
    np.testing.assert_array_equal(np.asarray(cache.valid), expect_valid)
    for i, ref in enumerate(_hf_rows(hf_model, tokens, valid)):
        np.testing.assert_allclose(cached[i, valid[i]], full[i, valid[i]], atol=CACHE_ATOL, rtol=0)
        np.testing.assert_allclose(full[i, valid[i]], ref, atol=HF_ATOL, rtol=0)


def test_sliding_window_bites(checkpoints):
    """With window 5 the Mistral outputs past position 4 differ from full causal attention, so
    the test above checks the window in both paths (prefill, chunk and single-token decode)."""
    config, params, hf_model = checkpoints["mistral"]
    assert config.sliding_window == 5 < LENGTH - PAD
    tokens, positions, valid = _batch()
    unwindowed = dataclasses.replace(config, sliding_window=None)
    full = _full(unwindowed, params, tokens, positions, valid)
    cached, _ = _cached(unwindowed, params, tokens, positions, valid)
    refs = _hf_rows(hf_model, tokens, valid)
    for i, ref in enumerate(refs):
        real_full, real_cached = full[i, valid[i]], cached[i, valid[i]]
        window = config.sliding_window
        # Inside the window nothing changes; past it, dropping the window is far off.
        np.testing.assert_allclose(real_full[:window], ref[:window], atol=HF_ATOL, rtol=0)
        assert np.abs(real_full[window:] - ref[window:]).max() > 100 * HF_ATOL
        assert np.abs(real_cached[window:] - ref[window:]).max() > 100 * HF_ATOL
