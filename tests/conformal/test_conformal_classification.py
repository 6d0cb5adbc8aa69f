"""Classification sets: score formulas, exact set rule, coverage by simulation, Mondrian, LYNX.

Coverage simulations run in float32, the dtype users run; exactness checks run in both dtypes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import conformal as cf

# ----------------------------------------------------------------------------------------------
# Reference formulas (numpy, brute force over label pairs).


def _ref_scores(p, y, score, u=None, k_reg=1, lam=0.0):
    """Brute force. APS / RAPS order labels by p but add up p rounded to the float64 grid."""
    p = np.asarray(p, np.float64)
    py = p[np.arange(len(y)), y][:, None]
    if score == "lac":
        return 1.0 - py[:, 0]
    pq = np.round(p * 2.0**52) / 2.0**52
    if u is None:
        s = (pq * (p >= py)).sum(1)
        rank = (p >= py).sum(1)
    else:
        s = (pq * (p > py)).sum(1) + u * (np.round(py[:, 0] * 2.0**52) / 2.0**52)
        rank = 1 + (p > py).sum(1)
    if score == "raps":
        s = s + lam * np.maximum(rank - k_reg, 0)
    return s


def _probs(rng, n, k, ties=True, dtype=np.float32):
    z = rng.normal(size=(n, k)) * 2
    if ties:
        z[:, 3] = z[:, 1]  # a tie in every row
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    p = p.astype(dtype)
    p[:5] = 0
    p[:5, 0] = 1  # one-hot rows
    p[5:10] = dtype(1.0 / k)  # uniform rows
    return p


SCORE_CASES = [
    ("lac", False, {}),
    ("aps", False, {}),
    ("aps", True, {}),
    ("raps", False, {"k_reg": 2, "lam": 0.05}),
    ("raps", True, {"k_reg": 2, "lam": 0.05}),
]


@pytest.mark.parametrize("score,randomized,kw", SCORE_CASES)
def test_scores_match_reference(x64, score, randomized, kw):
    rng = np.random.default_rng(0)
    p = _probs(rng, 400, 7, dtype=np.float64)
    y = rng.integers(0, 7, 400)
    u = rng.random(400) if randomized else None
    s = cf.nonconformity(p, y, score=score, u=u, **kw)
    np.testing.assert_allclose(s, _ref_scores(p, y, score, u, **kw), rtol=0, atol=1e-12)
    # label_scores is the same expression for every label.
    all_s = np.asarray(cf.label_scores(p, score=score, u=u, **kw))
    np.testing.assert_array_equal(all_s[np.arange(400), y], np.asarray(s))


SET_CASES = [
    ("aps", False, {}, np.float32),
    ("aps", True, {}, np.float32),
    ("raps", False, {"k_reg": 2, "lam": 0.05}, np.float32),
    ("raps", True, {"k_reg": 2, "lam": 0.05}, np.float32),
    ("aps", True, {}, np.float64),
    ("raps", False, {"k_reg": 2, "lam": 0.05}, np.float64),
]


@pytest.mark.parametrize("score,randomized,kw,dtype", SET_CASES)
def test_sets_are_exactly_the_score_sublevel_set(score, randomized, kw, dtype):
    """prediction_sets (bisection, no sort) == {k: s(x, k) <= qhat}, ties and edge rows included.

    Each row gets its own threshold ([N, 1] qhat), cycling through edge values (0, 1, just below
    1, above every score, +inf) and thresholds equal to one of the row's own scores.
    """
    with jax.enable_x64(dtype == np.float64):
        rng = np.random.default_rng(1)
        n = 300
        p = _probs(rng, n, 7, dtype=dtype)
        u = rng.random(n).astype(dtype) if randomized else None
        s = np.asarray(cf.label_scores(p, score=score, u=u, **kw))
        edge = np.array([0.0, 0.7, 0.999999, 1.0, 1.3, np.inf], dtype)
        q = np.where(
            np.arange(n) % 2 == 0,
            edge[np.arange(n) % len(edge)],
            s[np.arange(n), rng.integers(0, 7, n)],  # a threshold equal to a score
        ).astype(dtype)[:, None]
        got = cf.prediction_sets(p, q, score=score, u=u, row_chunk=None, **kw)
        np.testing.assert_array_equal(np.asarray(got), s <= q)
        # A scalar threshold equal to some score.
        q0 = dtype(np.median(s[:, 2]))
        got = cf.prediction_sets(p, q0, score=score, u=u, **kw)
        np.testing.assert_array_equal(np.asarray(got), s <= q0)


def test_sets_row_blocks_and_per_class_thresholds():
    """Row blocking changes nothing; [K] thresholds (class-conditional) use the same scores."""
    rng = np.random.default_rng(8)
    p = _probs(rng, 300, 7)
    u = rng.random(300).astype(np.float32)
    kw = {"k_reg": 2, "lam": 0.05}
    q = rng.random((300, 1)).astype(np.float32)
    a = cf.prediction_sets(p, q, score="raps", u=u, row_chunk=None, **kw)
    b = cf.prediction_sets(p, q, score="raps", u=u, row_chunk=64, **kw)
    np.testing.assert_array_equal(a, b)
    s = np.asarray(cf.label_scores(p, score="raps", u=u, row_chunk=64, **kw))
    q_cls = rng.random(7).astype(np.float32)
    got = cf.prediction_sets(p, q_cls, score="raps", u=u, **kw)
    np.testing.assert_array_equal(np.asarray(got), s <= q_cls[None, :])


@pytest.mark.parametrize("score,kw", [("aps", {}), ("raps", {"k_reg": 1, "lam": 0.1})])
def test_include_last_adds_exactly_the_crossing_label(x64, score, kw):
    rng = np.random.default_rng(2)
    p = _probs(rng, 500, 6, dtype=np.float64)
    q = 0.8
    exact = np.asarray(cf.prediction_sets(p, q, score=score, **kw))
    last = np.asarray(cf.prediction_sets(p, q, score=score, include_last=True, **kw))
    assert (last >= exact).all()
    # Reference: k enters iff the mass (and rank) strictly above it is still within qhat.
    above = (p[:, None, :] > p[:, :, None]).astype(float)
    g = (above * (np.round(p * 2.0**52) / 2.0**52)[:, None, :]).sum(2)
    if score == "raps":
        g = g + kw["lam"] * np.maximum(above.sum(2) - kw["k_reg"], 0)
    np.testing.assert_array_equal(last, g <= q)
    assert (last.sum(1) >= 1).all()  # never empty


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sample(probs, rng):
    """One label per row of [..., K] probabilities (inverse CDF)."""
    u = rng.random(probs.shape[:-1] + (1,))
    return np.minimum((np.cumsum(probs, -1) < u).sum(-1), probs.shape[-1] - 1)


def _class_data(rng, sims, n_total, k, temp_true=0.6):
    """[sims, n_total, K] probabilities of a model that is over-confident w.r.t. the truth.

    Data are drawn with numpy (fixed seed) and fed to one jitted, vmapped conformal pipeline.
    """
    logits = 1.5 * rng.normal(size=(sims, n_total, k))
    return _softmax(logits), _sample(_softmax(temp_true * logits), rng)


@pytest.mark.parametrize("score,randomized,kw", SCORE_CASES)
def test_marginal_coverage_over_random_splits(coverage_stats, score, randomized, kw):
    """Coverage of 2000 independent calibration/test splits lies in [1 - a, 1 - a + 1/(n + 1)].

    Tolerance: `split_coverage_stats` (Beta law of the conditional coverage mixed with the
    binomial test draws), Z = 4.5. The mean is also checked against its exact value k / (n + 1),
    so an off-by-one rank in either direction fails.
    """
    sims, n, m, k, alpha = 2000, 250, 250, 10, 0.1
    rng = np.random.default_rng(0)
    p, y = _class_data(rng, sims, n + m, k)
    p, u = p.astype(np.float32), rng.random((sims, n + m), dtype=np.float32)

    def one(p, y, u):
        uc, ut = (u[:n], u[n:]) if randomized else (None, None)
        s = cf.nonconformity(p[:n], y[:n], score=score, u=uc, validate=False, **kw)
        q = cf.quantile(s, alpha=alpha, validate=False)
        sets = cf.prediction_sets(p[n:], q, score=score, u=ut, validate=False, row_chunk=None, **kw)
        return cf.coverage(sets, y[n:]), jnp.mean(cf.set_size(sets))

    cov, size = jax.jit(jax.vmap(one))(p, y, u)
    exact, tol = coverage_stats(n, m, sims, alpha)
    c = float(jnp.mean(cov))
    assert 1 - alpha - tol <= c <= 1 - alpha + 1 / (n + 1) + tol, (c, tol)
    assert abs(c - exact) <= tol, (c, exact, tol)
    assert 1.0 < float(jnp.mean(size)) < k  # informative sets


def test_randomised_sets_from_a_prng_key(coverage_stats):
    """The rng= path (jax.random uniforms inside jit / vmap) covers like explicit uniforms."""
    sims, n, m, k, alpha = 1000, 200, 200, 6, 0.1
    p, y = _class_data(np.random.default_rng(7), sims, n + m, k)
    p = p.astype(np.float32)

    def one(p, y, key):
        k1, k2 = jax.random.split(key)
        q = cf.calibrate(p[:n], y[:n], alpha=alpha, score="aps", rng=k1, validate=False)
        return cf.coverage(cf.prediction_sets(p[n:], q, score="aps", rng=k2, validate=False), y[n:])

    cov = jax.jit(jax.vmap(one))(p, y, jax.random.split(jax.random.key(0), sims))
    exact, tol = coverage_stats(n, m, sims, alpha)
    assert abs(float(jnp.mean(cov)) - exact) <= tol


def test_mondrian_coverage_holds_per_group(coverage_stats):
    """Group-conditional thresholds cover every group; one marginal threshold does not.

    Groups have shares 0.5 / 0.3 / 0.2 and the model is badly over-confident in group 2. Per group
    the tolerance uses `split_coverage_stats` with 90 % of the expected group sizes (a
    conservative stand-in for the random n_g), and the upper end 1 - a + 1/(n_g + 1) likewise.
    """
    sims, n, m, k, alpha = 1000, 600, 600, 5, 0.1
    shares = [0.5, 0.3, 0.2]
    rng = np.random.default_rng(1)
    g = rng.choice(3, size=(sims, n + m), p=shares)
    logits = rng.normal(size=(sims, n + m, k))
    y = _sample(_softmax(logits), rng)
    p = _softmax(np.array([1.0, 1.2, 3.0])[g][..., None] * logits).astype(np.float32)

    def one(p, y, g):
        s = cf.nonconformity(p[:n], y[:n], validate=False)
        qg = cf.mondrian_quantiles(s, g[:n], num_groups=3, alpha=alpha, validate=False)
        sets = cf.prediction_sets(p[n:], qg[g[n:]][:, None], validate=False)
        marg = cf.prediction_sets(p[n:], cf.quantile(s, alpha=alpha, validate=False))
        idx = (jnp.arange(m), y[n:])
        cnt = jnp.bincount(g[n:], length=3)
        hit = jnp.bincount(g[n:], weights=sets[idx].astype(jnp.float32), length=3)
        hit_m = jnp.bincount(g[n:], weights=marg[idx].astype(jnp.float32), length=3)
        return cnt, hit, hit_m

    cnt, hit, hit_m = jax.jit(jax.vmap(one))(p, y, g)
    cov = np.asarray(hit.sum(0) / cnt.sum(0))
    cov_m = np.asarray(hit_m.sum(0) / cnt.sum(0))
    for gi, share in enumerate(shares):
        n_g, m_g = int(0.9 * n * share), int(0.9 * m * share)
        _, tol = coverage_stats(n_g, m_g, sims, alpha)
        assert 1 - alpha - tol <= cov[gi] <= 1 - alpha + 1 / (n_g + 1) + tol, (gi, cov[gi], tol)
    _, tol2 = coverage_stats(int(0.9 * n * 0.2), int(0.9 * m * 0.2), sims, alpha)
    assert cov_m[2] < 1 - alpha - 5 * tol2  # negative control: the marginal rule under-covers


def test_class_conditional_coverage_per_class(coverage_stats):
    """Per-class APS thresholds ([K] qhat, the all-label score path) cover every class."""
    sims, n, m, k, alpha = 1000, 800, 400, 4, 0.1
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(sims, n + m, k)) + np.array([1.0, 0.3, -0.3, -0.8])
    y = _sample(_softmax(0.7 * logits), rng)
    p = _softmax(logits).astype(np.float32)
    u = rng.random((sims, n + m), dtype=np.float32)

    def one(p, y, u):
        q = cf.calibrate(
            p[:n], y[:n], alpha=alpha, score="aps", u=u[:n], class_conditional=True, validate=False
        )
        sets = cf.prediction_sets(p[n:], q, score="aps", u=u[n:], validate=False)
        hit = sets[jnp.arange(m), y[n:]].astype(jnp.float32)
        return jnp.bincount(y[n:], length=k), jnp.bincount(y[n:], weights=hit, length=k)

    cnt, hit = jax.jit(jax.vmap(one))(p, y, u)
    cov = np.asarray(hit.sum(0) / cnt.sum(0))
    share = np.asarray(cnt.sum(0) / cnt.sum())
    for c in range(k):
        n_c, m_c = int(0.9 * n * share[c]), int(0.9 * m * share[c])
        _, tol = coverage_stats(n_c, m_c, sims, alpha)
        assert 1 - alpha - tol <= cov[c] <= 1 - alpha + 1 / (n_c + 1) + tol, (c, cov[c], tol)


def test_exit_decision_cases():
    d = cf.exit_decision(jnp.array([0.9, 0.5, 0.5, 0.1]), jnp.array(0.2), jnp.array(0.3))
    np.testing.assert_array_equal(
        d.prediction_set, [[False, True], [False, False], [False, False], [True, False]]
    )
    np.testing.assert_array_equal(d.exit, [True, False, False, False])
    d = cf.exit_decision(jnp.array([0.5]), 0.6, 0.6)
    np.testing.assert_array_equal(d.prediction_set, [[True, True]])
    assert not bool(d.exit[0])


def test_lynx_exit_rule_bounds_wrong_exits(coverage_stats):
    """P(exit | forced answer wrong) <= delta: the class-0 miscoverage of the Mondrian set."""
    sims, n, m, delta = 2000, 400, 400, 0.1
    rng = np.random.default_rng(3)
    y = (rng.random((sims, n + m)) < 0.5).astype(np.int32)
    p = (1 / (1 + np.exp(-(1.5 * (2 * y - 1) + rng.normal(size=(sims, n + m)))))).astype(np.float32)

    def one(p, y):
        q0, q1 = cf.exit_thresholds(p[:n], y[:n], delta=delta, validate=False)
        d = cf.exit_decision(p[n:], q0, q1)
        neg = y[n:] == 0
        miss0 = neg & ~d.prediction_set[:, 0]
        return jnp.sum(neg), jnp.sum(d.exit & neg), jnp.sum(miss0), jnp.sum(d.exit & ~neg)

    neg, wrong_exit, miss0, right_exit = jax.jit(jax.vmap(one))(p, y)
    n0, m0 = int(0.9 * n * 0.5), int(0.9 * m * 0.5)
    _, tol = coverage_stats(n0, m0, sims, delta)
    rate_exit = float(wrong_exit.sum() / neg.sum())
    rate_miss = float(miss0.sum() / neg.sum())
    assert rate_exit <= rate_miss + 1e-12  # exit implies 0 is not in the set
    assert delta - 1 / (n0 + 1) - tol <= rate_miss <= delta + tol, (rate_miss, tol)
    assert float(right_exit.sum()) > 0  # and the rule does exit on correct answers


def test_exit_thresholds_match_mondrian():
    rng = np.random.default_rng(4)
    p = rng.random(101).astype(np.float32)
    y = rng.integers(0, 2, 101)
    q0, q1 = cf.exit_thresholds(p, y, delta=0.2)
    s = np.where(y == 1, 1 - p, p).astype(np.float32)
    for c, q in ((0, q0), (1, q1)):
        sc = np.sort(s[y == c])
        k = cf.conformal_rank(len(sc), alpha=0.2)
        assert float(q) == sc[k - 1]


def test_set_summary():
    sets = jnp.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1]], bool)
    y = jnp.array([0, 2, 1, 1])
    out = cf.set_summary(sets, y, groups=jnp.array([0, 0, 1, 1]), num_groups=2)
    assert float(out["coverage"]) == 0.5
    assert float(out["mean_size"]) == 1.5
    assert float(out["empty_fraction"]) == 0.25
    assert float(out["singleton_fraction"]) == 0.25
    np.testing.assert_array_equal(out["size_histogram"], [1, 1, 1, 1])
    np.testing.assert_allclose(out["group_coverage"], [0.5, 0.5])
    np.testing.assert_allclose(out["group_size"], [1.5, 1.5])
    np.testing.assert_array_equal(cf.set_size(sets), [1, 2, 0, 3])


def test_calibrate_end_to_end_and_jit():
    rng = np.random.default_rng(5)
    p = _softmax(rng.normal(size=(300, 6))).astype(np.float32)
    y = _sample(p, rng)
    q = cf.calibrate(p, y, alpha=0.1, score="aps")
    assert float(q) == float(cf.quantile(cf.nonconformity(p, y, score="aps"), alpha=0.1))
    f = jax.jit(lambda pp, qq: cf.prediction_sets(pp, qq, score="aps", validate=False))
    np.testing.assert_array_equal(f(p, q), cf.prediction_sets(p, q, score="aps"))


def test_bad_inputs():
    p = np.full((4, 3), 1 / 3, np.float32)
    y = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="score: expected one of"):
        cf.nonconformity(p, y, score="top_k")
    with pytest.raises(ValueError, match="rank 2"):
        cf.nonconformity(p[0], y, score="lac")
    with pytest.raises(ValueError, match=r"probs: .*expected \[N, K\] with K >= 2"):
        cf.prediction_sets(np.ones((4, 1)), 0.5)
    with pytest.raises(ValueError, match="probs and labels: leading dimensions differ"):
        cf.nonconformity(p, y[:3])
    with pytest.raises(ValueError, match=r"labels: 1 value.* not integer class indices in \[0, 3"):
        cf.nonconformity(p, np.array([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"probs: 4 row\(s\) do not sum to 1"):
        cf.nonconformity(p * 0.5, y, score="aps")
    with pytest.raises(ValueError, match=r"probs: 12 value\(s\) outside \[0, 1\]"):
        cf.nonconformity(p * 4, y, score="lac")
    bad = p.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cf.prediction_sets(bad, 0.5, score="aps")
    with pytest.raises(ValueError, match="NaN"):
        cf.prediction_sets(p, np.nan)
    with pytest.raises(ValueError, match="qhat must have shape"):
        cf.prediction_sets(p, np.ones(4))
    with pytest.raises(ValueError, match="not both"):
        cf.nonconformity(p, y, score="aps", rng=jax.random.key(0), u=np.ones(4))
    with pytest.raises(ValueError, match=r"u: has shape \(3,\); expected \[N\] = \(4,\)"):
        cf.nonconformity(p, y, score="aps", u=np.ones(3))
    with pytest.raises(ValueError, match="randomised"):
        cf.nonconformity(p, y, score="lac", u=np.ones(4))
    with pytest.raises(ValueError, match="include_last"):
        cf.prediction_sets(p, 0.5, score="aps", include_last=True, u=np.ones(4))
    with pytest.raises(ValueError, match="include_last needs"):
        cf.prediction_sets(p, np.ones(3), score="aps", include_last=True)
    with pytest.raises(ValueError, match="k_reg"):
        cf.nonconformity(p, y, score="raps", k_reg=-1)
    with pytest.raises(ValueError, match="lam"):
        cf.nonconformity(p, y, score="raps", lam=-0.5)
    with pytest.raises(ValueError, match="row_chunk"):
        cf.prediction_sets(p, 0.5, score="aps", row_chunk=0)
    with pytest.raises(ValueError, match="empty"):
        cf.calibrate(np.zeros((0, 3)), np.zeros(0, int), alpha=0.1)
    with pytest.raises(ValueError, match=r"delta: expected a finite number in \(0, 1\)"):
        cf.exit_thresholds(np.array([0.2, 0.8]), np.array([0, 1]), delta=1.0)
    with pytest.raises(ValueError, match="same shape"):
        cf.exit_thresholds(np.array([0.2, 0.8]), np.array([0, 1, 1]), delta=0.1)
