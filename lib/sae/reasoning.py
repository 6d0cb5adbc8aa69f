"""Reasoning steps for RISE: segmentation, step activations and rule-based behaviour labels.

    steps = sae.split_steps(lm.tokenizer, trace_ids)                 # delimiter "\\n\\n"
    acts = sae.step_activations(lm, prompts, traces, layer=15)      # [steps, hidden] per trace
    labels = sae.label_steps([s.text for s in steps])               # [steps, behaviours] bool

A step ends at the token that completes its delimiter (found by the same cue automaton as the
LYNX cues, so a delimiter split across tokens is found at the token that completes it) or at
the trace's last token. Its activation is the residual stream of the chosen layer at that
token (RISE's choice) or the mean over the step's tokens (`pool="mean"`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from introspect.probes.cues import CueMatcher, token_pieces


@dataclasses.dataclass(frozen=True)
class Step:
    """Tokens [start, end] (inclusive; `end` completes the delimiter or is the trace's last
    token) of one reasoning step and their text."""

    start: int
    end: int
    text: str


def _delimiters(delimiter: str | Sequence[str]) -> list[str]:
    delims = [delimiter] if isinstance(delimiter, str) else list(delimiter)
    if not delims or not all(isinstance(d, str) and d for d in delims):
        raise ValueError(
            f"delimiter must be a non-empty string (e.g. '\\n\\n') or a sequence of them, got "
            f"{delimiter!r}"
        )
    return delims


def split_steps(
    tokenizer, trace: Sequence[int], delimiter: str | Sequence[str] = "\n\n"
) -> list[Step]:
    """The steps of a generated trace (token ids, without the prompt).

    `delimiter` is one string or several (a step ends at the token completing any of them).
    With byte-level BPE a space belongs to the next word's token, so a delimiter ending in a
    space (". ") completes on the next word: split sentences at "." instead.
    Empty steps (only whitespace, e.g. a delimiter right after another) are dropped.
    """
    delims = _delimiters(delimiter)
    trace = [int(t) for t in trace]
    if not trace:
        return []
    pieces = token_pieces(tokenizer, trace)
    ends = sorted({t for t, _, _ in CueMatcher(delims).scan(pieces)})
    if not ends or ends[-1] != len(trace) - 1:
        ends.append(len(trace) - 1)
    steps, start = [], 0
    for end in ends:
        text = "".join(pieces[start : end + 1])
        if text.strip():
            steps.append(Step(start, end, text))
        start = end + 1
    return steps


# Keyword rules per behaviour (case-insensitive regular expressions, any match labels the
# step). RISE does not publish a labelling rule set; these follow the behaviours it names.
BEHAVIOURS: Mapping[str, tuple[str, ...]] = {
    "reflection": (r"\bwait\b", r"\bhmm+\b", r"\bactually\b", r"\blet me (re|think)", r"\bbut\b"),
    "backtracking": (
        r"\binstead\b",
        r"\btry again\b",
        r"\bgo back\b",
        r"\balternatively\b",
        r"\bmistake\b",
        r"\b(that|this) is (wrong|incorrect)\b",
        r"\bstart over\b",
    ),
    "verification": (
        r"\bcheck",
        r"\bverif",
        r"\bdouble[- ]check",
        r"\bconfirm",
        r"\bsubstitut",
        r"\bplug(ging)? (it |this )?back\b",
    ),
    "confidence": (
        r"\bconfiden",
        r"\bi('m| am) (fairly |very |quite |not )?(sure|certain)\b",
        r"\bprobably\b",
        r"\blikely\b",
        r"\bmaybe\b",
        r"\bi think\b",
    ),
    "final_answer": (
        r"\bfinal answer\b",
        r"\bthe answer is\b",
        r"\\boxed",
        r"\btherefore\b",
        r"\bso the\b.*\bis\b",
    ),
}


def label_steps(
    texts: Sequence[str], behaviours: Mapping[str, Sequence[str]] | None = None
) -> np.ndarray:
    """[len(texts), len(behaviours)] bool: step i shows behaviour j (any of its patterns)."""
    rules = BEHAVIOURS if behaviours is None else behaviours
    if not rules:
        raise ValueError("behaviours must name at least one behaviour with patterns")
    compiled = [[re.compile(p, re.IGNORECASE) for p in pats] for pats in rules.values()]
    out = np.zeros((len(texts), len(compiled)), bool)
    for i, text in enumerate(texts):
        for j, pats in enumerate(compiled):
            out[i, j] = any(p.search(text) for p in pats)
    return out


def step_activations(
    lm,
    prompts: Sequence[Sequence[int]],
    traces: Sequence[Sequence[int]],
    *,
    layer: int,
    delimiter: str | Sequence[str] = "\n\n",
    pool: str = "delimiter",
    batch_size: int = 8,
) -> tuple[list[list[Step]], list[np.ndarray]]:
    """Per trace its steps and their activations [steps, hidden] (float32) at `layer`.

    Args:
      lm: an `introspect.models.LM`.
      prompts, traces: token ids per example (the trace without the prompt).
      layer: hidden-state index (0 = embeddings, i = after block i - 1).
      pool: "delimiter" (the state at the token that ends the step) or "mean" (over the
        step's tokens).
    """
    from introspect.probes.features import extract_forward

    if pool not in ("delimiter", "mean"):
        raise ValueError(f"pool must be 'delimiter' or 'mean', got {pool!r}")
    (layer,) = lm.check_layers([layer])
    if len(prompts) != len(traces):
        raise ValueError(f"got {len(prompts)} prompts but {len(traces)} traces")
    steps = [split_steps(lm.tokenizer, t, delimiter) for t in traces]
    if pool == "delimiter":
        positions = [[len(p) + s.end for s in st] for p, st in zip(prompts, steps, strict=True)]
    else:
        positions = [
            [len(p) + i for s in st for i in range(s.start, s.end + 1)]
            for p, st in zip(prompts, steps, strict=True)
        ]
    feats = extract_forward(
        lm,
        [list(p) + list(t) for p, t in zip(prompts, traces, strict=True)],
        positions,
        layers=[layer],
        batch_size=batch_size,
    )
    if pool == "mean":
        pooled = []
        for st, f in zip(steps, feats, strict=True):
            sizes = np.array([s.end - s.start + 1 for s in st], np.int64)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            pooled.append(
                np.add.reduceat(f, starts, axis=0) / sizes[:, None]
                if len(st)
                else np.zeros((0, f.shape[1]), np.float32)
            )
        feats = [np.asarray(p, np.float32) for p in pooled]
    return steps, feats


@functools.cache
def _reconstructor(spec):
    """A stable (hashable) `Replace.fn` for SAEs of `spec`: x [..., d] -> the SAE's
    reconstruction in the input's units."""

    def fn(params, x):
        from introspect.sae import models as sae_models

        flat = x.reshape(-1, x.shape[-1]).astype(jnp.float32)
        out = sae_models.forward(params, flat, spec=spec)
        recon = out["reconstruction"] / sae_models.input_scale(params)
        return recon.reshape(x.shape)

    return fn


def lm_loss_increase(
    lm,
    params,
    sequences: Sequence[Sequence[int]],
    *,
    config,
    layer: int,
    positions: Sequence[Sequence[int]] | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """Next-token loss on held-out `sequences` with the residual stream `hidden_states[layer]`
    replaced by the SAE's reconstruction (`models.Replace`), vs the plain model.

    The reconstruction replaces every position, or only `positions[i]` of sequence i: an SAE
    trained on step-delimiter activations (RISE) is in distribution only there (its
    reconstruction of, e.g., the first token's massive activation is meaningless). The loss is
    over every predicted token either way.

    Args:
      lm: an `introspect.models.LM`.
      params, config: the SAE (from `sae.fit`) and its config.
      sequences: token-id lists (at least 2 tokens each).
      layer: the hidden-state index the SAE was trained on, in [1, num_layers - 1] (the
        residual stream after block layer - 1; the last index is the final norm's output).
      positions: optional per sequence the token indices to replace (None = all).
    Returns:
      {"loss": plain mean NLL per predicted token, "loss_sae": with the reconstruction,
       "increase": their difference, "tokens": tokens predicted}.
    """
    from introspect.models import Replace
    from introspect.sae import models as sae_models

    n = lm.config.num_layers
    if not 1 <= int(layer) <= n - 1:
        raise ValueError(
            f"layer must be in [1, {n - 1}] (a residual stream between blocks), got {layer}"
        )
    spec = sae_models.spec_from_config(config, name="config")
    _, d_in = sae_models.check_params(params, spec)
    if d_in != lm.config.hidden_size:
        raise ValueError(
            f"the SAE's d_in is {d_in} but the model's hidden size is {lm.config.hidden_size}"
        )
    sequences = lm.check_ids(sequences, "sequences")
    if any(len(s) < 2 for s in sequences):
        raise ValueError("every sequence needs at least 2 tokens to predict one")
    if positions is not None:
        if len(positions) != len(sequences):
            raise ValueError(f"got {len(positions)} position lists for {len(sequences)} sequences")
        positions = [np.asarray(p, np.int64).reshape(-1) for p in positions]
        for i, (p, seq) in enumerate(zip(positions, sequences, strict=True)):
            if p.size and (p.min() < 0 or p.max() >= len(seq)):
                raise ValueError(
                    f"positions[{i}] must index its sequence of {len(seq)} tokens, got "
                    f"{p.tolist()[:8]}"
                )
    args = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), dict(params))
    fn = _reconstructor(spec)

    def nll(chunk, rep):
        logits = lm.forward(chunk.tokens, mask=chunk.valid, hidden_layers=None, replace=rep).logits
        logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
        tok = jnp.take_along_axis(logp, jnp.asarray(chunk.tokens)[:, 1:, None], axis=-1)[..., 0]
        both = chunk.valid[:, 1:] & chunk.valid[:, :-1]
        return np.asarray(jnp.sum(jnp.where(both, -tok, 0.0), axis=1))

    def run(chunk):
        mask = None
        if positions is not None:
            mask = np.zeros(chunk.tokens.shape, bool)
            for r, i in enumerate(chunk.indices):
                mask[r, chunk.tokens.shape[1] - len(sequences[i]) + positions[i]] = True
        replace = Replace(args, fn, int(layer) - 1, mask)
        plain, sae_ = nll(chunk, None), nll(chunk, replace)
        return [(plain[r], sae_[r]) for r in range(len(chunk.indices))]

    rows = lm.runner.map(
        sequences, run, batch_size=batch_size, pad_id=lm.tokenizer.pad_token_id or 0
    )
    tokens = sum(len(s) - 1 for s in sequences)
    loss = float(sum(r[0] for r in rows) / tokens)
    loss_sae = float(sum(r[1] for r in rows) / tokens)
    return {"loss": loss, "loss_sae": loss_sae, "increase": loss_sae - loss, "tokens": tokens}


def steering(params, latents, alphas, *, layer: int):
    """A `models.Steering` that adds alpha * d_latent to the residual stream
    `hidden_states[layer]` (after block layer - 1, where an SAE trained on that layer reads).

    d_latent is the latent's decoder row scaled to unit L2 norm (the rows are unit-norm in the
    SAE's normalised input space; in the residual stream's units they differ by the input
    scale), so alpha is in residual-stream units: compare it with the typical activation norm.

    Args:
      params: SAE parameters (`sae.fit`), `params["decoder"]` [num_latents, d_in].
      latents: one latent index or [n] indices (one per prompt of `lm.generate`).
      alphas: one scale or [n] scales.
      layer: the hidden-state index the SAE was trained on, >= 1.
    Returns:
      Steering with vector [d_in] or [n, d_in] and scale [] or [n], for `lm.generate` /
      `lm.forward` (its layer, the block index, is checked there against the model).
    """
    from introspect.models import Steering

    dec = np.asarray(params["decoder"], np.float32)
    if dec.ndim != 2:
        raise ValueError(f"params['decoder'] must be [num_latents, d_in], got {dec.shape}")
    if int(layer) < 1:
        raise ValueError(f"layer must be a hidden-state index >= 1 (after a block), got {layer}")
    idx = np.asarray(latents)
    if idx.ndim > 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"latents must be an int or a 1-D int array, got {idx!r}")
    bad = idx[(idx < 0) | (idx >= dec.shape[0])]
    if bad.size:
        raise ValueError(f"latents must be in [0, {dec.shape[0]}), got {bad.tolist()[:8]}")
    scale = np.asarray(alphas, np.float32)
    if scale.ndim > 1 or not np.all(np.isfinite(scale)):
        raise ValueError(f"alphas must be a finite number or a 1-D array, got {alphas!r}")
    if idx.ndim and scale.ndim and idx.shape != scale.shape:
        raise ValueError(f"got {idx.shape[0]} latents but {scale.shape[0]} alphas")
    rows = dec[idx]
    rows = rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)
    if scale.ndim and not idx.ndim:
        rows = np.broadcast_to(rows, (scale.shape[0], rows.shape[-1]))
    return Steering(jnp.asarray(rows), jnp.asarray(scale), int(layer) - 1)


def latent_auroc(codes, labels) -> np.ndarray:
    """[num_latents] AUROC of each latent's activation for a binary label (0.5 = no
    association, > 0.5 = active on positives; ties, e.g. all-zero codes, count one half).

    Args:
      codes: [n, num_latents] activations (`sae.encode`).
      labels: [n] bool / 0-1, both classes present.
    """
    from introspect import metrics

    z = np.asarray(codes, np.float32)
    y = np.asarray(labels)
    if z.ndim != 2 or y.shape != (z.shape[0],):
        raise ValueError(f"codes must be [n, num_latents] and labels [n], got {z.shape}, {y.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("codes contain NaN or inf")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError(f"labels: only one class present among {y.size} rows; AUROC needs both")
    per = jax.vmap(lambda s: metrics.auroc(s, y.astype(np.int32), validate=False), in_axes=1)
    return np.asarray(jax.jit(per)(jnp.asarray(z)), np.float64)
