"""bfloat16 / float16 compute: `models.load(path, dtype=...)` on a tiny Qwen3 checkpoint (q/k norm,
head_dim != hidden / heads) stays close to float32, returns float32 logits and generates.

Tolerances (measured on this checkpoint, |logits| <= 2.2, std 0.4): the largest logit error is
about 0.02 in bfloat16 (8-bit mantissa) and 0.003 in float16 (11-bit); the bounds below leave a
3x margin and are still far below what a wrong computation gives (errors of the order of the
logits' spread, 0.4).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_models import random_ids, write_tiny, write_word_tokenizer

from introspect import models

ATOL = {"bfloat16": 0.06, "float16": 0.01}  # largest |logit - float32 logit|


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("dtype-qwen3"))
    write_tiny(path, "qwen3", seed=300)
    write_word_tokenizer(path)
    return path


@pytest.fixture(scope="module")
def lm32(tiny_dir):
    return models.load(tiny_dir)


@pytest.mark.parametrize("dtype", list(ATOL))
def test_low_precision_logits_close_to_float32(tiny_dir, lm32, dtype):
    lm = models.load(tiny_dir, dtype=dtype)
    assert lm.dtype == dtype
    assert all(leaf.dtype == jnp.dtype(dtype) for leaf in jax.tree.leaves(lm.params))
    ids = random_ids(np.random.default_rng(41), 2, 24)
    ref = np.asarray(lm32.forward(ids, hidden_layers=None).logits)
    out = lm.forward(ids, hidden_layers=[1, -1])
    assert out.logits.dtype == jnp.float32
    assert out.hidden_states.dtype == jnp.dtype(dtype)
    logits = np.asarray(out.logits)
    assert np.all(np.isfinite(logits))
    err = np.abs(logits - ref)
    np.testing.assert_allclose(logits, ref, atol=ATOL[dtype], rtol=0)
    assert err.max() > 0  # the computation really ran in lower precision
    # Next-token log-probabilities inherit the same bound.
    np.testing.assert_allclose(
        jax.nn.log_softmax(logits, -1), jax.nn.log_softmax(ref, -1), atol=ATOL[dtype], rtol=0
    )


@pytest.mark.parametrize("dtype", list(ATOL))
def test_low_precision_generation_runs(lm32, tiny_dir, dtype):
    lm = models.load(tiny_dir, dtype=dtype)
    rng = np.random.default_rng(42)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (5, 9)]
    gen = lm.generate(prompts, max_new_tokens=6, ignore_eos=True, return_stats=True)
    assert [len(t) for t in gen.tokens] == [6, 6]
    assert all(0 <= t < lm.config.vocab_size for row in gen.tokens for t in row)
    for name, rows in gen.stats.items():
        assert all(np.all(np.isfinite(r)) for r in rows), name
    # Each log-prob is the float32 model's log-prob of the same token, within the logit bound.
    ref = lm32.score(prompts, gen.tokens)
    for got, want in zip(gen.logprobs, ref.logprobs, strict=True):
        assert got.dtype == np.float32 and np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=ATOL[dtype], rtol=0)
