"""The DPO pair builders' rules on a deterministic stub model (LACIE, CR-DPO, CRew through the
shared sampling helper), the default LLM listener against logits on the tiny policy, the SCR
prompt, and the errors."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from introspect import data
from introspect.posttrain import dpo


class _Tok:
    """Chat template -> one id per distinct user text (remembered, so the stub can read it)."""

    def __init__(self):
        self.text = {}

    def apply_chat_template(self, messages, add_generation_prompt=True):
        content = messages[-1]["content"]
        ids = {v: k for k, v in self.text.items()}
        if content not in ids:
            ids[content] = 500 + len(self.text)
            self.text[ids[content]] = content
        return [ids[content]]


class _Stub:
    """`generate` returns scripted texts: script(prompt ids, k-th occurrence of that prompt).
    Row i's tokens are [1000 + i] (empty for an empty text), so a pair names its rows."""

    def __init__(self, script):
        self.script = script
        self.tokenizer = _Tok()
        self.rows = []

    def generate(self, rows, max_new_tokens=64, temperature=0.0, seed=0, **kw):
        self.rows.append([list(r) for r in rows])
        seen, texts = {}, []
        for r in rows:
            k = seen.get(tuple(r), 0)
            seen[tuple(r)] = k + 1
            texts.append(self.script(list(r), k))
        tokens = [[1000 + i] if t else [] for i, t in enumerate(texts)]
        return SimpleNamespace(
            tokens=tokens,
            texts=texts,
            logprobs=[np.full(len(t), -len(x) / 100) for t, x in zip(tokens, texts, strict=True)],
        )


def _ex(q="Capital of France?", answer="Paris", **kw):
    return {"question": q, "answer": answer, "answer_type": "text", **kw}


def _by_prompt(table):
    """A script from {first prompt id: [texts of its samples]}."""
    return lambda ids, k: table[ids[0]][k]


def _rows_of(out, key):
    return [t[0] - 1000 for t in out[key]]


def _triples(out):
    """[(prompt index, chosen row, rejected row)] of a builder's output."""
    return list(
        zip(out["indices"], _rows_of(out, "chosen"), _rows_of(out, "rejected"), strict=True)
    )


# -- LACIE ---------------------------------------------------------------------------------------

# Group 0: c,a (0.9) / ~c,a (0.7) / c,~a (0.2) / ~c,~a (0.05): every type once.
# Group 1: all correct (0.9, 0.3, 0.35, 0.8): correct & accepted beats correct & rejected.
# Group 2: all wrong (0.9, 0.1, 0.7, 0.2): wrong & rejected beats wrong & accepted.
# Group 3: all correct and accepted: no pair, dropped.
# Group 4: margins under 0.1 or equal scores (and an empty response): no pair, dropped.
LACIE_TEXTS = {
    1: ["Paris", "London", "paris!", "Rome"],
    2: ["Paris", "PARIS", "Paris.", "the Paris"],
    3: ["Rome", "Oslo", "Lima", "Bern"],
    4: ["Paris.", "paris", "PARIS!", "Paris"],
    5: ["Paris", "Rome", "Oslo", ""],
}
LACIE_P = {
    (1, "Paris"): 0.9, (1, "London"): 0.7, (1, "paris!"): 0.2, (1, "Rome"): 0.05,
    (2, "Paris"): 0.9, (2, "PARIS"): 0.3, (2, "Paris."): 0.35, (2, "the Paris"): 0.8,
    (3, "Rome"): 0.9, (3, "Oslo"): 0.1, (3, "Lima"): 0.7, (3, "Bern"): 0.2,
    (4, "Paris."): 0.9, (4, "paris"): 0.8, (4, "PARIS!"): 0.7, (4, "Paris"): 0.6,
    (5, "Paris"): 0.45, (5, "Rome"): 0.5, (5, "Oslo"): 0.48,
}  # fmt: skip


def _lacie_setup():
    lm = _Stub(_by_prompt(LACIE_TEXTS))
    prompts = [[g] for g in LACIE_TEXTS]
    exs = [_ex(q=f"Q{g}?") for g in LACIE_TEXTS]
    calls = []

    def listener(question, answer):
        calls.append((question, answer))
        return LACIE_P[(int(question[1:-1]), answer)]

    return lm, prompts, exs, listener, calls


def test_lacie_pairs_follow_the_rule():
    lm, prompts, exs, listener, calls = _lacie_setup()
    out = dpo.lacie_pairs(lm, prompts, exs, listener=listener, max_pairs=None)
    # Rows are prompt-major: group g's sample k is row 4 * g + k.
    assert lm.rows[0] == [p for p in prompts for _ in range(4)]
    want = [
        # group 0, pairs (i < j): (0,1) c,a > ~c,a; (0,2) c,a > c,~a; (0,3) equal scores;
        # (1,2) c,~a > ~c,a; (1,3) ~c,~a > ~c,a; (2,3) ~c,~a > c,~a
        (0, 0, 1), (0, 0, 2), (0, 2, 1), (0, 3, 1), (0, 3, 2),
        # group 1: accepted (0.9, 0.8) beat rejected (0.3, 0.35); equal types are not paired
        (1, 4, 5), (1, 4, 6), (1, 7, 5), (1, 7, 6),
        # group 2: rejected (0.1, 0.2) beat accepted (0.9, 0.7)
        (2, 9, 8), (2, 11, 8), (2, 9, 10), (2, 11, 10),
    ]  # fmt: skip
    assert _triples(out) == want
    assert out["prompts"] == [prompts[g] for g, _, _ in want]
    assert set(out) == {"prompts", "chosen", "rejected", "indices"}
    # The listener saw every usable response once, with the question text, never the empty one.
    assert len(calls) == 19 and ("Q5?", "") not in calls
    assert all(q == data.prompts.format_question(exs[int(q[1:-1]) - 1]) for q, _ in calls)

    # At most max_pairs per prompt (the first in pair order); prompts 3 and 4 still dropped.
    capped = dpo.lacie_pairs(lm, prompts, exs, listener=listener, max_pairs=2)
    assert capped["indices"] == [0, 0, 1, 1, 2, 2]
    assert _rows_of(capped, "chosen") == [0, 0, 4, 4, 9, 11]
    # min_prob_margin=0: group 4's close pairs count (~c,~a at 0.5 = not accepted > c,~a).
    close = dpo.lacie_pairs(lm, prompts, exs, listener=listener, min_prob_margin=0.0)
    assert [t for t in _triples(close) if t[0] == 4] == [(4, 17, 16), (4, 18, 16)]


def test_lacie_threshold_median_and_balance():
    # One all-correct group: at 0.5 only the 0.4 one is rejected; the median (0.725) rejects
    # 0.6 too.
    p = {"Paris": 0.9, "paris": 0.85, "PARIS": 0.6, "Paris.": 0.4}
    one = _Stub(_by_prompt({1: list(p)}))
    kw = dict(listener=lambda q, a: p[a], max_pairs=None)
    half = dpo.lacie_pairs(one, [[1]], [_ex()], **kw)
    assert _triples(half) == [(0, 0, 3), (0, 1, 3), (0, 2, 3)]
    med = dpo.lacie_pairs(one, [[1]], [_ex()], threshold="median", **kw)
    assert _triples(med) == [(0, 0, 2), (0, 0, 3), (0, 1, 2), (0, 1, 3)]

    lm, prompts, exs, listener, _ = _lacie_setup()
    # balance: "c,a > c,~a" occurs 5 times, every other type once or more; each type keeps
    # as many rows as the rarest one.
    full = dpo.lacie_pairs(lm, prompts, exs, listener=listener, max_pairs=None)
    bal = dpo.lacie_pairs(lm, prompts, exs, listener=listener, max_pairs=None, balance=True)
    kinds = {
        (0, 1): "c,a > ~c,a", (0, 2): "c,a > c,~a", (2, 1): "c,~a > ~c,a",
        (3, 1): "~c,~a > ~c,a", (3, 2): "~c,~a > c,~a",
    }  # fmt: skip

    def kind(c, r):
        g = c // 4
        if g == 1:
            return "c,a > c,~a"
        if g == 2:
            return "~c,~a > ~c,a"
        return kinds[(c - 4 * g, r - 4 * g)]

    def count(out):
        ks = [kind(c, r) for _, c, r in _triples(out)]
        return {k: ks.count(k) for k in set(ks)}

    assert count(full) == {
        "c,a > ~c,a": 1, "c,a > c,~a": 5, "c,~a > ~c,a": 1, "~c,~a > ~c,a": 5, "~c,~a > c,~a": 1
    }  # fmt: skip
    assert count(bal) == dict.fromkeys(count(full), 1)
    assert sorted(bal["indices"]) == bal["indices"]  # the original order is kept


def test_lacie_errors():
    lm, prompts, exs, listener, _ = _lacie_setup()
    with pytest.raises(ValueError, match="samples must be >= 2"):
        dpo.lacie_pairs(lm, prompts, exs, listener=listener, samples=1)
    with pytest.raises(ValueError, match="got 5 prompts but 4 examples"):
        dpo.lacie_pairs(lm, prompts, exs[:4], listener=listener)
    for bad in (1.5, -0.1, math.nan, "yes", None):
        with pytest.raises(ValueError, match=r"listener must return .* in \[0, 1\].*prompt 0"):
            dpo.lacie_pairs(lm, prompts, exs, listener=lambda q, a, b=bad: b)
    for thr in (1.5, -1, "mean"):
        with pytest.raises(ValueError, match="threshold must be"):
            dpo.lacie_pairs(lm, prompts, exs, listener=listener, threshold=thr)
    with pytest.raises(ValueError, match="max_pairs must be"):
        dpo.lacie_pairs(lm, prompts, exs, listener=listener, max_pairs=0)
    with pytest.raises(ValueError, match="min_prob_margin"):
        dpo.lacie_pairs(lm, prompts, exs, listener=listener, min_prob_margin=-0.1)


def test_default_listener_matches_logits(tiny_policy):
    """P("yes") / (P("yes") + P("no")) at the assistant's first token, from the logits."""
    lm = tiny_policy
    qs = ["What is 2 + 2?", "Capital of France?"]
    answers = ["4", "I am not sure, maybe Lyon."]
    got = dpo.listener_accept_probs(lm, qs, answers)
    yes, no = lm.tokenizer.encode("yes"), lm.tokenizer.encode("no")
    assert len(yes) == len(no) == 1
    for q, a, p in zip(qs, answers, got, strict=True):
        text = dpo.LISTENER_TEMPLATE.format(question=q, answer=a)
        ids = lm.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True
        )
        logits = np.asarray(lm.forward([ids], hidden_layers=None).logits, np.float64)[0, -1]
        prob = np.exp(logits - logits.max())
        want = prob[yes[0]] / (prob[yes[0]] + prob[no[0]])
        assert 0.0 <= p <= 1.0
        assert p == pytest.approx(want, abs=1e-5)


def test_lacie_pairs_with_the_model_as_listener(tiny_policy):
    """End to end on the tiny policy: every answer is wrong (a gold it cannot produce), so each
    pair's chosen response is one the model-listener rejects and its rejected one it accepts."""
    lm = tiny_policy
    exs = [_ex(q="Name a colour.", answer="zqxjv")]
    prompts = [data.build_prompt_ids(lm.tokenizer, ex, "plain") for ex in exs]
    out = dpo.lacie_pairs(
        lm, prompts, exs, samples=4, max_new_tokens=4, threshold="median", min_prob_margin=0.0
    )
    assert out["prompts"], "the median splits the group"
    qs = [data.prompts.format_question(exs[g]) for g in out["indices"]]
    decode = lambda ts: [lm.tokenizer.decode(t, skip_special_tokens=True) for t in ts]  # noqa: E731
    pc = dpo.listener_accept_probs(lm, qs, decode(out["chosen"]))
    pr = dpo.listener_accept_probs(lm, qs, decode(out["rejected"]))
    assert (pc < pr).all()
    assert all(out["prompts"][i] == prompts[g] for i, g in enumerate(out["indices"]))


# -- CR-DPO --------------------------------------------------------------------------------------


def test_cr_dpo_unguided_pairs_right_with_wrong():
    texts = {
        1: ["I doubt it. Answer: London", "Answer: Paris", "I know it. Answer: Paris",
            "Answer: Rome"],
        2: ["Answer: Paris", "Answer: paris", "Answer: Paris.", "Answer: PARIS"],  # all right
        3: ["Answer: Lyon", "Answer: Rome", "Answer: Oslo", ""],  # all wrong
        4: ["Answer: Paris", "", "", ""],  # one right, the rest empty
    }  # fmt: skip
    lm = _Stub(_by_prompt(texts))
    prompts = [[g] for g in texts]
    exs = [_ex(context="A document.") for _ in texts]
    out = dpo.cr_dpo_pairs(lm, prompts, exs, guided=False)
    assert out["indices"] == [0, 0]
    assert _rows_of(out, "chosen") == [1, 2] and _rows_of(out, "rejected") == [0, 3]
    assert out["prompts"] == [[1], [1]]
    one = dpo.cr_dpo_pairs(lm, prompts, exs, guided=False, max_pairs=1)
    assert _rows_of(one, "chosen") == [1] and _rows_of(one, "rejected") == [0]


def test_cr_dpo_guided_samples_under_hints_pairs_on_the_scr_prompt():
    """Guided: each example samples under the "trust your answer" and the "trust the document"
    hints; the side that follows the truth gives chosen, the misled side rejected."""

    def script(ids, k):
        text = lm.tokenizer.text[ids[0]]
        ex = next(e for e in exs if e["question"] in text)
        side = "internal" if dpo.SCR_GUIDES["internal"] in text else "context"
        assert dpo.SCR_GUIDES[side] in text
        ans = ex["internal_answer"] if side == "internal" else ex["context_answer"]
        return f"Reasoning {k}.\nAnswer: {ans}"

    lm = _Stub(script)
    exs = [
        _ex(q="Capital of France?", context="Paris is it.", internal_answer="London",
            context_answer="Paris"),  # the model is wrong, the document right
        _ex(q="Capital of Italy?", answer="Rome", context="Milan is it.", internal_answer="Rome",
            context_answer="Milan"),  # the model is right, the document wrong
        _ex(q="Capital of Peru?", answer="Lima", context="Lima is it.", internal_answer="Lima",
            context_answer="Lima"),  # they agree: no wrong chain, dropped
    ]  # fmt: skip
    prompts = [dpo.scr_prompt_ids(lm.tokenizer, ex) for ex in exs]
    out = dpo.cr_dpo_pairs(lm, prompts, exs, samples=2)
    # Rows: example g's internal-hint samples 4g, 4g + 1, then its document-hint ones 4g + 2,
    # 4g + 3.
    sampled = lm.rows[-1]
    assert sampled[0::2] == [
        dpo.scr_prompt_ids(lm.tokenizer, ex, guide=s) for ex in exs for s in ("internal", "context")
    ]
    assert out["indices"] == [0, 0, 1, 1]
    assert _rows_of(out, "chosen") == [2, 3, 4, 5]
    assert _rows_of(out, "rejected") == [0, 1, 6, 7]
    assert out["prompts"] == [prompts[0], prompts[0], prompts[1], prompts[1]]  # no hint
    with pytest.raises(ValueError, match=r"examples\[1\] lacks \['internal_answer'"):
        dpo.cr_dpo_pairs(lm, prompts[:2], [exs[0], _ex(context="d", context_answer="x")])


def test_cr_dpo_errors():
    lm = _Stub(lambda ids, k: "Answer: Paris")
    exs = [_ex(context="d")]
    with pytest.raises(ValueError, match="samples must be >= 2"):
        dpo.cr_dpo_pairs(lm, [[1]], exs, samples=1, guided=False)
    with pytest.raises(ValueError, match="got 2 prompts but 1 examples"):
        dpo.cr_dpo_pairs(lm, [[1], [2]], exs, guided=False)
    with pytest.raises(ValueError, match="max_pairs must be"):
        dpo.cr_dpo_pairs(lm, [[1]], exs, guided=False, max_pairs=0)


def test_scr_prompt(tiny_policy):
    ex = _ex(
        context="Lyon has been the capital since 2020.",
        internal_answer="Paris",
        context_answer="Lyon",
    )
    (msg,) = dpo.scr_messages(ex)
    text = msg["content"]
    for part in (
        "Document:\nLyon has been",
        "Question: Capital of France?",
        "Your answer: Paris",
        "The document's answer: Lyon",
        "confident",
    ):
        assert part in text
    assert text.splitlines()[-1].endswith("'Answer: <answer>', where <answer> is a short phrase.")
    assert all(g not in text for g in dpo.SCR_GUIDES.values())
    assert dpo.SCR_GUIDES["context"] in dpo.scr_messages(ex, guide="context")[0]["content"]
    implicit = dpo.scr_messages(_ex(context="A document."))[0]["content"]
    assert "Your answer" not in implicit and "Question: Capital of France?" in implicit
    # A response in the SCR format is graded on its last "Answer:" line with fmt="cot".
    assert data.grade(ex, "My answer was Paris.\nAnswer: Paris", fmt="cot")[1]
    ids = dpo.scr_prompt_ids(tiny_policy.tokenizer, ex)
    assert ids == tiny_policy.tokenizer.apply_chat_template([msg], add_generation_prompt=True)
    with pytest.raises(ValueError, match="non-empty 'context'"):
        dpo.scr_messages(_ex())
    with pytest.raises(ValueError, match="needs both"):
        dpo.scr_messages(_ex(context="d", internal_answer="Paris"))
    with pytest.raises(ValueError, match="guide must be"):
        dpo.scr_messages(ex, guide="document")
    with pytest.raises(ValueError, match="guide must be"):
        dpo.scr_messages(_ex(context="d"), guide="internal")


def test_closed_book_answers_drop_the_context():
    lm = _Stub(lambda ids, k: " Paris \n")
    exs = [_ex(context="Secret document."), _ex(q="Capital of Peru?")]
    assert dpo.closed_book_answers(lm, exs) == ["Paris", "Paris"]
    assert all("Secret" not in lm.tokenizer.text[r[0]] for r in lm.rows[0])


# -- CRew through the shared helper --------------------------------------------------------------


def test_crew_pairs_on_the_stub():
    """Most confident right vs most confident wrong (confidence = mean token probability; the
    stub's shorter texts are more confident; the first sample wins ties)."""
    texts = {1: ["London", "Paris", "Paris", "Rome"], 2: ["Rome", "Oslo", "Lima", "Bern"]}
    lm = _Stub(_by_prompt(texts))
    out = dpo.crew_pairs(lm, [[1], [2]], [_ex(), _ex()])
    assert out["indices"] == [0]
    assert _rows_of(out, "chosen") == [1] and _rows_of(out, "rejected") == [3]
