"""B-STaR monitors: exploration, exploitation and the balance score that picks each iteration's
sampling temperature and reward threshold.

Zeng, Huang, Zhao, Wang, Shan, He, "B-STaR: Monitoring and Balancing Exploration and Exploitation
in Self-Taught Reasoners", ICLR 2025 (arXiv 2412.17256). Per query q with N sampled responses:

  exploration   pass@k (>= s correct among k of the N samples, unbiased), the number of distinct
                correct responses
  exploitation  best-of-k accuracy (is the highest-reward response correct), reward
                discrimination (pairwise AUROC of the reward, correct vs incorrect responses;
                ours: a threshold-free summary of how well the reward separates them)
  selection     keep responses with reward > tau, at most `max_per_query` per query (highest
                reward first), duplicates counted once
  balance       s_q = min(n'_q / n*, 1) * n'_q / n_q, n_q the distinct selected responses and
                n'_q the distinct selected correct ones; score = mean over queries with n_q > 0;
                each iteration uses the (temperature, tau) of the highest score.

Source: the authors' code, github.com/hkust-nlp/B-STaR, `train_code/determine_hyper.py`
(`cal_modi_acc_soft`: `ratio` if `num >= 8` else `num * ratio / 8`, i.e. n* = 8; selection
`solu["score"] > score_threshold`; duplicates of (query, output) removed; tau swept over
[-1, 1] in steps of 0.01). Deviations: the released code also appends the reference solution to
every query's candidates and grows `max_samples` until a target dataset size is reached; here
`max_per_query` is given (None = no cap) and the candidates are what the caller passes. The
reward itself (the code: min PRM step score / 5 + 1 if the final answer matches) is the caller's.
pass@k with min_correct = 1 is the unbiased estimator of Chen et al. (2021).

Shapes: [Q, N] per (query, sample) arrays; `response_ids` [Q, N] int identify duplicate responses
within a query (e.g. a hash of the text; None = all distinct); `mask` [Q, N] marks real samples.
Pure jnp (jit/vmap-able) except for the option checks.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from introspect import _checks as V

__all__ = [
    "balance_score",
    "best_of_k",
    "bstar_search",
    "distinct_correct",
    "pass_at_k",
    "reward_discrimination",
    "select_by_reward",
]


def _grid(x: Any, name: str, validate: bool, rank: int = 2) -> jax.Array:
    a = V.as_array(x, name)
    if validate:
        V.check_rank(a, name, rank, "[Q, N]" if rank == 2 else f"rank {rank}")
        V.check_not_empty(a, name)
    return a


def _correct(correct: Any, shape, validate: bool) -> jax.Array:
    c = V.as_array(correct, "correct")
    if validate:
        V.check_shape(c, "correct", shape, f"{tuple(shape)} (the rewards' / samples' shape)")
        V.check_binary(c, "correct")
    return jnp.asarray(c) != 0


def _ids(response_ids: Any, shape, validate: bool) -> jax.Array:
    if response_ids is None:  # all distinct
        return jnp.broadcast_to(jnp.arange(shape[-1], dtype=jnp.int32), shape)
    ids = V.as_array(response_ids, "response_ids")
    if validate:
        V.check_shape(ids, "response_ids", shape, f"{tuple(shape)} (one id per sample)")
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(
                f"response_ids: dtype {ids.dtype}; expected integer ids (e.g. hashes of the text)"
            )
    return jnp.asarray(ids)


@jax.jit
def _first_occurrence(keep: jax.Array, ids: jax.Array) -> jax.Array:
    """keep & (no earlier kept sample of the row has the same id): [Q, N] -> [Q, N] bool."""
    n = keep.shape[-1]
    same = ids[..., :, None] == ids[..., None, :]  # [Q, N, N]: [j, j']
    earlier = jnp.tril(jnp.ones((n, n), bool), k=-1)  # j' < j
    dup = jnp.any(same & earlier & keep[..., None, :], axis=-1)
    return keep & ~dup


def _lbinom(a: jax.Array, b: jax.Array) -> jax.Array:
    ok = (b >= 0) & (b <= a)
    a_, b_ = jnp.where(ok, a, 1.0), jnp.where(ok, b, 0.0)
    return jnp.where(ok, gammaln(a_ + 1) - gammaln(b_ + 1) - gammaln(a_ - b_ + 1), -jnp.inf)


def pass_at_k(
    *, num_correct: Any, num_samples: Any, k: int, min_correct: int = 1, validate: bool = True
) -> jax.Array:
    """P(at least `min_correct` of k samples drawn without replacement from n are correct).

    = sum_{j >= s} C(c, j) C(n - c, k - j) / C(n, k); s = 1 gives 1 - C(n - c, k) / C(n, k), the
    unbiased pass@k estimator (Chen et al., 2021).

    Args:
      num_correct: [...] c, correct samples per query (0 <= c <= n).
      num_samples: [...] or [] n, samples per query (n >= k).
      k: static int >= 1.
      min_correct: static int s in [1, k].
      validate: check the input.
    Returns:
      [...] probabilities in [0, 1].
    """
    k = V.check_int_option(k, "k", 1)
    s = V.check_int_option(min_correct, "min_correct", 1)
    if s > k:
        raise ValueError(f"min_correct: expected an integer in [1, k={k}], got {s}")
    c = V.as_array(num_correct, "num_correct")
    n = V.as_array(num_samples, "num_samples")
    if validate:
        V.check_not_empty(c, "num_correct")
        if V.is_concrete(c, n):
            cn, nn = np.broadcast_arrays(np.asarray(c), np.asarray(n))
            if np.any(nn < k):
                raise ValueError(
                    f"num_samples: {int(np.min(nn))} < k={k}; expected n >= k samples per query"
                )
            if np.any((cn < 0) | (cn > nn)) or np.any(cn != np.round(cn)):
                raise ValueError("num_correct: expected integer counts in [0, num_samples]")
    dt = V.default_float()
    return _pass_core(jnp.asarray(c, dt), jnp.asarray(n, dt), jnp.asarray(s, dt), k=k)


@functools.partial(jax.jit, static_argnames="k")
def _pass_core(c, n, s, *, k):
    # the hypergeometric pmf P(j correct among k) = C(c, j) C(n - c, k - j) / C(n, k), j >= s
    js = jnp.arange(k + 1, dtype=c.dtype)
    log_pmf = (
        _lbinom(c[..., None], js)
        + _lbinom((n - c)[..., None], k - js)
        - _lbinom(n, jnp.asarray(k, c.dtype))[..., None]
    )
    return jnp.clip(jnp.sum(jnp.where(js >= s, jnp.exp(log_pmf), 0.0), axis=-1), 0.0, 1.0)


def distinct_correct(
    *, correct: Any, response_ids: Any = None, mask: Any = None, validate: bool = True
) -> jax.Array:
    """Number of distinct correct responses per query (exploration).

    Args:
      correct: [Q, N] 0/1.  response_ids: optional [Q, N] int.  mask: optional [Q, N].
    Returns:
      [Q] int32 counts.
    """
    c = _grid(correct, "correct", validate)
    ok = _correct(c, c.shape, validate) & V.as_mask(mask, c.shape)
    ids = _ids(response_ids, c.shape, validate)
    return jnp.sum(_first_occurrence(ok, ids), axis=-1).astype(jnp.int32)


def best_of_k(*, rewards: Any, correct: Any, mask: Any = None, validate: bool = True) -> jax.Array:
    """Whether the highest-reward (first on ties) valid response of each query is correct.

    Args:
      rewards: [Q, N] scores.  correct: [Q, N] 0/1.  mask: optional [Q, N].
    Returns:
      [Q] float 0/1 (0 for a query without valid samples); its mean is best-of-N accuracy.
    """
    r = _grid(rewards, "rewards", validate)
    if validate:
        V.check_finite(r, "rewards")
    c = _correct(correct, r.shape, validate)
    m = V.as_mask(mask, r.shape)
    return _best_core(jnp.asarray(V.as_float(r)), c, m).astype(V.default_float())


@jax.jit
def _best_core(r, c, m):
    top = jnp.argmax(jnp.where(m, r, -jnp.inf), axis=-1)
    return jnp.take_along_axis(c & m, top[:, None], axis=-1)[:, 0]


def reward_discrimination(
    *, rewards: Any, correct: Any, mask: Any = None, validate: bool = True
) -> tuple[jax.Array, jax.Array]:
    """Per-query pairwise AUROC of the reward: P(r(correct) > r(incorrect)), ties count 1/2.

    Args:
      rewards: [Q, N].  correct: [Q, N] 0/1.  mask: optional [Q, N].
    Returns:
      (auroc [Q] (0.5 where undefined), defined [Q] bool: the query has both a correct and an
      incorrect valid sample).
    """
    r = _grid(rewards, "rewards", validate)
    if validate:
        V.check_finite(r, "rewards")
    c = _correct(correct, r.shape, validate)
    m = V.as_mask(mask, r.shape)
    return _disc_core(jnp.asarray(V.as_float(r)), c, m)


@jax.jit
def _disc_core(r, c, m):
    pos, neg = c & m, ~c & m
    gt = (r[:, :, None] > r[:, None, :]).astype(r.dtype)
    eq = (r[:, :, None] == r[:, None, :]).astype(r.dtype)
    pair = (pos[:, :, None] & neg[:, None, :]).astype(r.dtype)
    num = jnp.sum((gt + 0.5 * eq) * pair, axis=(1, 2))
    den = jnp.sum(pair, axis=(1, 2))
    defined = den > 0
    return jnp.where(defined, num / jnp.maximum(den, 1.0), 0.5), defined


def select_by_reward(
    *,
    rewards: Any,
    threshold: Any,
    max_per_query: int | None = None,
    mask: Any = None,
    validate: bool = True,
) -> jax.Array:
    """The responses kept for training: reward > threshold, the top `max_per_query` per query.

    Args:
      rewards: [Q, N].  threshold: [] tau (may be traced).
      max_per_query: static int >= 1 or None (no cap); ties broken by sample index.
      mask: optional [Q, N].
    Returns:
      [Q, N] bool.
    """
    r = _grid(rewards, "rewards", validate)
    if validate:
        V.check_finite(r, "rewards")
    m = V.as_mask(mask, r.shape)
    r = jnp.asarray(V.as_float(r))
    tau = jnp.asarray(threshold, r.dtype)
    if tau.shape != ():
        raise ValueError(f"threshold: has shape {tuple(tau.shape)}; expected a scalar []")
    cap = None if max_per_query is None else V.check_int_option(max_per_query, "max_per_query", 1)
    return _select_core(r, tau, m, cap=cap)


@functools.partial(jax.jit, static_argnames="cap")
def _select_core(r, tau, m, *, cap):
    keep = m & (r > tau)
    if cap is None:
        return keep
    n = r.shape[-1]
    before = (r[:, None, :] > r[:, :, None]) | (
        (r[:, None, :] == r[:, :, None]) & jnp.tril(jnp.ones((n, n), bool), k=-1)[None]
    )  # [Q, j, j']: j' ranks before j
    rank = jnp.sum(before & keep[:, None, :], axis=-1)
    return keep & (rank < cap)


def balance_score(
    *,
    selected: Any,
    correct: Any,
    response_ids: Any = None,
    n_star: int = 8,
    mask: Any = None,
    validate: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """B-STaR's balance score of a selected training set.

    s_q = min(n'_q / n*, 1) * n'_q / n_q over the distinct selected responses of query q.

    Args:
      selected: [Q, N] 0/1 (e.g. `select_by_reward`).  correct: [Q, N] 0/1.
      response_ids: optional [Q, N] int (duplicates count once).
      n_star: static int n* >= 1 (the released code: 8).
      mask: optional [Q, N].
      validate: check the input.
    Returns:
      (score [] = mean s_q over queries with n_q > 0 (0 if none), s [Q], counted [Q] bool).
    """
    nst = V.check_int_option(n_star, "n_star", 1)
    sel = _grid(selected, "selected", validate)
    if validate:
        V.check_binary(sel, "selected")
    keep = V.as_mask(mask, sel.shape)
    c = _correct(correct, sel.shape, validate)
    ids = _ids(response_ids, sel.shape, validate)
    return _balance_core(jnp.asarray(sel) != 0, keep, c, ids, nst=nst)


@functools.partial(jax.jit, static_argnames="nst")
def _balance_core(sel, m, c, ids, *, nst):
    uniq = _first_occurrence(sel & m, ids)
    dt = V.default_float()
    n_q = jnp.sum(uniq, axis=-1).astype(dt)
    n_c = jnp.sum(uniq & c, axis=-1).astype(dt)
    counted = n_q > 0
    s = jnp.where(counted, jnp.minimum(n_c / nst, 1.0) * n_c / jnp.maximum(n_q, 1.0), 0.0)
    total = jnp.sum(counted)
    score = jnp.where(total > 0, jnp.sum(s) / jnp.maximum(total, 1), 0.0)
    return score, s, counted


def bstar_search(
    *,
    rewards: Any,
    correct: Any,
    thresholds: Any,
    response_ids: Any = None,
    n_star: int = 8,
    max_per_query: int | None = None,
    mask: Any = None,
    validate: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Balance scores of every (configuration, threshold) pair and the best of them.

    A configuration is one way of sampling (a temperature, a sample count): its [Q, N] samples
    for the same Q queries.

    Args:
      rewards: [C, Q, N].  correct: [C, Q, N] 0/1.  thresholds: [T] candidate tau.
      response_ids: optional [C, Q, N] int.  n_star, max_per_query: as above.
      mask: optional [C, Q, N].
    Returns:
      (scores [C, T], best configuration index [], best threshold index []) (first on ties).
    """
    r = _grid(rewards, "rewards", validate, rank=3)
    if validate:
        V.check_finite(r, "rewards")
    c = _correct(correct, r.shape, validate)
    th = V.as_array(thresholds, "thresholds")
    if validate:
        V.check_rank(th, "thresholds", 1, "[T] candidate thresholds")
        V.check_not_empty(th, "thresholds")
        V.check_finite(th, "thresholds")
    m = V.as_mask(mask, r.shape)
    if response_ids is None:
        ids = jnp.broadcast_to(jnp.arange(r.shape[-1], dtype=jnp.int32), r.shape)
    else:
        ids = V.as_array(response_ids, "response_ids")
        if validate:
            V.check_shape(ids, "response_ids", r.shape, f"{tuple(r.shape)}")
        ids = jnp.asarray(ids)
    nst = V.check_int_option(n_star, "n_star", 1)
    cap = None if max_per_query is None else V.check_int_option(max_per_query, "max_per_query", 1)
    r = jnp.asarray(V.as_float(r))
    return _search_core(r, c, ids, m, jnp.asarray(th, r.dtype), nst=nst, cap=cap)


@functools.partial(jax.jit, static_argnames=("nst", "cap"))
def _search_core(r, c, ids, m, th, *, nst, cap):
    def one(rc, cc, ic, mc, tau):
        sel = _select_core(rc, tau, mc, cap=cap)
        return _balance_core(sel, mc, cc, ids=ic, nst=nst)[0]

    per_tau = jax.vmap(one, in_axes=(None, None, None, None, 0))
    scores = jax.vmap(per_tau, in_axes=(0, 0, 0, 0, None))(r, c, ids, m, th)
    flat = jnp.argmax(scores.reshape(-1))
    return scores, flat // scores.shape[1], flat % scores.shape[1]
