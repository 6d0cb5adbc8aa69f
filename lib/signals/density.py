"""Hidden-state density uncertainty (no labels): Mahalanobis distance, relative Mahalanobis
distance and robust density estimation, as LM-Polygraph's white-box density estimators.

Sign: every score here is a DISTANCE, higher = further from the training density = more
uncertain (LM-Polygraph's estimators also return uncertainties). The signal registry is
"higher = more confident": negate these when registering.

Each method is a fit/score pair. `fit_*` takes training features [n, d] (e.g. a mean-pooled
hidden layer per answer) and returns a small pytree state; the score function takes that state
and features [m, d] and returns [m]. Per layer: features [n, layers, d] fit one state per layer
(the state's arrays get a leading layer axis, fitted with `vmap`), and scoring [m, layers, d]
returns [m, layers].

Matched against IINemo/lm-polygraph at commit efea882d810d07770e71d3a80e02416d09751435,
`src/lm_polygraph/estimators/`:

* `mahalanobis_distance.py` (MahalanobisDistanceSeq): ONE class-agnostic centroid, the mean of
  the training features (no labels exist for generation; the classification original uses
  per-class centroids and a shared covariance, not offered here); covariance `torch.cov`, i.e.
  the unbiased (ddof = 1) empirical covariance, plus the smallest jitter from 1e-15, 1e-14, ...,
  1e-1 (absolute, times I) that leaves no negative eigenvalue, inverted in float64; the score is
  the NON-squared distance sqrt((x - mu)^T Sigma^-1 (x - mu)). Here: `shrinkage="empirical"`
  (default) is that covariance (ddof = 1); `"ledoit_wolf"` is scikit-learn's `LedoitWolf`
  (assume_centered=False: ddof = 0 covariance shrunk towards mu I with the Ledoit-Wolf
  coefficient), usable when n <= d. `squared=False` (default, theirs) returns the distance,
  `squared=True` its square (what scikit-learn's `EmpiricalCovariance.mahalanobis` returns).
* `relative_mahalanobis_distance.py` (RelativeMahalanobisDistanceSeq; Ren et al., ICLR 2023):
  RMD(x) = MD(x) - MD_0(x), both non-squared, where MD uses the in-domain training features and
  MD_0 a "background" Gaussian (own centroid and covariance, same estimator) fitted on
  `background_train_embeddings`: features of a large general-purpose corpus (their default
  config: 1000 documents of allenai/c4), NOT the union of the in-domain training data (which is
  what "background" is in the class-conditional classification RMD of Ren et al. 2021; with a
  single class-agnostic centroid that union would be the in-domain fit itself and RMD = 0).
  So `fit_relative_mahalanobis` takes both feature sets.
* `rde.py` (RDESeq; Yoo et al. 2022, Vazhentsev et al. 2022): kernel PCA with an RBF kernel,
  `KernelPCA(n_components=100, kernel="rbf", gamma=None -> 1 / d)`, then a robust covariance
  `MinCovDet(random_state=42)` of the projected training features (retried with
  support_fraction 0.9, then 1.0, when scikit-learn raises ValueError), scored with
  `MinCovDet.mahalanobis`, i.e. the SQUARED distance. Here `kernel="rbf"` (default, theirs)
  follows scikit-learn's KernelPCA (kernel centring, eigenvector sign flip, training scores
  eigvec * sqrt(eigval), new points centred-kernel @ eigvec / sqrt(eigval)); `kernel="linear"`
  is plain PCA (scikit-learn's `PCA`). `squared=True` is the default (theirs).

Not matched: their optional `normalize` (min-max over the scores seen so far) and the on-disk
caching of fitted parameters. The HUQ hybrid (listed in their README) has no estimator code at
that commit; it is in `signals.hybrid`, from the HUQ authors' own code.

Numerics. Computation in float32 (float64 when x64 is enabled; float16/bfloat16 features are
upcast); matrix products at HIGHEST precision (no TF32 on GPUs). Covariances are never
inverted: the state keeps the lower Cholesky factor L of Sigma + r I and scores
||L^-1 (x - mu)||^2 with a triangular solve. The ridge is r = jitter * trace(Sigma) / d, with
`jitter` = the machine epsilon of the computation dtype by default (float32: 1.19e-7, i.e. the
size of float32 rounding of the mean variance), then 10x, 100x, ... up to 0.1: per layer, the
first for which the Cholesky factorisation succeeds (the float32 analogue of LM-Polygraph's
"smallest absolute jitter from 1e-15 to 1e-1" schedule in float64). The ridge used is kept in
the state. A ridge of epsilon times the mean variance perturbs distances by about
epsilon * cond(Sigma) relative, the order of float32 rounding itself.

The RDE fit needs scikit-learn (imported when `fit_rde` is called): the Minimum Covariance
Determinant fit (FAST-MCD, random subsets and C-steps) runs on the host, per layer, in float64
on the projected training features; the kernel PCA, the Cholesky factor and all scoring run in
JAX. The RBF state keeps the training features ([n, d] per layer) since scoring needs the
kernel against them. (Kernel) PCA components whose eigenvalue is below n * eps times the
largest are treated as numerically zero (dropped from the MCD fit; see `rank_rtol`). In float32
the RBF fit agrees with scikit-learn (float64) to about 1e-4 when the retained eigenvalues are
well separated; when the kernel spectrum is nearly flat around the k-th eigenvalue (e.g. the
~identity kernel below) the k-dim subspace itself is ill-determined and float32 and float64
disagree (with x64 enabled this module matches scikit-learn to ~1e-10 even then).

RBF caveat (a property of LM-Polygraph's default, kept here): with gamma = 1 / d the kernel
exp(-||x - y||^2 / d) is ~0 between any two points unless the features have about unit variance
per dimension; for raw hidden states the training kernel is then ~identity and the projection
meaningless. And for any gamma, a point far from every training point has kernel ~0 to all of
them, so all such points project to the same spot and get the SAME score, which can be lower
than that of inliers: RBF-RDE is not monotone in the distance. `gamma="scale"` (1 / (d * var))
fixes the first; `kernel="linear"` avoids both.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from introspect import _checks as V

__all__ = [
    "KernelPCAState",
    "MahalanobisState",
    "PCAState",
    "RDEState",
    "RelativeMahalanobisState",
    "fit_mahalanobis",
    "fit_relative_mahalanobis",
    "fit_rde",
    "mahalanobis",
    "rde",
    "relative_mahalanobis",
]

SHRINKAGES = ("empirical", "ledoit_wolf")
KERNELS = ("rbf", "linear")
MAX_JITTER = 1e-1
_HI = jax.lax.Precision.HIGHEST


@struct.dataclass
class MahalanobisState:
    """A Gaussian fit. Shapes without the layer axis (per-layer fits add a leading [layers]).

    mean: [d] centroid. chol: [d, d] lower Cholesky factor of the regularised covariance
    (covariance + ridge * I). ridge: [] the absolute ridge added. shrinkage: [] the Ledoit-Wolf
    coefficient (0 for the empirical covariance and for MCD).
    """

    mean: jax.Array
    chol: jax.Array
    ridge: jax.Array
    shrinkage: jax.Array


@struct.dataclass
class RelativeMahalanobisState:
    """inside: the in-domain fit; background: the background fit (same estimator)."""

    inside: MahalanobisState
    background: MahalanobisState


@struct.dataclass
class KernelPCAState:
    """RBF kernel PCA (scikit-learn's KernelPCA). x_fit: [n, d] training features minus
    `offset` (distances are translation-invariant; centring keeps the float32 kernel accurate).
    offset: [d]. gamma: [] the RBF coefficient, k(x, y) = exp(-gamma ||x - y||^2).
    k_fit_rows: [n] column means of the training kernel; k_fit_all: [] its grand mean.
    alphas: [n, k] eigenvectors / sqrt(eigenvalues) (zero columns for numerically-zero
    components, see `fit_rde`'s rank_rtol).
    """

    x_fit: jax.Array
    offset: jax.Array
    gamma: jax.Array
    k_fit_rows: jax.Array
    k_fit_all: jax.Array
    alphas: jax.Array


@struct.dataclass
class PCAState:
    """Linear PCA (scikit-learn's PCA, no whitening). mean: [d]; components: [d, k] (zero
    columns for numerically-zero components)."""

    mean: jax.Array
    components: jax.Array


@struct.dataclass
class RDEState:
    """pca: the projection (KernelPCAState or PCAState); gauss: the MCD fit in the k-dim space
    (mean = MCD location, chol from the MCD covariance; numerically-zero components get
    location 0 and an identity block, and add 0 to every score)."""

    pca: Any
    gauss: MahalanobisState


# ---------------------------------------------------------------------------------------------
# Validation.


def _features(x: Any, name: str, validate: bool) -> jax.Array:
    a = V.as_float_array(x, name)
    if validate:
        V.check_rank(a, name, (2, 3), "[n, d] or [n, layers, d]")
        V.check_not_empty(a, name)
        V.check_finite(a, name)
    return jnp.asarray(a)


def _fit_features(x: Any, name: str, validate: bool, min_rows: int = 2) -> jax.Array:
    a = _features(x, name, validate)
    if a.shape[0] < min_rows:
        raise ValueError(f"{name}: has {a.shape[0]} row(s); expected at least {min_rows} to fit")
    return a


def _check_score_shape(x: jax.Array, mean: jax.Array, name: str) -> None:
    """`mean` is the state's [d] or [layers, d]; x must be [m, d] or [m, layers, d] to match."""
    want = mean.shape
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != tuple(want):
        what = f"[m, {want[0]}]" if len(want) == 1 else f"[m, {want[0]}, {want[1]}]"
        raise ValueError(
            f"{name}: has shape {tuple(x.shape)}; expected {what} to match the fitted state "
            f"({'one fit' if len(want) == 1 else f'{want[0]} per-layer fits'} of dimension "
            f"{want[-1]})"
        )


def _jitter_option(jitter: Any) -> float | None:
    return None if jitter is None else V.check_float_option(jitter, "jitter", 0.0, MAX_JITTER)


def _jitter_schedule(jitter: float | None, dtype: Any) -> list[float]:
    """`jitter` (None = the dtype's machine epsilon), times 10 each try, then MAX_JITTER."""
    eps = float(jnp.finfo(dtype).eps)
    first = eps if jitter is None else jitter
    out, r = [first], first
    if r < eps:
        r = eps
        out.append(r)
    while r * 10 < MAX_JITTER:
        r *= 10
        out.append(r)
    return out + [MAX_JITTER] if out[-1] < MAX_JITTER else out


def _layered(fn, layered: bool, in_axes: Any = 0, out_axes: Any = 0):
    return jax.vmap(fn, in_axes=in_axes, out_axes=out_axes) if layered else fn


# ---------------------------------------------------------------------------------------------
# Gaussian fits.


def _moments_one(x: jax.Array, shrinkage: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(mean [d], covariance [d, d], Ledoit-Wolf coefficient []) of x [n, d]."""
    n, d = x.shape
    mean = jnp.mean(x, axis=0)
    xc = x - mean
    gram = jnp.matmul(xc.T, xc, precision=_HI)
    if shrinkage == "empirical":
        # torch.cov, as LM-Polygraph: unbiased.
        return mean, gram / (n - 1), jnp.zeros((), x.dtype)
    # scikit-learn's ledoit_wolf_shrinkage / LedoitWolf (assume_centered=False).
    emp = gram / n
    mu = jnp.trace(emp) / d
    if d == 1:
        return mean, emp, jnp.zeros((), x.dtype)
    sq_norms = jnp.sum(xc * xc, axis=1)
    beta_ = jnp.sum(sq_norms * sq_norms)  # = sum of the entries of X2^T X2
    delta_ = jnp.sum(emp * emp)  # = sum of the squared entries of X^T X, / n^2
    beta = (beta_ / n - delta_) / (d * n)
    eye = jnp.eye(d, dtype=x.dtype)
    delta = jnp.sum(jnp.square(emp - mu * eye)) / d  # = sklearn's delta, computed stably
    beta = jnp.minimum(beta, delta)
    coef = jnp.where(delta > 0, beta / jnp.where(delta > 0, delta, 1), 0.0)
    cov = (1 - coef) * emp + coef * mu * eye
    return mean, cov, coef.astype(x.dtype)


@functools.partial(jax.jit, static_argnames=("shrinkage",))
def _moments(x: jax.Array, shrinkage: str):
    fn = functools.partial(_moments_one, shrinkage=shrinkage)
    return _layered(fn, x.ndim == 3, in_axes=1)(x)


@jax.jit
def _cholesky(cov: jax.Array, rel: jax.Array):
    d = cov.shape[-1]
    scale = jnp.trace(cov, axis1=-2, axis2=-1) / d
    ridge = (rel * scale).astype(cov.dtype)
    a = cov + ridge[..., None, None] * jnp.eye(d, dtype=cov.dtype)
    a = (a + jnp.swapaxes(a, -1, -2)) / 2
    chol = jnp.linalg.cholesky(a)
    ok = jnp.all(jnp.isfinite(chol), axis=(-2, -1)) & (scale > 0)
    return chol, ridge, ok


def _factor(cov: jax.Array, jitter: float | None, name: str) -> tuple[jax.Array, jax.Array]:
    """Cholesky factor of cov + ridge I with the per-layer smallest ridge that works."""
    batch = cov.shape[:-2]
    schedule = _jitter_schedule(jitter, cov.dtype)
    rel = np.full(batch, schedule[0], dtype=np.float64)
    chol, ridge, ok = _cholesky(cov, jnp.asarray(rel, cov.dtype))
    ok = np.asarray(ok)
    for r in schedule[1:]:
        if ok.all():
            break
        rel = np.where(ok, rel, r)  # layers that succeeded keep their ridge
        c, g, ok_now = _cholesky(cov, jnp.asarray(rel, cov.dtype))
        keep = jnp.asarray(ok)
        chol = jnp.where(keep[..., None, None], chol, c)
        ridge = jnp.where(keep, ridge, g)
        ok = ok | np.asarray(ok_now)
    if ok.all():
        return chol, ridge
    bad = np.flatnonzero(~np.atleast_1d(ok)).tolist()
    where = f" (layers {bad})" if batch else ""
    raise ValueError(
        f"{name}: the covariance is not positive definite even with a ridge of {MAX_JITTER:g} "
        f"times the mean variance{where}; the features are degenerate (constant or collinear)"
    )


def _gaussian(mean: jax.Array, cov: jax.Array, coef: jax.Array, jitter: float | None, name: str):
    chol, ridge = _factor(cov, jitter, name)
    return MahalanobisState(mean=mean, chol=chol, ridge=ridge, shrinkage=coef)


def fit_mahalanobis(
    features: Any,
    *,
    shrinkage: str = "empirical",
    jitter: float | None = None,
    validate: bool = True,
) -> MahalanobisState:
    """Fits LM-Polygraph's Mahalanobis-distance Gaussian (one class-agnostic centroid).

    Args:
      features: [n, d] training features, or [n, layers, d] for one fit per layer.
      shrinkage: "empirical" (default, LM-Polygraph: the unbiased covariance, needs n > d) or
        "ledoit_wolf" (scikit-learn's LedoitWolf; any n >= 2).
      jitter: the first ridge tried, relative to the mean variance trace(Sigma) / d, in
        [0, 0.1]; None = the dtype's machine epsilon. Raised tenfold (up to 0.1) until the
        Cholesky factorisation succeeds.
      validate: check the features (rank, non-empty, finite).
    Returns:
      MahalanobisState (leading [layers] axis on every field for per-layer features).
    Raises:
      ValueError: bad rank, fewer than 2 rows, non-finite values, n <= d with "empirical", or a
        covariance that stays singular up to the largest ridge.
    """
    V.check_choice(shrinkage, "shrinkage", SHRINKAGES)
    jitter = _jitter_option(jitter)
    x = _fit_features(features, "features", validate)
    n, d = x.shape[0], x.shape[-1]
    if shrinkage == "empirical" and n <= d:
        raise ValueError(
            f"features: {n} rows for dimension {d}; the empirical covariance needs more rows than "
            'dimensions (n > d). Use shrinkage="ledoit_wolf", more rows, or fewer dimensions'
        )
    mean, cov, coef = _moments(x, shrinkage)
    return _gaussian(mean, cov, coef, jitter, "features")


def _md_one(mean: jax.Array, chol: jax.Array, x: jax.Array) -> jax.Array:
    """Squared distances [m] of x [m, d] to N(mean, chol chol^T)."""
    z = jax.scipy.linalg.solve_triangular(chol, (x - mean).T, lower=True)
    return jnp.sum(z * z, axis=0)


@functools.partial(jax.jit, static_argnames=("squared",))
def _md(mean: jax.Array, chol: jax.Array, x: jax.Array, squared: bool) -> jax.Array:
    sq = _layered(_md_one, mean.ndim == 2, in_axes=(0, 0, 1), out_axes=1)(mean, chol, x)
    return sq if squared else jnp.sqrt(sq)


def mahalanobis(
    state: MahalanobisState, features: Any, *, squared: bool = False, validate: bool = True
) -> jax.Array:
    """Mahalanobis distance to the fitted Gaussian; higher = more uncertain.

    Args:
      state: from `fit_mahalanobis`.
      features: [m, d] (or [m, layers, d] for a per-layer state).
      squared: False (default, LM-Polygraph's MD) = sqrt((x - mu)^T Sigma^-1 (x - mu));
        True = the square (scikit-learn's `mahalanobis`).
      validate: check the features (rank, finite); the shape check always runs.
    Returns:
      [m] (or [m, layers]) float distances.
    """
    x = _features(features, "features", validate)
    _check_score_shape(x, state.mean, "features")
    return _md(state.mean, state.chol, x.astype(state.chol.dtype), bool(squared))


# ---------------------------------------------------------------------------------------------
# Relative Mahalanobis distance.


def fit_relative_mahalanobis(
    features: Any,
    background: Any,
    *,
    shrinkage: str = "empirical",
    jitter: float | None = None,
    validate: bool = True,
) -> RelativeMahalanobisState:
    """Fits the in-domain and the background Gaussians of the relative Mahalanobis distance.

    Args:
      features: [n, d] in-domain training features (or [n, layers, d]).
      background: [n0, d] (or [n0, layers, d]) features of a general-purpose background corpus
        (LM-Polygraph: 1000 C4 documents), encoded like `features`.
      shrinkage, jitter, validate: as `fit_mahalanobis`, used for both fits.
    Returns:
      RelativeMahalanobisState.
    """
    bg = _fit_features(background, "background", validate)
    x = _fit_features(features, "features", validate)
    if bg.ndim != x.ndim or bg.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"background: has shape {tuple(bg.shape)}; expected [n0, "
            f"{', '.join(map(str, x.shape[1:]))}] to match features {tuple(x.shape)}"
        )
    inside = fit_mahalanobis(x, shrinkage=shrinkage, jitter=jitter, validate=False)
    try:
        back = fit_mahalanobis(bg, shrinkage=shrinkage, jitter=jitter, validate=False)
    except ValueError as e:
        raise ValueError(str(e).replace("features:", "background:", 1)) from None
    return RelativeMahalanobisState(inside=inside, background=back)


def relative_mahalanobis(
    state: RelativeMahalanobisState, features: Any, *, squared: bool = False, validate: bool = True
) -> jax.Array:
    """RMD(x) = MD_in(x) - MD_background(x); higher = more uncertain.

    `squared=False` (default, LM-Polygraph) subtracts the distances; True subtracts squared
    distances (Ren et al.'s formulation). Returns [m] (or [m, layers]).
    """
    x = _features(features, "features", validate)
    _check_score_shape(x, state.inside.mean, "features")
    x = x.astype(state.inside.chol.dtype)
    md = _md(state.inside.mean, state.inside.chol, x, bool(squared))
    md0 = _md(state.background.mean, state.background.chol, x, bool(squared))
    return md - md0


# ---------------------------------------------------------------------------------------------
# Robust density estimation.


def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
    aa = jnp.sum(a * a, axis=1)
    bb = jnp.sum(b * b, axis=1)
    ab = jnp.matmul(a, b.T, precision=_HI)
    return jnp.maximum(aa[:, None] + bb[None, :] - 2 * ab, 0.0)


def _sign_flip(v: jax.Array) -> jax.Array:
    """Columns of v signed so that each column's largest-|.| entry is positive (svd_flip)."""
    idx = jnp.argmax(jnp.abs(v), axis=0)
    signs = jnp.sign(v[idx, jnp.arange(v.shape[1])])
    return v * jnp.where(signs == 0, 1, signs)


def _kpca_one(x: jax.Array, gamma: jax.Array, k: int, rtol: jax.Array):
    """KernelPCA(kernel="rbf").fit_transform of x [n, d].

    Returns (KernelPCAState, train scores [n, k], kept [k] bool): components whose eigenvalue is
    <= rtol * the largest are numerically zero; their alphas and scores are set to 0.
    """
    n = x.shape[0]
    offset = jnp.mean(x, axis=0)
    xf = x - offset
    kmat = jnp.exp(-gamma * _sq_dists(xf, xf))
    kmat = (kmat + kmat.T) / 2
    rows = jnp.mean(kmat, axis=0)
    total = jnp.mean(rows)
    kc = kmat - rows[None, :] - rows[:, None] + total
    vals, vecs = jnp.linalg.eigh(kc)  # ascending
    vals, vecs = vals[n - k :][::-1], vecs[:, n - k :][:, ::-1]
    vals = jnp.maximum(vals, 0.0)  # sklearn's _check_psd_eigenvalues: tiny negatives -> 0
    vecs = _sign_flip(vecs)
    kept = vals > rtol * vals[0]
    root = jnp.sqrt(jnp.where(kept, vals, 1))
    alphas = jnp.where(kept, vecs / root, 0.0)
    state = KernelPCAState(
        x_fit=xf, offset=offset, gamma=gamma, k_fit_rows=rows, k_fit_all=total, alphas=alphas
    )
    return state, jnp.where(kept, vecs * root, 0.0), kept


def _pca_one(x: jax.Array, k: int, rtol: jax.Array):
    """PCA(n_components=k).fit_transform of x [n, d]: (PCAState, train scores [n, k], kept [k]);
    components whose variance is <= rtol * the largest are numerically zero and set to 0."""
    mean = jnp.mean(x, axis=0)
    xc = x - mean
    _, sv, vt = jnp.linalg.svd(xc, full_matrices=False)
    var = sv[:k] ** 2
    kept = var > rtol * var[0]
    comps = jnp.where(kept, _sign_flip(vt[:k].T), 0.0)  # sklearn: svd_flip (v-based)
    return PCAState(mean=mean, components=comps), jnp.matmul(xc, comps, precision=_HI), kept


@functools.partial(jax.jit, static_argnames=("kernel", "k"))
def _project_fit(x: jax.Array, gamma: jax.Array, rtol: jax.Array, kernel: str, k: int):
    if kernel == "rbf":
        fn = lambda a, g: _kpca_one(a, g, k, rtol)
    else:
        fn = lambda a, g: _pca_one(a, k, rtol)
    return _layered(fn, x.ndim == 3, in_axes=(1, 0), out_axes=(0, 1, 0))(x, gamma)


def _project_one(pca: Any, x: jax.Array) -> jax.Array:
    if isinstance(pca, PCAState):
        return jnp.matmul(x - pca.mean, pca.components, precision=_HI)
    kmat = jnp.exp(-pca.gamma * _sq_dists(x - pca.offset, pca.x_fit))
    kc = kmat - pca.k_fit_rows[None, :] - jnp.mean(kmat, axis=1, keepdims=True) + pca.k_fit_all
    return jnp.matmul(kc, pca.alphas, precision=_HI)


def _mcd_padded(z: np.ndarray, kept: np.ndarray, random_state: int, frac: float | None):
    """MinCovDet on the kept columns of z [n, k]; the dropped (all-zero) components get
    location 0 and an identity block (scaled to the mean kept variance): they add 0 to every
    score since new points also project to 0 there."""
    r = int(kept.sum())
    if r == 0:
        raise ValueError(
            "features: the (kernel) PCA has no component above the numerical rank tolerance; "
            "the features are degenerate (constant)"
        )
    loc_r, cov_r = _mcd(z[:, :r], random_state, frac)  # kept is a prefix (sorted eigenvalues)
    k = z.shape[1]
    loc = np.zeros(k)
    loc[:r] = loc_r
    cov = np.eye(k) * max(float(np.trace(cov_r)) / r, np.finfo(np.float64).tiny)
    cov[:r, :r] = cov_r
    return loc, cov


def _mcd(z: np.ndarray, random_state: int, support_fraction: float | None):
    """(location, covariance) of MinCovDet on z [n, k], with LM-Polygraph's fallbacks."""
    try:
        from sklearn.covariance import MinCovDet
    except ImportError as e:  # scikit-learn is not a runtime dependency of introspect
        raise ImportError("fit_rde needs scikit-learn (pip install scikit-learn)") from e
    fractions = [support_fraction] if support_fraction is not None else [None, 0.9, 1.0]
    for i, frac in enumerate(fractions):
        try:
            mcd = MinCovDet(random_state=random_state, support_fraction=frac).fit(z)
            return mcd.location_, mcd.covariance_
        except ValueError:
            if i == len(fractions) - 1:
                raise
    raise AssertionError("unreachable")


def fit_rde(
    features: Any,
    *,
    n_components: int = 100,
    kernel: str = "rbf",
    gamma: float | str | None = None,
    support_fraction: float | None = None,
    random_state: int = 42,
    rank_rtol: float | None = None,
    jitter: float | None = None,
    validate: bool = True,
) -> RDEState:
    """Fits RDE: (kernel) PCA, then a Minimum Covariance Determinant Gaussian in that space.

    Args:
      features: [n, d] training features (or [n, layers, d]; the MCD fit loops over layers on
        the host, the rest is vmapped).
      n_components: k, default 100 (LM-Polygraph); clipped to n - 1 (the rank of the centred
        training data; scikit-learn would keep a zero-variance n-th component) and, for
        "linear", to d.
      kernel: "rbf" (default, LM-Polygraph's KernelPCA) or "linear" (plain PCA).
      gamma: RBF coefficient. None = 1 / d (scikit-learn's default, theirs): sensible only for
        features with about unit variance per dimension. "scale" = 1 / (d * var) with var the
        variance of all training entries (per layer), as scikit-learn's SVC. See the caveat
        in the module docstring: raw hidden states want "scale" (or kernel="linear").
      support_fraction: MinCovDet's; None = scikit-learn's default (n + k + 1) / 2n, retried
        with 0.9 then 1.0 if scikit-learn raises ValueError (LM-Polygraph's fallback).
      random_state: MinCovDet's seed (42, theirs).
      rank_rtol: components with an eigenvalue (variance) <= rank_rtol * the largest are
        treated as numerically zero and dropped from the MCD fit (they then add 0 to every
        score; the state keeps k columns, zeroed). None = n * machine epsilon of the dtype
        (numpy's matrix-rank tolerance); 0 keeps every positive eigenvalue, as scikit-learn.
      jitter, validate: as `fit_mahalanobis` (ridge for the Cholesky factor of the MCD
        covariance).
    Returns:
      RDEState.
    Raises:
      ValueError: bad options or features (fewer than 3 rows, non-finite), or a degenerate MCD
        covariance. ImportError: scikit-learn is not installed.
    """
    n_components = V.check_int_option(n_components, "n_components", 1)
    V.check_choice(kernel, "kernel", KERNELS)
    if gamma is not None and gamma != "scale":
        gamma = V.check_float_option(gamma, "gamma", 0.0, lo_open=True)
    if support_fraction is not None:
        support_fraction = V.check_float_option(
            support_fraction, "support_fraction", 0.0, 1.0, lo_open=True
        )
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise ValueError(f"random_state: expected an integer seed, got {random_state!r}")
    if rank_rtol is not None:
        rank_rtol = V.check_float_option(rank_rtol, "rank_rtol", 0.0, 1.0, hi_open=True)
    jitter = _jitter_option(jitter)
    x = _fit_features(features, "features", validate, min_rows=3)
    n, d = x.shape[0], x.shape[-1]
    k = min(n_components, n - 1) if kernel == "rbf" else min(n_components, n - 1, d)
    batch = x.shape[1:2] if x.ndim == 3 else ()
    if gamma == "scale":
        var = jnp.var(x, axis=(0, 2) if x.ndim == 3 else None)
        g = jnp.where(var > 0, 1.0 / (d * jnp.where(var > 0, var, 1)), 1.0).astype(x.dtype)
    else:
        g = jnp.full(batch, 1.0 / d if gamma is None else gamma, x.dtype)
    tol = n * float(jnp.finfo(x.dtype).eps) if rank_rtol is None else rank_rtol
    pca, z, kept = _project_fit(x, g, jnp.asarray(tol, x.dtype), kernel, k)
    zh, kept = np.asarray(z, dtype=np.float64), np.asarray(kept)
    seed = int(random_state)
    if x.ndim == 3:
        fits = [_mcd_padded(zh[:, i], kept[i], seed, support_fraction) for i in range(zh.shape[1])]
        loc = np.stack([f[0] for f in fits])
        cov = np.stack([f[1] for f in fits])
    else:
        loc, cov = _mcd_padded(zh, kept, seed, support_fraction)
    loc, cov = jnp.asarray(loc, x.dtype), jnp.asarray(cov, x.dtype)
    zero = jnp.zeros(cov.shape[:-2], x.dtype)
    gauss = _gaussian(loc, cov, zero, jitter, "features (MCD covariance)")
    return RDEState(pca=pca, gauss=gauss)


@functools.partial(jax.jit, static_argnames=("squared",))
def _rde(state: RDEState, x: jax.Array, squared: bool) -> jax.Array:
    def one(pca, mean, chol, xl):
        return _md_one(mean, chol, _project_one(pca, xl))

    g = state.gauss
    sq = _layered(one, g.mean.ndim == 2, in_axes=(0, 0, 0, 1), out_axes=1)(
        state.pca, g.mean, g.chol, x
    )
    return sq if squared else jnp.sqrt(sq)


def rde(
    state: RDEState, features: Any, *, squared: bool = True, validate: bool = True
) -> jax.Array:
    """Robust density estimation score; higher = more uncertain.

    Args:
      state: from `fit_rde`.
      features: [m, d] (or [m, layers, d] for a per-layer state).
      squared: True (default, LM-Polygraph's `MinCovDet.mahalanobis`) = squared Mahalanobis
        distance in the (kernel) PCA space to the MCD location; False = its square root.
      validate: check the features (rank, finite); the shape check always runs.
    Returns:
      [m] (or [m, layers]).
    """
    x = _features(features, "features", validate)
    pca = state.pca
    ref = pca.mean if isinstance(pca, PCAState) else pca.offset
    _check_score_shape(x, ref, "features")
    return _rde(state, x.astype(state.gauss.chol.dtype), bool(squared))
