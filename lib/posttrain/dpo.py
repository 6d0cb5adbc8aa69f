"""DPO / VPO on the Flax LM through the one loop, and three pair builders (CRew-DPO, LACIE,
CR-DPO).

    rows = posttrain.crew_pairs(lm, prompts, examples, samples=4)   # or your own pairs
    cfg = posttrain.dpo_config()                                     # loss "dpo" or "vpo"
    result = posttrain.train_dpo(lm, rows, cfg, workdir="/tmp/dpo")

Rows are {"prompts", "chosen", "rejected"} (token-id lists; responses without the stop token
or with it, as sampled). The reference is the starting model: its sequence log-probs of every
chosen and rejected response are computed once before training (a frozen copy costs no
memory during training). Each step scores chosen and rejected responses under the policy in
one forward pass and applies the loss by name (`losses.LOSSES`: "dpo" with beta and
label_smoothing, "vpo" with its value regulariser). Logged: the implicit-reward margin
((pi_c - ref_c) - (pi_r - ref_r)) and the fraction of pairs it ranks right.

Pair builders: each samples responses to every prompt, grades them (`data.grade`), pairs them
by its rule, drops the prompts without a pair and returns {"prompts", "chosen", "rejected",
"indices" (the prompt index of each row)} for `train_dpo`.
  crew_pairs    CRew-DPO: confidence = mean token probability of the answer; chosen = the most
                confident right answer, rejected = the most confident wrong one
                (`losses.crew_preference_pairs`).
  lacie_pairs   LACIE (listener-aware): a listener (default: the model itself,
                `listener_accept_probs`) gives each response p_accept without the gold answer;
                correct & accepted = wrong & rejected > correct & rejected > wrong & accepted.
  cr_dpo_pairs  CR-DPO (situated faithfulness): on the SCR prompt (`scr_prompt_ids`: question,
                a possibly wrong document, the model's own answer and the document's), chosen =
                a confidence-reasoning chain that ends right, rejected = one that ends wrong,
                sampled under hints towards either side (guided, the paper's) or unguided.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np

from introspect import data, losses, signals
from introspect import train as train_lib
from introspect.posttrain import lora, policy


def dpo_config() -> ml_collections.ConfigDict:
    """Every field of a DPO / VPO run; `train` is the loop's config."""
    c = ml_collections.ConfigDict()
    # Fixed shapes (0 = the longest prompt / response in the data).
    c.max_prompt_tokens = 0
    c.max_response_tokens = 0
    # "dpo" (beta, label_smoothing) or "vpo" (beta, alpha, sign, value_on).
    c.loss = ml_collections.ConfigDict({"name": "dpo", "options": {"beta": 0.1}})
    # LoRA adapters (rank 0 = full fine-tuning; posttrain.lora).
    c.lora = lora.lora_config()
    c.train = policy.train_config(
        num_steps=100, batch_size=8, lr=1e-6, log_every=10, checkpoint_every=50, keep=1
    )
    return c


def _pair_logps(lm, params, arrays, batch_size: int = 8) -> dict[str, np.ndarray]:
    """{side: [n] sequence log-probs} of the chosen and rejected responses under `params`."""
    n = len(arrays["tokens_chosen"])
    out = {}
    for side in ("chosen", "rejected"):
        t, v, m = (arrays[f"{k}_{side}"] for k in ("tokens", "valid", "token_mask"))
        out[side] = np.concatenate(
            [
                np.asarray(
                    policy.sequence_logprobs(
                        params, t[s : s + batch_size], v[s : s + batch_size],
                        m[s : s + batch_size], config=lm.config, dtype=jnp.dtype(lm.dtype),
                    )
                )
                for s in range(0, n, batch_size)
            ]
        ).astype(np.float32)  # fmt: skip
    return out


def pack_pairs(lm, rows: Mapping[str, list], config) -> dict:
    """Fixed-shape arrays of the pairs plus the reference (starting model) sequence log-probs."""
    n = len(rows["prompts"])
    if not n or len(rows["chosen"]) != n or len(rows["rejected"]) != n:
        raise ValueError(
            f"rows need as many chosen and rejected responses as prompts (>= 1), got "
            f"{n}, {len(rows['chosen'])}, {len(rows['rejected'])}"
        )
    pad = lm.stop_and_pad(())[1]
    kw = dict(prompt_len=policy.fixed_length(config.max_prompt_tokens, rows["prompts"]),
              response_len=policy.fixed_length(config.max_response_tokens,
                                               list(rows["chosen"]) + list(rows["rejected"])),
              pad_id=pad)  # fmt: skip
    c = policy.pack(rows["prompts"], rows["chosen"], **kw)
    r = policy.pack(rows["prompts"], rows["rejected"], **kw)
    if (c["token_mask"].sum(1) == 0).any() or (r["token_mask"].sum(1) == 0).any():
        raise ValueError("every chosen and rejected response needs at least one token")
    out = {f"{k}_chosen": v for k, v in c.items()} | {f"{k}_rejected": v for k, v in r.items()}
    ref = _pair_logps(lm, lm.params, out)
    out["ref_chosen_logps"], out["ref_rejected_logps"] = ref["chosen"], ref["rejected"]
    return out


def make_loss(lm, config):
    """The loop's loss_fn: chosen and rejected scored in one pass, the named pair loss."""
    dtype = jnp.dtype(lm.dtype)

    def forward(params, batch, rng):
        del rng
        tok = jnp.concatenate([batch["tokens_chosen"], batch["tokens_rejected"]])
        val = jnp.concatenate([batch["valid_chosen"], batch["valid_rejected"]])
        msk = jnp.concatenate([batch["token_mask_chosen"], batch["token_mask_rejected"]])
        lp, _ = policy.token_logprobs(params, tok, val, config=lm.config, dtype=dtype)
        logps = jnp.sum(jnp.where(msk, lp, 0), axis=1)
        k = batch["tokens_chosen"].shape[0]
        return {"policy_chosen_logps": logps[:k], "policy_rejected_logps": logps[k:]}

    def metrics(outputs, batch):
        margin = (outputs["policy_chosen_logps"] - batch["ref_chosen_logps"]) - (
            outputs["policy_rejected_logps"] - batch["ref_rejected_logps"]
        )
        return {"margin": jnp.mean(margin), "pair_accuracy": jnp.mean(margin > 0)}

    return losses.objective(forward, config.loss, metrics=metrics, field="config.loss")


def train_dpo(lm, rows: Mapping[str, list], config=None, *, workdir: str):
    """DPO / VPO of `lm` on preference `rows` through the one loop; resumable.
    Returns the loop's TrainResult (`.params` in `lm`'s layout)."""
    cfg = dpo_config() if config is None else config
    if cfg.loss.name not in ("dpo", "vpo"):
        raise ValueError(f"config.loss.name must be 'dpo' or 'vpo', got {cfg.loss.name!r}")
    arrays = pack_pairs(lm, rows, cfg)
    return train_lib.train(
        lora.train_config(cfg),
        init_fn=lora.trainable_init(lm, cfg),
        loss_fn=make_loss(lm, cfg),
        data=arrays,
        workdir=workdir,
        name="dpo.train",
    )


def pair_margins(lm, params, rows: Mapping[str, list], config) -> np.ndarray:
    """[n] implicit-reward margins (pi_c - ref_c) - (pi_r - ref_r) of `params` against the
    starting model `lm` on `rows`."""
    arrays = pack_pairs(lm, rows, config)
    now = _pair_logps(lm, params, arrays)
    return (now["chosen"] - arrays["ref_chosen_logps"]) - (
        now["rejected"] - arrays["ref_rejected_logps"]
    )


# ----------------------------------------------------------------------------------------------
# Pair builders: sample, grade, pair (one helper, three rules)
# ----------------------------------------------------------------------------------------------


def _check_builder(prompts, examples, samples: int) -> None:
    if int(samples) < 2:
        raise ValueError(f"samples must be >= 2 to form a pair, got {samples}")
    if len(prompts) != len(examples):
        raise ValueError(f"got {len(prompts)} prompts but {len(examples)} examples")


def _sample_graded(lm, prompts, examples, *, samples, temperature, max_new_tokens, fmt, seed):
    """`samples` sampled responses to each prompt (rows prompt-major: row g * samples + k),
    graded against its example. Returns (the Generation, [n, samples] bool correct,
    [n, samples] bool usable: at least one token and an answer the grader could extract)."""
    rows = [list(p) for p in prompts for _ in range(samples)]
    gen = lm.generate(rows, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    graded = [data.grade(examples[i // samples], t, fmt=fmt) for i, t in enumerate(gen.texts)]
    ok = np.asarray([bool(c) for _, c in graded], bool).reshape(-1, samples)
    usable = np.asarray(
        [
            len(tok) > 0 and x is not None and str(x).strip() != ""
            for tok, (x, _) in zip(gen.tokens, graded, strict=True)
        ],
        bool,
    ).reshape(-1, samples)
    return gen, ok, usable


def _pairs(prompts, tokens, picks) -> dict[str, list]:
    """The builders' output from (prompt index, chosen row, rejected row) picks; a pick with an
    empty response is left out."""
    out = {"prompts": [], "chosen": [], "rejected": [], "indices": []}
    for g, c, r in picks:
        if len(tokens[c]) and len(tokens[r]):
            out["prompts"].append(list(prompts[g]))
            out["chosen"].append(tokens[c])
            out["rejected"].append(tokens[r])
            out["indices"].append(int(g))
    return out


def crew_pairs(
    lm,
    prompts: Sequence[Sequence[int]],
    examples: Sequence[Mapping],
    *,
    samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    fmt: str = "plain",
    seed: int = 0,
) -> dict[str, list]:
    """CRew-DPO pairs: `samples` sampled answers per prompt, graded; confidence = the answer's
    mean token probability; per prompt chosen = the most confident right answer, rejected =
    the most confident wrong one (or the least confident right one when all are right);
    prompts with no valid pair are dropped."""
    _check_builder(prompts, examples, samples)
    gen, ok, _ = _sample_graded(
        lm,
        prompts,
        examples,
        samples=samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        fmt=fmt,
        seed=seed,
    )
    conf = np.asarray([float(np.exp(np.mean(lp))) if len(lp) else 0.0 for lp in gen.logprobs])
    chosen, rejected, valid = losses.crew_preference_pairs(
        confidence=conf.reshape(-1, samples), correct=ok.astype(np.int32)
    )
    picks = [
        (g, g * samples + int(c), g * samples + int(r))
        for g, (c, r, v) in enumerate(
            zip(np.asarray(chosen), np.asarray(rejected), np.asarray(valid), strict=True)
        )
        if v
    ]
    return _pairs(prompts, gen.tokens, picks)


# -- LACIE ---------------------------------------------------------------------------------------

# (correct, accepted) -> preference score (LACIE's default ranking c,a = ~c,~a > c,~a > ~c,a:
# a false acceptance is worse than a false rejection).
LACIE_SCORES = {(True, True): 1.0, (False, False): 1.0, (True, False): -0.5, (False, True): -1.0}
_LACIE_LABELS = {
    (True, True): "c,a",
    (False, False): "~c,~a",
    (True, False): "c,~a",
    (False, True): "~c,a",
}

# The default listener's user turn; p_accept = P("yes") / (P("yes") + P("no")) of its reply.
LISTENER_TEMPLATE = (
    "Question: {question}\nResponse: {answer}\n\n"
    "Would you accept this answer as correct? Answer yes or no."
)


def listener_accept_probs(
    lm,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    template: str = LISTENER_TEMPLATE,
    yes_word: str = "yes",
    no_word: str = "no",
) -> np.ndarray:
    """The default LACIE listener: `lm` reads `template` (one chat user turn: the question and
    the speaker's response, no gold answer) and p_accept = P(yes_word) / (P(yes_word) +
    P(no_word)) of its reply's first word (teacher-forced, `signals.p_true`; "yes" and "no"
    are one token each for SmolLM2). Returns [n] probabilities in (0, 1)."""
    return np.asarray(
        signals.p_true(
            lm, questions, answers, template=template, true_word=yes_word, false_word=no_word
        ),
        np.float64,
    )


def _listener_probs(listener, questions, answers, where) -> np.ndarray:
    """The listener's p_accept for each (question, answer), checked to lie in [0, 1]."""
    out = []
    for (q, a), (g, k) in zip(zip(questions, answers, strict=True), where, strict=True):
        v = listener(q, a)
        try:
            p = float(v)
        except (TypeError, ValueError):
            p = float("nan")
        if not 0.0 <= p <= 1.0:  # NaN fails too
            raise ValueError(
                f"listener must return an acceptance probability in [0, 1], got {v!r} for "
                f"prompt {g}, sample {k}"
            )
        out.append(p)
    return np.asarray(out, np.float64)


def _balance(picks, kinds, seed: int):
    """LACIE's balance_types: as many pairs of every preference type as of the rarest one (a
    seeded random subset of each type), in the original order."""
    by_kind: dict[str, list[int]] = {}
    for i, k in enumerate(kinds):
        by_kind.setdefault(k, []).append(i)
    if not by_kind:
        return picks
    m = min(len(v) for v in by_kind.values())
    rng = np.random.default_rng(seed)
    keep = sorted(int(i) for v in by_kind.values() for i in rng.choice(v, m, replace=False))
    return [picks[i] for i in keep]


def lacie_pairs(
    lm,
    prompts: Sequence[Sequence[int]],
    examples: Sequence[Mapping],
    *,
    listener=None,
    samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    fmt: str = "plain",
    threshold: float | str = 0.5,
    min_prob_margin: float = 0.1,
    max_pairs: int | None = 3,
    balance: bool = False,
    seed: int = 0,
) -> dict[str, list]:
    """LACIE pairs (Stengel-Eskin et al. 2024, listener-aware calibration): the speaker `lm`
    samples `samples` responses per prompt; each is graded (`data.grade`) and judged by a
    listener that does not know the gold answer; preferences combine the two.

    Rule (authors' code, esteng/pragmatic_calibration, trained_calibration/rl/dataset/
    formatting.py `compute_rank` / `format_dataset`): a response is accepted when its
    p_accept > threshold; its score is LACIE_SCORES[(correct, accepted)]: correct & accepted =
    wrong & rejected = 1 > correct & rejected = -0.5 > wrong & accepted = -1. For each prompt,
    every pair (i < j, sample order) of usable responses whose p_accept differ by at least
    `min_prob_margin` and whose scores differ gives a pair, chosen = the higher score, up to
    `max_pairs` per prompt (None = all). So "good" (c,a or ~c,~a) beats "bad" (c,~a or ~c,a),
    and a false rejection beats a false acceptance; two good or two equally bad responses are
    not paired. Prompts without a pair are dropped; a prompt can give several rows (its index
    repeats in "indices").

    Args:
      listener: (question text, response text) -> p_accept in [0, 1]; the question text is
        `data.prompts.format_question(example)` (context, question, options). None = the
        speaker model itself as listener (`listener_accept_probs`, batched).
      threshold: a float in [0, 1], or "median": the median p_accept of this call's usable
        responses (the paper's choice, against the listener's "yes" bias).
      min_prob_margin, max_pairs: the paper's 0.1 and 3 (`limit_per_q`).
      balance: keep as many pairs of each preference type ("c,a > ~c,a", ...) as of the rarest
        one (seeded subset; the paper's main runs use --balance_types).
    Returns:
      {"prompts", "chosen", "rejected", "indices"} like `crew_pairs`.

    Deviations from the paper: the listener defaults to the speaker model itself, chat
    template, zero-shot, seeing the whole response (the paper: a separate Mistral-7B base model,
    few-shot, told to judge only the tone, with the extracted answer replaced by "[ANSWER
    REMOVED]"; its script can average several listeners: pass such a `listener`); "median" is
    over this call's responses (the paper: the whole training file, so build all pairs in one
    call); no LLM answer extraction: a response is usable when it has tokens and the task
    grader extracts an answer (the paper drops "NONE" extractions and responses with nothing
    besides the answer); the per-prompt cap is strict (the authors' loop can exceed it); the
    speaker prompt is the caller's (the paper asks for an answer plus a rationale), and
    samples, temperature and length default to this library's (the paper: 10 samples at
    temperature 0.7, 80 new tokens).
    """
    _check_builder(prompts, examples, samples)
    if threshold != "median":
        try:
            fine = not isinstance(threshold, str) and 0.0 <= float(threshold) <= 1.0
        except (TypeError, ValueError):
            fine = False
        if not fine:
            raise ValueError(f"threshold must be in [0, 1] or 'median', got {threshold!r}")
    if not min_prob_margin >= 0:
        raise ValueError(f"min_prob_margin must be >= 0, got {min_prob_margin}")
    if max_pairs is not None and int(max_pairs) < 1:
        raise ValueError(f"max_pairs must be >= 1 or None, got {max_pairs}")
    gen, ok, usable = _sample_graded(
        lm,
        prompts,
        examples,
        samples=samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        fmt=fmt,
        seed=seed,
    )
    rows = [int(i) for i in np.flatnonzero(usable.ravel())]
    questions = [data.prompts.format_question(examples[i // samples]) for i in rows]
    texts = [gen.texts[i] for i in rows]
    p = np.full(usable.size, np.nan)
    if rows and listener is None:
        p[rows] = listener_accept_probs(lm, questions, texts)
    elif rows:
        where = [divmod(i, samples) for i in rows]
        p[rows] = _listener_probs(listener, questions, texts, where)
    if threshold == "median":
        thr = float(np.median(p[rows])) if rows else 0.5
    else:
        thr = float(threshold)
    ok = ok.ravel()
    picks, kinds = [], []
    for g in range(len(prompts)):
        cand = [g * samples + k for k in range(samples) if usable[g, k]]
        found = 0
        for a, b in itertools.combinations(cand, 2):
            if max_pairs is not None and found >= int(max_pairs):
                break
            if abs(p[a] - p[b]) < min_prob_margin:
                continue
            ka, kb = (bool(ok[a]), bool(p[a] > thr)), (bool(ok[b]), bool(p[b] > thr))
            if LACIE_SCORES[ka] == LACIE_SCORES[kb]:
                continue
            (c, kc), (r, kr) = (
                ((a, ka), (b, kb)) if LACIE_SCORES[ka] > LACIE_SCORES[kb] else ((b, kb), (a, ka))
            )
            picks.append((g, c, r))
            kinds.append(f"{_LACIE_LABELS[kc]} > {_LACIE_LABELS[kr]}")
            found += 1
    if balance:
        picks = _balance(picks, kinds, seed)
    return _pairs(prompts, gen.tokens, picks)


# -- CR-DPO --------------------------------------------------------------------------------------

_SCR_EXPLICIT = (
    "You are given a question, your own earlier answer to it, a document that may contain true "
    "or false information, and the document's answer. Decide which answer to trust.\n"
    "1. Internal reasoning: recall how you arrived at your answer and judge how confident you "
    "are in it.\n"
    "2. Document evaluation: check the document against what you know; look for contradictions "
    "or other signs that it is unreliable.\n"
    "3. Final judgment: decide whether your answer or the document's answer is more likely to "
    "be correct."
)
_SCR_IMPLICIT = (
    "You are given a question and a document that may not be trustworthy. First recall what "
    "you know about the question and how confident you are in it; then judge how reliable the "
    "document is compared with your own knowledge; then answer with whichever is more likely "
    "to be correct."
)
# Guided sampling for CR-DPO: the hint steers the reasoning to one side (the pair's prompt is the
# plain SCR prompt, without the hint).
SCR_GUIDES = {
    "internal": (
        "Hint: your answer is correct and the document's answer is wrong. Explain how you know "
        "your answer and why the document is unreliable, and give your answer as the final "
        "answer."
    ),
    "context": (
        "Hint: your answer is wrong and the document's answer is correct. Explain why your "
        "answer was unreliable and what supports the document's answer, and give the "
        "document's answer as the final answer."
    ),
}


def scr_messages(example: Mapping, *, guide: str | None = None) -> list[dict[str, str]]:
    """The Self-Guided Confidence Reasoning (SCR) prompt of Huang et al. 2024 for an example
    with "question" and "context" (a document that may be wrong) as one chat user turn.

    With "internal_answer" (the model's closed-book answer, `closed_book_answers`) and
    "context_answer" (the document's answer) it is their explicit SCR: both answers are shown
    and the model reasons about its confidence in its own answer vs the document (internal
    reasoning, document evaluation, final judgment); without them, the implicit form (the
    model recalls its own answer itself). The response ends with "Answer: <answer>" on the last
    line (the "cot" format's instruction, graded with fmt="cot"; the paper's last line is the
    bare answer). `guide` ("internal" / "context", explicit form only) adds the hint that the
    model's / the document's answer is the right one (`SCR_GUIDES`, for `cr_dpo_pairs`).
    """
    if not str(example.get("context") or "").strip():
        raise ValueError(
            f"an SCR prompt needs a non-empty 'context' (the document), got keys {sorted(example)}"
        )
    have = [k for k in ("internal_answer", "context_answer") if k in example]
    if len(have) == 1:
        raise ValueError(
            f"the explicit SCR prompt needs both 'internal_answer' and 'context_answer', got "
            f"only {have[0]!r}"
        )
    if guide is not None and (guide not in SCR_GUIDES or not have):
        raise ValueError(
            f"guide must be None or one of {tuple(SCR_GUIDES)} (with 'internal_answer' and "
            f"'context_answer'), got {guide!r} with keys {sorted(example)}"
        )
    bare = {**example, "context": ""}
    question = data.prompts.format_question(bare)
    cot = data.build_messages(bare, "cot")[-1]["content"]
    tail = cot[len(question) :].strip() if cot.startswith(question) else cot
    parts = [
        _SCR_EXPLICIT if have else _SCR_IMPLICIT,
        f"Document:\n{example['context']}",
        f"Question: {question}",
    ]
    if have:
        parts += [
            f"Your answer: {example['internal_answer']}",
            f"The document's answer: {example['context_answer']}",
        ]
    if guide is not None:
        parts.append(SCR_GUIDES[guide])
    parts.append(tail)
    return [{"role": "user", "content": "\n\n".join(parts)}]


def scr_prompt_ids(tokenizer, example: Mapping, *, guide: str | None = None) -> list[int]:
    """[length] token ids of `scr_messages(example, guide=guide)`, chat-templated, ending with
    the assistant header (ready to generate)."""
    return tokenizer.apply_chat_template(
        scr_messages(example, guide=guide), add_generation_prompt=True
    )


def closed_book_answers(
    lm,
    examples: Sequence[Mapping],
    *,
    fmt: str = "plain",
    max_new_tokens: int = 32,
    batch_size: int = 32,
) -> list[str]:
    """The model's greedy answers to the examples without their context (the "internal answer"
    of SCR / CR-DPO): prompt format `fmt`, the answer part cut out (`data.extract_answer_text`)."""
    prompts = [data.build_prompt_ids(lm.tokenizer, {**ex, "context": ""}, fmt) for ex in examples]
    gen = lm.generate(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return [data.extract_answer_text(t, fmt) for t in gen.texts]


def cr_dpo_pairs(
    lm,
    prompts: Sequence[Sequence[int]],
    examples: Sequence[Mapping],
    *,
    samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    fmt: str = "cot",
    guided: bool = True,
    max_pairs: int = 2,
    seed: int = 0,
) -> dict[str, list]:
    """CR-DPO pairs (Huang et al. 2024, "To Trust or Not to Trust? Enhancing LLMs' Situated
    Faithfulness to External Contexts"): for an SCR prompt (`scr_prompt_ids`: question, a
    document that may be wrong, the model's own answer and the document's), chosen = a
    confidence-reasoning chain of the model that ends in the right answer, rejected = one that
    ends in the wrong answer, for the same prompt.

    guided=True (the paper's construction; examples need "context", "internal_answer",
    "context_answer"): the model samples `samples` reasoning chains under each of two guide
    prompts, the SCR prompt plus the hint that its own answer is right and the document wrong
    (`SCR_GUIDES["internal"]`), and the reverse (`SCR_GUIDES["context"]`); the one that follows
    the truth gives the chosen chains, the other (misled) the rejected ones; the pair's prompt
    is `prompts[i]` (the SCR prompt without the hint). guided=False: the `samples` chains are
    sampled from `prompts[i]` itself.
    Either way every chain is graded (`data.grade`, format `fmt`), and the k-th right chain is
    paired with the k-th wrong one (sample order; the internal-guide chains come first) for
    k < max_pairs; a prompt whose chains are all right or all wrong (e.g. the model's and the
    document's answers agree) is dropped.

    Source: the authors' repository (kkkevinkkkkk/situated_faithfulness) has the SCR prompt
    (utils/templates/dataset_profiles.py default_cot_situated, templates.py
    template_cot_situated) and the two guide prompts (templates.py TEMPLATE_GENERATE_COT_TF /
    _FT: "your answer is correct and the document's answer is deceptive" / the reverse) but
    not the pair-building script (their pairs are released as data); the rule follows their
    model card (huggingface.co/kkkevinkkk/Llama-3-8B-CR-DPO): preferred = the self-sampled path
    reasoning to the true side, rejected = the path misled to the other side; in the paper the
    document is chosen to disagree with the model (a correct one when its answer is wrong, a
    wrong one when it is right).
    Deviations: the guides are a hint line, not the paper's few-shot rationalisation prompts;
    their "dual sampling" (two pairs per question from varied prompts and in-context examples)
    is approximated by max_pairs=2 sampled pairs; the DPO loss here has no added NLL term (the
    paper's rpo_alpha); the last line is "Answer: <answer>".
    """
    _check_builder(prompts, examples, samples)
    if int(max_pairs) < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    sample_prompts, sample_examples, per = prompts, examples, samples
    if guided:
        for i, ex in enumerate(examples):
            missing = [k for k in ("context", "internal_answer", "context_answer") if k not in ex]
            if missing:
                raise ValueError(
                    f"guided CR-DPO needs 'context', 'internal_answer' and 'context_answer' in "
                    f"every example; examples[{i}] lacks {missing} (or pass guided=False)"
                )
        sample_prompts = [
            scr_prompt_ids(lm.tokenizer, ex, guide=side)
            for ex in examples
            for side in ("internal", "context")
        ]
        sample_examples = [ex for ex in examples for _ in range(2)]
        per = 2 * samples
    gen, ok, usable = _sample_graded(
        lm,
        sample_prompts,
        sample_examples,
        samples=samples,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
        fmt=fmt,
        seed=seed,
    )
    ok, usable = ok.reshape(-1, per), usable.reshape(-1, per)
    picks = []
    for g in range(len(prompts)):
        right = [g * per + k for k in range(per) if usable[g, k] and ok[g, k]]
        wrong = [g * per + k for k in range(per) if usable[g, k] and not ok[g, k]]
        picks += [(g, c, r) for c, r in list(zip(right, wrong, strict=False))[: int(max_pairs)]]
    return _pairs(prompts, gen.tokens, picks)
