"""Attention weights on request: `LM.forward(attention_layers=)` equals transformers'
`output_attentions=True` (eager attention) on the tiny random checkpoints, left padding included;
`LM.generate(attention_layers=)` records, per new token, the weight of its query on its own key,
equal to the matching diagonal entry of a full forward pass (also with prefix KV reuse); without
the request the compiled programs hold no attention-weight tensor; bad indices raise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from tiny_models import random_ids, write_tiny, write_word_tokenizer

from introspect import models
from introspect.models import generate as gen_lib
from introspect.models import loaders

HF_ATOL = 1e-5  # float32 post-softmax weights vs transformers
RECORD_ATOL = 1e-5  # KV-cache decode vs full forward, both introspect float32
LENGTH, PAD = 12, 4
# GQA with an untied head, q/k/v bias, q/k-norm with head_dim != hidden / heads, sliding window
# (the other TINY_VARIANTS differ in RoPE scaling and file layout only).
VARIANTS = ("llama3", "qwen2", "qwen3", "mistral")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """{variant: (LM, transformers model with eager attention)}; one word-level tokenizer."""
    out, tokenizer = {}, None
    for seed, variant in enumerate(VARIANTS, start=400):
        path = str(tmp_path_factory.mktemp(f"attn-{variant}"))
        hf = write_tiny(path, variant, seed=seed)
        hf.set_attn_implementation("eager")
        if tokenizer is None:
            write_word_tokenizer(path)
            tokenizer = models.load(path).tokenizer
        config, params = loaders.load_hf_dir(path)
        out[variant] = (models.LM(config, params, tokenizer, name=variant), hf)
    return out


def _batch():
    """Row 0: LENGTH real tokens; row 1: PAD padding slots, then LENGTH - PAD real tokens."""
    tokens = random_ids(np.random.default_rng(7), 2, LENGTH)
    valid = np.ones((2, LENGTH), bool)
    valid[1, :PAD] = False
    tokens[1, :PAD] = 0
    return tokens, valid


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_attention_equals_transformers(tiny, variant):
    lm, hf = tiny[variant]
    cfg = lm.config
    tokens, valid = _batch()
    out = lm.forward(tokens, mask=valid, hidden_layers=None, attention_layers="all")
    att = np.asarray(out.attention)
    assert out.attention_layers == tuple(range(cfg.num_layers)) and out.attention_heads is None
    assert att.shape == (2, cfg.num_layers, cfg.num_heads, LENGTH, LENGTH)
    assert att.dtype == np.float32
    for r in range(2):
        ids = torch.tensor(tokens[r, valid[r]][None], dtype=torch.long)
        with torch.no_grad():
            ref = hf(ids, output_attentions=True).attentions
        ours = att[r][:, :, valid[r]][..., valid[r]]
        np.testing.assert_allclose(ours, torch.stack(ref)[:, 0].numpy(), atol=HF_ATOL, rtol=0)
    # Padding: keys and queries weigh exactly 0; every real query's row sums to 1.
    assert not att[1][..., :PAD].any() and not att[1][:, :, :PAD].any()
    np.testing.assert_allclose(att.sum(-1)[:, :, :, PAD:], 1.0, atol=1e-5)
    # Causal (and the sliding window where there is one): nothing above the diagonal.
    assert not np.triu(att, 1).any()
    if cfg.sliding_window is not None:
        q, k = np.indices((LENGTH, LENGTH))
        assert not att[0][..., q - k >= cfg.sliding_window].any()


def test_layer_and_head_selection(tiny):
    lm, _ = tiny["qwen3"]
    tokens, valid = _batch()
    out = lm.forward(tokens, mask=valid, hidden_layers=None, attention_layers="all")
    full = np.asarray(out.attention)
    plain = lm.forward(tokens, mask=valid, hidden_layers=None)  # the same logits
    np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(plain.logits))
    sub = lm.forward(tokens, mask=valid, attention_layers=(-1, 0), attention_heads=(3, -3))
    assert sub.attention_layers == (1, 0) and sub.attention_heads == (3, 1)
    np.testing.assert_array_equal(np.asarray(sub.attention), full[:, [1, 0]][:, :, [3, 1]])
    assert lm.check_attention(1, -1) == ((1,), (3,))
    assert lm.check_attention(None) == (None, None)


def _left_padded(seqs):
    """Token-id lists -> (tokens, mask) left-padded to the longest."""
    t = max(len(x) for x in seqs)
    tokens = np.zeros((len(seqs), t), np.int32)
    mask = np.zeros((len(seqs), t), bool)
    for r, x in enumerate(seqs):
        tokens[r, t - len(x) :], mask[r, t - len(x) :] = x, True
    return tokens, mask


def _check_records(lm, contexts, gen, layers, heads):
    """Each row's records equal the diagonal of one (left-padded, batched) full forward pass at
    the positions whose queries produced its tokens."""
    seqs = [c + toks for c, toks in zip(contexts, gen.tokens, strict=True)]
    tokens, mask = _left_padded(seqs)
    full = np.asarray(lm.forward(tokens, mask=mask, attention_layers="all").attention)
    diag = np.diagonal(full, axis1=-2, axis2=-1)[:, layers][:, :, heads]  # [b, L, H, T]
    for r, (c, toks, rec) in enumerate(zip(contexts, gen.tokens, gen.attention, strict=True)):
        assert rec.shape == (len(toks), len(layers), len(heads)) and rec.dtype == np.float32
        start = tokens.shape[1] - len(seqs[r]) + len(c) - 1  # the last context token
        want = diag[r, :, :, start : start + len(toks)].transpose(2, 0, 1)
        np.testing.assert_allclose(rec, want, atol=RECORD_ATOL, rtol=0)


def test_generation_records_equal_forward_diagonal(tiny):
    """Ragged prompts, one row stopping early; records of a layer/head subset; recording does
    not change the tokens."""
    lm, _ = tiny["llama3"]
    rng = np.random.default_rng(3)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (5, 9, 3)]
    plain = lm.generate(prompts, max_new_tokens=6, ignore_eos=True)
    stop = plain.tokens[0][2]
    gen = lm.generate(
        prompts,
        max_new_tokens=6,
        stop_token_ids=[stop],
        attention_layers=(1, 0),
        attention_heads=(3, 0, 1),
    )
    assert gen.attention_layers == (1, 0) and gen.attention_heads == (3, 0, 1)
    assert len(gen.tokens[0]) <= 3 and gen.finish_reasons[0] == "stop"
    for want, got in zip(plain.tokens, gen.tokens, strict=True):
        cut = want.index(stop) + 1 if stop in want else len(want)
        assert got == want[:cut]
    _check_records(lm, prompts, gen, [1, 0], [3, 0, 1])


def test_generation_records_with_prefix(tiny):
    lm, _ = tiny["llama3"]
    rng = np.random.default_rng(11)
    prefix_ids = random_ids(rng, 1, 7)[0].tolist()
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (2, 4)]
    gen = lm.generate(
        prompts,
        max_new_tokens=5,
        ignore_eos=True,
        prefix=lm.prefill([prefix_ids]),
        prefix_rows=[0, 0],
        prefix_keep=[7, 3],
        attention_layers="all",
    )
    contexts = [prefix_ids[:7] + prompts[0], prefix_ids[:3] + prompts[1]]
    heads = list(range(lm.config.num_heads))
    _check_records(lm, contexts, gen, list(range(lm.config.num_layers)), heads)


def _types(text: str) -> str:
    return text.replace(" ", "")


def test_programs_without_the_request_hold_no_weights(tiny):
    """The off programs (forward and the decode loop) have no tensor of the weights' shape and
    fewer ops than the on programs; `apply` without the argument is the off program."""
    lm, _ = tiny["llama3"]
    cfg, params = lm.config, lm.params
    b, t = 3, 7  # [3, heads=4, 7, 7]: no other tensor of the program has this shape
    tok = jax.ShapeDtypeStruct((b, t), jnp.int32)
    val = jax.ShapeDtypeStruct((b, t), bool)
    jit = jax.jit(models.apply, static_argnames=("config", "attention"))
    lower = lambda **kw: jit.lower(params, tok, tok, config=cfg, valid=val, **kw).as_text()
    off, default, on = lower(attention=None), lower(), lower(attention=(0, 1))
    weights = f"tensor<{b}x{cfg.num_heads}x{t}x{t}xf32>"
    assert off == default
    assert weights in _types(on) and weights not in _types(off)
    assert len(off.splitlines()) < len(on.splitlines())

    def decode_text(**att):
        spec = gen_lib.DecodeSpec(
            config=cfg,
            num_new=8,
            sample=False,
            filtered=False,
            want_stats=False,
            hidden_layers=None,
            num_hidden_slots=0,
            steer_layer=None,
            steer_prompt=False,
            **att,
        )
        args = (
            params,
            tok,
            val,
            jax.ShapeDtypeStruct((b, 2), jnp.uint32),
            jax.ShapeDtypeStruct((b,), bool),
            np.int32(8),
            np.float32(0),
            np.int32(0),
            np.float32(1),
            np.array([1], np.int32),
            np.bool_(False),
            np.int32(0),
            np.zeros(8, np.int32),
            jnp.zeros((cfg.hidden_size,)),
            jnp.zeros(()),
        )
        return gen_lib.decode.lower(*args, spec=spec).as_text()

    buffer = f"tensor<{b}x8x{cfg.num_layers}x{cfg.num_heads}xf32>"
    d_off, d_on = decode_text(), decode_text(attention_layers=(0, 1))
    assert buffer in _types(d_on) and buffer not in _types(d_off)
    assert len(d_off.splitlines()) < len(d_on.splitlines())


def test_bad_attention_requests_raise(tiny):
    lm, _ = tiny["llama3"]
    n, h = lm.config.num_layers, lm.config.num_heads
    tokens = [[5, 6, 7]]
    for kw, match in (
        (dict(attention_layers=(n,)), "out of range"),
        (dict(attention_layers=(-n - 1,)), "out of range"),
        (dict(attention_layers=()), "out of range"),
        (dict(attention_layers="first"), "'all'"),
        (dict(attention_layers=0, attention_heads=(h,)), "attention_heads"),
        (dict(attention_heads=(0,)), "needs attention_layers"),
    ):
        with pytest.raises(ValueError, match=match):
            lm.forward(tokens, **kw)
        with pytest.raises(ValueError, match=match):
            lm.generate(tokens, max_new_tokens=2, **kw)
    pos = np.zeros((1, 3), np.int32)
    ids = np.asarray(tokens, np.int32)
    for kw in (
        dict(attention=(n,)),
        dict(attention=[0]),
        dict(attention=(0,), attention_heads=(h,)),
    ):
        with pytest.raises(ValueError, match="attention"):
            models.apply(lm.params, ids, pos, config=lm.config, **kw)
    with pytest.raises(ValueError, match="needs attention"):
        models.apply(lm.params, ids, pos, config=lm.config, attention_heads=(0,))
