"""Claim-conditioned probability (CCP) of long-form answers, per claim and per answer.

CCP (Fadeeva et al. 2024, "Fact-Checking the Output of Large Language Models via Token-Level
Uncertainty Quantification", arXiv 2403.04696), as LM-Polygraph computes it (IINemo/lm-polygraph
`estimators/claim/claim_conditioned_probability.py`, ClaimConditionedProbabilityClaim, "no_context"
mode; alternatives as in `stat_calculators/greedy_probs.py`, NLI as in
`stat_calculators/greedy_alternatives_nli.py`):

* At each answer token j, the k most likely tokens at that step (k = 10, LM-Polygraph's
  `n_alternatives`), the chosen token first. Each alternative's word is its decoded text stripped
  of `string.punctuation + " \\n"`.
* Each alternative i >= 1 gets an NLI class against the chosen word w0: forward NLI(w0, wi) and
  backward NLI(wi, w0) combined by `combine_nli` (equal -> that class; entail and contra ->
  neutral; else entail or contra if either is present; else neutral). The chosen token itself
  always entails; when w0 is a stopword every alternative entails (the token's CCP is 1).
* token log CCP = logsumexp(log p of the entailing alternatives)
  - logsumexp(log p of the entailing and contradicting ones) (neutral ones are dropped), i.e.
  log P(entail) / (P(entail) + P(contra)).
* claim CCP = exp(sum of token log CCP over the claim's tokens) = their product.

LM-Polygraph returns the uncertainty -CCP; here, as for every introspect signal, higher = more
confident, so the value is CCP itself, a probability in [0, 1].

Differences from LM-Polygraph, all stated where they apply:

* Claims: LM-Polygraph asks an LLM (GPT) to extract atomic claims from each sentence and to name
  their words. Here a claim is a sentence of the answer (`sentence_claims`), or token-index lists
  you pass (`ccp(..., claims=)`) from your own claim extractor. Only LM-Polygraph's "no_context"
  NLI mode is implemented (not "fact_pref", which prefixes both words with the claim so far).
* Answers are teacher-forced (one forward pass over prompt + answer), so an answer need not be
  the greedy one: column 0 is always the answer's own token and columns 1..k-1 are the k - 1 most
  likely other tokens (for a greedy answer this is LM-Polygraph's top-k, greedy first).
* Stopwords: LM-Polygraph uses NLTK's English list (not available offline); `STOPWORDS` is a
  built-in list of English function words (articles, pronouns, prepositions, auxiliaries,
  conjunctions and the pieces contractions tokenize into). The default `is_stopword` also counts
  an empty word (a punctuation or whitespace token) as a function token; pass your own
  `is_stopword` to change either.
* NLI: the paper and LM-Polygraph use DeBERTa-large-MNLI on the word pairs, which introspect does
  not ship. `nli` is pluggable (a batched callable over word pairs); the default
  `exact_match_nli` (entail iff the words are equal ignoring case, else contradict) makes CCP a
  renormalised max-probability over the top-k: the summed probability of the alternatives that
  spell the same word over the summed probability of all k.
* The sequence-level value (`ccp(...)["ccp"]`) is the product of the token CCPs over the whole
  answer, the same token CCPs as the claims (so with claims that partition the answer it is the
  product of the claim CCPs). LM-Polygraph's sequence-level ClaimConditionedProbability
  (`estimators/claim_conditioned_probability.py`) differs: forward NLI only, no stopwords.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

CLASSES = ("entail", "contra", "neutral")
ENTAIL, CONTRA, NEUTRAL = 0, 1, 2
_STRIP = string.punctuation + " \n"

# English function words (articles, determiners, pronouns, prepositions, auxiliaries and modals,
# conjunctions, common function adverbs, and the pieces that contractions tokenize into).
STOPWORDS = frozenset(
    """
    a an the this that these those some any each every no all both either neither such own same
    other another few more most much many several
    i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
    himself she her hers herself it its itself they them their theirs themselves
    who whom whose which what
    about above across after against along among around at before behind below beside between
    by down during for from in into of off on out over through to toward towards under until up
    upon with within without
    am is are was were be been being have has had having do does did doing
    will would shall should can could may might must
    and but or nor so yet if then than because as while since though although unless whether
    when where why how there here also just only very too again once now not
    s t d ll re ve m n't don didn doesn isn aren wasn weren hasn haven hadn won wouldn shouldn
    couldn
    """.split()
)


def is_stopword(word: str) -> bool:
    """The default stopword test: an empty word (a punctuation / whitespace token) or, ignoring
    case, one of `STOPWORDS`."""
    return not word or word.lower() in STOPWORDS


_default_stopword = is_stopword


def strip_word(text: str) -> str:
    """A token's word: its text stripped of punctuation, spaces and newlines (LM-Polygraph's
    `string.punctuation + " \\n"`)."""
    return text.strip(_STRIP)


# ---------------------------------------------------------------------------------------------
# NLI
# ---------------------------------------------------------------------------------------------


def exact_match_nli(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """The baseline NLI: "entail" when the two words are equal ignoring case, else "contra".

    With it, token CCP = (sum of the probabilities of the top-k alternatives that spell the
    chosen word) / (sum over all k): a renormalised max-probability. The paper uses
    DeBERTa-large-MNLI (not shipped): pass your own `nli(pairs) -> classes` to `ccp`."""
    return ["entail" if a.lower() == b.lower() else "contra" for a, b in pairs]


def combine_nli(forward: str, backward: str) -> str:
    """One class from NLI(w0, wi) and NLI(wi, w0): equal -> that class; entail and contra ->
    "neutral"; else "entail" or "contra" if either says so; else "neutral"."""
    for name, c in (("forward", forward), ("backward", backward)):
        if c not in CLASSES:
            raise ValueError(f"combine_nli: {name} class {c!r} is not one of {CLASSES}")
    if forward == backward:
        return forward
    if {forward, backward} == {"entail", "contra"}:
        return "neutral"
    for c in ("entail", "contra"):
        if c in (forward, backward):
            return c
    return "neutral"


def _run_nli(nli: Callable, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """{pair: class} for the unique `pairs`, from one call of `nli`, its output checked."""
    if not pairs:
        return {}
    out = nli(pairs)
    try:
        out = list(out)
    except TypeError:
        raise ValueError(
            f"nli must return a list of classes, one per pair; got {type(out).__name__}"
        ) from None
    if len(out) != len(pairs):
        raise ValueError(
            f"nli returned {len(out)} classes for {len(pairs)} word pairs; expected one class "
            f"per pair, each one of {CLASSES}"
        )
    bad = [(p, c) for p, c in zip(pairs, out, strict=True) if c not in CLASSES]
    if bad:
        raise ValueError(
            f"nli returned {len(bad)} unknown classes, e.g. {bad[0][1]!r} for the pair "
            f"{bad[0][0]!r}; expected each one of {CLASSES}"
        )
    return dict(zip(pairs, out, strict=True))


def alternative_classes(
    words: Sequence[Sequence[Sequence[str]]],
    stop: Sequence[np.ndarray],
    nli: Callable = exact_match_nli,
) -> list[np.ndarray]:
    """NLI classes of every answer's alternatives against its chosen words.

    Args:
      words: per answer, per token, the k alternative words (column 0 = the chosen token's).
      stop: per answer, [T] bool: the chosen word is a stopword (no NLI needed: all entail).
      nli: `nli(pairs) -> classes`, called once on the unique (w0, wi) and (wi, w0) pairs of all
        answers (LM-Polygraph deduplicates the pairs too).
    Returns:
      per answer [T, k] int8 codes (0 entail, 1 contra, 2 neutral); column 0 and stopword rows
      are entail.
    """
    if len(words) != len(stop):
        raise ValueError(f"got words for {len(words)} answers but stop for {len(stop)}")
    queue: dict[tuple[str, str], None] = {}
    for rows, st in zip(words, stop, strict=True):
        for row, s in zip(rows, st, strict=True):
            if not s:
                for w in row[1:]:
                    queue[(row[0], w)] = None
                    queue[(w, row[0])] = None
    known = _run_nli(nli, list(queue))
    code = {c: i for i, c in enumerate(CLASSES)}
    out = []
    for rows, st in zip(words, stop, strict=True):
        k = len(rows[0]) if len(rows) else 0
        cls = np.zeros((len(rows), k), np.int8)
        for j, (row, s) in enumerate(zip(rows, st, strict=True)):
            if not s:
                for i, w in enumerate(row[1:], 1):
                    cls[j, i] = code[combine_nli(known[(row[0], w)], known[(w, row[0])])]
        out.append(cls)
    return out


# ---------------------------------------------------------------------------------------------
# Pure CCP from log-probs and classes
# ---------------------------------------------------------------------------------------------


def token_ccp(alt_logprobs, alt_classes, stop) -> np.ndarray:
    """Token log CCP: log P(entail) - log (P(entail) + P(contra)) over the top-k alternatives.

    Args:
      alt_logprobs: [T, k] (any leading shape [..., k]) log-probabilities of the alternatives at
        each token; column 0 = the chosen token (must be finite; others may be -inf). Any
        per-row shift cancels, so raw logits work too.
      alt_classes: same shape, NLI class codes against the chosen word: 0 entail, 1 contra,
        2 neutral (column 0 is treated as entail whatever it holds).
      stop: [T] bool, the chosen word is a stopword: every alternative entails (log CCP 0).
    Returns:
      [T] float64 log CCP (<= 0); exp of it is the token's CCP.
    """
    lp = np.asarray(alt_logprobs, np.float64)
    cls = np.asarray(alt_classes)
    st = np.asarray(stop)
    if lp.ndim < 2 or lp.shape[-1] < 1 or lp.size == 0:
        raise ValueError(
            f"alt_logprobs: expected [T, k] with T, k >= 1 (the top-k log-probs per token), "
            f"got shape {lp.shape}"
        )
    if cls.shape != lp.shape:
        raise ValueError(
            f"alt_classes: expected shape {lp.shape} (= alt_logprobs), got {cls.shape}"
        )
    if st.shape != lp.shape[:-1]:
        raise ValueError(f"stop: expected shape {lp.shape[:-1]} (one per token), got {st.shape}")
    if st.dtype != bool:
        raise ValueError(f"stop: expected a bool array, got dtype {st.dtype}")
    if not np.issubdtype(cls.dtype, np.integer) or cls.min() < 0 or cls.max() > 2:
        raise ValueError(
            f"alt_classes: expected integer codes 0 (entail), 1 (contra), 2 (neutral), got "
            f"dtype {cls.dtype} with values in [{cls.min()}, {cls.max()}]"
        )
    if np.isnan(lp).any() or np.isposinf(lp).any():
        raise ValueError("alt_logprobs: holds NaN or +inf; expected log-probabilities")
    if not np.isfinite(lp[..., 0]).all():
        raise ValueError("alt_logprobs[..., 0] (the chosen token) must be finite, got -inf")
    entail = (cls == ENTAIL) | st[..., None]
    entail[..., 0] = True
    used = entail | (cls == CONTRA)

    def lse(mask):  # column 0 is in every mask, so the max is finite
        m = np.max(np.where(mask, lp, -np.inf), -1, keepdims=True)
        return np.log(np.sum(np.where(mask, np.exp(lp - m), 0.0), -1)) + m[..., 0]

    return np.minimum(lse(entail) - lse(used), 0.0)  # entail is a subset of used


def claim_ccp(token_log_ccp, claims: Sequence[Sequence[int]]) -> np.ndarray:
    """[num_claims] CCP of each claim: exp(sum of the token log CCP over its tokens).

    Args:
      token_log_ccp: [T] from `token_ccp`.
      claims: per claim, a non-empty sequence of token indices in [0, T).
    """
    x = np.asarray(token_log_ccp, np.float64)
    if x.ndim != 1:
        raise ValueError(f"token_log_ccp: expected [T], got shape {x.shape}")
    if np.isnan(x).any() or (x > 0).any():
        raise ValueError("token_log_ccp: expected log-probabilities (<= 0, no NaN)")
    out = np.empty(len(claims), np.float64)
    for i, c in enumerate(claims):
        idx = np.asarray(c)
        if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"claims[{i}]: expected a non-empty 1-D sequence of token indices, got {c!r:.80}"
            )
        if idx.min() < 0 or idx.max() >= len(x):
            raise ValueError(
                f"claims[{i}]: token indices must be in [0, {len(x)}), got "
                f"[{idx.min()}, {idx.max()}]"
            )
        out[i] = np.exp(np.sum(x[idx]))
    return out


# ---------------------------------------------------------------------------------------------
# Claims = sentences
# ---------------------------------------------------------------------------------------------

# A sentence ends after . ? ! (with closing quotes / brackets) followed by whitespace or the end
# (so "3.14" does not split), after CJK full stops, and at newlines. LM-Polygraph splits at every
# one of ".?!。？！\n".
_SENTENCE_END = re.compile(r"[.?!]+[\"'\u201d\u2019)\]]*(?=\s|$)|[\u3002\uff1f\uff01]+|\n+")


def _sentence_ends(text: str) -> np.ndarray:
    """End offsets of the sentences tiling `text` (whitespace-only pieces join the previous)."""
    cuts = sorted({m.end() for m in _SENTENCE_END.finditer(text)} | {len(text)})
    ends: list[int] = []
    start = 0
    for e in cuts:
        if e <= start:
            continue
        if text[start:e].strip() or not ends:
            ends.append(e)
        else:
            ends[-1] = e
        start = e
    if len(ends) > 1 and not text[: ends[0]].strip():  # leading whitespace joins the next
        ends.pop(0)
    return np.asarray(ends or [len(text)], np.int64)


def sentence_claims(tokenizer, answer_ids: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """The answer's sentences as claims: [(sentence text, token indices)], a partition of the
    answer's tokens in order.

    The text is the concatenation of the per-token decodings (as `introspect.probes.
    token_char_ends`, but special tokens decode to ""), cut after ". ? !" (plus closing quotes or
    brackets) followed by whitespace or the end, after "。？！", and at newlines; whitespace-only
    pieces join the previous sentence. Each token belongs to the sentence holding its first
    non-space character (a leading space, as in " It", goes with the word); a whitespace-only or
    empty (special) token belongs to the sentence before it; a sentence that no token starts in
    joins the token's sentence. Unlike LM-Polygraph, an unfinished last sentence is
    kept. The text of a claim is its tokens' text, stripped.

    Raises:
      ValueError: no tokens.
    """
    ids = [int(t) for t in answer_ids]
    if not ids:
        raise ValueError("answer_ids: expected at least one token, got none")
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in ids]
    lengths = np.array([len(p) for p in pieces], np.int64)
    starts = np.cumsum(lengths) - lengths
    text = "".join(pieces)
    ends = _sentence_ends(text)
    # A token's anchor: its first non-space character; a whitespace-only or empty token's is the
    # character before it (it trails the previous sentence).
    lead = np.array([len(p) - len(p.lstrip()) if p.strip() else -1 for p in pieces], np.int64)
    anchor = np.clip(starts + lead, 0, max(len(text) - 1, 0))
    which = np.minimum(np.searchsorted(ends, anchor, side="right"), len(ends) - 1)
    claims = []
    for s in np.unique(which):
        idx = np.flatnonzero(which == s).astype(np.int64)
        claims.append(("".join(pieces[i] for i in idx).strip(), idx))
    return claims


# ---------------------------------------------------------------------------------------------
# The model: top-k alternatives by teacher forcing, and the driver
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("k", "tail"))
def _top_k(logits, targets, *, k: int, tail: int):
    """Top-k log-probs of the last `tail` predicting positions of left-padded rows [B, L, V],
    and the log-prob of `targets` [B, tail] there."""
    length = logits.shape[1]
    logp = jax.nn.log_softmax(logits[:, length - 1 - tail : length - 1].astype(jnp.float32), -1)
    vals, ids = jax.lax.top_k(logp, k)
    chosen = jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), -1)[..., 0]
    return vals, ids, chosen


def _check_pairs(lm, prompt_ids, answer_ids, k: int, batch_size: int):
    if len(prompt_ids) != len(answer_ids):
        raise ValueError(f"got {len(prompt_ids)} prompts but {len(answer_ids)} answers")
    if not answer_ids:
        raise ValueError("answer_ids: expected at least one answer, got none")
    vocab = int(lm.config.vocab_size)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= vocab:
        raise ValueError(f"k: expected an integer in [2, {vocab}] (the vocabulary), got {k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    prompts = [[int(t) for t in p] for p in prompt_ids]
    answers = [[int(t) for t in a] for a in answer_ids]
    ctx = int(lm.config.max_position_embeddings)
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        if not p:
            raise ValueError(f"prompt_ids[{i}] is empty; the first answer token needs a prompt")
        if not a:
            raise ValueError(f"answer_ids[{i}] is empty; every answer needs at least one token")
        for name, seq in (("prompt_ids", p), ("answer_ids", a)):
            bad = [t for t in seq if not 0 <= t < vocab]
            if bad:
                raise ValueError(f"{name}[{i}]: token ids {bad[:5]} outside [0, {vocab})")
        if len(p) + len(a) > ctx:
            raise ValueError(f"prompt + answer {i} has {len(p) + len(a)} tokens > context {ctx}")
    return prompts, answers


def alternatives(
    lm, prompt_ids, answer_ids, *, k: int = 10, batch_size: int = 8
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The top-k alternatives at each answer token, by one teacher-forced forward pass.

    Args:
      lm: a loaded model (`introspect.models.LM`: `forward`, `runner`, `tokenizer`, `config`).
      prompt_ids: [n] non-empty token-id lists (e.g. a chat template with generation prompt).
      answer_ids: [n] non-empty token-id lists, the answers (teacher-forced).
      k: alternatives per token, 2 <= k <= vocabulary size.
      batch_size: sequences per forward call (the full logits [batch, length, vocab] are held).
    Returns:
      per answer (ids [T, k] int64, logprobs [T, k] float32): at answer token j, column 0 is the
      answer's token and its log-prob, columns 1..k-1 the k - 1 most likely other tokens in
      descending order (for a greedy answer: the top-k, greedy first), from log_softmax of the
      logits that predicted token j.
    """
    prompts, answers = _check_pairs(lm, prompt_ids, answer_ids, k, batch_size)
    seqs = [p + a for p, a in zip(prompts, answers, strict=True)]

    def run(chunk):
        longest = max(len(answers[i]) for i in chunk.indices)
        tail = min(chunk.length - 1, max(8, 1 << (longest - 1).bit_length()))
        targets = np.zeros((chunk.tokens.shape[0], tail), np.int32)
        for r, i in enumerate(chunk.indices):
            targets[r, tail - len(answers[i]) :] = answers[i]
        logits = lm.forward(chunk.tokens, mask=chunk.valid, hidden_layers=None).logits
        vals, ids, chosen = (np.asarray(x) for x in _top_k(logits, targets, k=k, tail=tail))
        rows = []
        for r, i in enumerate(chunk.indices):
            n = len(answers[i])
            v, t, c = vals[r, tail - n :], ids[r, tail - n :], chosen[r, tail - n :]
            ans = np.asarray(answers[i])
            keep = t != ans[:, None]
            keep[keep.all(-1), k - 1] = False  # answer not in the top k: drop the k-th
            out_ids = np.concatenate([ans[:, None], t[keep].reshape(n, k - 1)], -1)
            out_lp = np.concatenate([c[:, None], v[keep].reshape(n, k - 1)], -1)
            rows.append((out_ids.astype(np.int64), out_lp.astype(np.float32)))
        return rows

    return lm.runner.map(
        seqs, run, batch_size=batch_size, pad_id=lm.tokenizer.pad_token_id or 0, desc="ccp"
    )


def ccp(
    lm,
    prompt_ids,
    answer_ids,
    *,
    nli: Callable = exact_match_nli,
    k: int = 10,
    is_stopword: Callable[[str], bool] | None = None,
    claims: Sequence[Sequence[Sequence[int]]] | None = None,
    batch_size: int = 8,
) -> list[dict]:
    """Claim-conditioned probability of each answer and of each of its claims (sentences).

    Args:
      lm: a loaded model (`introspect.models.LM`).
      prompt_ids: [n] non-empty token-id lists.
      answer_ids: [n] non-empty token-id lists (teacher-forced; need not be greedy).
      nli: `nli(pairs: list[tuple[str, str]]) -> list[str]`, one of "entail" / "contra" /
        "neutral" per (premise, hypothesis) word pair, called once on the unique pairs of all
        answers (batch inside it). Default `exact_match_nli` (renormalised max-prob over the
        top-k); the paper uses DeBERTa-large-MNLI, not shipped.
      k: alternatives per token (LM-Polygraph: 10), 2 <= k <= vocabulary size.
      is_stopword: word -> bool for the chosen token's word (stripped, case kept); default
        `is_stopword` (empty word or in the built-in `STOPWORDS`; LM-Polygraph: NLTK's list).
        `lambda w: False` turns stopwords off.
      claims: per answer, claims as token-index lists (from your claim extractor); default each
        answer's sentences (`sentence_claims`).
      batch_size: sequences per forward call (each call holds its full logits, batch x length x
        vocab float32: lower it for long answers).
    Returns:
      per answer {"ccp": the answer's CCP (product of every token's CCP), "claims": [{"text",
      "tokens" (int64 indices into the answer), "ccp"}], "token_log_ccp": [T], "alt_ids",
      "alt_logprobs", "alt_classes": [T, k] (see `alternatives`, `alternative_classes`),
      "stop": [T] bool}. CCPs are probabilities in [0, 1]; higher = more confident.
    Raises:
      ValueError: mismatched or empty prompts / answers, k out of range, claims of the wrong
        count or with bad indices, or `nli` output of the wrong length or with unknown classes.
    """
    stop_fn = _default_stopword if is_stopword is None else is_stopword
    if not callable(nli) or not callable(stop_fn):
        raise ValueError("nli and is_stopword must be callables")
    if claims is not None and len(claims) != len(answer_ids):
        raise ValueError(
            f"claims: expected one list per answer ({len(answer_ids)}), got {len(claims)}"
        )
    alts = alternatives(lm, prompt_ids, answer_ids, k=k, batch_size=batch_size)
    tok = lm.tokenizer
    decoded: dict[int, str] = {}

    def word(t: int) -> str:
        if t not in decoded:
            decoded[t] = strip_word(tok.decode([t]))
        return decoded[t]

    words = [[[word(int(t)) for t in row] for row in ids] for ids, _ in alts]
    stops = [np.array([bool(stop_fn(row[0])) for row in w], bool) for w in words]
    classes = alternative_classes(words, stops, nli)
    out = []
    for i, ((ids, lp), cls, st) in enumerate(zip(alts, classes, stops, strict=True)):
        tlc = token_ccp(lp, cls, st)
        if claims is None:
            spans = sentence_claims(tok, answer_ids[i])
            index_lists = [c for _, c in spans]
        else:
            index_lists = list(claims[i])
        try:
            values = claim_ccp(tlc, index_lists)
        except ValueError as e:
            raise ValueError(f"answer {i}: {e}") from None
        if claims is not None:
            spans = [
                (tok.decode(ids[np.asarray(c), 0].tolist(), skip_special_tokens=True).strip(), c)
                for c in index_lists
            ]
        out.append(
            {
                "ccp": float(np.exp(np.sum(tlc))),
                "claims": [
                    {"text": text, "tokens": np.asarray(c, np.int64), "ccp": float(v)}
                    for (text, c), v in zip(spans, values, strict=True)
                ],
                "token_log_ccp": tlc,
                "alt_ids": ids,
                "alt_logprobs": lp,
                "alt_classes": cls,
                "stop": st,
            }
        )
    return out
