"""Hidden-state density estimators (MD, RMD, RDE) against scikit-learn on random Gaussian data.

Reference conventions (LM-Polygraph, see lib/signals/density.py): MD uses the unbiased (ddof = 1)
covariance and returns the NON-squared distance, so it equals
sqrt(EmpiricalCovariance().mahalanobis(x) * (n - 1) / n) (scikit-learn's covariance is ddof = 0
and its `mahalanobis` is squared). RDE returns MinCovDet.mahalanobis, i.e. SQUARED. Tolerances:
float32 computation against float64 scikit-learn on well-conditioned covariances, rtol 1e-4
(Gaussian fits) and 1e-3 (RDE: kernel PCA eigenvectors in float32 feed the MCD fit).
"""

import jax
import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance, LedoitWolf, MinCovDet
from sklearn.decomposition import PCA, KernelPCA

from introspect.signals import density as D

N, DIM, M = 160, 6, 40  # fixed shapes: one compilation per function


def _gauss(seed, n=N, d=DIM, m=M):
    rng = np.random.default_rng(seed)
    a = np.eye(d) + 0.3 * rng.normal(size=(d, d))  # correlated, well-conditioned
    scale = rng.uniform(0.5, 3.0, size=d)
    loc = rng.normal(size=d) * 5
    x = (rng.normal(size=(n, d)) @ a) * scale + loc
    y = (rng.normal(size=(m, d)) * 1.5 @ a) * scale + loc
    return x.astype(np.float32), y.astype(np.float32)


def _close(got, want, rtol):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize("seed", range(3))
def test_mahalanobis_empirical_matches_sklearn(seed):
    x, y = _gauss(seed)
    sq = EmpiricalCovariance().fit(x.astype(np.float64)).mahalanobis(y.astype(np.float64))
    sq = sq * (N - 1) / N  # ddof = 1 covariance (torch.cov, as LM-Polygraph)
    state = D.fit_mahalanobis(x)
    _close(D.mahalanobis(state, y), np.sqrt(sq), 1e-4)
    _close(D.mahalanobis(state, y, squared=True), sq, 1e-4)
    # LM-Polygraph's formula literally: centroid, torch.cov (ddof=1), inverse, sqrt.
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    diff = y64 - x64.mean(0)
    lmp = np.sqrt(np.einsum("bd,da,ba->b", diff, np.linalg.inv(np.cov(x64.T)), diff))
    _close(D.mahalanobis(state, y), lmp, 1e-4)
    assert float(state.shrinkage) == 0.0
    assert 0 < float(state.ridge) < 1e-5 * np.trace(np.cov(x64.T))  # the first (eps) ridge


@pytest.mark.parametrize("seed,n", [(0, N), (1, N), (2, 4)])
def test_mahalanobis_ledoit_wolf_matches_sklearn(seed, n):
    x, y = _gauss(seed, n=n)
    lw = LedoitWolf().fit(x.astype(np.float64))
    state = D.fit_mahalanobis(x, shrinkage="ledoit_wolf")
    np.testing.assert_allclose(float(state.shrinkage), lw.shrinkage_, rtol=1e-4, atol=1e-6)
    _close(D.mahalanobis(state, y, squared=True), lw.mahalanobis(y.astype(np.float64)), 1e-4)


@pytest.mark.parametrize("seed", range(2))
def test_relative_mahalanobis_is_md_minus_background_md(seed):
    x, y = _gauss(seed)
    bg, _ = _gauss(seed + 100)
    bg = bg * 2.0 + 1.0
    y64 = y.astype(np.float64)

    def md(train):
        t = train.astype(np.float64)
        return np.sqrt(EmpiricalCovariance().fit(t).mahalanobis(y64) * (len(t) - 1) / len(t))

    state = D.fit_relative_mahalanobis(x, bg)
    _close(D.relative_mahalanobis(state, y), md(x) - md(bg), 1e-3)  # difference: absolute-ish
    sq = D.relative_mahalanobis(state, y, squared=True)
    want = D.mahalanobis(state.inside, y, squared=True) - D.mahalanobis(
        state.background, y, squared=True
    )
    np.testing.assert_allclose(np.asarray(sq), np.asarray(want), rtol=1e-6)


@pytest.mark.parametrize(
    "kernel,gamma,seed",
    [("rbf", None, 0), ("rbf", None, 1), ("rbf", "scale", 2), ("linear", None, 0),
     ("linear", None, 1)],
)  # fmt: skip
def test_rde_matches_sklearn_pca_and_mincovdet(kernel, gamma, seed):
    x, y = _gauss(seed)
    k = 4
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    if kernel == "rbf":  # LM-Polygraph: KernelPCA(n_components=100, kernel="rbf", gamma=None)
        g = 1 / (DIM * x64.var()) if gamma == "scale" else None
        pca = KernelPCA(n_components=k, kernel="rbf", random_state=42, gamma=g)
    else:
        pca = PCA(n_components=k, svd_solver="full")
    mcd = MinCovDet(random_state=42).fit(pca.fit_transform(x64))
    want = mcd.mahalanobis(pca.transform(y64))  # squared, as LM-Polygraph's RDESeq
    state = D.fit_rde(x, n_components=k, kernel=kernel, gamma=gamma)
    _close(D.rde(state, y), want, 1e-3)
    _close(D.rde(state, y, squared=False), np.sqrt(want), 1e-3)


def test_rde_drops_numerically_zero_components():
    x, y = _gauss(0)
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(3, DIM)).astype(np.float32)
    x, y = x[:, :3] @ mix, y[:, :3] @ mix  # rank 3 in 6 dimensions
    pca = PCA(n_components=3, svd_solver="full")
    mcd = MinCovDet(random_state=42).fit(pca.fit_transform(x.astype(np.float64)))
    want = mcd.mahalanobis(pca.transform(y.astype(np.float64)))
    state = D.fit_rde(x, n_components=DIM, kernel="linear")
    assert state.pca.components.shape == (DIM, DIM)
    assert int((np.abs(np.asarray(state.pca.components)).sum(0) > 0).sum()) == 3
    _close(D.rde(state, y), want, 1e-3)


def _layers(seed, layers=3, n=N, m=M):
    xs, ys = zip(*(_gauss(seed * 10 + i, n=n, m=m) for i in range(layers)), strict=True)
    return np.stack(xs, axis=1), np.stack(ys, axis=1)  # [n, layers, d], [m, layers, d]


def test_per_layer_fits_equal_per_layer_loops():
    x, y = _layers(0)
    bg, _ = _layers(5)
    layers = x.shape[1]
    cases = [
        (D.fit_mahalanobis(x), D.mahalanobis, lambda i: D.fit_mahalanobis(x[:, i])),
        (
            D.fit_mahalanobis(x, shrinkage="ledoit_wolf"),
            D.mahalanobis,
            lambda i: D.fit_mahalanobis(x[:, i], shrinkage="ledoit_wolf"),
        ),
        (
            D.fit_relative_mahalanobis(x, bg),
            D.relative_mahalanobis,
            lambda i: D.fit_relative_mahalanobis(x[:, i], bg[:, i]),
        ),
        (
            D.fit_rde(x, n_components=4),
            D.rde,
            lambda i: D.fit_rde(x[:, i], n_components=4),
        ),
    ]
    for state, score, fit_one in cases:
        got = np.asarray(score(state, y))
        assert got.shape == (M, layers)
        for i in range(layers):
            want = np.asarray(score(fit_one(i), y[:, i]))
            np.testing.assert_allclose(got[:, i], want, rtol=1e-4, atol=1e-4)
    assert D.fit_mahalanobis(x).chol.shape == (layers, DIM, DIM)


def test_planted_outliers_score_higher():
    x, y = _gauss(3)
    rng = np.random.default_rng(7)
    sd = x.std(0)
    out = y[:10] + (6 * sd * np.sign(rng.normal(size=(10, DIM)))).astype(np.float32)
    inl = (x.mean(0) + 0.5 * sd * rng.normal(size=(30, DIM))).astype(np.float32)
    test = np.concatenate([inl, out])
    bg, _ = _gauss(11)
    bg = bg * 4.0  # a broad background
    scores = {
        "md": D.mahalanobis(D.fit_mahalanobis(x), test),
        "md_lw": D.mahalanobis(D.fit_mahalanobis(x, shrinkage="ledoit_wolf"), test),
        "rmd": D.relative_mahalanobis(D.fit_relative_mahalanobis(x, bg), test),
        "rde_scale": D.rde(D.fit_rde(x, n_components=4, gamma="scale"), test),
        "rde_linear": D.rde(D.fit_rde(x, n_components=4, kernel="linear"), test),
    }
    for name, s in scores.items():
        s = np.asarray(s)
        assert np.isfinite(s).all(), name
        assert s[30:].min() > s[:30].max(), name


def test_rbf_rde_saturates_far_from_the_training_data():
    # Documented property of LM-Polygraph's RBF-RDE: points with kernel ~0 to every training
    # point all project to the same spot and get one score, however far they are.
    x, _ = _gauss(3)
    far = x.mean(0) + np.linspace(50, 1000, M, dtype=np.float32)[:, None] * x.std(0)
    s = np.asarray(D.rde(D.fit_rde(x, n_components=4, gamma="scale"), far))
    np.testing.assert_allclose(s, s[0], rtol=1e-5)


def test_rde_is_robust_to_contaminated_training():
    x, _ = _gauss(4)
    rng = np.random.default_rng(1)
    sd = x.std(0)
    contaminated = x.copy()
    far = (x.mean(0) + 8 * sd).astype(np.float32)
    contaminated[:16] = far + 0.1 * sd * rng.normal(size=(16, DIM))  # a 10% outlier cluster
    query = np.stack([x.mean(0), far] * (M // 2))
    robust = np.asarray(D.rde(D.fit_rde(contaminated, n_components=DIM, kernel="linear"), query))
    masked = np.asarray(D.mahalanobis(D.fit_mahalanobis(contaminated), query, squared=True))
    clean = np.asarray(D.mahalanobis(D.fit_mahalanobis(x), query, squared=True))
    # The MCD ignores the cluster (about the clean distance); the empirical fit absorbs it.
    assert robust[1] > 10 * masked[1]
    np.testing.assert_allclose(robust[1], clean[1], rtol=0.3)


def test_singular_covariance_gets_the_eps_ridge():
    x, y = _gauss(0)
    x[:, -1] = x[:, 0]  # a duplicated column: singular covariance
    y[:, -1] = y[:, 0]
    state = D.fit_mahalanobis(x)
    assert np.isfinite(np.asarray(D.mahalanobis(state, y))).all()
    scale = np.trace(np.cov(x.T.astype(np.float64))) / DIM
    np.testing.assert_allclose(float(state.ridge), np.finfo(np.float32).eps * scale, rtol=1e-4)


def test_ridge_escalates_per_layer():
    eps = float(np.finfo(np.float32).eps)
    cov = np.stack([np.eye(3), np.diag([1.0, 1.0, -1e-3])]).astype(np.float32)  # layer 1: not PSD
    chol, ridge = D._factor(cov, None, "features")
    # Layer 0 keeps the first ridge (eps * mean variance); layer 1 (mean variance 0.666) needs a
    # ridge above 1e-3, i.e. rel > 1.5e-3: the first of eps * 10^i is 1e5 * eps.
    np.testing.assert_allclose(np.asarray(ridge), [eps, 1e5 * eps * (2 - 1e-3) / 3], rtol=1e-5)
    assert np.isfinite(np.asarray(chol)).all()
    with pytest.raises(ValueError, match=r"not positive definite.*layers \[1\]"):
        D._factor(np.stack([np.eye(3), np.diag([1.0, 1.0, -1.0])]).astype(np.float32), None, "f")


def test_scoring_under_jit():
    x, y = _gauss(0)
    state = D.fit_mahalanobis(x)
    got = jax.jit(lambda s, f: D.mahalanobis(s, f))(state, y)
    np.testing.assert_allclose(np.asarray(got), np.asarray(D.mahalanobis(state, y)), rtol=1e-6)


def test_errors():
    x, y = _gauss(0)
    state = D.fit_mahalanobis(x)
    with pytest.raises(ValueError, match="n > d"):
        D.fit_mahalanobis(x[:DIM])  # n == d without shrinkage
    with pytest.raises(ValueError, match="at least 2"):
        D.fit_mahalanobis(x[:1], shrinkage="ledoit_wolf")
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        D.fit_mahalanobis(bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        D.fit_rde(bad)
    bad_y = y.copy()
    bad_y[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        D.mahalanobis(state, bad_y)
    with pytest.raises(ValueError, match="match the fitted state"):
        D.mahalanobis(state, y[:, :-1])  # dimension mismatch
    with pytest.raises(ValueError, match="match the fitted state"):
        D.mahalanobis(state, np.stack([y, y], axis=1))  # layered features, single fit
    xl, yl = _layers(0)
    layered = D.fit_mahalanobis(xl)
    with pytest.raises(ValueError, match="match the fitted state"):
        D.mahalanobis(layered, yl[:, 0])
    with pytest.raises(ValueError, match="match the fitted state"):
        D.mahalanobis(layered, yl[:, :2])  # 2 layers vs 3
    with pytest.raises(ValueError, match="rank"):
        D.fit_mahalanobis(x[:, 0])
    with pytest.raises(ValueError, match="shrinkage"):
        D.fit_mahalanobis(x, shrinkage="oas")
    with pytest.raises(ValueError, match="jitter"):
        D.fit_mahalanobis(x, jitter=0.5)
    with pytest.raises(ValueError, match="background"):
        D.fit_relative_mahalanobis(x, x[:, :-1])
    with pytest.raises(ValueError, match="background.*n > d"):
        D.fit_relative_mahalanobis(x, x[:DIM])
    with pytest.raises(ValueError, match="degenerate"):
        D.fit_mahalanobis(np.ones((N, DIM), np.float32), shrinkage="ledoit_wolf")
    with pytest.raises(ValueError, match="kernel"):
        D.fit_rde(x, kernel="poly")
    with pytest.raises(ValueError, match="n_components"):
        D.fit_rde(x, n_components=0)
    with pytest.raises(ValueError, match="degenerate"):
        D.fit_rde(np.ones((N, DIM), np.float32), n_components=4, kernel="linear")
    with pytest.raises(ValueError, match="gamma"):
        D.fit_rde(x, gamma="auto")
    rde_state = D.fit_rde(x, n_components=4, kernel="linear")
    with pytest.raises(ValueError, match="match the fitted state"):
        D.rde(rde_state, y[:, :-1])
