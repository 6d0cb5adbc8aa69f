"""Runtime tests on tiny random checkpoints: HF parity per architecture, KV cache, sampling,
steering, hidden-state capture, loaders (GGUF quant types, llama.cpp Q/K permutation), errors."""

import dataclasses
import json
import os
import shutil

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_models import TINY_VARIANTS, random_ids, torch, write_gguf_from_hf

from introspect import models
from introspect.models import generate as gen_lib
from introspect.models import loaders

HF_ATOL = 1e-4  # float32 vs float32, tiny random weights


@pytest.mark.parametrize("variant", list(TINY_VARIANTS))
def test_hf_safetensors_logits_parity(tiny_dirs, variant):
    path, hf_model = tiny_dirs[variant]
    lm = models.load(path)
    if variant == "llama-sharded":
        assert os.path.isfile(os.path.join(path, "model.safetensors.index.json"))
    ids = random_ids(np.random.default_rng(0), 2, 12)
    with torch.no_grad():
        ref = hf_model(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    ours = np.asarray(lm.forward(ids, hidden_layers=None).logits)
    np.testing.assert_allclose(ours, ref, atol=HF_ATOL, rtol=0)


def test_left_padding_does_not_change_outputs(tiny_lm):
    rng = np.random.default_rng(1)
    short = random_ids(rng, 1, 5)[0].tolist()
    long = random_ids(rng, 1, 11)[0].tolist()
    alone = tiny_lm.forward([short]).logits[0]
    tokens = np.zeros((2, 11), np.int32)
    mask = np.zeros((2, 11), bool)
    tokens[0, 6:], mask[0, 6:] = short, True
    tokens[1], mask[1] = long, True
    padded = tiny_lm.forward(tokens, mask=mask).logits[0, 6:]
    np.testing.assert_allclose(padded, alone, atol=1e-5)


def test_forward_without_logits_gives_the_same_hidden_states(tiny_lm):
    ids = random_ids(np.random.default_rng(13), 2, 9)
    full = tiny_lm.forward(ids, hidden_layers=[1, 2])
    feats = tiny_lm.forward(ids, hidden_layers=[1, 2], return_logits=False)
    assert feats.logits is None
    np.testing.assert_array_equal(np.asarray(feats.hidden_states), np.asarray(full.hidden_states))


def test_generation_matches_full_forward(tiny_lm):
    """KV-cache decoding == recomputing the whole sequence: tokens, log-probs, stats, hidden."""
    rng = np.random.default_rng(2)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (3, 9, 6)]
    layers = (0, 1, 2)
    steps = (0, 3, 7)
    gen = tiny_lm.generate(
        prompts,
        max_new_tokens=8,
        ignore_eos=True,
        return_stats=True,
        hidden_layers=layers,
        hidden_steps=steps,
    )
    assert gen.hidden_states.shape == (3, 3, 3, tiny_lm.config.hidden_size)
    for i, p in enumerate(prompts):
        assert len(gen.tokens[i]) == 8
        full = p + gen.tokens[i]
        out = tiny_lm.forward([full], hidden_layers=layers)
        logits = np.asarray(out.logits[0, len(p) - 1 : len(full) - 1])  # predicts each new token
        assert np.argmax(logits, -1).tolist() == gen.tokens[i]
        logp = jax.nn.log_softmax(logits, -1)
        picked = np.take_along_axis(np.asarray(logp), np.array(gen.tokens[i])[:, None], -1)[:, 0]
        np.testing.assert_allclose(gen.logprobs[i], picked, atol=1e-5)
        stats = np.asarray(gen_lib.step_statistics(jnp.asarray(logits)))
        for k, name in enumerate(gen_lib.STAT_NAMES):
            np.testing.assert_allclose(gen.stats[name][i], stats[:, k], rtol=1e-5, atol=1e-5)
        for s_idx, s in enumerate(steps):
            np.testing.assert_allclose(
                gen.hidden_states[:, i, s_idx],
                np.asarray(out.hidden_states[:, 0, len(p) - 1 + s]),
                atol=1e-5,
            )


def test_prefix_reuse_equals_generating_from_the_concatenation(tiny_lm):
    """generate(prefix=) continuing cuts of prefilled prefixes == generating from
    prefix[:keep] + prompt: tokens, log-probs and stats; ragged prefixes (left padding), a
    cut at 0 and at the full length, several rows per prefix in one call."""
    rng = np.random.default_rng(5)
    prefixes = [random_ids(rng, 1, n)[0].tolist() for n in (11, 4, 17)]
    rows = [0, 2, 2, 1, 2, 0]
    keep = [5, 17, 0, 4, 9, 11]
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (2, 3, 1, 5, 2, 4)]
    pre = tiny_lm.prefill(prefixes)
    assert pre.lengths[:3].tolist() == [11, 4, 17]
    got = tiny_lm.generate(
        prompts,
        max_new_tokens=6,
        ignore_eos=True,
        return_stats=True,
        prefix=pre,
        prefix_rows=rows,
        prefix_keep=keep,
        batch_size=4,
    )
    want = tiny_lm.generate(
        [prefixes[r][:k] + p for r, k, p in zip(rows, keep, prompts, strict=True)],
        max_new_tokens=6,
        ignore_eos=True,
        return_stats=True,
    )
    assert got.tokens == want.tokens
    for i in range(len(prompts)):
        np.testing.assert_allclose(got.logprobs[i], want.logprobs[i], atol=1e-5)
        for name in gen_lib.STAT_NAMES:
            np.testing.assert_allclose(got.stats[name][i], want.stats[name][i], atol=1e-5)
    # errors name what was wrong
    with pytest.raises(ValueError, match="prefix_rows must be 6 indices into the 3 prefixes"):
        tiny_lm.generate(prompts, prefix=pre, prefix_rows=[3] * 6)
    with pytest.raises(ValueError, match="prefix_keep must be 6 counts"):
        tiny_lm.generate(prompts, prefix=pre, prefix_rows=rows, prefix_keep=[12] * 6)
    with pytest.raises(ValueError, match="need a prefix"):
        tiny_lm.generate(prompts, prefix_rows=rows)
    with pytest.raises(TypeError, match="LM.prefill"):
        tiny_lm.generate(prompts, prefix=prefixes)
    with pytest.raises(NotImplementedError, match="sliding-window"):
        cfg = dataclasses.replace(tiny_lm.config, sliding_window=8)
        models.LM(cfg, tiny_lm.params, tiny_lm.tokenizer).prefill(prefixes)


def test_signals_from_generation_equal_signals_from_score(tiny_lm):
    """One generation pass gives every logit-based signal: the statistics computed inside the
    compiled loop equal those of a teacher-forced `score` of the generated tokens."""
    from introspect import signals

    rng = np.random.default_rng(12)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (4, 10, 7)]
    gen = tiny_lm.generate(
        prompts, max_new_tokens=6, temperature=1.0, seed=5, return_stats=True, ignore_eos=True
    )
    sc = tiny_lm.score(prompts, gen.tokens)
    g_stats, g_mask = signals.from_ragged(gen.logprobs, gen.stats)
    s_stats, s_mask = signals.from_ragged(sc.logprobs, sc.stats)
    assert np.array_equal(g_mask, s_mask)
    for name in signals.stats_signals():
        needs_vocab = signals.SIGNALS.meta(name, "needs_vocab")
        kw = {"vocab_size": tiny_lm.config.vocab_size} if needs_vocab else {}
        np.testing.assert_allclose(
            signals.compute(name, g_stats, g_mask, **kw),
            signals.compute(name, s_stats, s_mask, **kw),
            rtol=1e-4,
            atol=1e-4,
            err_msg=name,
        )


def test_stop_tokens_and_finish_reasons(tiny_lm):
    rng = np.random.default_rng(3)
    prompt = random_ids(rng, 1, 6)[0].tolist()
    free = tiny_lm.generate([prompt], max_new_tokens=8, ignore_eos=True)
    stop_at = free.tokens[0][3]
    first = free.tokens[0].index(stop_at)
    gen = tiny_lm.generate([prompt, prompt], max_new_tokens=8, stop_token_ids=[stop_at])
    assert gen.tokens[0] == free.tokens[0][: first + 1]
    assert gen.finish_reasons == ["stop", "stop"]
    assert len(gen.logprobs[0]) == first + 1
    ignored = tiny_lm.generate(
        [prompt], max_new_tokens=8, stop_token_ids=[stop_at], ignore_eos=True
    )
    assert ignored.tokens == free.tokens and ignored.finish_reasons == ["length"]


def test_sampling_determinism_and_batch_invariance(tiny_lm):
    rng = np.random.default_rng(4)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (4, 7, 5, 9, 3)]
    kw = dict(max_new_tokens=8, temperature=1.0, seed=11, ignore_eos=True)
    a = tiny_lm.generate(prompts, **kw)
    b = tiny_lm.generate(prompts, batch_size=2, **kw)  # other chunking and batch buckets
    assert a.tokens == b.tokens
    c = tiny_lm.generate(prompts, **{**kw, "seed": 12})
    assert a.tokens != c.tokens
    greedy = tiny_lm.generate(prompts, max_new_tokens=8, ignore_eos=True)
    top1 = tiny_lm.generate(prompts, **{**kw, "top_k": 1})
    tiny_p = tiny_lm.generate(prompts, **{**kw, "top_p": 1e-6})
    assert top1.tokens == greedy.tokens == tiny_p.tokens


def test_compiles_once_per_bucket(tiny_lm):
    rng = np.random.default_rng(9)
    gen_lib.decode.clear_cache()
    for n_prompt, n_new, batch in [(5, 5, 3), (7, 6, 4), (12, 8, 4), (17, 5, 3)]:
        prompts = [random_ids(rng, 1, n_prompt)[0].tolist() for _ in range(batch)]
        tiny_lm.generate(prompts, max_new_tokens=n_new)
    # (16-token prompt bucket, 8 new, batch 4) serves the first three calls; 17 tokens -> bucket 24
    assert gen_lib.decode._cache_size() == 2


@pytest.mark.parametrize("seed", range(20))
def test_filter_logits_matches_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(3, 50)).astype(np.float32) * 3
    top_k = int(rng.integers(0, 10))
    top_p = float(rng.uniform(0.05, 1.0))
    got = np.asarray(
        gen_lib.filter_logits(jnp.asarray(logits), jnp.int32(top_k), jnp.float32(top_p))
    )
    for row, out in zip(logits, got, strict=True):
        order = np.argsort(-row)
        keep = np.zeros(50, bool)
        keep[order[: top_k or 50]] = True
        kept = np.where(keep, row, -np.inf)
        p = np.exp(kept - kept.max())
        p /= p.sum()
        ps = p[order]
        before = np.cumsum(ps) - ps
        nucleus = np.zeros(50, bool)
        nucleus[order[before < top_p]] = True
        expect = keep & nucleus
        assert np.array_equal(np.isfinite(out), expect)
        np.testing.assert_array_equal(out[expect], row[expect])


def test_steering_adds_vector_to_residual_stream(tiny_lm):
    cfg = tiny_lm.config
    ids = random_ids(np.random.default_rng(5), 2, 7)
    vec = np.random.default_rng(6).normal(size=cfg.hidden_size).astype(np.float32)
    base = tiny_lm.forward(ids)
    steer = models.Steering(vector=vec, scale=2.5, layer=0)
    out = tiny_lm.forward(ids, steering=steer)
    hb, hs = np.asarray(base.hidden_states), np.asarray(out.hidden_states)
    np.testing.assert_array_equal(hs[0], hb[0])  # before the steered block: untouched
    np.testing.assert_allclose(hs[1] - hb[1], np.broadcast_to(2.5 * vec, hb[1].shape), atol=1e-5)
    assert not np.allclose(out.logits, base.logits)
    # Generation: scale 0 is a no-op, a large push changes the continuation.
    prompt = ids[0].tolist()
    plain = tiny_lm.generate([prompt], max_new_tokens=6, ignore_eos=True)
    zero = tiny_lm.generate(
        [prompt],
        max_new_tokens=6,
        ignore_eos=True,
        steering=models.Steering(vector=vec, scale=0.0, layer=1),
    )
    push = tiny_lm.generate(
        [prompt],
        max_new_tokens=6,
        ignore_eos=True,
        steer_prompt=True,
        steering=models.Steering(vector=vec, scale=50.0, layer=1),
    )
    assert zero.tokens == plain.tokens
    assert push.tokens != plain.tokens


def _shift(args, x):
    return x + args["v"]


def _zero(args, x):
    return x * args


def test_replace_substitutes_the_residual_stream(tiny_lm):
    """Replace(fn=x + v) == Steering(v); fn=0 zeroes the stream after the block (and only
    there, only at masked positions); bad layers and non-callables are refused."""
    cfg = tiny_lm.config
    ids = random_ids(np.random.default_rng(8), 2, 7)
    vec = np.random.default_rng(9).normal(size=cfg.hidden_size).astype(np.float32)
    steer = tiny_lm.forward(ids, steering=models.Steering(vector=vec, scale=1.0, layer=1))
    shift = tiny_lm.forward(ids, replace=models.Replace({"v": vec}, _shift, 1))
    np.testing.assert_allclose(shift.logits, steer.logits, atol=1e-5)
    mask = np.zeros(ids.shape, bool)
    mask[:, 3:] = True
    base = tiny_lm.forward(ids)
    zero = tiny_lm.forward(ids, replace=models.Replace(np.float32(0.0), _zero, 0, mask))
    hb, hz = np.asarray(base.hidden_states), np.asarray(zero.hidden_states)
    np.testing.assert_array_equal(hz[1][:, 3:], 0.0)
    np.testing.assert_array_equal(hz[:2, :, :3], hb[:2, :, :3])  # causal: earlier tokens kept
    with pytest.raises(ValueError, match="replace.layer must be in"):
        tiny_lm.forward(ids, replace=models.Replace({"v": vec}, _shift, cfg.num_layers))
    with pytest.raises(TypeError, match="replace.fn must be callable"):
        tiny_lm.forward(ids, replace=models.Replace({"v": vec}, None, 0))
    with pytest.raises(TypeError, match="models.Replace"):
        tiny_lm.forward(ids, replace=_shift)


def test_score_matches_forward(tiny_lm):
    rng = np.random.default_rng(7)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (4, 8)]
    conts = [random_ids(rng, 1, n)[0].tolist() for n in (5, 2)]
    sc = tiny_lm.score(prompts, conts)
    for p, c, lp in zip(prompts, conts, sc.logprobs, strict=True):
        logits = np.asarray(tiny_lm.forward([p + c], hidden_layers=None).logits[0])
        logp = np.asarray(jax.nn.log_softmax(logits, -1))
        expect = [logp[len(p) - 1 + j, t] for j, t in enumerate(c)]
        np.testing.assert_allclose(lp, expect, atol=1e-5)
    assert sc.sum_logprobs.shape == (2,)


# ----------------------------------------------------------------------------------------------
# GGUF loader: quant types, llama.cpp's Q/K permutation, metadata.
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama_hf(tiny_dirs):
    return tiny_dirs["llama-sharded"][1]  # tied Llama, no RoPE scaling: plain llama.cpp layout


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0"])
def test_gguf_dequantisation_and_unpermutation(tmp_path, tiny_llama_hf, smollm, qtype):
    path = str(tmp_path / f"tiny-{qtype}.gguf")
    write_gguf_from_hf(path, tiny_llama_hf, qtype=qtype)
    config, params, reader = loaders.load_gguf(path)
    assert config.num_layers == 2 and config.tie_embeddings and config.num_kv_heads == 2
    # Every tensor equals gguf's own dequantisation of the stored data, un-permuted.
    stored = {t.name: t for t in reader.tensors}
    q = stored["blk.1.attn_q.weight"]
    deq = gguf.quants.dequantize(q.data, q.tensor_type).reshape(64, 64)
    ref_q = tiny_llama_hf.state_dict()["model.layers.1.self_attn.q_proj.weight"].numpy()
    ours_q = params["layers_1"]["attn"]["q_proj"]["kernel"].T
    np.testing.assert_array_equal(ours_q, loaders._unpermute_rope(deq, 4))
    tol = {"F32": 0, "F16": 1e-4, "BF16": 1e-3, "Q8_0": 2e-3}.get(qtype, 2e-2)
    np.testing.assert_allclose(ours_q, ref_q, atol=tol)
    if qtype == "F32":  # exact weights -> exact model: logits parity with the HF original
        lm = models.LM(config, params, smollm.tokenizer)
        ids = random_ids(np.random.default_rng(8), 1, 10)
        with torch.no_grad():
            ref = tiny_llama_hf(torch.tensor(ids, dtype=torch.long)).logits.numpy()
        np.testing.assert_allclose(np.asarray(lm.forward(ids).logits), ref, atol=HF_ATOL)


def test_gguf_unsupported_quant_type(tmp_path, tiny_llama_hf):
    path = str(tmp_path / "iq.gguf")
    write_gguf_from_hf(path, tiny_llama_hf, override={"blk.0.attn_v.weight": "IQ4_NL"})
    with pytest.raises(NotImplementedError, match=r"IQ4_NL.*supported: F32"):
        loaders.load_gguf(path)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


def test_load_errors(tmp_path, tiny_dirs):
    with pytest.raises(FileNotFoundError, match="not found"):
        models.load(str(tmp_path / "missing.gguf"))
    with pytest.raises(FileNotFoundError, match="not found"):
        models.load(str(tmp_path / "no" / "such" / "dir"))
    with pytest.raises(ValueError, match="unknown model 'no-such-model'"):
        models.load("no-such-model")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="not a readable GGUF"):
        models.load(str(garbage))
    with pytest.raises(ValueError, match="dtype"):
        models.load("smollm2-135m-instruct", dtype="int8")


def _copy_dir(src, dst, edit_config=None):
    shutil.copytree(src, dst)
    if edit_config:
        with open(os.path.join(dst, "config.json")) as f:
            cfg = json.load(f)
        cfg.update(edit_config)
        with open(os.path.join(dst, "config.json"), "w") as f:
            json.dump(cfg, f)
    return str(dst)


def test_config_weights_mismatch(tmp_path, tiny_dirs):
    src = tiny_dirs["qwen2"][0]
    bad = _copy_dir(src, tmp_path / "wide", {"intermediate_size": 128})
    with pytest.raises(loaders.WeightsMismatchError, match=r"gate_proj.*\(64, 96\).*\(64, 128\)"):
        loaders.load_hf_dir(bad)
    deep = _copy_dir(src, tmp_path / "deep", {"num_hidden_layers": 3})
    with pytest.raises(loaders.WeightsMismatchError, match="missing"):
        loaders.load_hf_dir(deep)
    shallow = _copy_dir(src, tmp_path / "shallow", {"num_hidden_layers": 1})
    with pytest.raises(loaders.WeightsMismatchError, match="not used"):
        loaders.load_hf_dir(shallow)
    other = _copy_dir(src, tmp_path / "gpt", {"model_type": "gpt2"})
    with pytest.raises(NotImplementedError, match="model_type 'gpt2'"):
        loaders.load_hf_dir(other)
    sharded = _copy_dir(tiny_dirs["llama-sharded"][0], tmp_path / "sharded")
    shard = sorted(f for f in os.listdir(sharded) if f.endswith(".safetensors"))[0]
    os.remove(os.path.join(sharded, shard))
    with pytest.raises(FileNotFoundError, match="missing"):
        loaders.load_hf_dir(sharded)


def test_handle_argument_errors(tiny_lm):
    with pytest.raises(ValueError, match="non-empty list"):
        tiny_lm.generate([], max_new_tokens=2)
    with pytest.raises(ValueError, match="temperature"):
        tiny_lm.generate([[5]], temperature=-1.0)
    with pytest.raises(ValueError, match="top_p"):
        tiny_lm.generate([[5]], top_p=0.0)
    with pytest.raises(ValueError, match="hidden_steps"):
        tiny_lm.generate([[5]], max_new_tokens=4, hidden_layers=[0], hidden_steps=[4])
    with pytest.raises(ValueError, match="hidden_layers"):
        tiny_lm.forward([[5, 6]], hidden_layers=[7])
    with pytest.raises(ValueError, match="steering.layer"):
        tiny_lm.forward([[5, 6]], steering=models.Steering(vector=np.zeros(64), scale=1.0, layer=5))
    with pytest.raises(ValueError, match="steering.vector"):
        tiny_lm.forward([[5, 6]], steering=models.Steering(vector=np.zeros(3), scale=1.0, layer=0))
    with pytest.raises(ValueError, match="mask shape"):
        tiny_lm.forward([[5, 6]], mask=[[True]])
    with pytest.raises(ValueError, match="got 2 prompts but 1"):
        tiny_lm.score([[5], [6]], [[7]])
