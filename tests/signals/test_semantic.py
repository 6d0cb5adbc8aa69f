"""Sampling / semantic uncertainty estimators against loop-based numpy transcriptions of
LM-Polygraph's formulas (float64 references; the estimators run in float32, hence the
tolerances), hand-computed small cases, degenerate inputs and error paths."""

import itertools
from functools import cache

import jax
import numpy as np
import pytest
import scipy.linalg

from introspect.signals import semantic as S

N, K, T = 4, 4, 7  # one shape for random and hand cases, so each function compiles once
SEEDS = range(4)
TOL = {"rtol": 2e-5, "atol": 2e-5}  # float32 vs float64, no eigendecomposition
EIG_TOL = {"rtol": 1e-4, "atol": 1e-4}  # float32 eigh vs float64


def _sim(rng, n=N, k=K):
    """NLI-like similarity: entries in [0, 1], diagonal 1 (a text entails itself)."""
    s = rng.uniform(0, 1, (n, k, k))
    s[:, np.arange(k), np.arange(k)] = 1.0
    return s


def _loglik(rng, shape):
    return np.log(rng.uniform(0.02, 1.0, shape))


# ------------------------------------------------------------------------------- references


def _ref_semantic_entropy(ll, classes, cpe="sum", ee="mean", texts=None):
    out = []
    for b in range(classes.shape[0]):
        class_to_sample, sample_to_class = {}, {}
        for i, c in enumerate(classes[b]):
            class_to_sample.setdefault(c, []).append(i)
        order = list(class_to_sample)  # class ids as first seen
        for cid, c in enumerate(order):
            for i in class_to_sample[c]:
                sample_to_class[i] = cid
        members = [class_to_sample[c] for c in order]
        if cpe == "sum":
            if texts is not None:  # use_unique_responses
                members = [
                    [m[u] for u in np.unique(texts[b][m], return_index=True)[1]] for m in members
                ]
            class_lp = [np.logaddexp.reduce(ll[b][m]) for m in members]
        else:
            class_lp = np.log([len(m) / classes.shape[1] for m in members])
        lps = [class_lp[sample_to_class[j]] for j in range(classes.shape[1])]
        if ee == "mean":
            out.append(-np.mean(lps))
        else:
            out.append(-np.sum([lp * np.exp(lp) for lp in lps]))
    return np.array(out)


def _ref_laplacian(w):
    w = (w + w.T) / 2
    d = np.diag(w.sum(axis=1))
    d_is = np.linalg.inv(np.sqrt(d))
    return np.eye(len(w)) - d_is @ w @ d_is


def _ref_eigval(s):
    return np.array(
        [sum(max(0, 1 - lam) for lam in np.linalg.eigh(_ref_laplacian(w))[0]) for w in s]
    )


def _ref_degmat(s):
    out = []
    for w in s:
        w = (w + w.T) / 2
        d = np.diag(w.sum(axis=1))
        out.append(np.trace(len(w) - d) / len(w) ** 2)
    return np.array(out)


def _ref_eccentricity(s, thres=0.9):
    out = []
    for w in s:
        lam, vec = np.linalg.eigh(_ref_laplacian(w))
        vec = vec[:, lam < thres].T
        c = -np.asarray([np.linalg.norm(x - x.mean(0), 2) for x in vec])
        out.append(np.linalg.norm(c, 2))
    return np.array(out)


def _ref_eccentricity_paper(s, k_eigs):
    """The paper's form: rows of the k smallest eigenvectors embed the samples."""
    out = []
    for w in s:
        _, vec = np.linalg.eigh(_ref_laplacian(w))
        emb = vec[:, :k_eigs]  # [k samples, k_eigs]
        out.append(np.linalg.norm(emb - emb.mean(0, keepdims=True)))
    return np.array(out)


def _ref_kle_graph(e, c):
    out = []
    for me, mc in zip(e, c, strict=True):
        me, mc = me + me.T, mc + mc.T
        out.append(me + 0.5 * (2 * np.ones(me.shape) - me - mc))
    return np.array(out)


def _ref_kle(s, t=0.3, normalize=True, scale=True, jitter=0.0):
    out = []
    for w in s:
        lap = np.diag(w.sum(axis=0)) - w
        kern = scipy.linalg.expm(-t * lap)
        if normalize:
            dv = np.sqrt(np.diag(kern)) + 1e-12
            kern = kern / np.outer(dv, dv) / len(w)
        e = np.linalg.eig(kern + jitter * np.eye(len(w)))[0].real
        ent = 0.0
        for x in e:
            if abs(x) > 1e-8:
                ent -= x * np.log(x)
        out.append(ent / np.log(len(w)) if scale else ent)
    return np.array(out)


def _ref_token_sar_one(lp, sim_tokens):
    r = 1 - sim_tokens
    return (-lp * r / r.sum()).sum()


def _ref_sentence_sar(logp, sim, t=0.001):
    out = []
    for lp, s in zip(logp, sim, strict=True):
        p = np.exp(lp)
        rs = p * s * (1 - np.eye(len(s)))
        out.append(np.mean(-np.log(rs.sum(-1) / t + p)))
    return np.array(out)


def _ref_semantic_density(g_lp, g_len, s_lp, s_len, contra, neutral, texts):
    out = []
    for b in range(len(g_lp)):
        num, den = [], []
        for j in np.unique(texts[b], return_index=True)[1]:
            q = np.exp(s_lp[b, j]) ** (1 / s_len[b, j])
            d = contra[b, j] + neutral[b, j] / 2
            kern = 1 - d if d <= 1 else 0
            num.append(q * kern)
            den.append(q)
        q = np.exp(g_lp[b]) ** (1 / g_len[b])
        out.append(-(np.sum(num) + q) / (np.sum(den) + q))
    return np.array(out)


# ------------------------------------------------------------------------- semantic entropy


@pytest.mark.parametrize("seed", SEEDS)
def test_semantic_entropy_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    ll = _loglik(rng, (N, K)) * 5
    classes = rng.integers(0, 3, (N, K)) * 7 - 4  # arbitrary integer labels
    for cpe, ee in itertools.product(("sum", "frequency"), ("mean", "direct")):
        got = S.semantic_entropy(
            ll, classes, class_probability_estimation=cpe, entropy_estimation=ee
        )
        want = _ref_semantic_entropy(ll, classes, cpe, ee)
        np.testing.assert_allclose(got, want, **TOL, err_msg=f"{cpe}/{ee}")
    ids = rng.integers(0, 3, (N, K))
    ids = ids * 10 + classes  # identical texts are in the same class
    texts = np.array([[f"t{i}" for i in row] for row in ids])
    got = S.semantic_entropy(ll, classes, sample_ids=ids)
    np.testing.assert_allclose(got, _ref_semantic_entropy(ll, classes, texts=texts), **TOL)


def test_semantic_entropy_hand_cases():
    ll = np.log([[0.25] * 4, [0.2, 0.3, 0.1, 0.1], [0.25] * 4, [0.4, 0.4, 0.1, 0.1]])
    classes = [[0, 0, 1, 1], [3, 3, 3, 3], [0, 1, 2, 3], [0, 0, 1, 1]]
    ln2, ln4 = np.log(2), np.log(4)
    # row 0: two classes of probability 1/2 -> log 2 (the "direct" sum runs over samples, as
    # LM-Polygraph's, so each class counts twice); row 1: one class -> 0 by frequency, and
    # -log(sum p) by "sum" (not normalised); row 2: four singletons -> log 4
    want = {
        ("sum", "mean"): [ln2, -np.log(0.7), ln4],
        ("frequency", "mean"): [ln2, 0.0, ln4],
        ("sum", "direct"): [2 * ln2, -np.log(0.7) * 0.7 * 4, ln4],
        ("frequency", "direct"): [2 * ln2, 0.0, ln4],
    }
    for (cpe, ee), w in want.items():
        got = S.semantic_entropy(
            ll, classes, class_probability_estimation=cpe, entropy_estimation=ee
        )
        np.testing.assert_allclose(got[:3], w, rtol=1e-6, atol=1e-7, err_msg=f"{cpe}/{ee}")
    # row 3: a duplicate text (same id) is summed once with sample_ids
    ids = [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3], [5, 5, 6, 7]]
    got = S.semantic_entropy(ll, classes, sample_ids=ids)
    np.testing.assert_allclose(got[3], -(2 * np.log(0.4) + 2 * np.log(0.2)) / 4, rtol=1e-6)
    np.testing.assert_allclose(got[:3], want[("sum", "mean")], rtol=1e-6, atol=1e-7)
    freq = S.semantic_entropy(None, classes, class_probability_estimation="frequency")
    np.testing.assert_allclose(freq[:3], want[("frequency", "mean")], rtol=1e-6, atol=1e-7)
    # one sample: -ll; very unlikely samples: finite (log space)
    np.testing.assert_allclose(S.semantic_entropy([[-1.7]], [[0]]), [1.7], rtol=1e-6)
    assert np.all(np.isfinite(S.semantic_entropy(np.full((N, K), -300.0), classes)))


def test_num_sem_sets():
    rng = np.random.default_rng(0)
    classes = rng.integers(-2, 4, (6, K))
    got = S.num_sem_sets(classes)
    np.testing.assert_array_equal(got, [len(set(row)) for row in classes])
    np.testing.assert_array_equal(S.num_sem_sets([[1, 1, 1], [0, 1, 2]]), [1.0, 3.0])
    np.testing.assert_array_equal(S.num_sem_sets([[9]]), [1.0])


# ------------------------------------------------------------------------------ graph spectra


@pytest.mark.parametrize("seed", SEEDS)
def test_graph_estimators_match_numpy(seed):
    rng = np.random.default_rng(seed)
    s = _sim(rng)
    np.testing.assert_allclose(S.eigval_laplacian(s), _ref_eigval(s), **EIG_TOL)
    np.testing.assert_allclose(S.degree_matrix(s), _ref_degmat(s), **TOL)
    np.testing.assert_allclose(S.eccentricity(s), _ref_eccentricity(s), **EIG_TOL)
    np.testing.assert_allclose(
        S.eccentricity(s, threshold=None, k_eigs=2), _ref_eccentricity_paper(s, 2), **EIG_TOL
    )
    e, c = rng.uniform(0, 0.5, (2, N, K, K))  # entail + contra <= 1
    w = S.kle_weighted_graph(e, c)
    np.testing.assert_allclose(w, _ref_kle_graph(e, c), **TOL)
    np.testing.assert_allclose(S.kernel_language_entropy(w), _ref_kle(w), **EIG_TOL)


def test_kle_options_match_numpy():
    rng = np.random.default_rng(7)
    w = np.asarray(S.kle_weighted_graph(*rng.uniform(0, 0.5, (2, N, K, K))), np.float64)
    for kw in ({"normalize": False}, {"scale": False}, {"t": 1.5, "jitter": 0.01}):
        got = S.kernel_language_entropy(w, **kw)
        np.testing.assert_allclose(got, _ref_kle(w, **kw), **EIG_TOL, err_msg=str(kw))


def test_graph_estimators_hand_cases():
    same = np.ones((K, K))  # all samples equivalent
    apart = np.eye(K)  # no two samples similar
    blocks = np.kron(np.eye(2), np.ones((2, 2)))  # two pairs of identical samples: two sets
    lone = np.zeros((K, K))  # one sample similar to nothing, itself included
    lone[:3, :3] = 1.0  # (LM-Polygraph: singular D, LinAlgError): a set of its own
    w = np.stack([same, apart, blocks, lone])
    np.testing.assert_allclose(S.eigval_laplacian(w), [1, K, 2, 2], atol=1e-5)
    np.testing.assert_allclose(S.degree_matrix(w), [0, 1 - 1 / K, 0.5, 1 - 9 / 16], atol=1e-6)
    ecc = np.asarray(S.eccentricity(w))
    np.testing.assert_allclose(ecc[:3], [0, np.sqrt(K - 1), 1], atol=1e-3)
    assert np.isfinite(ecc[3])
    kle = np.asarray(S.kernel_language_entropy(w * 2))  # 2: KLE's weight for mutual entailment
    np.testing.assert_allclose(kle[1], 1.0, atol=1e-5)  # no edges: the maximum, log K / log K
    assert kle[0] < kle[2] < kle[1]
    # one sample: minimal uncertainty everywhere, never NaN
    one = np.ones((1, 1, 1))
    for fn, want in [
        (S.eigval_laplacian, 1.0),
        (S.degree_matrix, 0.0),
        (S.eccentricity, 0.0),
        (S.kernel_language_entropy, 0.0),
    ]:
        np.testing.assert_allclose(fn(one), [want], atol=1e-6, err_msg=fn.__name__)
    # an asymmetric matrix is symmetrised as LM-Polygraph does
    s = _sim(np.random.default_rng(3))
    sym = (s + np.swapaxes(s, 1, 2)) / 2
    np.testing.assert_allclose(S.eigval_laplacian(s), S.eigval_laplacian(sym), atol=1e-6)
    np.testing.assert_allclose(S.eccentricity(s), S.eccentricity(sym), atol=1e-6)


# ------------------------------------------------------------------------------------------ SAR


@pytest.mark.parametrize("seed", SEEDS)
def test_sar_family_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    lp = _loglik(rng, (N, K, T))
    tok_sim = rng.uniform(0, 1, (N, K, T))
    mask = rng.random((N, K, T)) < 0.7
    mask[..., 0] = True
    s = _sim(rng)
    lp_padded = np.where(mask, lp, np.nan)  # padding may hold anything
    got = S.token_sar(lp_padded, 1 - tok_sim, mask)
    ref_tok = np.array(
        [
            [_ref_token_sar_one(lp[b, j][mask[b, j]], tok_sim[b, j][mask[b, j]]) for j in range(K)]
            for b in range(N)
        ]
    )
    np.testing.assert_allclose(got, ref_tok, **TOL)
    seq = lp.sum(-1) / 3  # sequence log-likelihoods (moderate, so exp does not underflow)
    np.testing.assert_allclose(S.sentence_sar(seq, s), _ref_sentence_sar(seq, s), **TOL)
    got = S.sar(lp_padded, 1 - tok_sim, s, mask)
    np.testing.assert_allclose(got, _ref_sentence_sar(-ref_tok, s), **TOL)
    np.testing.assert_allclose(
        S.sentence_sar(seq, s, t=0.5), _ref_sentence_sar(seq, s, t=0.5), **TOL
    )


def test_sar_hand_and_degenerate_cases():
    lp = np.log([[0.5, 0.25, 0.8]])
    # uniform relevance: mean NLL; all-zero relevance (LM-Polygraph: NaN) falls back to it
    np.testing.assert_allclose(S.token_sar(lp, np.ones((1, 3))), [-lp.mean()], rtol=1e-6)
    np.testing.assert_allclose(S.token_sar(lp, np.zeros((1, 3))), [-lp.mean()], rtol=1e-6)
    # all relevance on one token: its NLL
    np.testing.assert_allclose(S.token_sar(lp, [[0.0, 2.0, 0.0]]), [np.log(4)], rtol=1e-6)
    # no tokens: 0
    np.testing.assert_allclose(S.token_sar(lp, np.ones((1, 3)), np.zeros((1, 3), bool)), [0.0])
    # one sample: -log p
    np.testing.assert_allclose(S.sentence_sar([[-2.0]], [[[1.0]]]), [2.0], rtol=1e-6)
    # samples 0 and 1 similar (s = 0.5), the others similar to nothing:
    # -mean_j log(p_j + sum_{i != j} s_ji p_i / t)
    p = np.array([0.2, 0.4, 0.1, 0.3])
    sim = np.tile(np.eye(K), (N, 1, 1))
    sim[:, 0, 1] = sim[:, 1, 0] = 0.5
    logp = np.tile(np.log(p), (N, 1))
    logp[1] = -300.0  # log space: no inf when every probability underflows in exp
    got = np.asarray(S.sentence_sar(logp, sim, t=0.1))
    terms = np.log([0.2 + 0.5 * 0.4 / 0.1, 0.4 + 0.5 * 0.2 / 0.1, 0.1, 0.3])
    np.testing.assert_allclose(got[0], -np.mean(terms), rtol=1e-6)
    np.testing.assert_allclose(got[1], 300.0 - np.log(1 + 0.5 / 0.1) / 2, rtol=1e-6)


# ------------------------------------------------------------------- semantic density, CoCoA


@pytest.mark.parametrize("seed", SEEDS)
def test_semantic_density_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    g_len = rng.integers(1, 9, N).astype(float)
    s_len = rng.integers(1, 9, (N, K)).astype(float)
    g_lp = _loglik(rng, N) * g_len
    s_lp = _loglik(rng, (N, K)) * s_len
    probs = rng.dirichlet(np.ones(3), (N, K))  # entail, neutral, contra
    neutral, contra = probs[..., 1], probs[..., 2]
    ids = rng.integers(0, 3, (N, K))
    texts = np.array([[f"text {i}" for i in row] for row in ids])
    want = _ref_semantic_density(g_lp, g_len, s_lp, s_len, contra, neutral, texts)
    got = S.semantic_density(g_lp, g_len, s_lp, s_len, contra, neutral, sample_ids=ids)
    np.testing.assert_allclose(got, want, **TOL)
    every = np.array([[f"{j}" for j in range(K)]] * N)
    want = _ref_semantic_density(g_lp, g_len, s_lp, s_len, contra, neutral, every)
    np.testing.assert_allclose(
        S.semantic_density(g_lp, g_len, s_lp, s_len, contra, neutral), want, **TOL
    )


def test_semantic_density_hand_cases():
    z = np.zeros((1, 2))
    args = ([-1.0], [2], [[-1.0, -3.0]], [[1, 3]])
    np.testing.assert_allclose(S.semantic_density(*args, z, z), [-1.0], rtol=1e-6)  # all agree
    # every sample contradicts the greedy answer: only the greedy answer's weight is in the sum
    q_g, q = np.exp(-0.5), np.exp(-1.0)  # p^(1/len) of the greedy answer and each sample
    got = S.semantic_density(*args, np.ones((1, 2)), z)
    np.testing.assert_allclose(got, [-q_g / (q_g + 2 * q)], rtol=1e-6)
    # neutral counts half: kernel 1 - 0.5 = 0.5
    got = S.semantic_density(*args, z, np.ones((1, 2)))
    np.testing.assert_allclose(got, [-(q_g + q) / (q_g + 2 * q)], rtol=1e-6)
    assert np.isfinite(S.semantic_density([-5000.0], [1], [[-5000.0]], [[1]], [[1.0]], [[0.0]]))


@pytest.mark.parametrize("seed", SEEDS)
def test_cocoa_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    lp = _loglik(rng, (N, T))
    ent = rng.uniform(0, 3, (N, T))
    mask = rng.random((N, T)) < 0.7
    mask[:, 0] = True
    sim = rng.uniform(0, 1, (N, K))
    dis = np.array([np.mean(1 - sim[b]) for b in range(N)])
    msp = [-np.sum(lp[b][mask[b]]) * dis[b] for b in range(N)]
    ppl = [-np.mean(lp[b][mask[b]]) * dis[b] for b in range(N)]
    mte = [np.mean(ent[b][mask[b]]) * dis[b] for b in range(N)]
    np.testing.assert_allclose(S.cocoa(lp, sim, mask), msp, **TOL)
    np.testing.assert_allclose(S.cocoa(lp, sim, mask, variant="ppl"), ppl, **TOL)
    np.testing.assert_allclose(S.cocoa(ent, sim, mask, variant="mte"), mte, **TOL)


def test_cocoa_hand_cases():
    lp = np.log([[0.5, 0.5]])
    np.testing.assert_allclose(S.cocoa(lp, [[1.0, 1.0]]), [0.0])  # samples agree with greedy
    np.testing.assert_allclose(S.cocoa(lp, [[0.0, 0.5]]), [2 * np.log(2) * 0.75], rtol=1e-6)
    np.testing.assert_allclose(S.cocoa(lp, [[0.0]], variant="ppl"), [np.log(2)], rtol=1e-6)
    empty = S.cocoa(lp, [[0.0]], np.zeros((1, 2), bool), variant="ppl")
    np.testing.assert_allclose(empty, [0.0])


# ------------------------------------------------------------------------- ROUGE and Jaccard


@cache
def _lcs_rec(a, b):
    if not a or not b:
        return 0
    if a[-1] == b[-1]:
        return _lcs_rec(a[:-1], b[:-1]) + 1
    return max(_lcs_rec(a[:-1], b), _lcs_rec(a, b[:-1]))


@pytest.mark.parametrize(
    "target, prediction, want",
    [
        ("the cat sat on the mat", "the cat on mat", 0.8),  # LCS 4: P = 1, R = 4/6
        ("Hello, World!", "hello world", 1.0),  # case and punctuation
        ("", "a", 0.0),
        ("!!!", "...", 0.0),  # no tokens on either side
        ("café au lait", "caf au", 0.8),  # non-ASCII letters separate tokens, like rouge_score
        ("a b c d", "d c b a", 0.25),
    ],
)
def test_rouge_l_hand_cases(target, prediction, want):
    assert S.rouge(target, prediction) == pytest.approx(want)


def test_rouge_n_and_tokenizer():
    assert S.rouge("a a b", "a b b", metric="rouge1") == pytest.approx(2 / 3)
    assert S.rouge("a a b", "a b b", metric="rouge2") == pytest.approx(0.5)
    assert S.rouge_tokenize("It's 3.5 o'clock!") == ["it", "s", "3", "5", "o", "clock"]
    stem = lambda w: w.rstrip("s")  # stemmed only when longer than 3 characters
    assert S.rouge_tokenize("cats cat dogs its", stem) == ["cat", "cat", "dog", "its"]
    assert S.rouge("cats", "cat", stemmer=stem) == 1.0 and S.rouge("cats", "cat") == 0.0


def test_rouge_l_matches_recursive_lcs():
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = tuple(rng.choice(list("abcd"), rng.integers(1, 9)))
        b = tuple(rng.choice(list("abcd"), rng.integers(1, 9)))
        lcs = _lcs_rec(a, b)
        want = (
            0.0 if lcs == 0 else 2 * (lcs / len(b)) * (lcs / len(a)) / (lcs / len(b) + lcs / len(a))
        )
        assert S.rouge(" ".join(a), " ".join(b)) == pytest.approx(want)


def test_lexical_similarity():
    texts = [["the cat sat on the mat", "the cat on mat", "the cat on mat"], ["Paris"], ["a", "b"]]
    got = S.lexical_similarity(texts)
    np.testing.assert_allclose(got, [-(0.8 + 0.8 + 1.0) / 3, -1.0, 0.0])
    got = S.lexical_similarity([["a a b", "a b b"]], metric="rouge2")
    np.testing.assert_allclose(got, [-0.5])


def test_jaccard_similarity():
    got = S.jaccard_similarity([["The cat", "the dog", ""], ["x", "x", "y"]])
    want0 = [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]]
    np.testing.assert_allclose(got, [want0, [[1, 1, 0], [1, 1, 0], [0, 0, 1]]])


# ----------------------------------------------------------------------------- jit and errors


def test_under_jit():
    rng = np.random.default_rng(1)
    s = _sim(rng)
    ll = _loglik(rng, (N, K))
    classes = rng.integers(0, 3, (N, K))
    f = jax.jit(lambda w: S.eigval_laplacian(w) + S.eccentricity(w) + S.degree_matrix(w))
    want = S.eigval_laplacian(s) + S.eccentricity(s) + S.degree_matrix(s)
    np.testing.assert_allclose(f(s), want, rtol=1e-5)
    g = jax.jit(S.semantic_entropy)
    np.testing.assert_allclose(g(ll, classes), S.semantic_entropy(ll, classes), rtol=1e-6)
    with pytest.raises(ValueError, match=r"similarity: has shape \(4, 4\) \(rank 2\)"):
        f(s[0])


def test_errors():
    rng = np.random.default_rng(2)
    s = _sim(rng)
    ll = _loglik(rng, (N, K))
    classes = rng.integers(0, 3, (N, K))
    with pytest.raises(ValueError, match=r"log_likelihoods and classes: shapes differ"):
        S.semantic_entropy(ll[:, :3], classes)
    with pytest.raises(ValueError, match="classes: dtype float"):
        S.semantic_entropy(ll, classes.astype(float))
    bad = ll.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"log_likelihoods: contains 1 NaN or inf"):
        S.semantic_entropy(bad, classes)
    with pytest.raises(ValueError, match=r"log_likelihoods: 1 value\(s\) outside"):
        S.semantic_entropy(np.where(np.arange(N * K).reshape(N, K) == 3, 0.5, ll), classes)
    with pytest.raises(ValueError, match="log_likelihoods: got None"):
        S.semantic_entropy(None, classes)
    with pytest.raises(ValueError, match="entropy_estimation: expected one of"):
        S.semantic_entropy(ll, classes, entropy_estimation="plugin")
    with pytest.raises(
        ValueError, match=r"similarity: has shape \(4, 4, 3\); expected \[n, k, k\]"
    ):
        S.eigval_laplacian(s[..., :3])
    with pytest.raises(ValueError, match=r"similarity: 1 value\(s\) outside \[0, 1\]"):
        S.degree_matrix(np.where(np.arange(s.size).reshape(s.shape) == 7, 1.5, s))
    nan_s = s.copy()
    nan_s[0, 1, 2] = np.inf
    with pytest.raises(ValueError, match="similarity: contains 1 NaN or inf"):
        S.eccentricity(nan_s)
    with pytest.raises(ValueError, match="non-negative edge weights"):
        S.kernel_language_entropy(-s)
    with pytest.raises(ValueError, match=r"t: expected a finite number in \(0, inf\]"):
        S.kernel_language_entropy(s, t=0.0)
    with pytest.raises(ValueError, match="k_eigs: expected an integer >= 1"):
        S.eccentricity(s, k_eigs=0)
    lp = _loglik(rng, (N, K, T))
    with pytest.raises(ValueError, match="token_logprobs and token_relevance: shapes differ"):
        S.sar(lp, lp[..., :3], s)
    with pytest.raises(ValueError, match="token_relevance: .*non-negative relevances"):
        S.token_sar(lp, lp)
    with pytest.raises(ValueError, match=r"sample_similarity: has shape \(4, 4, 4\); expected"):
        S.sentence_sar(ll[:, :3], s)
    with pytest.raises(ValueError, match=r"contra: 16 value\(s\) outside \[0, 1\]"):
        S.semantic_density(ll[:, 0], np.ones(N), ll, np.ones((N, K)), ll, 0 * ll)
    with pytest.raises(ValueError, match="sample_lengths: has zero lengths"):
        S.semantic_density(ll[:, 0], np.ones(N), ll, np.zeros((N, K)), 0 * ll, 0 * ll)
    with pytest.raises(ValueError, match="variant: expected one of"):
        S.cocoa(lp[:, 0], s[:, 0], variant="nll")
    with pytest.raises(ValueError, match="token_scores: .*log-probabilities"):
        S.cocoa(-lp[:, 0], s[:, 0])
    with pytest.raises(ValueError, match="metric: expected 'rougeL'"):
        S.lexical_similarity([["a", "b"]], metric="BLEU")
    with pytest.raises(ValueError, match=r"texts\[1\]: expected a non-empty sequence"):
        S.lexical_similarity([["a"], []])
    with pytest.raises(ValueError, match="texts: expected a non-empty sequence"):
        S.lexical_similarity("a b")
    with pytest.raises(ValueError, match="different numbers of samples"):
        S.jaccard_similarity([["a", "b"], ["c"]])
