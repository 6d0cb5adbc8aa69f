"""ZIP-RC: zero-overhead introspective prediction of reward and cost (Manvi et al., 2025).

    from introspect.heads import zip_rc
    ids = zip_rc.reserved_ids(lm.config.vocab_size, zip_rc.num_bins(2))   # the last 16 ids
    p = zip_rc.joint(logits, ids)                      # [..., R=2, L=8] p(reward, remaining)
    zip_rc.expected_reward(p), zip_rc.expected_remaining(p)
    logits = zip_rc.mask_slice(logits, ids)            # before sampling: never emit the slice

A model predicts, at every token and in the same forward pass as the next token, the joint
distribution of its final reward and of the tokens it has left to generate. B = L x R
vocabulary logits are reserved (the "slice"): L remaining-length bins (default edges 0, 256,
512, 1k, 2k, 4k, 8k, 16k, 32k; a remaining length at or past the last edge falls in the last
bin) times R reward states. The target at a position is `length_bin + reward_state * L`, so
the softmax over the slice reshaped to [R, L] is p(reward, remaining length).

Training (`loss`): cross-entropy over the slice + kl_weight * KL(teacher || student) over the
rest of the vocabulary, the slice masked out of both distributions, averaged over the labelled
positions; the teacher is the frozen starting model. Targets come from finished rollouts
(`rollout_targets`, `pack_rollouts`): a sequence with reward state r and T answer tokens gives
the position whose logits predict answer token t (t = 1 .. T) the target
length_bin(T - t) + r * L (T - t tokens follow the one predicted). `make_loss_fn` /
`train_zip_rc` train it through the one loop (`introspect.train`), loss "zip_rc" by name.

Inference: `joint` at the current step of K parallel samples feeds `decide`, the sampling
meta-action (stop / continue a subset / branch) that maximises our utility

    U(c) = E[max(base_reward, R over the c_k copies of each sample k)]
           - alpha * sum_k c_k E[L_k] - beta * E[max over copies of L_k],

with c_k in {0 .. max_copies} continuations from sample k's prefix (0 = prune, 1 = continue,
> 1 = branch); the copies are independent draws from sample k's predicted joint.

Defaults follow the authors' code (github.com/rohinmanvi/ZIP-RC, src/ziprc_dataset.py and
src/train_ziprc_joint_head.py): the length edges; reward states [0, 1] (binary correctness) or
given reward values with midpoint binning (`reward_state`); remaining = the tokens after the one
predicted (its `tokens_to_completion`); a contiguous slice from a start id (their
`--distribution-token-id`, the first unused id of Qwen3's padded vocabulary); KL weight 10 (their
final stage); the teacher truncated to its top 32 non-slice tokens, renormalised, against the
student's full non-slice log-softmax (`teacher_top_k=32`; 0 = the exact KL, as METHODS.md
states it); AdamW, lr 1e-3, betas (0.9, 0.95), 5 % warm-up then cosine, gradients clipped at 1.
Ours, not published (the public code has no sampler; the paper gives the utility's form only in
words): the utility above, the representative length of a bin (its midpoint), the decision by
exhaustive search over the copy counts, and the default slice (the last B ids: SmolLM2's
vocabulary has no unused ids, so its 16 last-merged BPE tokens become unavailable for
sampling). Differences from the authors' code: the loss is the mean over every labelled
position of the batch (theirs: one sequence per micro-batch, so a mean of per-sequence means);
their two-stage recipe (a no-KL head on noisy correctness, whose mean expected reward over the
last 64 positions relabels the rollouts as a real-valued "value" for the final KL run) is not
wired up as one call, but is these pieces: kl_weight 0, `expected_reward`, `reward_state` with
7 reward values.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from introspect import _checks as V
from introspect import losses
from introspect import train as train_lib
from introspect.posttrain import lora, policy

__all__ = [
    "BRANCH",
    "CONTINUE",
    "KL_WEIGHT",
    "LENGTH_EDGES",
    "REWARD_VALUES",
    "STOP",
    "TEACHER_TOP_K",
    "Decision",
    "check_edges",
    "decide",
    "evaluate",
    "expected_max_remaining",
    "expected_max_reward",
    "expected_remaining",
    "expected_reward",
    "final_hidden",
    "head_rows",
    "joint",
    "length_bin",
    "length_marginal",
    "length_values",
    "loss",
    "loss_terms",
    "make_loss_fn",
    "mask_slice",
    "num_bins",
    "pack_rollouts",
    "predict_joint",
    "reserved_ids",
    "reward_marginal",
    "reward_state",
    "rollout_targets",
    "slice_ids_for",
    "sparse_kl",
    "target_index",
    "teacher_targets",
    "teacher_topk",
    "train_zip_rc",
    "tuned",
    "utility",
    "with_head_rows",
    "zip_rc_config",
]

# Remaining-length bin edges (tokens): bin b holds edges[b] <= remaining < edges[b + 1]; a
# remaining length >= edges[-1] falls in the last bin (the authors' code).
LENGTH_EDGES = (0, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
# Reward value of each reward state (binary correctness: state 0 = wrong, 1 = right).
REWARD_VALUES = (0.0, 1.0)
# The authors' KL coefficient of the final training stage and teacher truncation.
KL_WEIGHT = 10.0
TEACHER_TOP_K = 32
# Meta-actions of `decide`.
STOP, CONTINUE, BRANCH = 0, 1, 2
# `decide` enumerates (max_copies + 1) ** K copy-count vectors; above this it refuses.
MAX_CONFIGURATIONS = 1 << 16


# ----------------------------------------------------------------------------------------------
# Bins, targets and the reserved slice
# ----------------------------------------------------------------------------------------------


def check_edges(edges: Sequence[float]) -> np.ndarray:
    """The length-bin edges as a float64 numpy array, or a ValueError.

    Edges must be a 1-D sequence of at least 2 finite numbers, starting at 0 and strictly
    increasing (L = len(edges) - 1 bins).
    """
    try:
        e = np.asarray(edges, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"edges: expected a 1-D sequence of numbers, got {edges!r}") from None
    if e.ndim != 1 or e.size < 2:
        raise ValueError(
            f"edges: expected at least 2 bin edges in a 1-D sequence (L = len(edges) - 1 bins), "
            f"got shape {e.shape}"
        )
    if not np.all(np.isfinite(e)) or e[0] != 0 or np.any(np.diff(e) <= 0):
        raise ValueError(
            f"edges: expected finite, strictly increasing edges starting at 0 (e.g. "
            f"{LENGTH_EDGES}), got {e.tolist()}"
        )
    return e


def _check_reward_values(reward_values: Sequence[float]) -> np.ndarray:
    try:
        v = np.asarray(reward_values, np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"reward_values: expected a 1-D sequence of numbers, got {reward_values!r}"
        ) from None
    if v.ndim != 1 or v.size < 1 or not np.all(np.isfinite(v)) or np.any(np.diff(v) <= 0):
        raise ValueError(
            "reward_values: expected at least one finite reward value, strictly increasing "
            f"(one per reward state, e.g. {REWARD_VALUES}), got {v.tolist()}"
        )
    return v


def num_bins(num_rewards: int = 2, *, edges: Sequence[float] = LENGTH_EDGES) -> int:
    """B = L x R: the size of the reserved slice for R reward states and the length edges."""
    r = V.check_int_option(num_rewards, "num_rewards")
    return (len(check_edges(edges)) - 1) * r


def length_values(edges: Sequence[float] = LENGTH_EDGES) -> np.ndarray:
    """[L] the remaining length each bin stands for in expectations: the bin's midpoint (ours;
    the authors' code reads only the reward marginal). float32."""
    e = check_edges(edges)
    return ((e[:-1] + e[1:]) / 2).astype(np.float32)


def length_bin(
    remaining: Any, *, edges: Sequence[float] = LENGTH_EDGES, validate: bool = True
) -> jax.Array:
    """The remaining-length bin of each entry.

    Args:
      remaining: [...] tokens left to generate (>= 0).
      edges: bin edges, [L + 1], from 0, strictly increasing.
      validate: check that concrete values are finite and >= 0.
    Returns:
      [...] int32 bin b with edges[b] <= remaining < edges[b + 1]; remaining >= edges[-1] gives
      the last bin L - 1.
    Raises:
      ValueError: bad edges; a negative or non-finite remaining length.
    """
    e = check_edges(edges)
    x = V.as_array(remaining, "remaining")
    if validate:
        V.check_range(x, "remaining", 0, np.inf, what="token counts >= 0")
    inner = jnp.asarray(e[1:-1], jnp.float32)
    return jnp.searchsorted(inner, jnp.asarray(x, jnp.float32), side="right").astype(jnp.int32)


def reward_state(
    reward: Any, *, reward_values: Sequence[float] = REWARD_VALUES, validate: bool = True
) -> jax.Array:
    """The reward state of each (real-valued) reward: the nearest of `reward_values`.

    The authors' binning: state i covers [mid(v_{i-1}, v_i), mid(v_i, v_{i+1})) (a value on a
    midpoint goes up); values below / above the grid go to the first / last state.

    Args:
      reward: [...] final rewards.
      reward_values: [R] the value of each state, strictly increasing.
    Returns:
      [...] int32 states in [0, R).
    """
    v = _check_reward_values(reward_values)
    x = V.as_array(reward, "reward")
    if validate:
        V.check_finite(x, "reward")
    mids = jnp.asarray((v[:-1] + v[1:]) / 2, jnp.float32)
    return jnp.searchsorted(mids, jnp.asarray(x, jnp.float32), side="right").astype(jnp.int32)


def target_index(
    reward: Any,
    remaining: Any,
    *,
    num_rewards: int = 2,
    edges: Sequence[float] = LENGTH_EDGES,
    validate: bool = True,
) -> jax.Array:
    """The slice index length_bin(remaining) + reward * L.

    Args:
      reward: [...] integer reward states in [0, num_rewards) (`reward_state` maps real
        rewards onto states).
      remaining: [...] (broadcastable) tokens left after the predicted one.
      num_rewards: R.
      edges: length-bin edges (L = len(edges) - 1).
    Returns:
      [...] int32 indices in [0, L * R).
    Raises:
      ValueError: a non-integer reward, a reward state outside [0, R), a negative remaining.
    """
    r_count = V.check_int_option(num_rewards, "num_rewards")
    n_len = len(check_edges(edges)) - 1
    r = V.as_array(reward, "reward")
    if validate:
        if not (jnp.issubdtype(r.dtype, jnp.integer) or r.dtype == jnp.bool_):
            raise ValueError(
                f"reward: dtype {r.dtype}; expected integer reward states in [0, {r_count}) "
                "(zip_rc.reward_state maps real-valued rewards onto states)"
            )
        V.check_range(
            r, "reward", 0, r_count - 1, what=f"reward states in [0, {r_count - 1}] (R = {r_count})"
        )
    b = length_bin(remaining, edges=edges, validate=validate)
    return (b + jnp.asarray(r, jnp.int32) * n_len).astype(jnp.int32)


def reserved_ids(
    vocab_size: int,
    num_bins: int,
    *,
    start: int | None = None,
    ids: Sequence[int] | None = None,
) -> np.ndarray:
    """The vocabulary ids that form the slice, in slice order.

    Args:
      vocab_size: rows of the LM head.
      num_bins: B = L x R.
      start: a contiguous slice [start, start + B) (the authors' `--distribution-token-id`, e.g.
        151669, the first unused id of Qwen3's padded vocabulary).
      ids: explicit ids (e.g. unused special tokens), B distinct ids in [0, vocab_size).
      Neither: the last B ids of the vocabulary.
    Returns:
      [B] int32 ids.
    Raises:
      ValueError: both start and ids; a slice that does not fit the vocabulary; ids that are
        repeated, out of range or not B of them.
    """
    n = V.check_int_option(vocab_size, "vocab_size")
    b = V.check_int_option(num_bins, "num_bins")
    if b >= n:
        raise ValueError(f"num_bins: {b} reserved ids leave no vocabulary of {n} ids to sample")
    if start is not None and ids is not None:
        raise ValueError("reserved_ids: give start or ids, not both")
    if ids is not None:
        out = np.asarray(ids)
        if out.ndim != 1 or out.size != b or not np.issubdtype(out.dtype, np.integer):
            raise ValueError(
                f"ids: expected {b} integer ids (B = L x R), got {np.asarray(ids).tolist()[:8]}"
            )
        if len(set(out.tolist())) != b or out.min() < 0 or out.max() >= n:
            raise ValueError(f"ids: expected {b} distinct ids in [0, {n}), got {out.tolist()[:8]}")
        return out.astype(np.int32)
    if start is None:
        return np.arange(n - b, n, dtype=np.int32)
    s = V.check_int_option(start, "start", minimum=0)
    if s + b > n:
        raise ValueError(
            f"start: the slice [{s}, {s + b}) does not fit the vocabulary of {n} ids; expected "
            f"start <= {n - b}"
        )
    return np.arange(s, s + b, dtype=np.int32)


def _slice(logits: Any, slice_ids: Any, validate: bool) -> tuple[jax.Array, jax.Array]:
    z = V.as_array(logits, "logits")
    ids = V.as_array(slice_ids, "slice_ids")
    if validate:
        V.check_min_rank(z, "logits", 1, "[..., vocab] logits")
        V.check_rank(ids, "slice_ids", 1, "[B] vocabulary ids")
        V.check_not_empty(ids, "slice_ids")
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(f"slice_ids: dtype {ids.dtype}; expected integer vocabulary ids")
        V.check_range(ids, "slice_ids", 0, z.shape[-1] - 1, what=f"ids in [0, {z.shape[-1]})")
        if ids.shape[0] >= z.shape[-1]:
            raise ValueError(
                f"slice_ids: {ids.shape[0]} ids reserve the whole vocabulary of {z.shape[-1]}"
            )
    return jnp.asarray(V.as_float(z)), jnp.asarray(ids, jnp.int32)


def mask_slice(logits: Any, slice_ids: Any, *, validate: bool = True) -> jax.Array:
    """`logits` with -inf at the slice ids (so sampling never emits them).

    Args:
      logits: [..., vocab]; slice_ids: [B].
    Returns:
      [..., vocab] float logits.
    """
    z, ids = _slice(logits, slice_ids, validate)
    return z.at[..., ids].set(-jnp.inf)


def joint(
    logits: Any, slice_ids: Any, *, num_length_bins: int = 8, validate: bool = True
) -> jax.Array:
    """p(reward state, remaining-length bin): the softmax over the slice, reshaped.

    Args:
      logits: [..., vocab] next-token logits (any position).
      slice_ids: [B] the reserved ids, B = L x R (slice index length_bin + reward * L).
      num_length_bins: L.
    Returns:
      [..., R, L] probabilities summing to 1 over the last two axes.
    Raises:
      ValueError: B not a multiple of L; ids outside the vocabulary.
    """
    n_len = V.check_int_option(num_length_bins, "num_length_bins")
    z, ids = _slice(logits, slice_ids, validate)
    b = ids.shape[0]
    if b % n_len:
        raise ValueError(
            f"slice_ids: {b} ids is not a multiple of num_length_bins={n_len}; expected "
            "B = L x R ids"
        )
    p = jax.nn.softmax(z[..., ids], axis=-1)
    return p.reshape(*p.shape[:-1], b // n_len, n_len)


def _check_joint(p: Any, validate: bool) -> jax.Array:
    p = V.as_array(p, "joint")
    if validate:
        V.check_min_rank(p, "joint", 2, "[..., R, L] probabilities")
        V.check_probabilities(p, "joint")
    return jnp.asarray(V.as_float(p))


def reward_marginal(p: Any, *, validate: bool = True) -> jax.Array:
    """[..., R, L] joint -> [..., R] p(reward state)."""
    return jnp.sum(_check_joint(p, validate), axis=-1)


def length_marginal(p: Any, *, validate: bool = True) -> jax.Array:
    """[..., R, L] joint -> [..., L] p(remaining-length bin)."""
    return jnp.sum(_check_joint(p, validate), axis=-2)


def expected_reward(
    p: Any, *, reward_values: Sequence[float] = REWARD_VALUES, validate: bool = True
) -> jax.Array:
    """[..., R, L] joint -> [...] E[reward] = sum_r p(r) v_r (P(correct) for binary rewards)."""
    v = _check_reward_values(reward_values)
    p = _check_joint(p, validate)
    if p.shape[-2] != v.size:
        raise ValueError(
            f"reward_values: {v.size} values for a joint with R = {p.shape[-2]} reward states"
        )
    return jnp.sum(p, axis=-1) @ jnp.asarray(v, p.dtype)


def expected_remaining(
    p: Any, *, edges: Sequence[float] = LENGTH_EDGES, validate: bool = True
) -> jax.Array:
    """[..., R, L] joint -> [...] E[remaining tokens], each bin at its midpoint
    (`length_values`)."""
    lv = length_values(edges)
    p = _check_joint(p, validate)
    if p.shape[-1] != lv.size:
        raise ValueError(f"edges: {lv.size} length bins for a joint with L = {p.shape[-1]}")
    return jnp.sum(p, axis=-2) @ jnp.asarray(lv, p.dtype)


# ----------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------


def _in_slice(vocab: int, ids: jax.Array) -> jax.Array:
    return jnp.zeros((vocab,), bool).at[ids].set(True)


def teacher_topk(teacher_logits: Any, slice_ids: Any, k: int, *, validate: bool = True):
    """The authors' sparse teacher: its top-k non-slice tokens, renormalised over those k.

    Args:
      teacher_logits: [..., vocab]; slice_ids: [B]; k: kept tokens (<= vocab - B).
    Returns:
      (ids [..., k] int32, log-probabilities [..., k] float32 (logsumexp 0)).
    """
    k = V.check_int_option(k, "teacher_top_k")
    z, ids = _slice(teacher_logits, slice_ids, validate)
    if k > z.shape[-1] - ids.shape[0]:
        raise ValueError(
            f"teacher_top_k: {k} > the {z.shape[-1] - ids.shape[0]} non-slice vocabulary ids"
        )
    vals, top = jax.lax.top_k(z.at[..., ids].set(-jnp.inf), k)
    return top.astype(jnp.int32), jax.nn.log_softmax(vals, axis=-1)


def _student_logq(z: jax.Array, ids: jax.Array) -> jax.Array:
    """log-softmax of the student over the non-slice vocabulary (slice entries -inf)."""
    return jax.nn.log_softmax(z.at[..., ids].set(-jnp.inf), axis=-1)


def sparse_kl(
    *, logits: Any, teacher_ids: Any, teacher_logp: Any, slice_ids: Any, validate: bool = True
) -> jax.Array:
    """KL(P || Q) over the teacher's kept tokens (the authors' form).

    sum_k p_k (log p_k - log q(id_k)), p the teacher's truncated distribution, q the student's
    softmax over the whole non-slice vocabulary.

    Args:
      logits: [..., vocab] student; teacher_ids, teacher_logp: [..., k] (`teacher_topk`).
    Returns:
      [...] per position.
    """
    z, ids = _slice(logits, slice_ids, validate)
    t_ids = jnp.asarray(teacher_ids, jnp.int32)
    t_lp = jnp.asarray(teacher_logp, jnp.float32)
    if validate:
        V.check_same_shape(t_ids, t_lp, "teacher_ids", "teacher_logp")
        if t_ids.shape[:-1] != z.shape[:-1]:
            raise ValueError(
                f"teacher_ids: shape {tuple(t_ids.shape)}; expected {tuple(z.shape[:-1])} + [k]"
            )
    logq = jnp.take_along_axis(_student_logq(z, ids), t_ids, axis=-1)
    return jnp.sum(jnp.exp(t_lp) * (t_lp - logq), axis=-1)


def _full_kl(z: jax.Array, t: jax.Array, ids: jax.Array) -> jax.Array:
    inside = _in_slice(z.shape[-1], ids)
    logq = _student_logq(z, ids)
    logp = jax.nn.log_softmax(t.at[..., ids].set(-jnp.inf), axis=-1)
    terms = jnp.exp(logp) * (logp - logq)
    return jnp.sum(jnp.where(inside, 0.0, terms), axis=-1)


def loss_terms(
    *,
    logits: Any,
    teacher_logits: Any | None,
    targets: Any,
    slice_ids: Any,
    teacher_top_k: int = 0,
    validate: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Per-position cross-entropy over the slice and KL(teacher || student) off the slice.

    Args:
      logits: [..., vocab] student logits.
      teacher_logits: [..., vocab] frozen teacher logits, or None (KL = 0).
      targets: [...] slice indices in [0, B) (`target_index`).
      slice_ids: [B] reserved ids.
      teacher_top_k: 0 = the exact KL over the non-slice vocabulary (both distributions
        renormalised without the slice); k > 0 = the authors' truncation (`teacher_topk`).
    Returns:
      (ce [...], kl [...]).
    """
    z, ids = _slice(logits, slice_ids, validate)
    y = V.as_array(targets, "targets")
    if validate:
        if y.shape != z.shape[:-1]:
            raise ValueError(
                f"targets: shape {tuple(y.shape)}; expected {tuple(z.shape[:-1])} (logits "
                "without the vocabulary axis)"
            )
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"targets: dtype {y.dtype}; expected integer slice indices")
    t = None
    if teacher_logits is not None:
        t = jnp.asarray(V.as_float(V.as_array(teacher_logits, "teacher_logits")))
        if validate:
            V.check_same_shape(t, z, "teacher_logits", "logits")
    k = int(teacher_top_k)
    if k < 0:
        raise ValueError(f"teacher_top_k: expected 0 (exact KL) or k >= 1, got {k}")
    if k > z.shape[-1] - ids.shape[0]:
        raise ValueError(
            f"teacher_top_k: {k} > the {z.shape[-1] - ids.shape[0]} non-slice vocabulary ids"
        )
    return _terms(z, t, jnp.asarray(y, jnp.int32), ids, k=k)


@functools.partial(jax.jit, static_argnames=("k",))
def _terms(z, t, y, ids, *, k):
    zs = z[..., ids]
    y = jnp.clip(y, 0, ids.shape[0] - 1)
    ce = jax.nn.logsumexp(zs, axis=-1) - jnp.take_along_axis(zs, y[..., None], axis=-1)[..., 0]
    if t is None:
        return ce, jnp.zeros_like(ce)
    if k == 0:
        return ce, _full_kl(z, t, ids)
    vals, top = jax.lax.top_k(t.at[..., ids].set(-jnp.inf), k)
    t_lp = jax.nn.log_softmax(vals, axis=-1)
    logq = jnp.take_along_axis(_student_logq(z, ids), top, axis=-1)
    return ce, jnp.sum(jnp.exp(t_lp) * (t_lp - logq), axis=-1)


def loss(
    *,
    logits: Any,
    teacher_logits: Any | None,
    targets: Any,
    mask: Any,
    slice_ids: Any,
    kl_weight: float = KL_WEIGHT,
    teacher_top_k: int = 0,
    validate: bool = True,
) -> jax.Array:
    """ZIP-RC's loss: mean over valid positions of CE(slice) + kl_weight * KL(teacher || student).

    Args:
      logits: [..., vocab] student logits (e.g. [batch, length, vocab]).
      teacher_logits: [..., vocab] frozen teacher logits (None: no KL term).
      targets: [...] slice indices (`target_index`).
      mask: [...] True at the labelled positions.
      slice_ids: [B] reserved ids.
      kl_weight: lambda (the authors' final stage: 10; their intermediate stage: 0).
      teacher_top_k: 0 = exact KL; k = the authors' top-k teacher (see `loss_terms`).
    Returns:
      [] scalar; 0 when no position is valid.
    """
    ce, kl = loss_terms(
        logits=logits,
        teacher_logits=teacher_logits,
        targets=targets,
        slice_ids=slice_ids,
        teacher_top_k=teacher_top_k,
        validate=validate,
    )
    m = V.as_mask(mask, ce.shape, "mask") if validate else jnp.asarray(mask, bool)
    return _masked_mean(ce, kl, m, jnp.asarray(kl_weight, ce.dtype))


@jax.jit
def _masked_mean(ce, kl, m, kl_weight):
    per = jnp.where(m, ce + kl_weight * kl, 0.0)
    return jnp.sum(per) / jnp.maximum(jnp.sum(m.astype(ce.dtype)), 1.0)


# ----------------------------------------------------------------------------------------------
# Training targets from rollouts
# ----------------------------------------------------------------------------------------------


def rollout_targets(
    *,
    rewards: Any,
    lengths: Any,
    starts: Any,
    width: int,
    num_rewards: int = 2,
    edges: Sequence[float] = LENGTH_EDGES,
    validate: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Per-position targets of finished rollouts in a [n, width] logits layout.

    Row i's answer has T_i = lengths[i] tokens (its stop token included); the logits at
    position starts[i] + j predict answer token j + 1 (j = 0 .. T_i - 1) and get the target
    length_bin(T_i - 1 - j) + rewards[i] * L.

    Args:
      rewards: [n] integer reward states; lengths: [n] answer tokens; starts: [n] the position
        whose logits predict the first answer token (prompt length - 1 in `policy.pack`).
      width: positions per row.
    Returns:
      (targets [n, width] int32 (0 off the answer), mask [n, width] bool).
    """
    w = V.check_int_option(width, "width")
    r = V.as_array(rewards, "rewards")
    t = V.as_array(lengths, "lengths")
    s = V.as_array(starts, "starts")
    if validate:
        for name, x in (("rewards", r), ("lengths", t), ("starts", s)):
            V.check_rank(x, name, 1, "[n]")
        V.check_same_shape(r, t, "rewards", "lengths")
        V.check_same_shape(r, s, "rewards", "starts")
        V.check_range(t, "lengths", 1, np.inf, what="answer lengths >= 1")
        V.check_range(s, "starts", 0, np.inf, what="positions >= 0")
        if V.is_concrete(s, t) and np.any(np.asarray(s) + np.asarray(t) > w):
            raise ValueError(f"starts + lengths: an answer runs past width={w}")
    pos = jnp.arange(w)[None, :]
    j = pos - jnp.asarray(s, jnp.int32)[:, None]
    tt = jnp.asarray(t, jnp.int32)[:, None]
    mask = (j >= 0) & (j < tt)
    remaining = jnp.where(mask, tt - 1 - j, 0)
    tgt = target_index(
        jnp.broadcast_to(jnp.asarray(r)[:, None], remaining.shape),
        remaining,
        num_rewards=num_rewards,
        edges=edges,
        validate=validate,
    )
    return jnp.where(mask, tgt, 0), mask


def pack_rollouts(
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    rewards: Sequence[int],
    *,
    pad_id: int,
    num_rewards: int = 2,
    edges: Sequence[float] = LENGTH_EDGES,
    prompt_len: int = 0,
    response_len: int = 0,
) -> dict[str, np.ndarray]:
    """Fixed-shape training arrays of finished rollouts (prompt, answer, reward state).

    Args:
      prompts, answers: token-id lists (answers with their stop token, as generated).
      rewards: [n] integer reward states in [0, num_rewards).
      prompt_len, response_len: fixed lengths (0 = the longest given).
    Returns:
      {"tokens", "valid": [n, W] (`policy.pack`: left-padded prompt, answer, padding),
       "zip_targets": [n, W] int32, "zip_mask": [n, W] bool}, W = prompt_len + response_len.
    """
    p = policy.fixed_length(prompt_len, prompts)
    packed = policy.pack(
        prompts,
        answers,
        prompt_len=p,
        response_len=policy.fixed_length(response_len, answers),
        pad_id=pad_id,
    )
    n, w = packed["tokens"].shape
    lengths = np.asarray([len(a) for a in answers], np.int32)
    tgt, mask = rollout_targets(
        rewards=np.asarray(rewards),
        lengths=lengths,
        starts=np.full((n,), p - 1, np.int32),
        width=w,
        num_rewards=num_rewards,
        edges=edges,
    )
    return {"tokens": packed["tokens"], "valid": packed["valid"],
            "zip_targets": np.asarray(tgt), "zip_mask": np.asarray(mask)}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The utility and the sampler's meta-action
# ----------------------------------------------------------------------------------------------


@flax.struct.dataclass
class Decision:
    """What `decide` chose.

    action: [] int32, STOP (no sample continues), CONTINUE (running samples continue, some
      perhaps pruned, no new one) or BRANCH (at least one new sample starts from a prefix).
    counts: [K] int32 continuations from each prefix (0 = prune / none).
    utility: [] the chosen configuration's utility.
    stop_utility: [] utility of stopping (base_reward).
    continue_utility: [] utility of continuing every running sample once.
    """

    action: jax.Array
    counts: jax.Array
    utility: jax.Array
    stop_utility: jax.Array
    continue_utility: jax.Array


def _max_pmf(cdf: jax.Array, counts: jax.Array) -> jax.Array:
    """pmf of the maximum of independent draws: cdf [K, S] per sample, counts [..., K] copies
    -> [..., S]. An empty set gives all mass on state 0."""
    c = counts.astype(cdf.dtype)
    # P(max <= s) = prod_k cdf_k(s) ** c_k, in logs; a zero cdf with a copy taken gives 0.
    all_le = jnp.exp(jnp.einsum("...k,ks->...s", c, jnp.log(jnp.clip(cdf, 1e-30, 1.0))))
    zero_le = jnp.einsum("...k,ks->...s", c, (cdf <= 0).astype(cdf.dtype))
    all_le = jnp.where(zero_le > 0, 0.0, jnp.minimum(all_le, 1.0))
    prev = jnp.concatenate([jnp.zeros_like(all_le[..., :1]), all_le[..., :-1]], axis=-1)
    return all_le - prev


@jax.jit
def _expected_max(marg, counts, values, floor):
    """E[max(floor, max over copies of values[state])]: marg [K, S] per-sample pmfs over S
    ascending states, counts [..., K]; floor where no copy is taken."""
    pmf = _max_pmf(jnp.cumsum(marg, axis=-1), counts)
    val = pmf @ jnp.maximum(values, floor)
    return jnp.where(jnp.sum(counts, axis=-1) > 0, val, floor)


@jax.jit
def _utility_core(p, counts, alpha, beta, base, rv, lv):
    pl = jnp.sum(p, axis=-2)
    best = _expected_max(jnp.sum(p, axis=-1), counts, rv, base)
    latency = _expected_max(pl, counts, lv, jnp.zeros((), p.dtype))
    return best - alpha * (counts.astype(p.dtype) @ (pl @ lv)) - beta * latency


def _joints(joints: Any, validate: bool) -> jax.Array:
    p = V.as_array(joints, "joints")
    if validate:
        V.check_rank(p, "joints", 3, "[K, R, L] joints of K samples")
        V.check_simplex(p.reshape(p.shape[0], -1), "joints")
    return jnp.asarray(V.as_float(p))


def _grid_values(p: jax.Array, reward_values, edges) -> tuple[jax.Array, jax.Array]:
    """(reward values [R], bin lengths [L]) checked against the joints' R and L."""
    rv = _check_reward_values(reward_values)
    lv = length_values(edges)
    if rv.size != p.shape[-2]:
        raise ValueError(
            f"reward_values: {rv.size} values for joints with R = {p.shape[-2]} reward states"
        )
    if lv.size != p.shape[-1]:
        raise ValueError(f"edges: {lv.size} length bins for joints with L = {p.shape[-1]}")
    return jnp.asarray(rv, p.dtype), jnp.asarray(lv, p.dtype)


def _counts(counts: Any, k: int, validate: bool) -> jax.Array:
    c = V.as_array(counts, "counts")
    if validate:
        V.check_min_rank(c, "counts", 1, "[..., K] copy counts")
        if c.shape[-1] != k:
            raise ValueError(f"counts: last axis {c.shape[-1]}; expected K = {k} samples")
        if not jnp.issubdtype(c.dtype, jnp.integer):
            raise ValueError(f"counts: dtype {c.dtype}; expected integer copy counts")
        V.check_range(c, "counts", 0, np.inf, what="copy counts >= 0")
    return jnp.asarray(c, jnp.int32)


def expected_max_reward(
    joints: Any,
    counts: Any,
    *,
    reward_values: Sequence[float] = REWARD_VALUES,
    base_reward: float = 0.0,
    validate: bool = True,
) -> jax.Array:
    """E[max(base_reward, rewards of all copies)], copies independent draws.

    Args:
      joints: [K, R, L] per-sample joints; counts: [..., K] copies of each sample.
    Returns:
      [...]; base_reward where no copy is taken.
    """
    p = _joints(joints, validate)
    rv = jnp.asarray(_check_reward_values(reward_values), p.dtype)
    if rv.shape[0] != p.shape[-2]:
        raise ValueError(
            f"reward_values: {rv.shape[0]} values for joints with R = {p.shape[-2]} reward states"
        )
    c = _counts(counts, p.shape[0], validate)
    return _expected_max(jnp.sum(p, axis=-1), c, rv, jnp.asarray(base_reward, p.dtype))


def expected_max_remaining(
    joints: Any, counts: Any, *, edges: Sequence[float] = LENGTH_EDGES, validate: bool = True
) -> jax.Array:
    """E[max remaining length over all copies] (latency in tokens; 0 for no copy).

    Args:
      joints: [K, R, L]; counts: [..., K].
    Returns:
      [...].
    """
    p = _joints(joints, validate)
    lv = jnp.asarray(length_values(edges), p.dtype)
    if lv.shape[0] != p.shape[-1]:
        raise ValueError(f"edges: {lv.shape[0]} length bins for joints with L = {p.shape[-1]}")
    c = _counts(counts, p.shape[0], validate)
    return _expected_max(jnp.sum(p, axis=-2), c, lv, jnp.zeros((), p.dtype))


def utility(
    joints: Any,
    counts: Any,
    *,
    alpha: float,
    beta: float = 0.0,
    base_reward: float = 0.0,
    reward_values: Sequence[float] = REWARD_VALUES,
    edges: Sequence[float] = LENGTH_EDGES,
    validate: bool = True,
) -> jax.Array:
    """Our sampling utility of taking counts[k] continuations from each sample's prefix.

    U = E[max(base_reward, R over copies)] - alpha * sum_k counts_k E[L_k]
        - beta * E[max L over copies],
    the three terms the paper names (expected best reward, total compute, latency); lengths in
    tokens (bins at their midpoints), copies independent draws from their sample's joint.

    Args:
      joints: [K, R, L]; counts: [..., K] non-negative integers.
      alpha: reward per token of compute (>= 0); beta: reward per token of latency (>= 0).
      base_reward: the reward already secured (e.g. of a finished answer); 0 = none (rewards
        >= 0; pass -inf when rewards can be negative and nothing is secured).
    Returns:
      [...] utilities.
    """
    alpha = V.check_float_option(alpha, "alpha", lo=0.0)
    beta = V.check_float_option(beta, "beta", lo=0.0)
    p = _joints(joints, validate)
    rv, lv = _grid_values(p, reward_values, edges)
    c = _counts(counts, p.shape[0], validate)
    return _utility_core(p, c, alpha, beta, jnp.asarray(base_reward, p.dtype), rv, lv)


@functools.lru_cache(maxsize=32)
def _configurations(k: int, max_copies: int) -> np.ndarray:
    """All copy-count vectors in {0 .. max_copies}^k, fewest copies first: [C, k] int32."""
    grid = np.asarray(list(itertools.product(range(max_copies + 1), repeat=k)), np.int32)
    return grid[np.argsort(grid.sum(1), kind="stable")]


@jax.jit
def _decide_core(p, grid, run, alpha, beta, base, rv, lv, max_samples, tol):
    u = _utility_core(p, grid, alpha, beta, base, rv, lv)
    u = jnp.where(jnp.sum(grid, axis=1) <= max_samples, u, -jnp.inf)
    best = jnp.argmax(u >= jnp.max(u) - tol)  # the first within tol: the fewest copies
    counts = grid[best]
    new = jnp.sum(jnp.maximum(counts - run.astype(jnp.int32), 0))
    action = jnp.where(new > 0, BRANCH, jnp.where(jnp.sum(counts) == 0, STOP, CONTINUE))
    cont = _utility_core(p, run.astype(jnp.int32), alpha, beta, base, rv, lv)
    return Decision(
        action=action.astype(jnp.int32),
        counts=counts,
        utility=u[best],
        stop_utility=base,
        continue_utility=cont,
    )


def decide(
    joints: Any,
    *,
    alpha: float,
    beta: float = 0.0,
    base_reward: float = 0.0,
    running: Any = None,
    max_copies: int = 2,
    max_samples: int | None = None,
    reward_values: Sequence[float] = REWARD_VALUES,
    edges: Sequence[float] = LENGTH_EDGES,
    tol: float = 1e-6,
    validate: bool = True,
) -> Decision:
    """The meta-action that maximises `utility` over every allowed copy-count vector (ours).

    Every prefix k (a running sample, or e.g. the prompt with running False) may get 0 ..
    max_copies continuations, at most max_samples in all. Ties within `tol` go to the fewest
    copies (then the first in lexicographic order). Exhaustive: (max_copies + 1) ** K
    configurations, at most MAX_CONFIGURATIONS.

    Args:
      joints: [K, R, L] each prefix's current joint (`joint` at its last position).
      alpha, beta, base_reward, reward_values, edges: as `utility`.
      running: [K] bool, True for samples being generated (default all).
      max_copies: most continuations per prefix (1 = prune only, no branching).
      max_samples: most continuations in all (default K * max_copies).
    Returns:
      Decision.
    """
    alpha = V.check_float_option(alpha, "alpha", lo=0.0)
    beta = V.check_float_option(beta, "beta", lo=0.0)
    p = _joints(joints, validate)
    rv, lv = _grid_values(p, reward_values, edges)
    k = p.shape[0]
    mc = V.check_int_option(max_copies, "max_copies")
    ms = k * mc if max_samples is None else V.check_int_option(max_samples, "max_samples")
    if (mc + 1) ** k > MAX_CONFIGURATIONS:
        raise ValueError(
            f"decide: {(mc + 1) ** k} configurations for K={k} prefixes and max_copies={mc} "
            f"exceed {MAX_CONFIGURATIONS}; decide over fewer prefixes or copies"
        )
    run = jnp.ones((k,), bool) if running is None else V.as_mask(running, (k,), "running")
    grid = jnp.asarray(_configurations(k, mc))
    base = jnp.asarray(base_reward, p.dtype)
    return _decide_core(p, grid, run, alpha, beta, base, rv, lv, ms, tol)


# ----------------------------------------------------------------------------------------------
# Training through the one loop
# ----------------------------------------------------------------------------------------------


def zip_rc_config() -> ml_collections.ConfigDict:
    """Every field of a ZIP-RC run; `train` is the loop's config (the authors' optimiser)."""
    c = ml_collections.ConfigDict()
    # Remaining-length bin edges (tokens); L = len(edges) - 1.
    c.edges = LENGTH_EDGES
    # Value of each reward state (R = len); real rewards map to the nearest (`reward_state`).
    c.reward_values = REWARD_VALUES
    # The slice: explicit ids (B of them), else a contiguous slice from slice_start (>= 0),
    # else (-1) the last B ids of the vocabulary.
    c.slice_ids = ()
    c.slice_start = -1
    # Teacher truncation: the teacher's top-k non-slice tokens, precomputed once from the
    # frozen starting model (`teacher_targets`); 0 = the exact KL with the teacher's forward
    # in every step (the frozen LoRA base, or the starting parameters).
    c.teacher_top_k = TEACHER_TOP_K
    # Fixed shapes (0 = the longest in the data).
    c.max_prompt_tokens = 0
    c.max_response_tokens = 0
    # The contract loss by name and its options (slice_ids is filled in by make_loss_fn).
    c.loss = ml_collections.ConfigDict({"name": "zip_rc", "options": {"kl_weight": KL_WEIGHT}})
    # What trains: "model" (every parameter, the authors' setting, or LoRA adapters with
    # lora.rank > 0) or "slice" (only the slice's rows of the LM head, on the frozen model's
    # final hidden states computed once: a linear head read from the reserved logits; the body
    # and the rest of the vocabulary stay the teacher's exactly, so the KL term is 0; the
    # authors' head-only "ZIP-RC-Lite" trains the whole head).
    c.trainable = "model"
    # LoRA adapters (rank 0 = full fine-tuning, the authors' setting).
    c.lora = lora.lora_config()
    t = policy.train_config(
        num_steps=100, batch_size=16, lr=1e-3, log_every=10, checkpoint_every=100, keep=1
    )
    t.optimizer.name = "adamw"
    t.optimizer.b2 = 0.95
    t.schedule.name = "cosine"
    t.schedule.warmup_steps = 5  # 5 % of num_steps
    c.train = t
    return c


def slice_ids_for(vocab_size: int, config) -> np.ndarray:
    """[B] the reserved ids a config names (see `zip_rc_config`)."""
    b = num_bins(len(_check_reward_values(config.reward_values)), edges=config.edges)
    ids = tuple(config.get("slice_ids", ()) or ())
    start = int(config.get("slice_start", -1))
    if ids:
        return reserved_ids(vocab_size, b, ids=ids)
    return reserved_ids(vocab_size, b, start=None if start < 0 else start)


@losses.register("zip_rc", outputs=("logits",), batch=("zip_targets", "zip_mask"))
def _zip_rc_loss(*, outputs, batch, slice_ids, kl_weight=KL_WEIGHT, teacher_top_k=0):
    """Per-row contributions whose `losses.reduce` mean is `loss`'s mean over all labelled
    positions of the batch. Teacher: outputs/batch "teacher_logits" [b, W, V] (exact KL, or the
    top-k truncation with teacher_top_k > 0), or batch "teacher_ids"/"teacher_logp" [b, W, k]
    (precomputed truncation), or none (no KL term)."""
    z = outputs["logits"]
    ids = jnp.asarray(slice_ids, jnp.int32)
    teacher = outputs.get("teacher_logits", batch.get("teacher_logits"))
    ce, kl = loss_terms(
        logits=z, teacher_logits=teacher, targets=batch["zip_targets"], slice_ids=ids,
        teacher_top_k=teacher_top_k, validate=False,
    )  # fmt: skip
    if teacher is None and "teacher_ids" in batch:
        kl = sparse_kl(
            logits=z, teacher_ids=batch["teacher_ids"], teacher_logp=batch["teacher_logp"],
            slice_ids=ids, validate=False,
        )  # fmt: skip
    m = jnp.asarray(batch["zip_mask"], ce.dtype)
    per_row = jnp.sum(m * (ce + kl_weight * kl), axis=-1)
    return per_row * z.shape[0] / jnp.maximum(jnp.sum(m), 1.0)


@functools.partial(jax.jit, static_argnames=("config", "dtype", "k"))
def _topk_chunk(params, tokens, valid, ids, *, config, dtype, k):
    z = policy.logits(params, tokens, valid, config=config, dtype=dtype)
    return teacher_topk(z, ids, k, validate=False)


def teacher_targets(
    lm, arrays: Mapping[str, np.ndarray], config, *, params=None, batch_size: int = 8
) -> dict[str, np.ndarray]:
    """The frozen teacher's top-k targets for `arrays` (`pack_rollouts`), computed once.

    Args:
      lm: the starting model (teacher = lm.params unless `params` is given).
      config: `zip_rc_config()` (teacher_top_k >= 1, the slice).
    Returns:
      {"teacher_ids": [n, W, k] int32, "teacher_logp": [n, W, k] float32} (0 off the mask).
    """
    k = V.check_int_option(int(config.teacher_top_k), "config.teacher_top_k")
    ids = jnp.asarray(slice_ids_for(lm.config.vocab_size, config))
    params = lm.params if params is None else params
    out_ids, out_lp = [], []
    s = 0
    for tok, val, rows in _chunks(arrays, batch_size):
        i, lp = _topk_chunk(params, tok, val, ids, config=lm.config,
                            dtype=jnp.dtype(lm.dtype), k=k)  # fmt: skip
        m = np.asarray(arrays["zip_mask"][s : s + rows])[..., None]
        out_ids.append(np.where(m, np.asarray(i)[:rows], 0).astype(np.int32))
        out_lp.append(np.where(m, np.asarray(lp)[:rows], 0).astype(np.float32))
        s += rows
    return {"teacher_ids": np.concatenate(out_ids), "teacher_logp": np.concatenate(out_lp)}


def make_loss_fn(lm, config, *, teacher_params=None):
    """The loop's loss_fn(params, batch, rng) -> (loss, aux) for `config.loss` ("zip_rc").

    The batch is `pack_rollouts`'s arrays, with the teacher's top-k targets
    (`teacher_targets`) when config.teacher_top_k > 0. With teacher_top_k = 0 the teacher's
    logits are computed in the step (exact KL): from the frozen LoRA base when `params` is a
    LoRA state, else from `teacher_params` (default lm.params, closed over by the compiled
    step: fine for small models). aux: the loss, "zip_ce", "zip_kl" (means over labelled
    positions), "zip_accuracy" (slice argmax = target), "reward_accuracy" (argmax of the reward
    marginal = target reward state).
    """
    ids = slice_ids_for(lm.config.vocab_size, config)
    n_len = len(check_edges(config.edges)) - 1
    k = int(config.teacher_top_k)
    loss_cfg = ml_collections.ConfigDict(config.loss.to_dict())
    if loss_cfg.name == "zip_rc":
        loss_cfg.options.slice_ids = [int(i) for i in ids]
    dtype = jnp.dtype(lm.dtype)
    frozen = lm.params if teacher_params is None else teacher_params
    ids_j = jnp.asarray(ids)

    def forward(params, batch, rng):
        del rng
        out = {"logits": policy.logits(params, batch["tokens"], batch["valid"],
                                       config=lm.config, dtype=dtype)}  # fmt: skip
        if k == 0 and "teacher_ids" not in batch:
            tp = params["base"] if lora.is_lora(params) else frozen
            t = policy.logits(tp, batch["tokens"], batch["valid"], config=lm.config, dtype=dtype)
            out["teacher_logits"] = jax.lax.stop_gradient(t)
        return out

    def metrics(outputs, batch):
        z = outputs["logits"]
        ce, kl = loss_terms(
            logits=z,
            teacher_logits=outputs.get("teacher_logits"),
            targets=batch["zip_targets"],
            slice_ids=ids_j,
            validate=False,
        )
        if "teacher_ids" in batch:
            kl = sparse_kl(
                logits=z,
                teacher_ids=batch["teacher_ids"],
                teacher_logp=batch["teacher_logp"],
                slice_ids=ids_j,
                validate=False,
            )
        m = jnp.asarray(batch["zip_mask"], jnp.float32)
        n = jnp.maximum(jnp.sum(m), 1.0)
        y = batch["zip_targets"]
        guess = jnp.argmax(z[..., ids_j], axis=-1)
        p = jax.nn.softmax(z[..., ids_j], axis=-1)
        pr = jnp.sum(p.reshape(*p.shape[:-1], -1, n_len), axis=-1)
        return {
            "zip_ce": jnp.sum(m * ce) / n,
            "zip_kl": jnp.sum(m * kl) / n,
            "zip_accuracy": jnp.sum(m * (guess == y)) / n,
            "reward_accuracy": jnp.sum(m * (jnp.argmax(pr, -1) == y // n_len)) / n,
        }

    return losses.objective(forward, loss_cfg, metrics=metrics, field="config.loss")


def head_rows(params, config, ids) -> jax.Array:
    """[B, hidden] the LM-head rows of vocabulary ids `ids` (the tied embedding or lm_head)."""
    params = lora.merged(params)
    if config.tie_embeddings:
        return jnp.asarray(params["embed"]["embedding"])[jnp.asarray(ids)]
    return jnp.asarray(params["lm_head"]["kernel"])[:, jnp.asarray(ids)].T


def with_head_rows(params, config, ids, rows):
    """A copy of `params` whose LM-head rows `ids` are `rows` [B, hidden] (tied models: the
    embedding rows of those ids, which never appear as input once the slice is masked)."""
    params = jax.tree.map(lambda x: x, lora.merged(params))  # a new tree, same leaves
    ids = jnp.asarray(ids)
    if config.tie_embeddings:
        e = params["embed"]["embedding"]
        params["embed"] = dict(params["embed"], embedding=e.at[ids].set(rows.astype(e.dtype)))
    else:
        w = params["lm_head"]["kernel"]
        params["lm_head"] = dict(params["lm_head"], kernel=w.at[:, ids].set(rows.T.astype(w.dtype)))
    return params


def final_hidden(lm, arrays: Mapping[str, np.ndarray], *, batch_size: int = 8) -> np.ndarray:
    """[n, W, hidden] float32 final-norm hidden states of `arrays` under `lm` (0 off
    "zip_mask"): the features the LM head reads."""
    out = []
    s = 0
    last = lm.config.num_layers
    for tok, val, rows in _chunks(arrays, batch_size):
        h = lm.forward(tok, mask=val, hidden_layers=[last], return_logits=False).hidden_states
        m = np.asarray(arrays["zip_mask"][s : s + rows])[..., None]
        out.append(np.where(m, np.asarray(h[0], np.float32)[:rows], 0.0))
        s += rows
    return np.concatenate(out)


def _slice_only_loss(config, n_bins: int):
    loss_cfg = ml_collections.ConfigDict(config.loss.to_dict())
    if loss_cfg.name == "zip_rc":
        loss_cfg.options.slice_ids = list(range(n_bins))

    def forward(params, batch, rng):
        del rng
        return {"logits": jnp.einsum("bth,kh->btk", batch["hidden"], params["rows"])}

    return losses.objective(forward, loss_cfg, field="config.loss")


def train_zip_rc(lm, arrays: Mapping[str, np.ndarray], config=None, *, workdir: str):
    """Train ZIP-RC on `arrays` (`pack_rollouts`) through the one loop; resumable.

    The teacher is `lm` as given (its top-k targets are computed here when
    config.teacher_top_k > 0 and absent from `arrays`). With config.trainable = "slice" only
    the slice's head rows train, on `final_hidden` features (params {"rows": [B, hidden]}).
    Returns the loop's TrainResult; `tuned(lm, result, config)` gives the tuned LM.
    """
    cfg = zip_rc_config() if config is None else config
    arrays = dict(arrays)
    for key in ("tokens", "valid", "zip_targets", "zip_mask"):
        if key not in arrays:
            raise ValueError(f"arrays: missing {key!r}; build them with zip_rc.pack_rollouts")
    mode = V.check_choice(cfg.get("trainable", "model"), "config.trainable", ("model", "slice"))
    if mode == "slice":
        ids = slice_ids_for(lm.config.vocab_size, cfg)
        rows = head_rows(lm.params, lm.config, ids).astype(jnp.float32)
        data = {"hidden": final_hidden(lm, arrays), "zip_targets": arrays["zip_targets"],
                "zip_mask": arrays["zip_mask"]}  # fmt: skip
        return train_lib.train(
            cfg.train,
            init_fn=lambda rng: {"rows": rows},
            loss_fn=_slice_only_loss(cfg, len(ids)),
            data=data,
            workdir=workdir,
            name="zip_rc.train",
        )
    if int(cfg.teacher_top_k) > 0 and "teacher_ids" not in arrays:
        arrays.update(teacher_targets(lm, arrays, cfg))
    return train_lib.train(
        lora.train_config(cfg),
        init_fn=lora.trainable_init(lm, cfg),
        loss_fn=make_loss_fn(lm, cfg),
        data=arrays,
        workdir=workdir,
        name="zip_rc.train",
    )


def tuned(lm, result, config):
    """`lm` with a `train_zip_rc` run's parameters (LoRA merged; slice rows written)."""
    params = getattr(result, "params", result)
    if isinstance(params, Mapping) and set(params) == {"rows"}:
        ids = slice_ids_for(lm.config.vocab_size, config)
        return lm.with_params(with_head_rows(lm.params, lm.config, ids, params["rows"]))
    return lora.tuned(lm, params)


@functools.partial(jax.jit, static_argnames=("config", "dtype", "n_len"))
def _joint_chunk(params, tokens, valid, ids, *, config, dtype, n_len):
    z = policy.logits(params, tokens, valid, config=config, dtype=dtype)
    mass = jnp.sum(jax.nn.softmax(z, axis=-1)[..., ids], axis=-1)
    return joint(z, ids, num_length_bins=n_len, validate=False), mass


def _chunks(arrays: Mapping[str, np.ndarray], batch_size: int):
    """(tokens, valid, rows) chunks of `batch_size` rows, the last one padded by repeating its
    final row (one compiled shape); `rows` real rows."""
    n = len(arrays["tokens"])
    for s in range(0, n, batch_size):
        tok = np.asarray(arrays["tokens"][s : s + batch_size])
        val = np.asarray(arrays["valid"][s : s + batch_size])
        m = len(tok)
        if m < batch_size:
            tok = np.concatenate([tok, np.repeat(tok[-1:], batch_size - m, 0)])
            val = np.concatenate([val, np.repeat(val[-1:], batch_size - m, 0)])
        yield tok, val, m


def _predict(lm, arrays, config, batch_size):
    ids = jnp.asarray(slice_ids_for(lm.config.vocab_size, config))
    n_len = len(check_edges(config.edges)) - 1
    joints, masses = [], []
    for tok, val, m in _chunks(arrays, batch_size):
        p, mass = _joint_chunk(lm.params, tok, val, ids, config=lm.config,
                               dtype=jnp.dtype(lm.dtype), n_len=n_len)  # fmt: skip
        joints.append(np.asarray(p)[:m])
        masses.append(np.asarray(mass)[:m])
    return np.concatenate(joints), np.concatenate(masses)


def predict_joint(
    lm,
    arrays: Mapping[str, np.ndarray],
    config,
    *,
    batch_size: int = 8,
    with_slice_mass: bool = False,
):
    """[n, W, R, L] the joint at every position of `arrays` (`pack_rollouts` layout) under `lm`
    (float32 numpy); with_slice_mass: also [n, W] the probability the full (unmasked) softmax
    puts on the slice."""
    joints, mass = _predict(lm, arrays, config, batch_size)
    return (joints, mass) if with_slice_mass else joints


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def _kl_chunk(params, teacher, tokens, valid, ids, *, config, dtype):
    z = policy.logits(params, tokens, valid, config=config, dtype=dtype)
    t = policy.logits(teacher, tokens, valid, config=config, dtype=dtype)
    return _full_kl(z, t, ids)


def evaluate(
    lm,
    arrays: Mapping[str, np.ndarray],
    config,
    *,
    teacher_params=None,
    joints: np.ndarray | None = None,
    slice_mass: np.ndarray | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """Held-out numbers over the labelled positions of `arrays` under `lm`.

    Returns:
      {"ce": slice cross-entropy, "reward_accuracy", "length_accuracy" (argmax of each
       marginal), "reward_brier" (binary rewards: Brier of E[reward] against the state),
       "mean_expected_reward", "slice_mass" (the probability the full softmax puts on the slice:
       what sampling without `mask_slice` would emit), "positions", and with `teacher_params`
       "kl" (exact KL(teacher || lm) over the non-slice vocabulary, nats per position)}.
      `joints` / `slice_mass`: `predict_joint(..., with_slice_mass=True)` of `lm` on `arrays`,
      when already computed (no second forward pass).
    """
    p, mass = (
        (joints, slice_mass) if joints is not None else _predict(lm, arrays, config, batch_size)
    )
    m = np.asarray(arrays["zip_mask"], bool)
    y = np.asarray(arrays["zip_targets"])[m]
    pm = p[m]  # [N, R, L]
    n_len = pm.shape[-1]
    flat = pm.reshape(len(pm), -1)
    v = np.asarray(config.reward_values, np.float64)
    er = pm.sum(-1) @ v
    out = {
        "ce": float(-np.mean(np.log(np.maximum(flat[np.arange(len(y)), y], 1e-30)))),
        "reward_accuracy": float(np.mean(pm.sum(-1).argmax(-1) == y // n_len)),
        "length_accuracy": float(np.mean(pm.sum(-2).argmax(-1) == y % n_len)),
        "mean_expected_reward": float(er.mean()),
        "positions": int(m.sum()),
    }
    if mass is not None:
        out["slice_mass"] = float(np.asarray(mass)[m].mean())
    if len(v) == 2:
        out["reward_brier"] = float(np.mean((er - v[y // n_len]) ** 2))
    if teacher_params is not None:
        ids = jnp.asarray(slice_ids_for(lm.config.vocab_size, config))
        kls = []
        for tok, val, rows in _chunks(arrays, batch_size):
            kl = _kl_chunk(lm.params, teacher_params, tok, val, ids, config=lm.config,
                           dtype=jnp.dtype(lm.dtype))  # fmt: skip
            kls.append(np.asarray(kl)[:rows])
        out["kl"] = float(np.concatenate(kls)[m].mean())
    return out
