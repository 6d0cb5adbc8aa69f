"""ZIP-RC: bins, targets, the joint, the loss and the utility against direct numpy transcriptions
(the authors' binning and target layout, their top-k KL), property tests over seeds, the
sampler's meta-action on constructed joints, every bad-input path, and a training run on a
tiny model through the one loop (a planted easy pattern is learned, the rest of the
distribution stays with the teacher)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses, metrics
from introspect.heads import zip_rc

EDGES = list(zip_rc.LENGTH_EDGES)


# ----------------------------------------------------------------------------------------------
# numpy transcriptions
# ----------------------------------------------------------------------------------------------


def np_length_bin(t, edges=EDGES):
    """The authors' rule: the bin whose [lo, hi) holds t; at or past the last edge: last bin."""
    n = len(edges) - 1
    for i in range(n):
        if edges[i] <= t < edges[i + 1]:
            return i
    return n - 1


def np_reward_state(x, values):
    """The authors' midpoint edges clamped to [0, 1], the reward clipped to [0, 1]."""
    x = min(max(x, 0.0), 1.0)
    r = len(values)
    e = [0.0] * (r + 1)
    for i in range(1, r):
        e[i] = 0.5 * (values[i - 1] + values[i])
    e[0] = max(0.0, values[0] - 0.5 * (values[1] - values[0]))
    e[-1] = min(1.0, values[-1] + 0.5 * (values[-1] - values[-2]))
    for i in range(r):
        if e[i] <= x < e[i + 1]:
            return i
    return r - 1 if x >= e[-1] else 0


def np_lse(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return np.log(np.sum(np.exp(x - m), axis=axis)) + np.squeeze(m, axis)


def np_loss(z, t, y, m, ids, kl_weight, k=0):
    z, t = np.asarray(z, np.float64), np.asarray(t, np.float64)
    zs = z[..., ids]
    ce = np_lse(zs) - np.take_along_axis(zs, y[..., None], -1)[..., 0]
    zm = z.copy()
    zm[..., ids] = -np.inf
    logq = zm - np_lse(zm)[..., None]
    tm = t.copy()
    tm[..., ids] = -np.inf
    if k == 0:
        logp = tm - np_lse(tm)[..., None]
        keep = np.isfinite(logp)
        with np.errstate(invalid="ignore"):
            kl = np.sum(np.where(keep, np.exp(logp) * (logp - logq), 0), -1)
    else:
        top = np.argsort(-tm, -1)[..., :k]
        vals = np.take_along_axis(tm, top, -1)
        logp = vals - np_lse(vals)[..., None]
        kl = np.sum(np.exp(logp) * (logp - np.take_along_axis(logq, top, -1)), -1)
    return np.sum(m * (ce + kl_weight * kl)) / max(m.sum(), 1), ce, kl


def np_utility(joints, counts, alpha, beta, base, rv, lv):
    """Exact expectation by enumerating every outcome (reward state, length bin) of every copy."""
    r, n_len = joints.shape[1:]
    copies = [k for k, c in enumerate(counts) for _ in range(c)]
    if not copies:
        return base
    total = 0.0
    for combo in itertools.product(range(r * n_len), repeat=len(copies)):
        prob = np.prod([joints[k].reshape(-1)[o] for k, o in zip(copies, combo, strict=True)])
        best = max([base] + [rv[o // n_len] for o in combo])
        lens = [lv[o % n_len] for o in combo]
        total += prob * (best - alpha * sum(lens) - beta * max(lens))
    return total


def random_joints(rng, k, r, n_len):
    p = rng.dirichlet(np.full(r * n_len, 0.5), size=k)
    return p.reshape(k, r, n_len)


# ----------------------------------------------------------------------------------------------
# Bins, states, targets, reserved ids
# ----------------------------------------------------------------------------------------------


def test_length_bin_matches_the_authors_rule():
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.integers(0, 70000, 500), EDGES, np.asarray(EDGES[1:]) - 1])
    got = np.asarray(zip_rc.length_bin(t))
    np.testing.assert_array_equal(got, [np_length_bin(int(x)) for x in t])
    small = (0, 2, 4, 8, 16)
    got = np.asarray(zip_rc.length_bin(np.arange(40), edges=small))
    np.testing.assert_array_equal(got, [np_length_bin(x, small) for x in range(40)])
    assert zip_rc.num_bins(2) == 16 and zip_rc.num_bins(7, edges=small) == 28
    np.testing.assert_allclose(zip_rc.length_values(small), [1, 3, 6, 12])


@pytest.mark.parametrize("values", [(0.0, 1.0), tuple(np.round(np.linspace(0, 1, 7), 7))])
def test_reward_state_matches_the_authors_binning(values):
    x = np.concatenate([np.linspace(0, 1, 301), [0.5, 1 / 12, 0.25]])
    got = np.asarray(zip_rc.reward_state(x, reward_values=values))
    np.testing.assert_array_equal(got, [np_reward_state(float(v), values) for v in x])


def test_target_index_is_length_bin_plus_reward_times_l():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 3, 200)
    t = rng.integers(0, 40000, 200)
    got = np.asarray(zip_rc.target_index(r, t, num_rewards=3))
    np.testing.assert_array_equal(
        got, [np_length_bin(b) + a * 8 for a, b in zip(r, t, strict=True)]
    )


def test_pack_rollouts_targets_match_the_authors_layout():
    """The authors' dataset: ids = prompt + answer minus its last token, label positions p - 1
    for the answer's token positions p, tokens_to_completion = len(ids) - pos - 1."""
    rng = np.random.default_rng(2)
    edges = (0, 2, 4, 8, 16, 32)
    prompts = [rng.integers(3, 50, rng.integers(1, 6)).tolist() for _ in range(12)]
    answers = [rng.integers(3, 50, rng.integers(1, 20)).tolist() for _ in range(12)]
    rewards = rng.integers(0, 2, 12)
    arr = zip_rc.pack_rollouts(prompts, answers, rewards, pad_id=0, edges=edges, prompt_len=7)
    w = arr["tokens"].shape[1]
    assert arr["zip_targets"].shape == arr["zip_mask"].shape == (12, w)
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        full = p + a
        ids = full[:-1]
        want = {}
        for q in range(len(p), len(full)):
            pos = q - 1
            ttc = len(ids) - pos - 1
            want[pos + 7 - len(p)] = np_length_bin(ttc, edges) + int(rewards[i]) * 5
        got_pos = np.flatnonzero(arr["zip_mask"][i])
        assert sorted(want) == got_pos.tolist()
        assert [want[q] for q in got_pos] == arr["zip_targets"][i, got_pos].tolist()
        assert arr["tokens"][i, 7 : 7 + len(a)].tolist() == a


def test_reserved_ids():
    np.testing.assert_array_equal(zip_rc.reserved_ids(100, 16), np.arange(84, 100))
    np.testing.assert_array_equal(zip_rc.reserved_ids(100, 4, start=3), [3, 4, 5, 6])
    np.testing.assert_array_equal(zip_rc.reserved_ids(100, 3, ids=[9, 1, 5]), [9, 1, 5])
    with pytest.raises(ValueError, match="does not fit"):
        zip_rc.reserved_ids(100, 16, start=90)
    with pytest.raises(ValueError, match="distinct ids"):
        zip_rc.reserved_ids(100, 3, ids=[1, 1, 2])
    with pytest.raises(ValueError, match="distinct ids"):
        zip_rc.reserved_ids(100, 2, ids=[1, 100])
    with pytest.raises(ValueError, match="expected 3 integer ids"):
        zip_rc.reserved_ids(100, 3, ids=[1, 2])
    with pytest.raises(ValueError, match="not both"):
        zip_rc.reserved_ids(100, 2, start=0, ids=[0, 1])
    with pytest.raises(ValueError, match="leave no vocabulary"):
        zip_rc.reserved_ids(16, 16)


# ----------------------------------------------------------------------------------------------
# The joint, its marginals, masking
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_joint_and_marginals_match_numpy(seed):
    rng = np.random.default_rng(seed)
    r, n_len, vocab = int(rng.integers(1, 4)), 8, 80
    ids = rng.choice(vocab, r * n_len, replace=False)
    z = rng.normal(0, 3, (3, 5, vocab)).astype(np.float32)
    p = np.asarray(zip_rc.joint(z, ids))
    zs = z[..., ids].astype(np.float64)
    want = np.exp(zs - np_lse(zs)[..., None]).reshape(3, 5, r, n_len)
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.sum((-1, -2)), 1, rtol=1e-5)
    values = np.sort(rng.random(r)) + np.arange(r)
    np.testing.assert_allclose(zip_rc.reward_marginal(p), want.sum(-1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(zip_rc.length_marginal(p), want.sum(-2), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        zip_rc.expected_reward(p, reward_values=values), want.sum(-1) @ values, rtol=1e-5
    )
    mids = (np.asarray(EDGES[:-1]) + np.asarray(EDGES[1:])) / 2
    np.testing.assert_allclose(zip_rc.expected_remaining(p), want.sum(-2) @ mids, rtol=1e-5)
    # the slice index length_bin + reward * L lands at [reward, length_bin]
    y = zip_rc.target_index(r - 1, 300, num_rewards=r)
    onehot = np.full(vocab, -1e4, np.float32)
    onehot[ids[int(y)]] = 1e4
    assert np.asarray(zip_rc.joint(onehot, ids))[r - 1, 1] == pytest.approx(1.0)


def test_mask_slice_is_never_sampled():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, (4, 30)).astype(np.float32)
    ids = zip_rc.reserved_ids(30, 8)
    z[:, ids] += 20  # the slice would dominate sampling
    masked = np.asarray(zip_rc.mask_slice(z, ids))
    assert np.all(np.isneginf(masked[:, ids]))
    keep = np.setdiff1d(np.arange(30), ids)
    np.testing.assert_array_equal(masked[:, keep], z[:, keep])
    draws = jax.random.categorical(jax.random.PRNGKey(0), masked, shape=(500, 4))
    assert not np.isin(np.asarray(draws), ids).any()


# ----------------------------------------------------------------------------------------------
# The loss
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("top_k", [0, 5])
def test_loss_matches_numpy(seed, top_k):
    rng = np.random.default_rng(seed)
    vocab, ids = 40, zip_rc.reserved_ids(40, 16, start=int(rng.integers(0, 24)))
    z = rng.normal(0, 2, (3, 6, vocab)).astype(np.float32)
    t = rng.normal(0, 2, (3, 6, vocab)).astype(np.float32)
    y = rng.integers(0, 16, (3, 6))
    m = rng.random((3, 6)) < 0.6
    want, ce, kl = np_loss(z, t, y, m, ids, 10.0, top_k)
    got = zip_rc.loss(logits=z, teacher_logits=t, targets=y, mask=m, slice_ids=ids,
                      kl_weight=10.0, teacher_top_k=top_k)  # fmt: skip
    np.testing.assert_allclose(float(got), want, rtol=2e-5)
    gce, gkl = zip_rc.loss_terms(logits=z, teacher_logits=t, targets=y, slice_ids=ids,
                                 teacher_top_k=top_k)  # fmt: skip
    np.testing.assert_allclose(gce, ce, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gkl, kl, rtol=1e-4, atol=1e-6)
    # jit-able, and no KL term without a teacher
    jitted = jax.jit(lambda a, b: zip_rc.loss(logits=a, teacher_logits=b, targets=y, mask=m,
                                              slice_ids=ids, teacher_top_k=top_k))  # fmt: skip
    np.testing.assert_allclose(float(jitted(z, t)), want, rtol=2e-5)
    no_kl = zip_rc.loss(logits=z, teacher_logits=None, targets=y, mask=m, slice_ids=ids)
    np.testing.assert_allclose(float(no_kl), np.sum(m * ce) / m.sum(), rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_loss_properties(seed):
    """The slice is outside the KL and the rest outside the CE: the teacher's slice logits and
    a constant shift of the student's non-slice logits change nothing; KL >= 0, = 0 at the
    teacher; no valid position gives 0."""
    rng = np.random.default_rng(seed)
    vocab, ids = 32, zip_rc.reserved_ids(32, 8)
    t = rng.normal(0, 2, (2, 4, vocab)).astype(np.float32)
    y = rng.integers(0, 8, (2, 4))
    m = np.ones((2, 4), bool)
    z = t.copy()
    z[..., ids] = rng.normal(0, 5, (2, 4, 8))  # student = teacher off the slice
    _, kl = zip_rc.loss_terms(logits=z, teacher_logits=t, targets=y, slice_ids=ids)
    np.testing.assert_allclose(kl, 0, atol=1e-5)
    shifted = z.copy()
    shifted[..., np.setdiff1d(np.arange(vocab), ids)] += 3.0
    t2 = t.copy()
    t2[..., ids] = 100.0
    a = zip_rc.loss(logits=z, teacher_logits=t, targets=y, mask=m, slice_ids=ids)
    b = zip_rc.loss(logits=shifted, teacher_logits=t2, targets=y, mask=m, slice_ids=ids)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-5)
    z3 = rng.normal(0, 2, (2, 4, vocab)).astype(np.float32)
    _, kl3 = zip_rc.loss_terms(logits=z3, teacher_logits=t, targets=y, slice_ids=ids)
    assert np.all(np.asarray(kl3) > 0)
    none = zip_rc.loss(logits=z3, teacher_logits=t, targets=y, mask=~m, slice_ids=ids)
    assert float(none) == 0.0


def test_registered_loss_reduces_to_the_token_mean():
    """`losses.reduce` of the contract loss "zip_rc" = the pure loss's mean over all labelled
    positions of the batch (rows with different numbers of positions)."""
    rng = np.random.default_rng(3)
    ids = zip_rc.reserved_ids(30, 16)
    z = rng.normal(0, 2, (4, 5, 30)).astype(np.float32)
    t = rng.normal(0, 2, (4, 5, 30)).astype(np.float32)
    y = rng.integers(0, 16, (4, 5))
    m = np.zeros((4, 5), bool)
    m[0, :1], m[1, :5], m[2, 2:4] = True, True, True
    batch = {"zip_targets": y, "zip_mask": m}
    fn, opts = losses.resolve_options("zip_rc", {"slice_ids": ids.tolist(), "kl_weight": 2.0})
    got = losses.reduce(fn(outputs={"logits": z, "teacher_logits": t}, batch=batch, **opts), batch)
    np.testing.assert_allclose(float(got), np_loss(z, t, y, m, ids, 2.0)[0], rtol=1e-5)
    t_ids, t_lp = zip_rc.teacher_topk(t, ids, 6)
    sparse = dict(batch, teacher_ids=t_ids, teacher_logp=t_lp)
    got = losses.reduce(fn(outputs={"logits": z}, batch=sparse, **opts), sparse)
    np.testing.assert_allclose(float(got), np_loss(z, t, y, m, ids, 2.0, 6)[0], rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# The utility and the meta-action
# ----------------------------------------------------------------------------------------------

SMALL = (0, 4, 16, 64)  # L = 3, lengths 2, 10, 40


@pytest.mark.parametrize("seed", range(3))
def test_utility_and_decide_match_exhaustive_numpy(seed):
    rng = np.random.default_rng(seed)
    joints = random_joints(rng, 2, 2, 3)
    alpha, beta, base = 0.004, 0.003, float(rng.choice([0.0, 0.3]))
    grid = list(itertools.product(range(3), repeat=2))
    lv = zip_rc.length_values(SMALL)
    want = [np_utility(joints, c, alpha, beta, base, [0.0, 1.0], lv) for c in grid]
    got = zip_rc.utility(joints, np.asarray(grid), alpha=alpha, beta=beta, base_reward=base,
                         edges=SMALL)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    d = zip_rc.decide(joints, alpha=alpha, beta=beta, base_reward=base, edges=SMALL)
    order = sorted(range(len(grid)), key=lambda i: (sum(grid[i]), grid[i]))
    best = next(i for i in order if want[i] >= max(want) - 1e-6)
    assert tuple(np.asarray(d.counts)) == grid[best]
    np.testing.assert_allclose(float(d.utility), want[best], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(d.continue_utility), want[grid.index((1, 1))], rtol=1e-5)
    # three reward levels and jit
    j3 = random_joints(rng, 2, 3, 3)
    rv = [0.0, 0.5, 1.0]
    u = jax.jit(lambda j: zip_rc.utility(j, jnp.asarray([1, 2]), alpha=alpha, reward_values=rv,
                                         edges=SMALL))(j3)  # fmt: skip
    np.testing.assert_allclose(float(u), np_utility(j3, (1, 2), alpha, 0, 0, rv, lv), rtol=1e-5)


def _j(p_correct, length_bin, n_len=3):
    """A joint with all its mass on one length bin."""
    out = np.zeros((2, n_len))
    out[1, length_bin] = p_correct
    out[0, length_bin] = 1 - p_correct
    return out


def test_decide_on_constructed_joints():
    kw = dict(edges=SMALL, alpha=1e-3)
    # a sure, short sample and a hopeless one: continue the sure one, prune the other
    d = zip_rc.decide(np.stack([_j(1.0, 0), _j(0.0, 2)]), **kw)
    assert int(d.action) == zip_rc.CONTINUE and np.asarray(d.counts).tolist() == [1, 0]
    # nothing can succeed: stop
    d = zip_rc.decide(np.stack([_j(0.0, 0), _j(0.0, 1)]), **kw)
    assert int(d.action) == zip_rc.STOP and np.asarray(d.counts).tolist() == [0, 0]
    # a coin flip that ends soon: a second draw from its prefix pays (0.75 - 0.5 > cost)
    d = zip_rc.decide(_j(0.5, 0)[None], **kw)
    assert int(d.action) == zip_rc.BRANCH and np.asarray(d.counts).tolist() == [2]
    # ... unless branching is not allowed, or compute is expensive
    d = zip_rc.decide(_j(0.5, 0)[None], max_copies=1, **kw)
    assert int(d.action) == zip_rc.CONTINUE
    d = zip_rc.decide(_j(0.5, 0)[None], edges=SMALL, alpha=0.5)
    assert int(d.action) == zip_rc.STOP
    np.testing.assert_allclose(float(d.utility), 0.0)
    # a finished answer that is surely right already: stop
    d = zip_rc.decide(np.stack([_j(0.5, 0), _j(0.9, 1)]), base_reward=1.0, **kw)
    assert int(d.action) == zip_rc.STOP and float(d.stop_utility) == 1.0
    # equal chances, one prefix far from done: with a latency price the long one is pruned and
    # the short prefix branched instead
    joints = np.stack([_j(0.5, 0), _j(0.5, 2)])
    d = zip_rc.decide(joints, edges=SMALL, alpha=1e-4, beta=5e-3)
    assert np.asarray(d.counts).tolist() == [2, 0] and int(d.action) == zip_rc.BRANCH
    d = zip_rc.decide(joints, edges=SMALL, alpha=1e-4, beta=0.0, max_samples=2)
    assert np.asarray(d.counts).sum() == 2
    # the prompt as a prefix that is not running: starting a sample there is a branch
    d = zip_rc.decide(np.stack([_j(0.0, 1), _j(0.8, 1)]), running=[True, False], **kw)
    assert int(d.action) == zip_rc.BRANCH and np.asarray(d.counts)[0] == 0
    # jit with static options
    fn = jax.jit(lambda j: zip_rc.decide(j, alpha=1e-3, edges=SMALL, validate=False))
    assert np.asarray(fn(np.stack([_j(1.0, 0), _j(0.0, 2)])).counts).tolist() == [1, 0]


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_errors():
    for bad in ((0,), (1, 5, 9), (0, 5, 5), (0, 9, 4), [[0, 1], [2, 3]], (0, np.inf)):
        with pytest.raises(ValueError, match="edges"):
            zip_rc.length_bin(3, edges=bad)
    with pytest.raises(ValueError, match="remaining"):
        zip_rc.length_bin([3, -1])
    with pytest.raises(ValueError, match=r"reward states in \[0, 1\]"):
        zip_rc.target_index([0, 2], [1, 1])
    with pytest.raises(ValueError, match="reward_state maps"):
        zip_rc.target_index([0.5], [1])
    with pytest.raises(ValueError, match="reward_values"):
        zip_rc.reward_state(0.5, reward_values=(1.0, 0.0))
    z = np.zeros((2, 20), np.float32)
    with pytest.raises(ValueError, match="not a multiple of num_length_bins"):
        zip_rc.joint(z, np.arange(12))
    with pytest.raises(ValueError, match=r"ids in \[0, 20\)"):
        zip_rc.joint(z, np.arange(10, 26))
    p = zip_rc.joint(np.zeros((2, 40)), np.arange(24))  # R = 3
    with pytest.raises(ValueError, match="3 reward states"):
        zip_rc.expected_reward(p)
    with pytest.raises(ValueError, match="L = 8"):
        zip_rc.expected_remaining(p, edges=SMALL)
    with pytest.raises(ValueError, match="targets: shape"):
        zip_rc.loss(logits=np.zeros((2, 3, 20)), teacher_logits=None, targets=np.zeros((2,), int),
                    mask=np.ones((2,), bool), slice_ids=np.arange(4, 20))  # fmt: skip
    with pytest.raises(ValueError, match="teacher_logits and logits"):
        zip_rc.loss(logits=np.zeros((2, 20)), teacher_logits=np.zeros((2, 21)),
                    targets=np.zeros((2,), int), mask=np.ones((2,), bool),
                    slice_ids=np.arange(4, 20))  # fmt: skip
    with pytest.raises(ValueError, match="teacher_top_k"):
        zip_rc.teacher_topk(np.zeros((2, 20)), np.arange(4, 20), 5)
    with pytest.raises(ValueError, match="answer runs past"):
        zip_rc.rollout_targets(rewards=[1], lengths=[5], starts=[3], width=6)
    with pytest.raises(ValueError, match="configurations"):
        zip_rc.decide(np.full((17, 2, 8), 1 / 16), alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        zip_rc.utility(np.full((1, 2, 8), 1 / 16), [1], alpha=-1.0)
    with pytest.raises(ValueError, match="joints"):
        zip_rc.decide(np.full((1, 2, 8), 0.5), alpha=0.0)


# ----------------------------------------------------------------------------------------------
# Training on a tiny model through the one loop
# ----------------------------------------------------------------------------------------------

TINY_EDGES = (0, 2, 4, 8, 16, 32, 64, 128, 256)


def planted(n, seed):
    """Prompt token 3 ("easy") is right 90 % of the time, token 4 ("hard") 10 %; token 5 gives
    long answers (11-12 tokens), 6 short ones (2-3); answers end with the stop token 2."""
    rng = np.random.default_rng(seed)
    easy = rng.random(n) < 0.5
    long = rng.random(n) < 0.5
    prompts = [
        [1, 3 if e else 4, 5 if g else 6, *rng.integers(10, 40, 2).tolist()]
        for e, g in zip(easy, long, strict=True)
    ]
    lengths = np.where(long, rng.integers(11, 13, n), rng.integers(2, 4, n))
    answers = [rng.integers(10, 40, t - 1).tolist() + [2] for t in lengths]
    rewards = (rng.random(n) < np.where(easy, 0.9, 0.1)).astype(np.int32)
    arr = zip_rc.pack_rollouts(
        prompts, answers, rewards, pad_id=0, edges=TINY_EDGES, prompt_len=5, response_len=12
    )
    return arr, easy, rewards


def tiny_config(**kw):
    c = zip_rc.zip_rc_config()
    c.edges = TINY_EDGES
    c.train.num_steps = 60
    c.train.batch_size = 16
    c.train.optimizer.lr = 1e-2
    c.train.progress = False
    c.train.schedule.warmup_steps = 3
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_loss_fn_is_the_pure_loss_on_the_forward(tiny_head_lm):
    """The loop's loss_fn equals the pure loss on the forward: with the precomputed top-k
    teacher (the default) and with the exact KL against a LoRA state's frozen base."""
    lm, cfg = tiny_head_lm, tiny_config()
    arr, _, _ = planted(8, 0)
    arr.update(zip_rc.teacher_targets(lm, arr, cfg))
    rng = jax.random.PRNGKey(0)
    got, aux = jax.jit(zip_rc.make_loss_fn(lm, cfg))(lm.params, arr, rng)
    z = np.asarray(lm.forward(arr["tokens"], mask=arr["valid"], hidden_layers=None).logits)
    ids = zip_rc.slice_ids_for(64, cfg)
    np.testing.assert_array_equal(ids, np.arange(48, 64))
    y, m = arr["zip_targets"], arr["zip_mask"]
    want, ce, _ = np_loss(z, z, y, m, ids, 10.0, 32)
    np.testing.assert_allclose(float(got), want, rtol=1e-4)
    np.testing.assert_allclose(float(aux["zip_ce"]), np.mean(ce[m]), rtol=1e-4)
    # exact KL (teacher_top_k = 0): the teacher's logits in the step, from a LoRA state's frozen
    # base: 0 at the start (B = 0: the model is the teacher), the merged model's KL once moved
    from introspect.posttrain import lora

    base = {k: v for k, v in arr.items() if not k.startswith("teacher")}
    exact = jax.jit(zip_rc.make_loss_fn(lm, tiny_config(teacher_top_k=0)))
    lcfg = lora.lora_config()
    lcfg.rank = 2
    state = lora.init(jax.random.PRNGKey(1), lm.params, lcfg)
    got, aux = exact(state, base, rng)
    np.testing.assert_allclose(float(aux["zip_kl"]), 0.0, atol=1e-5)
    np.testing.assert_allclose(float(got), np.mean(ce[m]), rtol=1e-4)
    state["lora"] = jax.tree.map(lambda x: x + 0.3 if x.ndim == 2 else x, state["lora"])
    got, aux = exact(state, base, rng)
    moved = lm.with_params(lora.merged(state))
    z2 = np.asarray(moved.forward(arr["tokens"], mask=arr["valid"], hidden_layers=None).logits)
    want, _, kl = np_loss(z2, z, y, m, ids, 10.0)
    assert np.mean(kl[m]) > 1e-3
    np.testing.assert_allclose(float(got), want, rtol=1e-4)


def test_training_learns_the_planted_pattern_and_stays_with_the_teacher(tiny_head_lm, tmp_path):
    lm, cfg = tiny_head_lm, tiny_config(teacher_top_k=0)
    train, _, _ = planted(256, 1)
    held, easy, rewards = planted(96, 2)
    before = zip_rc.evaluate(lm, held, cfg)
    result = zip_rc.train_zip_rc(lm, train, cfg, workdir=str(tmp_path))
    tuned = lm.with_params(result.params)
    after = zip_rc.evaluate(tuned, held, cfg, teacher_params=lm.params)
    assert after["ce"] < before["ce"] - 1.0, (before, after)
    assert after["reward_accuracy"] > 0.8 and after["reward_brier"] < 0.12, after
    assert after["length_accuracy"] > before["length_accuracy"] + 0.3, (before, after)
    assert after["kl"] < 0.05, after  # the rest of the vocabulary stays with the teacher
    # the predicted P(right) at the first answer position separates easy from hard prompts
    p = zip_rc.predict_joint(tuned, held, cfg)[:, 4]  # position 4 predicts the first answer token
    p_right = np.asarray(zip_rc.expected_reward(p))
    assert p_right[easy].mean() - p_right[~easy].mean() > 0.5
    assert float(metrics.auroc(p_right, rewards)) > 0.8
    # and the expected remaining length separates long from short answers
    n_left = np.asarray(zip_rc.expected_remaining(p, edges=TINY_EDGES))
    long = held["zip_mask"].sum(1) >= 10
    assert n_left[long].mean() > n_left[~long].mean() + 4


def test_slice_only_training_changes_only_the_slice_rows(tiny_head_lm, tmp_path):
    """trainable = "slice": the slice's head rows train on the frozen final hidden states; the
    tuned model differs from the start only in those rows, so the KL off the slice is 0."""
    lm = tiny_head_lm
    cfg = tiny_config(trainable="slice")
    cfg.train.num_steps = 150
    cfg.train.optimizer.lr = 3e-2
    cfg.train.steps_per_dispatch = 50
    train, _, _ = planted(256, 1)
    held, _, _ = planted(96, 2)
    before = zip_rc.evaluate(lm, held, cfg)
    result = zip_rc.train_zip_rc(lm, train, cfg, workdir=str(tmp_path))
    assert set(result.params) == {"rows"} and result.params["rows"].shape == (16, 32)
    tuned = zip_rc.tuned(lm, result, cfg)
    after = zip_rc.evaluate(tuned, held, cfg, teacher_params=lm.params)
    assert after["ce"] < before["ce"] - 0.5, (before, after)
    assert after["reward_accuracy"] > 0.7, after
    np.testing.assert_allclose(after["kl"], 0.0, atol=1e-6)
    ids = np.arange(48, 64)
    changed = jax.tree.map(lambda a, b: np.asarray(a != b), tuned.params, lm.params)
    head = changed["lm_head"]["kernel"]
    assert head[:, ids].any() and not np.delete(head, ids, axis=1).any()
    others = [v.any() for k, v in changed.items() if k != "lm_head" for v in jax.tree.leaves(v)]
    assert not any(others)


def test_head_rows_of_a_tied_model():
    class Tied:
        tie_embeddings = True

    e = np.arange(24, dtype=np.float32).reshape(6, 4)
    params = {"embed": {"embedding": jnp.asarray(e)}}
    np.testing.assert_array_equal(zip_rc.head_rows(params, Tied, [4, 5]), e[4:])
    new = zip_rc.with_head_rows(params, Tied, [4, 5], jnp.zeros((2, 4)))
    np.testing.assert_array_equal(new["embed"]["embedding"][4:], 0)
    np.testing.assert_array_equal(new["embed"]["embedding"][:4], e[:4])
    np.testing.assert_array_equal(params["embed"]["embedding"], e)  # the input is unchanged


def test_generate_never_emits_suppressed_ids(tiny_head_lm):
    lm = tiny_head_lm
    slice_ids = zip_rc.reserved_ids(lm.config.vocab_size, 8)
    prompts = [[1, 5, 9, 11], [1, 7]]
    out = lm.generate(prompts, max_new_tokens=12, temperature=1.5, seed=0, ignore_eos=True,
                      suppress_token_ids=slice_ids, return_stats=True)  # fmt: skip
    for toks, lp in zip(out.tokens, out.logprobs, strict=True):
        assert not set(toks) & set(np.asarray(slice_ids).tolist())
        assert np.isfinite(np.asarray(lp, np.float64)).all()
    for name, rows in out.stats.items():
        assert all(np.isfinite(np.asarray(r, np.float64)).all() for r in rows), name
    with pytest.raises(ValueError, match="suppress_token_ids"):
        lm.generate(prompts, max_new_tokens=2, suppress_token_ids=[lm.config.vocab_size])
