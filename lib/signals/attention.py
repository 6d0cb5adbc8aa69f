"""Attention-based uncertainty: RAUQ, Attention Score and Focus, as LM-Polygraph computes them.

Sign convention: unlike the rest of `introspect.signals`, every function here returns the
paper's UNCERTAINTY (higher = more uncertain), exactly LM-Polygraph's estimator value; the
registered signals negate it. Pure numpy (float64), on host arrays; rows are padded [n, T, ...]
arrays with a [n, T] bool mask of the answer tokens (the `signals.Inputs` convention). A row's
sequence is its masked positions in order (for generations: the first len(tokens) steps).

Where the attention comes from (`introspect.models.LM`):

* `LM.generate(..., attention_layers=L)` records `Generation.attention`, per row [n_new, layers,
  heads]: at step s the weight that the query which produced token s (sitting at the token fed at
  that step: token s - 1, or the last prompt token for s = 0) puts on its own key. Steps s >= 1
  are LM-Polygraph's `np.diagonal(attention_all, offset=-1)` (`attention_all[j, :j]`: the
  attention of the step that generated token j over the generated tokens 0 .. j - 1), i.e.
  what RAUQ reads. Memory: [steps, layers, heads], not [steps, context].
* `LM.forward(prompt + answer, attention_layers=L)` gives full weights [batch, layers, heads, T,
  T]; `attention_diagonal` (Attention Score) and `generated_attention` (Focus: LM-Polygraph's
  `attention_all` layout) read them.

Sources: LM-Polygraph (github.com/IINemo/lm-polygraph, commit
efea882d810d07770e71d3a80e02416d09751435): `src/lm_polygraph/estimators/rauq.py`,
`attention_score.py`, `focus.py`, and the statistics they read,
`stat_calculators/greedy_probs.py` ("attention_all", "greedy_log_probs") and
`stat_calculators/attention_forward_pass.py` ("forwardpass_attention_weights"). Defaults from
`examples/configs/estimators/default_estimators.yaml`.

Differences from LM-Polygraph (documented where they occur): its `attention_all` takes batch
row 0's attention for every row of a batch (it indexes `attentions[j][layer][0]`); here every
row uses its own. Its forward pass for Attention Score runs padded batch rows without the pad
mask; here padding is masked. Focus's keyword mask (spaCy NER / POS tags) and IDF table (a
corpus) are arguments (`focus_idf` computes the table from tokenized documents).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# RAUQ's alpha (LM-Polygraph `RAUQ.get_alpha`): {(instruct, use_entropy): alpha}.
RAUQ_ALPHA = {(False, False): 0.2, (False, True): 0.8, (True, False): 0.5, (True, True): 0.9}
FOCUS_GAMMA = 0.9  # default_estimators.yaml
FOCUS_P = 0.01
ATTENTION_SCORE_EPS = 1e-12
# Focus's keywords (LM-Polygraph `load_idf`): tokens whose spaCy word is an entity of one of
# these types or has one of these POS tags.
FOCUS_NER_TYPES = (
    "PERSON", "DATE", "ORG", "GPE", "NORP", "ORDINAL", "PRODUCT", "CARDINAL", "LOC", "FAC",
    "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE", "TIME", "PERCENT", "MONEY", "QUANTITY",
)  # fmt: skip
FOCUS_POS_TAGS = ("NOUN", "NUM", "PROPN")


# ----------------------------------------------------------------------------------------------
# Input helpers
# ----------------------------------------------------------------------------------------------


def _array(x, name: str, ndim: int, what: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {what}, got shape {x.shape}")
    return x


def _mask(mask, shape, name: str = "mask") -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {mask.shape}")
    return mask.astype(bool)


def _leading(x: np.ndarray, name: str, shape, ref: str) -> None:
    if x.shape[: len(shape)] != tuple(shape):
        raise ValueError(f"{name} must start with the shape of {ref} {tuple(shape)}, got {x.shape}")


# ----------------------------------------------------------------------------------------------
# RAUQ
# ----------------------------------------------------------------------------------------------


def rauq_layers(num_layers: int) -> tuple[int, ...]:
    """LM-Polygraph's RAUQ layers: blocks num_layers // 3 .. ceil(num_layers / 3 * 2)
    (inclusive; the middle third), clipped to the model. Record these
    (`LM.generate(..., attention_layers=rauq_layers(L))`) to match its default."""
    if not isinstance(num_layers, int | np.integer) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    stop = min(int(np.ceil(num_layers / 3 * 2) + 1), int(num_layers))
    return tuple(range(int(num_layers) // 3, stop))


def rauq_alpha(*, instruct: bool = False, use_entropy: bool = False) -> float:
    """RAUQ's default alpha (LM-Polygraph `get_alpha`): 0.2 (0.5 instruct) from token
    probabilities, 0.8 (0.9 instruct) from entropies."""
    return RAUQ_ALPHA[(bool(instruct), bool(use_entropy))]


def rauq_layer_scores(
    logprobs,
    attention,
    mask=None,
    *,
    alpha: float | None = None,
    instruct: bool = False,
    entropy=None,
    vocab_size: int | None = None,
) -> np.ndarray:
    """RAUQ's per-layer uncertainty [n, layers] (`rauq` takes the max over layers).

    For a row with tokens y_0 .. y_{m-1} (its masked positions), p_j = p(y_j | y_<j), and for
    each layer l of `attention`:
      head h*_l = argmax_h mean_{j=1..m-1} a[j, l, h]   (a: the attention to the previous token)
      c_0 = p_0,   c_j = alpha * p_j + (1 - alpha) * a[j, l, h*_l] * c_{j-1}
      u_l = 1 - mean_j log c_j.
    With `entropy` (LM-Polygraph's use_entropy), p_j is replaced by log(vocab_size) - H_j +
    1e-10 (H_j the entropy of the distribution of token j, nats). A one-token row uses head 0
    (argmax over an empty mean, as numpy does); a row without tokens gives NaN.

    Args:
      logprobs: [n, T] log p of each token (ignored with entropy; may be None then).
      attention: [n, T, layers, heads]: `Generation.attention` rows (step j: the attention of the
        query that produced token j to token j - 1; step 0 is not read).
      mask: [n, T] bool, the tokens of each row (default all).
      alpha: weight of the token probability (default `rauq_alpha(instruct, use_entropy)`).
      entropy: optional [n, T] entropies (nats); vocab_size then required.
    """
    use_entropy = entropy is not None
    if alpha is None:
        alpha = rauq_alpha(instruct=instruct, use_entropy=use_entropy)
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    attention = _array(attention, "attention", 4, "[n, T, layers, heads]")
    n, t = attention.shape[:2]
    if use_entropy:
        if vocab_size is None or int(vocab_size) < 1:
            raise ValueError("RAUQ from entropies needs vocab_size (a positive int)")
        entropy = _array(entropy, "entropy", 2, "[n, T]")
        _leading(attention, "attention", entropy.shape, "entropy")
        # LM-Polygraph: "log-probabilities" log(log V - H + 1e-10), exponentiated below.
        p = np.log(int(vocab_size)) - entropy + 1e-10
    else:
        if logprobs is None:
            raise ValueError("RAUQ needs logprobs (or entropy with vocab_size)")
        p = _array(logprobs, "logprobs", 2, "[n, T]")
        _leading(attention, "attention", p.shape, "logprobs")
        p = np.exp(p)
    mask = _mask(mask, (n, t))
    out = np.full((n, attention.shape[2]), np.nan)
    for r in range(n):
        idx = np.flatnonzero(mask[r])
        if not idx.size:
            continue
        pr, a = p[r, idx], attention[r, idx]  # [m], [m, layers, heads]
        m = idx.size
        if m > 1:
            head = a[1:].mean(axis=0).argmax(axis=-1)  # [layers]
        else:
            head = np.zeros(a.shape[1], int)
        prev = a[:, np.arange(a.shape[1]), head]  # [m, layers]
        conf = np.empty((m, a.shape[1]))
        conf[0] = pr[0]
        for j in range(1, m):
            conf[j] = alpha * pr[j] + (1 - alpha) * prev[j] * conf[j - 1]
        out[r] = 1.0 - np.log(conf).mean(axis=0)
    return out


def rauq(
    logprobs,
    attention,
    mask=None,
    *,
    alpha: float | None = None,
    instruct: bool = False,
    entropy=None,
    vocab_size: int | None = None,
) -> np.ndarray:
    """RAUQ (Vazhentsev et al., 2025, arXiv:2505.20045) uncertainty [n], higher = more
    uncertain: the maximum over the layers of `attention` of `rauq_layer_scores` (see there for
    the formula and arguments). LM-Polygraph's default uses the layers `rauq_layers(L)` with
    alpha 0.2 (token probabilities) or 0.8 (entropies)."""
    scores = rauq_layer_scores(
        logprobs,
        attention,
        mask,
        alpha=alpha,
        instruct=instruct,
        entropy=entropy,
        vocab_size=vocab_size,
    )
    out = np.full(scores.shape[0], np.nan)
    ok = ~np.isnan(scores).all(axis=1)
    out[ok] = scores[ok].max(axis=1)
    return out


# ----------------------------------------------------------------------------------------------
# Attention Score
# ----------------------------------------------------------------------------------------------


def attention_score_layer(num_layers: int) -> int:
    """LM-Polygraph's default Attention Score layer: num_layers // 2."""
    return int(num_layers) // 2


def attention_diagonal(weights) -> np.ndarray:
    """[..., q, q] attention weights (e.g. `ForwardOutput.attention`) -> [..., q]: the weight
    of every query on its own key."""
    weights = np.asarray(weights)
    if weights.ndim < 2 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must be [..., q, q] (square), got shape {weights.shape}")
    return np.diagonal(weights, axis1=-2, axis2=-1)


def attention_score(self_weights, mask=None, *, eps: float = ATTENTION_SCORE_EPS) -> np.ndarray:
    """Attention Score (Sriramanan et al., 2024, LLM-Check) uncertainty [n], higher = more
    uncertain: -(1 / heads) sum_h sum_t log(a_tt^h + eps), the negated mean over heads of the
    log-determinant of one layer's (lower-triangular) attention matrix.

    Args:
      self_weights: [n, T, heads]: at one layer, each position's weight on its own key. From a
        forward pass over prompt + answer (LM-Polygraph's default, gen_only=False):
        `attention_diagonal(out.attention[:, 0]).transpose(0, 2, 1)` for
        `lm.forward(..., attention_layers=(attention_score_layer(L),))`, mask = the real tokens.
        gen_only=True (the generated tokens except the last) is `Generation.attention[:, 1:, i]`
        (steps 1 .. m-1) with the answer mask shifted alike.
      mask: [n, T] bool, the positions summed (default all); a row without any gives 0.
    """
    w = _array(self_weights, "self_weights", 3, "[n, T, heads]")
    mask = _mask(mask, w.shape[:2])
    logs = np.where(mask[..., None], np.log(w + eps), 0.0)
    return -logs.sum(axis=(1, 2)) / w.shape[2]


# ----------------------------------------------------------------------------------------------
# Focus
# ----------------------------------------------------------------------------------------------


def generated_attention(weights, starts, lengths) -> np.ndarray:
    """LM-Polygraph's `attention_all` from full forward weights over prompt + answer.

    Args:
      weights: [batch, ..., T, T] (`ForwardOutput.attention`, any leading layer/head axes).
      starts: [batch] int, the position of each row's first answer token (its prompt length,
        plus the left padding).
      lengths: [batch] int, answer tokens per row.
    Returns:
      [batch, ..., N, N], N = max(lengths): out[b, ..., j, k] = weights[b, ..., s + j - 1, s + k]
      (s = starts[b]) for 1 <= j < lengths[b] and k < j: the attention of the step that generated
      answer token j over answer tokens 0 .. j - 1. Row 0 and everything else are 0. (Focus
      takes its max over layers and heads.)
    """
    w = np.asarray(weights)
    if w.ndim < 3 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"weights must be [batch, ..., T, T], got shape {w.shape}")
    starts = np.asarray(starts, np.int64).reshape(-1)
    lengths = np.asarray(lengths, np.int64).reshape(-1)
    b, t = w.shape[0], w.shape[-1]
    if starts.shape != (b,) or lengths.shape != (b,):
        raise ValueError(f"starts and lengths must be [{b}], got {starts.shape}, {lengths.shape}")
    if (lengths < 0).any() or (starts < 1).any() or (starts + lengths > t).any():
        raise ValueError(
            f"each row needs 1 <= starts and starts + lengths <= {t} (a prompt token before the "
            f"answer); got starts {starts.tolist()[:8]}, lengths {lengths.tolist()[:8]}"
        )
    big = int(lengths.max()) if b else 0
    out = np.zeros(w.shape[:-2] + (big, big), w.dtype)
    for r in range(b):
        s, m = int(starts[r]), int(lengths[r])
        # Query rows s-1 .. s+m-2 (answer row j: query s+j-1), key columns s .. s+m-1.
        block = w[r, ..., s - 1 : s + m - 1, s : s + m]
        out[r, ..., :m, :m] = np.where(np.tri(m, m, -1, bool), block, 0)
    return out


def focus_idf(documents: Iterable[Sequence[int]], vocab_size: int) -> np.ndarray:
    """Focus's IDF table [vocab_size]: log(N / (df_v + 1)) with df_v the number of the N
    documents (token-id lists, e.g. `tokenizer.encode(text)` without a BOS) that contain token
    v (LM-Polygraph `calcu_idf`; it uses RedPajama-Data-V2-100M's "raw_content")."""
    df = np.zeros(int(vocab_size), np.int64)
    total = 0
    for doc in documents:
        total += 1
        ids = np.unique(np.asarray(list(doc), np.int64))
        ids = ids[(ids >= 0) & (ids < vocab_size)]
        df[ids] += 1
    if not total:
        raise ValueError("focus_idf needs at least one document")
    return np.log(total / (df + 1.0))


def focus_hallucination(logprobs, tokens, idf, *, p: float = FOCUS_P) -> np.ndarray:
    """Focus's per-token hallucination term h_t = -log(q_t(y_t) + 1e-5) + 2^{H_2(q_t)}.

    q_t is the distribution of token t with every probability below `p` set to 0, reweighted by
    the IDF table and renormalized (LM-Polygraph `token_level_focus_scores`); H_2 is its entropy
    in bits. A distribution left empty gives NaN, as there.

    Args:
      logprobs: [..., T, V] full log-distributions (log-softmax of the logits that predicted each
        answer token; e.g. from `lm.forward(prompt + answer)`).
      tokens: [..., T] int, the answer tokens.
      idf: [V'] IDF table (`focus_idf`), V' <= V; tokens >= V' are not reweighted.
      p: probability threshold (default 0.01).
    Returns:
      [..., T] float64.
    """
    lp = np.asarray(logprobs, np.float64)
    tokens = np.asarray(tokens, np.int64)
    idf = np.asarray(idf, np.float64)
    if lp.ndim < 1 or lp.shape[:-1] != tokens.shape:
        raise ValueError(
            f"logprobs must be [..., T, V] over tokens {tokens.shape}, got shape {lp.shape}"
        )
    if idf.ndim != 1 or idf.shape[0] > lp.shape[-1]:
        raise ValueError(
            f"idf must be [V'] with V' <= the vocabulary {lp.shape[-1]}, got shape {idf.shape}"
        )
    prob = np.exp(lp)
    prob[prob < p] = 0.0
    prob[..., : idf.shape[0]] *= idf
    with np.errstate(invalid="ignore", divide="ignore"):
        prob = prob / prob.sum(axis=-1, keepdims=True)
        ent = -np.sum(np.where(prob > 0, prob * np.log2(np.where(prob > 0, prob, 1.0)), 0.0), -1)
    chosen = np.take_along_axis(prob, tokens[..., None], axis=-1)[..., 0]
    return -np.log(chosen + 1e-5) + np.exp2(ent)


def focus_token_scores(
    hallucination, attention, keywords, mask=None, *, gamma: float = FOCUS_GAMMA
) -> np.ndarray:
    """Focus's token-level scores [n, T] (NaN outside the mask, and for rows without keywords).

    Over a row's tokens 0 .. m-1: w_ik = A_ik / (sum_k' A_ik' + 1e-6) for keyword rows i (0 for
    the others), and f_i = h_i + gamma * sum_{k<i} w_ik f_k (attention propagation of earlier
    tokens' scores).

    Args:
      hallucination: [n, T] `focus_hallucination`.
      attention: [n, T, T] LM-Polygraph's `attention_all` reduced by max over layers and heads:
        `generated_attention(out.attention, starts, lengths).max(axis=(1, 2))` for a forward
        pass with attention_layers="all" (row j: the query that produced token j over tokens
        0 .. j-1).
      keywords: [n, T] bool, Focus's keywords (LM-Polygraph: tokens aligned to a spaCy word that
        is an entity of FOCUS_NER_TYPES or has a FOCUS_POS_TAGS tag).
      mask: [n, T] bool, the answer tokens (default all).
      gamma: propagation weight (default 0.9).
    """
    h = _array(hallucination, "hallucination", 2, "[n, T]")
    a = _array(attention, "attention", 3, "[n, T, T]")
    n, t = h.shape
    if a.shape != (n, t, t):
        raise ValueError(f"attention must be [{n}, {t}, {t}], got {a.shape}")
    mask = _mask(mask, (n, t))
    kw = _mask(keywords, (n, t), "keywords") & mask
    out = np.full((n, t), np.nan)
    for r in range(n):
        idx = np.flatnonzero(mask[r])
        k = kw[r, idx]
        if not k.any():
            continue
        rows = a[r][np.ix_(idx, idx)]
        weight = np.where(k[:, None], rows / (rows.sum(axis=1, keepdims=True) + 1e-6), 0.0)
        f = np.empty(idx.size)
        for i in range(idx.size):
            f[i] = h[r, idx[i]] + (gamma * np.dot(f[:i], weight[i, :i]) if i else 0.0)
        out[r, idx] = f
    return out


def focus(
    hallucination, attention, keywords, mask=None, *, gamma: float = FOCUS_GAMMA
) -> np.ndarray:
    """Focus (Zhang et al., 2023, arXiv:2311.13230) uncertainty [n], higher = more uncertain:
    the mean of `focus_token_scores` over the keyword tokens; NaN for a row without keywords
    (as LM-Polygraph)."""
    scores = focus_token_scores(hallucination, attention, keywords, mask, gamma=gamma)
    kw = _mask(keywords, scores.shape, "keywords") & _mask(mask, scores.shape)
    out = np.full(scores.shape[0], np.nan)
    for r in range(scores.shape[0]):
        if kw[r].any():
            out[r] = scores[r, kw[r]].mean()
    return out


__all__ = [
    "FOCUS_GAMMA",
    "FOCUS_NER_TYPES",
    "FOCUS_P",
    "FOCUS_POS_TAGS",
    "RAUQ_ALPHA",
    "attention_diagonal",
    "attention_score",
    "attention_score_layer",
    "focus",
    "focus_hallucination",
    "focus_idf",
    "focus_token_scores",
    "generated_attention",
    "rauq",
    "rauq_alpha",
    "rauq_layer_scores",
    "rauq_layers",
]
