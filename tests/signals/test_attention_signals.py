"""RAUQ, Attention Score and Focus (`introspect.signals.attention`) against direct transcriptions of
LM-Polygraph's estimators (IINemo/lm-polygraph efea882: estimators/rauq.py, attention_score.py,
focus.py, stat_calculators/greedy_probs.py) on random attention tensors, several seeds.

The references below keep LM-Polygraph's data layout: "attention_all" [layers * heads, c, c]
(row j: the attention of the step that generated token j over tokens 0 .. j-1), built here the
way greedy_probs.py builds it from transformers' per-step generation attentions."""

import warnings
from collections import defaultdict

import numpy as np
import pytest
import torch

from introspect.signals import attention as A

SEEDS = (0, 1, 2)


def _rows(rng, n, vocab=None):
    """n ragged rows: lengths (one of 1), padded [n, T] mask."""
    lengths = rng.integers(2, 9, size=n)
    lengths[0] = 1
    t = int(lengths.max()) + 2
    mask = np.arange(t)[None, :] < lengths[:, None]
    return lengths, t, mask


def _softmax_rows(rng, shape):
    x = np.exp(rng.normal(size=shape) * 2)
    return x / x.sum(-1, keepdims=True)


def _generation_attentions(full, prompt_len, c):
    """transformers' generate(output_attentions=True) attentions of one row ([layers, heads,
    T, T] full causal weights): step 0 the prompt block, step j >= 1 [1, heads, 1, P + j]."""
    steps = [[full[layer][None, :, :prompt_len, :prompt_len] for layer in range(len(full))]]
    for j in range(1, c):
        q = prompt_len + j - 1
        steps.append([full[layer][None, :, q : q + 1, : q + 1] for layer in range(len(full))])
    return steps


def _ref_attention_all(attentions, c):
    """greedy_probs.py: attn_mask[:, j, :j] from the per-step attentions (one row)."""
    n_rows = sum(a.shape[1] for a in attentions[0])
    attn_mask = np.zeros((n_rows, c, c))
    for j in range(1, c):
        current_attention_len = attentions[j][0].shape[-1]
        start_idx, end_idx = -j, current_attention_len
        stacked = np.vstack(
            [
                attentions[j][layer][0][head][0][start_idx:end_idx]
                for layer in range(len(attentions[j]))
                for head in range(len(attentions[j][layer][0]))
            ]
        )
        attn_mask[:, j, :j] = stacked
    return attn_mask


def _ref_rauq(greedy_log_likelihoods, attention_all, n_layers, n_heads, alpha, num_hidden):
    """rauq.py RAUQ.__call__ (use_entropy passes log(max_entropy - entropy + 1e-10))."""
    middle = range(num_hidden // 3, int(np.ceil(num_hidden / 3 * 2) + 1))
    layers = [i for i in range(n_layers) if i in middle]
    attentions = []
    for w in attention_all:
        r = w.reshape(n_layers, n_heads, w.shape[-2], w.shape[-1])
        attentions.append(np.diagonal(r, offset=-1, axis1=2, axis2=3))
    out = []
    for idx in range(len(greedy_log_likelihoods)):
        lp = greedy_log_likelihoods[idx]
        scores = []
        for layer in layers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                head = attentions[idx][layer].mean(-1).argmax()
            conf = [np.exp(lp[0])]
            for j in range(1, len(lp)):
                a = attentions[idx][layer, head, j - 1]
                conf.append(alpha * np.exp(lp[j]) + (1 - alpha) * a * conf[-1])
            scores.append(1 - np.log(conf).mean())
        out.append(np.max(scores))
    return np.array(out)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("num_layers", [2, 6, 30])
def test_rauq_matches_lm_polygraph(seed, num_layers):
    rng = np.random.default_rng(seed)
    heads, n, prompt = 3, 4, 5
    lengths, t, mask = _rows(rng, n)
    logprobs = np.where(mask, np.log(rng.uniform(0.01, 1, size=(n, t))), 0.0)
    entropy = np.where(mask, rng.uniform(0, 3.5, size=(n, t)), 0.0)  # < log(50)
    records = np.zeros((n, t, num_layers, heads))
    attention_all = []
    for r, c in enumerate(lengths):
        full = np.tril(_softmax_rows(rng, (num_layers, heads, prompt + c, prompt + c)))
        attention_all.append(_ref_attention_all(_generation_attentions(full, prompt, c), c))
        diag = np.diagonal(full, axis1=-2, axis2=-1)  # the generation records
        records[r, :c] = diag[..., prompt - 1 : prompt - 1 + c].transpose(2, 0, 1)
    records[~mask] = rng.uniform(size=records[~mask].shape)  # padding is never read
    layers = list(A.rauq_layers(num_layers))
    middle = range(num_layers // 3, int(np.ceil(num_layers / 3 * 2) + 1))
    assert layers == [i for i in middle if i < num_layers]
    rec = records[:, :, layers]
    lls = [logprobs[r, :c] for r, c in enumerate(lengths)]
    for alpha in (None, 0.35):
        want = _ref_rauq(lls, attention_all, num_layers, heads, alpha or 0.2, num_layers)
        np.testing.assert_allclose(A.rauq(logprobs, rec, mask, alpha=alpha), want, rtol=1e-12)
    # Instruct default and the entropy variant (alpha 0.9 instruct / 0.8).
    want = _ref_rauq(lls, attention_all, num_layers, heads, 0.5, num_layers)
    np.testing.assert_allclose(A.rauq(logprobs, rec, mask, instruct=True), want, rtol=1e-12)
    vocab = 50
    ent_lp = [np.log(np.log(vocab) - entropy[r, :c] + 1e-10) for r, c in enumerate(lengths)]
    want = _ref_rauq(ent_lp, attention_all, num_layers, heads, 0.8, num_layers)
    got = A.rauq(None, rec, mask, entropy=entropy, vocab_size=vocab)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    per_layer = A.rauq_layer_scores(logprobs, rec, mask)
    np.testing.assert_allclose(per_layer.max(1), A.rauq(logprobs, rec, mask), rtol=0)


def test_rauq_defaults_and_errors():
    assert A.rauq_layers(30) == tuple(range(10, 21))
    assert A.rauq_layers(32) == tuple(range(10, 23))
    assert A.rauq_layers(1) == (0,)
    assert A.rauq_alpha() == 0.2 and A.rauq_alpha(use_entropy=True) == 0.8
    assert (
        A.rauq_alpha(instruct=True) == 0.5 and A.rauq_alpha(instruct=True, use_entropy=True) == 0.9
    )
    lp, att = np.zeros((2, 3)), np.full((2, 3, 1, 2), 0.5)
    out = A.rauq(lp, att, np.array([[True] * 3, [False] * 3]))
    assert np.isfinite(out[0]) and np.isnan(out[1])
    # Certain tokens: c_j = alpha + (1 - alpha) a c_{j-1} with a = 1 stays 1, uncertainty 1.
    np.testing.assert_allclose(A.rauq(lp, np.ones((2, 3, 1, 2))), 1.0)
    with pytest.raises(ValueError, match="alpha"):
        A.rauq(lp, att, alpha=1.5)
    with pytest.raises(ValueError, match="vocab_size"):
        A.rauq(None, att, entropy=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="attention"):
        A.rauq(lp, att[0])
    with pytest.raises(ValueError, match="logprobs"):
        A.rauq(lp[:, :2], att)
    with pytest.raises(ValueError, match="mask"):
        A.rauq(lp, att, np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="num_layers"):
        A.rauq_layers(0)


def _ref_attention_score(weights, layer, gen_len, gen_only):
    """attention_score.py for one unpadded row, weights [layers, heads, T, T]."""
    ue = 0
    layer_attention = weights[layer]
    for head in range(layer_attention.shape[0]):
        attn = layer_attention[head]
        if gen_only:
            attn = attn[-gen_len:-1, -gen_len:-1]
        ue += np.sum(np.log(np.diag(attn) + 1e-12))
    return -(ue / layer_attention.shape[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_attention_score_matches_lm_polygraph(seed):
    rng = np.random.default_rng(seed)
    layers, heads, n = 4, 3, 3
    layer = A.attention_score_layer(layers)
    assert layer == 2
    prompts = rng.integers(2, 6, size=n)
    gens = rng.integers(2, 7, size=n)
    lens = prompts + gens
    t = int(lens.max())
    weights = np.zeros((n, layers, heads, t, t))
    mask, gen_mask = np.zeros((n, t), bool), np.zeros((n, t), bool)
    for r in range(n):
        off = t - lens[r]  # left padding
        weights[r, ..., off:, off:] = np.tril(_softmax_rows(rng, (layers, heads, lens[r], lens[r])))
        mask[r, off:] = True
        gen_mask[r, t - gens[r] : t - 1] = True
    diag = A.attention_diagonal(weights[:, layer]).transpose(0, 2, 1)  # [n, T, heads]
    for gen_only, m in ((False, mask), (True, gen_mask)):
        want = [
            _ref_attention_score(
                weights[r, ..., t - lens[r] :, t - lens[r] :], layer, gens[r], gen_only
            )
            for r in range(n)
        ]
        np.testing.assert_allclose(A.attention_score(diag, m), want, rtol=1e-12)
    assert A.attention_score(diag, np.zeros((n, t), bool)).tolist() == [0.0] * n
    with pytest.raises(ValueError, match="square"):
        A.attention_diagonal(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="self_weights"):
        A.attention_score(diag[0])


def _ref_focus(greedy_log_prob, attention_all, greedy_token, kw_mask, token_idf, p, gamma):
    """focus.py token_level_focus_scores (after the spaCy keyword step) + Focus.__call__."""
    attention_weight = np.max(attention_all, axis=0)
    prob = np.exp(greedy_log_prob)
    prob[prob < p] = 0
    if prob.shape[-1] > len(token_idf):
        prob[:, : len(token_idf)] = prob[:, : len(token_idf)] * token_idf
    else:
        prob = prob * token_idf
    prob = prob / np.sum(prob, axis=-1, keepdims=True)
    pt = torch.tensor(prob)
    ent = torch.sum(-torch.where(pt > 0, pt * pt.log2(), pt.new([0.0])), dim=-1).numpy()
    entropy = np.exp2(ent)
    ll = torch.nn.NLLLoss(reduction="none")(
        torch.log(torch.tensor(prob) + 1e-5), torch.tensor(greedy_token)
    )
    hc = ll.numpy() + entropy
    if not kw_mask.sum():
        return [], np.nan
    weight = np.zeros_like(attention_weight)
    attn_kw = attention_weight[kw_mask]
    weight[kw_mask] = attn_kw / (np.sum(attn_kw, axis=1, keepdims=True) + 1e-6)
    token_focus = []
    for i, token_weights in enumerate(weight):
        ue = hc[i]
        if len(token_focus):
            ue += gamma * (np.array(token_focus) * token_weights[: len(token_focus)]).sum()
        token_focus.append(ue)
    tf = np.array(token_focus)
    return tf, np.mean(tf[kw_mask[: len(tf)]])


@pytest.mark.parametrize("seed", SEEDS)
def test_focus_matches_lm_polygraph(seed):
    rng = np.random.default_rng(seed)
    layers, heads, n, vocab, prompt = 2, 3, 4, 40, 3
    lengths, t, mask = _rows(rng, n)
    idf = A.focus_idf([rng.integers(0, vocab, size=12) for _ in range(30)], 36)  # V' < V
    logits = rng.normal(size=(n, t, vocab)) * 3
    logprobs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    tokens = rng.integers(0, vocab, size=(n, t))
    keywords = rng.uniform(size=(n, t)) < 0.5
    keywords[1] = False  # a row without keywords: NaN
    full_w = np.zeros((n, layers, heads, prompt + t, prompt + t))
    all_refs = []
    for r, c in enumerate(lengths):
        s = prompt + c
        full_w[r, ..., :s, :s] = np.tril(_softmax_rows(rng, (layers, heads, s, s)))
        attention_all = _ref_attention_all(
            _generation_attentions(full_w[r, ..., :s, :s], prompt, c), c
        )
        all_refs.append(attention_all)
    gen_att = A.generated_attention(full_w, np.full(n, prompt), lengths)
    assert gen_att.shape == (n, layers, heads, t - 2, t - 2)
    for r, c in enumerate(lengths):
        np.testing.assert_array_equal(gen_att[r, ..., :c, :c].reshape(-1, c, c), all_refs[r])
    att = np.zeros((n, t, t))
    att[:, : t - 2, : t - 2] = gen_att.max(axis=(1, 2))
    hc = A.focus_hallucination(logprobs, tokens, idf)
    tf = A.focus_token_scores(hc, att, keywords, mask)
    got = A.focus(hc, att, keywords, mask)
    for r, c in enumerate(lengths):
        kw = keywords[r, :c]
        args = (logprobs[r, :c].copy(), all_refs[r], tokens[r, :c], kw, idf, 0.01, 0.9)
        ref_tf, ref = _ref_focus(*args)
        if not kw.any():
            assert np.isnan(got[r]) and np.isnan(tf[r]).all()
            continue
        np.testing.assert_allclose(tf[r, :c], ref_tf, rtol=1e-10)
        assert np.isnan(tf[r, c:]).all()
        np.testing.assert_allclose(got[r], ref, rtol=1e-10)
    # Another p and gamma, an IDF table as long as the vocabulary.
    idf_full = rng.uniform(0.5, 3, size=vocab)
    hc2 = A.focus_hallucination(logprobs, tokens, idf_full, p=0.002)
    got2 = A.focus(hc2, att, keywords, mask, gamma=0.5)
    r = 2
    c = lengths[r]
    _, ref = _ref_focus(
        logprobs[r, :c].copy(), all_refs[r], tokens[r, :c], keywords[r, :c], idf_full, 0.002, 0.5
    )
    np.testing.assert_allclose(got2[r], ref, rtol=1e-10)


def test_focus_idf_and_errors():
    docs = [[1, 2, 2, 5], [2, 3], [9, 1]]
    df = defaultdict(int)
    for doc in docs:
        for tok in set(doc):
            df[tok] += 1
    want = np.array([np.log(len(docs) / (df[i] + 1)) for i in range(8)])
    np.testing.assert_allclose(A.focus_idf(docs, 8), want)
    with pytest.raises(ValueError, match="document"):
        A.focus_idf([], 8)
    with pytest.raises(ValueError, match="idf"):
        A.focus_hallucination(np.zeros((2, 4)), np.zeros(2, int), np.ones(5))
    with pytest.raises(ValueError, match="logprobs"):
        A.focus_hallucination(np.zeros((2, 4)), np.zeros(3, int), np.ones(4))
    with pytest.raises(ValueError, match="attention"):
        A.focus(np.zeros((2, 3)), np.zeros((2, 3, 2)), np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="keywords"):
        A.focus(np.zeros((2, 3)), np.zeros((2, 3, 3)), np.ones((2, 2), bool))
    with pytest.raises(ValueError, match="starts"):
        A.generated_attention(np.zeros((1, 2, 5, 5)), [0], [2])
    with pytest.raises(ValueError, match="starts"):
        A.generated_attention(np.zeros((1, 2, 5, 5)), [3], [3])
