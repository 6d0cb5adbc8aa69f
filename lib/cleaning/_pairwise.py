"""Per-segment sums in NumPy's own summation order, bit for bit, with static shapes.

`np.add.reduce` of a contiguous float array does not add left to right: it uses a pairwise
scheme (numpy/_core/src/umath/loops_utils.h.src, `pairwise_sum`). For a run of m numbers:

* m < 8: sequential, starting from -0.0;
* 8 <= m <= 128: eight interleaved accumulators r[j] = a[j] + a[8 + j] + a[16 + j] + ... over
  the whole blocks of 8, combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the
  m % 8 trailing numbers one by one;
* m > 128: split after 8 * floor(m / 16) numbers and add the two halves' pairwise sums.

In units of blocks of 8 the split is floor(b / 2) | ceil(b / 2) blocks, and the m % 8 tail always
stays with the rightmost piece. `np.mean` divides this sum by the count. Reproducing the order
makes a per-class mean (cleanlab's confident thresholds) identical to NumPy's, so that examples
that sit exactly at a threshold are counted the same way.

Everything is vectorised over blocks of 8: one descent per block finds its node at every depth of
the recursion, the leaves are summed with 15 shifted adds, and the tree is folded back up one depth
at a time (explicit adds, which XLA never reassociates; each step is a loop iteration, so every
intermediate is materialised once).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_BLOCK = 8  # NumPy's unroll factor
_LEAF = 128  # NumPy's PW_BLOCKSIZE
_MAX_LEAF_BLOCKS = _LEAF // _BLOCK  # 16


def _depth(n: int) -> int:
    """Static number of recursion depths that covers any segment of at most n numbers."""
    blocks = max(n // _BLOCK, 1)
    depth = 1
    while blocks > _MAX_LEAF_BLOCKS - 1:
        blocks = -(-blocks // 2)
        depth += 1
    return depth + 1


@jax.jit
def segment_sums(x: jax.Array, starts: jax.Array, counts: jax.Array) -> jax.Array:
    """Sums of the segments x[starts[s] : starts[s] + counts[s]] in NumPy's pairwise order.

    Args:
      x: [n] floating values (float32 or float64); the segments must not overlap and must lie in
        order, each starting after the previous one ends (as after a stable grouping by class).
      starts: [S] int32 first index of each segment.
      counts: [S] int32 length of each segment (0 allowed).
    Returns:
      [S] sums, dtype of x, equal bit for bit to `np.add.reduce(x[start:start + count])` (an empty
      segment gives -0.0; callers do not use it).
    """
    n = x.shape[0]
    num_seg = starts.shape[0]
    dt = x.dtype
    nblocks = counts // _BLOCK
    tail = counts % _BLOCK
    last_block = jnp.cumsum(nblocks)  # exclusive end of each segment's blocks
    first_block = last_block - nblocks
    num_slots = n // _BLOCK + 1  # static bound on the total number of blocks
    g = jnp.arange(num_slots, dtype=jnp.int32)
    seg = jnp.searchsorted(last_block, g, side="right").astype(jnp.int32)
    valid = seg < num_seg
    seg_c = jnp.minimum(seg, num_seg - 1)
    beta = g - first_block[seg_c]  # block index inside its segment
    b = jnp.where(valid, nblocks[seg_c], 0)
    q = tail[seg_c]
    base = starts[seg_c] + _BLOCK * beta
    idx = jnp.clip(base[:, None] + jnp.arange(_BLOCK, dtype=jnp.int32)[None, :], 0, n - 1)
    blocks = jnp.where(valid[:, None], x[idx], jnp.zeros((), dt))  # [num_slots, 8]

    # Descent: the node holding each block at every depth (start block, size, rightmost). Loops
    # (not unrolled chains) keep the compiled program small and every step materialised.
    depth = _depth(n)

    def descend(state, _):
        s, cnt, right = state
        leaf = _BLOCK * cnt + jnp.where(right, q, 0) <= _LEAF
        h = cnt // 2
        go_left = beta < s + h
        s = jnp.where(leaf | go_left, s, s + h)
        right = jnp.where(leaf, right, right & ~go_left)
        cnt = jnp.where(leaf, cnt, jnp.where(go_left, h, cnt - h))
        return (s, cnt, right), (leaf, h)

    init = (jnp.zeros_like(g), b, jnp.ones_like(valid))
    (_, cnt, right), (leaves, halves) = lax.scan(descend, init, None, length=depth)
    # After the last depth every node is a leaf: `cnt` and `right` describe each block's leaf.

    # Leaf sums, stored at the leaf's first block (other positions hold unused values).
    padded = jnp.concatenate([blocks, jnp.zeros((_MAX_LEAF_BLOCKS, _BLOCK), dt)], axis=0)

    def accumulate(t, acc):
        shifted = lax.dynamic_slice_in_dim(padded, t, num_slots, axis=0)
        return jnp.where((t < cnt)[:, None], acc + shifted, acc)

    acc = lax.fori_loop(1, _MAX_LEAF_BLOCKS, accumulate, blocks)
    r = [acc[:, j] for j in range(_BLOCK)]
    leaf_val = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    tail_base = starts[seg_c] + _BLOCK * b

    def add_tail(i, v):
        xi = x[jnp.clip(tail_base + i, 0, n - 1)]
        return jnp.where(right & (i < q), v + xi, v)

    leaf_val = lax.fori_loop(0, _BLOCK - 1, add_tail, leaf_val)

    # Fold the tree back up: an inner node adds its left child (same start) and right child.
    def fold(i, val):
        d = depth - 2 - i
        partner = val[jnp.clip(g + halves[d], 0, num_slots - 1)]
        return jnp.where(leaves[d], leaf_val, val + partner)

    val = lax.fori_loop(0, depth - 1, fold, leaf_val)
    blocked = val[jnp.clip(first_block, 0, num_slots - 1)]

    # Segments shorter than 8: sequential from -0.0.
    def add_short(i, v):
        xi = x[jnp.clip(starts + i, 0, n - 1)]
        return jnp.where(i < counts, v + xi, v)

    short = lax.fori_loop(0, _BLOCK - 1, add_short, jnp.full((num_seg,), -0.0, dt))
    return jnp.where(counts < _BLOCK, short, blocked)
