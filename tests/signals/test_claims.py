"""Claim-conditioned probability (`introspect.signals.claims`): the token / claim formulas against a
loop transcription of LM-Polygraph's ClaimConditionedProbabilityClaim, the NLI combination table,
sentence claims, and the driver on the embedded SmolLM2 against an independent `lm.forward`."""

import string

import numpy as np
import pytest

from introspect.signals import claims as C

# ---------------------------------------------------------------------------------------------
# LM-Polygraph's loops (estimators/claim/claim_conditioned_probability.py), transcribed
# ---------------------------------------------------------------------------------------------


def _polygraph_combine(forward, backward):
    if forward == backward:
        return forward
    if all(x in [forward, backward] for x in ["entail", "contra"]):
        return "neutral"
    for x in ["entail", "contra"]:
        if x in [forward, backward]:
            return x
    return "neutral"


def _polygraph_token_ccp(token_alternatives, nli_matrix, is_stopword):
    entail_logprobs, contra_logprobs = [], []
    for i in range(len(token_alternatives)):
        _, logprob = token_alternatives[i]
        if is_stopword(token_alternatives[0][0]) or i == 0:
            nli = "entail"
        else:
            nli = _polygraph_combine(nli_matrix[0][i], nli_matrix[i][0])
        if nli == "entail":
            entail_logprobs.append(logprob)
        elif nli == "contra":
            contra_logprobs.append(logprob)
    entail = np.logaddexp.reduce(entail_logprobs)
    return entail - np.logaddexp.reduce(entail_logprobs + contra_logprobs)


def _random_case(rng):
    """T tokens x k alternatives: words, log-probs, a pair -> class table and stopwords."""
    t, k = int(rng.integers(1, 12)), int(rng.integers(2, 11))
    vocab = ["paris", "Paris", "london", "the", "a", "", "rome", "of", "berlin", "x"]
    words = [[str(w) for w in rng.choice(vocab, k)] for _ in range(t)]
    logits = rng.normal(0, 3, (t, 40))
    logp = logits - np.logaddexp.reduce(logits, -1, keepdims=True)
    lp = -np.sort(-logp, -1)[:, :k]
    rng.shuffle(lp[:, 1:].T)  # alternatives need not be sorted
    if t > 2:
        lp[1, 2:] = -np.inf  # a row with -inf alternatives
    table = {(a, b): str(rng.choice(C.CLASSES)) for a in vocab for b in vocab}
    if t > 3:  # a row whose alternatives are all neutral both ways
        for w in words[3][1:]:
            table[(words[3][0], w)] = table[(w, words[3][0])] = "neutral"
    return words, lp, table


@pytest.mark.parametrize("seed", range(40))
def test_token_and_claim_ccp_match_lm_polygraph(seed):
    rng = np.random.default_rng(seed)
    words, lp, table = _random_case(rng)
    stopset = {"the", "a", "of"} if seed % 2 else set()
    stop_fn = lambda w: w in stopset
    calls = []

    def nli(pairs):
        calls.append(list(pairs))
        return [table[p] for p in pairs]

    stop = np.array([stop_fn(row[0]) for row in words])
    classes = C.alternative_classes([words], [stop], nli)[0]
    got = C.token_ccp(lp, classes, stop)
    want = []
    for row, row_lp in zip(words, lp, strict=True):
        matrix = [[table[(a, b)] for b in row] for a in row]
        want.append(_polygraph_token_ccp(list(zip(row, row_lp, strict=True)), matrix, stop_fn))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.all(got[stop] == 0) and np.all(got <= 0)
    # NLI once, on unique pairs, none for stopword rows
    assert len(calls) <= 1 and all(len(set(c)) == len(c) for c in calls)
    asked = {p for c in calls for p in c}
    rows = [r for r, s in zip(words, stop, strict=True) if not s]
    assert asked == {(r[0], w) for r in rows for w in r[1:]} | {
        (w, r[0]) for r in rows for w in r[1:]
    }
    # claims: exp of the summed token log CCP; the same as LM-Polygraph's _reduce
    t = len(words)
    claims = [rng.choice(t, int(rng.integers(1, t + 1)), replace=False) for _ in range(3)]
    np.testing.assert_allclose(
        C.claim_ccp(got, claims), [np.exp(np.sum(np.asarray(want)[c])) for c in claims], rtol=1e-12
    )


def test_token_ccp_special_rows():
    lp = np.log([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    cls = np.array([[1, 2, 2], [0, 1, 1], [0, 0, 1], [2, 1, 1]])  # column 0 is always entail
    stop = np.array([False, False, False, True])
    got = np.exp(C.token_ccp(lp, cls, stop))
    np.testing.assert_allclose(got, [1.0, 0.5, 0.8, 1.0])
    # raw logits work: a per-row shift cancels; leading batch dimensions are allowed
    np.testing.assert_allclose(np.exp(C.token_ccp(lp[None] + 7.0, cls[None], stop[None])), [got])


def test_combine_nli_table():
    e, c, n = "entail", "contra", "neutral"
    table = {
        (e, e): e, (c, c): c, (n, n): n, (e, c): n, (c, e): n,
        (e, n): e, (n, e): e, (c, n): c, (n, c): c,
    }  # fmt: skip
    for (f, b), want in table.items():
        assert C.combine_nli(f, b) == want == _polygraph_combine(f, b)
    with pytest.raises(ValueError, match="backward class 'ENTAILMENT'"):
        C.combine_nli("entail", "ENTAILMENT")


def test_exact_match_nli_and_stopwords():
    assert C.exact_match_nli([("Paris", "paris"), ("Paris", "London"), ("", "")]) == [
        "entail", "contra", "entail",
    ]  # fmt: skip
    assert C.strip_word(" Paris,\n") == "Paris" and C.strip_word("'s") == "s"
    assert C.strip_word("\t") == "\t"  # LM-Polygraph strips punctuation, spaces and \n only
    assert 100 <= len(C.STOPWORDS) <= 180
    assert all(C.is_stopword(w) for w in ("The", "of", "", "is", "s", "n't", "would"))
    assert not any(C.is_stopword(w) for w in ("Paris", "capital", "1889"))


def test_bad_inputs_raise():
    lp, cls, stop = np.zeros((2, 3)), np.zeros((2, 3), int), np.zeros(2, bool)
    with pytest.raises(ValueError, match=r"alt_classes: expected shape \(2, 3\)"):
        C.token_ccp(lp, cls[:, :2], stop)
    with pytest.raises(ValueError, match="stop: expected shape"):
        C.token_ccp(lp, cls, stop[:1])
    with pytest.raises(ValueError, match="integer codes"):
        C.token_ccp(lp, cls + 3, stop)
    with pytest.raises(ValueError, match="chosen token"):
        C.token_ccp(np.array([[-np.inf, 0.0]]), np.zeros((1, 2), int), np.zeros(1, bool))
    with pytest.raises(ValueError, match="NaN"):
        C.token_ccp(np.array([[0.0, np.nan]]), np.zeros((1, 2), int), np.zeros(1, bool))
    with pytest.raises(ValueError, match=r"claims\[1\]: token indices must be in \[0, 2\)"):
        C.claim_ccp([0.0, -1.0], [[0], [2]])
    with pytest.raises(ValueError, match=r"claims\[0\]: expected a non-empty"):
        C.claim_ccp([0.0, -1.0], [[]])
    words, stop = [[["paris", "london"]]], [np.array([False])]
    with pytest.raises(ValueError, match="nli returned 1 classes for 2 word pairs"):
        C.alternative_classes(words, stop, lambda pairs: ["entail"])
    with pytest.raises(ValueError, match="unknown classes, e.g. 'ENTAILMENT'"):
        C.alternative_classes(words, stop, lambda pairs: ["ENTAILMENT"] * len(pairs))


class _PieceTokenizer:
    """Token id = index into `pieces`; id 0 is a special token."""

    pieces = ["<eos>", "Pi", " is", " 3", ".", "14", "!", "\n\n", " Next", " one", "  ", "Ok"]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.pieces[i] for i in ids if i or not skip_special_tokens)


def test_sentence_claims_partition_the_tokens():
    tok = _PieceTokenizer()
    # "Pi is 3.14!\n\n Next one. Ok" + <eos>: "3.14" does not split; "\n\n" joins sentence 1
    ids = [1, 2, 3, 4, 5, 6, 7, 8, 9, 4, 10, 11, 0]
    got = C.sentence_claims(tok, ids)
    assert [t for t, _ in got] == ["Pi is 3.14!", "Next one.", "Ok"]
    np.testing.assert_array_equal(np.concatenate([c for _, c in got]), np.arange(len(ids)))
    assert [c.tolist() for _, c in got] == [[0, 1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [11, 12]]
    # leading whitespace / special tokens join the first sentence; an unfinished one is kept
    got = C.sentence_claims(tok, [0, 10, 1, 2, 4, 10, 11])
    assert [(t, c.tolist()) for t, c in got] == [("Pi is.", [0, 1, 2, 3, 4, 5]), ("Ok", [6])]
    assert [t for t, _ in C.sentence_claims(tok, [1, 4, 11])] == ["Pi.Ok"]  # no space: no cut
    assert [(t, c.tolist()) for t, c in C.sentence_claims(tok, [0])] == [("", [0])]
    assert [(t, c.tolist()) for t, c in C.sentence_claims(tok, [10, 7])] == [("", [0, 1])]
    with pytest.raises(ValueError, match="at least one token"):
        C.sentence_claims(tok, [])


# ---------------------------------------------------------------------------------------------
# The driver on the embedded model
# ---------------------------------------------------------------------------------------------


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.logaddexp.reduce(x, -1, keepdims=True)


def test_ccp_driver_on_smollm(smollm):
    lm, k = smollm, 10
    tok = lm.tokenizer
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Tell me about Paris in two sentences."}],
        add_generation_prompt=True,
    )
    answers = [
        tok.encode("Paris is the capital of France. It is known for the Eiffel Tower.",
                   add_special_tokens=False),
        tok.encode("Paris is in Spain!", add_special_tokens=False),
    ]  # fmt: skip
    out = C.ccp(lm, [prompt, prompt], answers, k=k)
    assert len(out) == 2
    missed = 0  # answer tokens outside the model's top k (column 0 holds them anyway)
    for a, r in zip(answers, out, strict=True):
        n = len(a)
        ids, lp = r["alt_ids"], r["alt_logprobs"]
        assert ids.shape == lp.shape == r["alt_classes"].shape == (n, k)
        # top-k log-probs = log_softmax of an independent forward pass
        logp = _log_softmax(lm.forward([prompt + a], hidden_layers=None).logits[0])
        rows = logp[len(prompt) - 1 : len(prompt) - 1 + n]
        assert ids[:, 0].tolist() == a
        np.testing.assert_allclose(lp, np.take_along_axis(rows, ids, -1), atol=1e-4)
        others = rows.copy()
        others[np.arange(n), a] = -np.inf
        np.testing.assert_allclose(lp[:, 1:], -np.sort(-others, -1)[:, : k - 1], atol=1e-4)
        assert all(len(set(row)) == k for row in ids.tolist())
        missed += int(np.sum(rows[np.arange(n), a] < -np.sort(-rows, -1)[:, k - 1]))
        # exact-match CCP per token: same-word mass over the top-k mass; stopwords 1
        words = [[C.strip_word(tok.decode([t])).lower() for t in row] for row in ids.tolist()]
        p = np.exp(lp.astype(np.float64))
        stop = np.array([C.is_stopword(w[0]) for w in words])
        want = [
            1.0 if s else p[j][np.array(w) == w[0]].sum() / p[j].sum()
            for j, (w, s) in enumerate(zip(words, stop, strict=True))
        ]
        np.testing.assert_array_equal(r["stop"], stop)
        np.testing.assert_allclose(np.exp(r["token_log_ccp"]), want, rtol=1e-5)
        assert 0 < r["ccp"] <= 1 and not stop.all() and stop.any()
        np.testing.assert_allclose(r["ccp"], np.prod(want), rtol=1e-5)
        # claims = sentences partitioning the tokens; their product is the sequence CCP
        np.testing.assert_array_equal(
            np.concatenate([c["tokens"] for c in r["claims"]]), np.arange(n)
        )
        np.testing.assert_allclose(np.prod([c["ccp"] for c in r["claims"]]), r["ccp"], rtol=1e-9)
    assert missed > 0
    assert [c["text"] for c in out[0]["claims"]] == [
        "Paris is the capital of France.",
        "It is known for the Eiffel Tower.",
    ]
    assert [c["text"] for c in out[1]["claims"]] == ["Paris is in Spain!"]

    # a user NLI (all neutral: CCP 1), stopwords off, explicit claims; the forward is cached
    asked = []

    def neutral(pairs):
        asked.append(list(pairs))
        return ["neutral"] * len(pairs)

    r = C.ccp(lm, [prompt], answers[1:], nli=neutral, is_stopword=lambda w: False,
              claims=[[[0, 1], [3]]])[0]  # fmt: skip
    assert r["ccp"] == 1.0 and not r["stop"].any() and len(asked) == 1
    assert len(set(asked[0])) == len(asked[0])
    assert [(c["text"], c["tokens"].tolist(), c["ccp"]) for c in r["claims"]] == [
        ("Paris is", [0, 1], 1.0),
        (tok.decode([answers[1][3]]).strip(), [3], 1.0),
    ]
    with pytest.raises(ValueError, match=r"answer 0: claims\[0\]: token indices"):
        C.ccp(lm, [prompt], answers[1:], claims=[[[0, 99]]])
    with pytest.raises(ValueError, match="nli returned 0 classes"):
        C.ccp(lm, [prompt], answers[1:], nli=lambda pairs: [])


def test_ccp_driver_argument_errors(smollm):
    lm = smollm
    vocab = lm.config.vocab_size
    with pytest.raises(ValueError, match=r"answer_ids\[0\] is empty"):
        C.ccp(lm, [[1, 2]], [[]])
    with pytest.raises(ValueError, match=r"prompt_ids\[0\] is empty"):
        C.ccp(lm, [[]], [[1]])
    with pytest.raises(ValueError, match="got 2 prompts but 1 answers"):
        C.ccp(lm, [[1], [2]], [[1]])
    with pytest.raises(ValueError, match="at least one answer"):
        C.ccp(lm, [], [])
    for k in (1, vocab + 1, 2.5):
        with pytest.raises(ValueError, match=rf"k: expected an integer in \[2, {vocab}\]"):
            C.ccp(lm, [[1]], [[2]], k=k)
    with pytest.raises(ValueError, match=r"answer_ids\[0\]: token ids \[-1\]"):
        C.ccp(lm, [[1]], [[-1]])
    with pytest.raises(ValueError, match="claims: expected one list per answer"):
        C.ccp(lm, [[1]], [[2]], claims=[])


def test_module_constants():
    assert C.CLASSES == ("entail", "contra", "neutral")
    assert (C.ENTAIL, C.CONTRA, C.NEUTRAL) == (0, 1, 2)
    assert set(string.punctuation + " \n") == set(C._STRIP)
