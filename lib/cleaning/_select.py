"""Exact per-(class, column) top-m selection with static shapes, for cleanlab's pruning rules.

cleanlab prunes, inside each class k (the examples labelled k), the m[k, j] examples with the
largest value of a per-column score (`np.argsort(...)[:m]`). Here all (class, column) pairs are
done at once, without sorting (XLA's sort and gather are slow on CPU, its fused elementwise
loops are not):

1. Layout: the examples are grouped by class into blocks of B slots (a class starts on a block
   boundary; padding slots get key 0). Scores become unsigned integer keys with the same order
   (every real key is >= 1).
2. Selection: the m-th largest key T of every pair is built bit by bit, one counting pass per
   key bit ("how many keys of class k, column j are >= candidate?"). A pass is a compare plus a
   fixed tree of adds over the B slots of each block, which XLA fuses into one loop, then a
   per-class sum of the block counts.
3. Ties: the keys > T are selected, then the (m - #{keys > T}) keys equal to T with the
   smallest example index (peeled one pass each when few, else the same bit-by-bit selection
   on inverted indices).

Exactly m keys are selected per pair (m <= class size); ties in the score go to the lowest
example index. That is the one place where cleanlab's choice is not defined: it uses NumPy's
unstable quicksort (stable only below 17 elements), whose order among equal scores is arbitrary.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
from jax import lax

_PEEL_MAX = 16  # at most this many tied keys per pair are taken by peeling; more: bit selection


def block_size(n: int, num_classes: int) -> int:
    """Slots per block: a power of two in [16, 1024], small enough that padding (< B per class)
    stays below a quarter of the data."""
    b = 1024
    while b > 16 and num_classes * b > max(n // 4, 1):
        b //= 2
    return b


def _uint_key(x: jax.Array) -> jax.Array:
    """Unsigned key with the order of the float x (-0.0 and +0.0 tie), by integer operations only
    (so subnormal inputs keep their order under XLA's flush-to-zero on CPU)."""
    udt = {4: jnp.uint32, 8: jnp.uint64}[x.dtype.itemsize]
    sign = udt(1) << udt(8 * x.dtype.itemsize - 1)
    bits = lax.bitcast_convert_type(x, udt)
    bits = jnp.where(bits == sign, udt(0), bits)
    return jnp.where((bits & sign) != 0, ~bits, bits | sign)


def _slabs(x: jax.Array) -> list:
    q = x.shape[0] // 8
    return [x[i * q : (i + 1) * q] for i in range(8)]


def _block_counts(x: jax.Array, cand: jax.Array, op) -> jax.Array:
    """[NB, C] int32: per block and column, how many of the B slots of x [B, NB, C] satisfy
    op(x, cand) for cand [NB, C].

    Eight contiguous slabs are compared and added elementwise (one fused loop over x, writing an
    eighth of its size), then that is summed over its leading axis. On XLA:CPU this shape is
    consistently fast; a plain reduce over B, or a deeper tree of adds, can be ten times slower
    depending on how XLA splits the fusion.
    """
    parts = [op(s, cand[None]).astype(jnp.int32) for s in _slabs(x)]
    return functools.reduce(operator.add, parts).sum(axis=0, dtype=jnp.int32)


def _block_min(x: jax.Array) -> jax.Array:
    """[NB, C] minimum over the B slots of x [B, NB, C] (same pattern as `_block_counts`)."""
    return functools.reduce(jnp.minimum, _slabs(x)).min(axis=0)


def _class_counts(block_counts: jax.Array, block_class: jax.Array, k: int) -> jax.Array:
    """[K, C] sums of the per-block counts over each class's blocks (unused blocks: class K)."""
    out = jax.ops.segment_sum(
        block_counts, block_class, num_segments=k + 1, indices_are_sorted=True
    )
    return out[:k]


def _per_block(table: jax.Array, block_class: jax.Array) -> jax.Array:
    """[NB, C] rows of a per-class table [K, C] for every block (unused blocks: zeros)."""
    padded = jnp.concatenate([table, jnp.zeros((1, table.shape[1]), table.dtype)], axis=0)
    return padded[block_class]


def kth_largest(keys: jax.Array, block_class: jax.Array, m: jax.Array, total: jax.Array):
    """The m-th largest key T of each (class, column), with the counts above and at it.

    Args:
      keys: [B, NB, C] unsigned keys (uint32 or uint64); 0 marks slots to ignore.
      block_class: [NB] int32 class of each block, K for unused blocks, non-decreasing.
      m: [K, C] int32 ranks, 1 <= m <= total for the pairs that matter (others: unused results).
      total: [K, C] int32 number of non-zero keys of each pair.
    Returns:
      (T [K, C] key dtype, greater [K, C] int32 = #{keys > T}, equal [K, C] int32 = #{keys == T}).

    T is built from the most significant bit down: a bit is kept when at least m keys are >=
    the candidate. The counts at T and above T are those of the last kept and the last rejected
    candidate, so no further pass is needed. (Value-space interpolation from sampled brackets
    was tried as well: on realistic margins it needed as many passes.)
    """
    k = m.shape[0]
    kdt = keys.dtype.type
    bits = 8 * keys.dtype.itemsize

    def body(i, state):
        t, at_least, above = state
        cand = t | (kdt(1) << (bits - 1 - i).astype(kdt))
        count = _class_counts(
            _block_counts(keys, _per_block(cand, block_class), operator.ge), block_class, k
        )
        ok = count >= m
        return jnp.where(ok, cand, t), jnp.where(ok, count, at_least), jnp.where(ok, above, count)

    init = (jnp.zeros(m.shape, kdt), total, jnp.zeros(m.shape, jnp.int32))
    t, at_least, above = lax.fori_loop(0, bits, body, init)
    return t, above, at_least - above


@functools.partial(jax.jit, static_argnames=("block",))
def layout(perm: jax.Array, counts: jax.Array, *, block: int):
    """Class-grouped slots: class k's examples, in index order, fill whole blocks of `block` slots.

    Args:
      perm: [N] stable grouping of the examples by label (padding rows last); counts: [K]
        examples per class.
    Returns:
      (block_class [NB] int32 (K = unused), local [B, NB] int32 index inside the class,
      valid [B, NB] bool, src [B, NB] int32 example of each slot (0 for padding)),
      with NB = N // B + K and B = `block`.
    """
    n = perm.shape[0]
    k = counts.shape[0]
    nb = n // block + k
    blocks_per_class = (counts + block - 1) // block
    block_end = jnp.cumsum(blocks_per_class)
    block_first = block_end - blocks_per_class
    starts = jnp.cumsum(counts) - counts
    b = jnp.arange(nb, dtype=jnp.int32)
    block_class = jnp.searchsorted(block_end, b, side="right").astype(jnp.int32)
    bc = jnp.minimum(block_class, k - 1)
    local = (b - block_first[bc])[None, :] * block + jnp.arange(block, dtype=jnp.int32)[:, None]
    valid = (block_class < k)[None, :] & (local < counts[bc][None, :])
    src = jnp.where(valid, perm[jnp.clip(starts[bc][None, :] + local, 0, n - 1)], 0)
    return block_class, local, valid, src


def select_top(
    keys: jax.Array,
    block_class: jax.Array,
    local: jax.Array,
    counts: jax.Array,
    m: jax.Array,
) -> jax.Array:
    """[B, NB, C] bool: per (class, column), the m largest keys, ties to the lowest index.

    Args:
      keys: [B, NB, C] (0 = padding, >= 1 elsewhere).
      block_class: [NB] class of each block (see `layout`); local: [B, NB] index in the class.
      counts: [K] class sizes.
      m: [K, C] int32, 0 = select nothing, at most the class size.
    """
    k = m.shape[0]
    active = m >= 1
    m_eff = jnp.maximum(m, 1)
    total = jnp.broadcast_to(counts[:, None], m.shape).astype(jnp.int32)
    t, greater, equal = kth_largest(keys, block_class, m_eff, total)
    t_blocks = _per_block(t, block_class)[None]
    need = jnp.where(active & (equal > m_eff - greater), m_eff - greater, 0)
    big = jnp.int32(2**31 - 1)
    local3 = local[:, :, None]

    # Ties at T: take the `need` lowest indices. Usually one or two: one pass each.
    def peel():
        def cond(state):
            i, _, taken = state
            return (i < _PEEL_MAX) & jnp.any(taken < need)

        def step(state):
            i, cur, taken = state
            cur_blocks = _per_block(cur, block_class)[None]
            cand = jnp.where((keys == t_blocks) & (local3 > cur_blocks), local3, big)
            nxt = jax.ops.segment_min(
                _block_min(cand), block_class, num_segments=k + 1, indices_are_sorted=True
            )[:k]
            more = taken < need
            return i + 1, jnp.where(more, nxt, cur), taken + more.astype(jnp.int32)

        init = (jnp.int32(0), jnp.full(m.shape, -1, jnp.int32), jnp.zeros(m.shape, jnp.int32))
        return lax.while_loop(cond, step, init)[1]

    # Many ties (e.g. repeated probabilities): the bit-by-bit selection on inverted indices.
    def bisect():
        top = jnp.uint32(2**31 - 1)  # > every index
        ikey = jnp.where(keys == t_blocks, top - local3.astype(jnp.uint32), jnp.uint32(0))
        cut = kth_largest(ikey, block_class, jnp.maximum(need, 1), equal)[0]
        return (top - cut).astype(jnp.int32)  # the largest selected index

    last = lax.cond(jnp.max(need) <= _PEEL_MAX, peel, bisect)
    last = jnp.where(need > 0, last, big)  # no tie to break: every key equal to T is taken
    last_blocks = _per_block(last, block_class)[None]
    chosen = (keys > t_blocks) | ((keys == t_blocks) & (local3 <= last_blocks))
    return chosen & _per_block(active, block_class)[None]
