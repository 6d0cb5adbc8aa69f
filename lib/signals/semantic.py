"""Sampling / semantic uncertainty estimators, after LM-Polygraph's (IINemo/lm-polygraph).

Pure functions over arrays: the statistics LM-Polygraph computes with external models (the NLI
matrices of DeBERTa, the cross-encoder similarities, the semantic classes, the token log-probs of
the samples) are the inputs here, so these functions need no model. Every function returns an
UNCERTAINTY, the estimator's natural orientation as LM-Polygraph returns it: higher = more
uncertain (the signal registry negates them into "higher = more confident").

The formulas, defaults and edge cases follow `src/lm_polygraph/estimators/` at commit efea882d
(2026-08-04); each function names the file and class it matches and any deviation. Deviations are
of three kinds only: (1) degenerate inputs where LM-Polygraph gives NaN/inf or raises (one sample,
a node without edges, zero token relevance) get a defined value, stated in the docstring; (2)
products of probabilities are computed in log space (no underflow to -log 0 = inf for long
sequences); (3) the statistics LM-Polygraph derives from texts are passed in (equivalence classes,
similarity matrices, "same text" ids).

Shapes: n = questions (batch), k = samples per question, T = tokens. Array functions are written
in jax.numpy, jit-able (the public functions check their input and call a jitted core; under an
outer `jit` the shape checks still run and the value checks are skipped, as everywhere in
introspect). `lexical_similarity`, `rouge` and `jaccard_similarity` take strings and run on the
host (numpy).

Input checks (`introspect._checks`): shapes and ranks always; on concrete arrays, NaN/inf and
out-of-range values (similarities and NLI probabilities outside [0, 1], negative relevances or
lengths) raise a ValueError naming the argument.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V

# ---------------------------------------------------------------------------------------------
# Input helpers
# ---------------------------------------------------------------------------------------------


def _floats(x: Any, name: str, rank: int, what: str, validate: bool, mask=None) -> jax.Array:
    """A float array of `rank`, non-empty, finite (where `mask`) when `validate`."""
    a = V.checked_array(x, name, rank, what, validate)
    if validate:
        V.check_finite(a, name, mask)
    return V.as_float(a)


def _in_range(x: Any, name: str, rank: int, what: str, validate: bool, lo: float, hi: float):
    a = V.checked_array(x, name, rank, what, validate)
    if validate:
        V.check_range(a, name, lo, hi)
    return V.as_float(a)


def _similarity(x: Any, name: str, validate: bool, hi: float = 1.0) -> jax.Array:
    """A batch of square similarity matrices [n, k, k], values in [0, hi]."""
    a = V.checked_array(x, name, 3, "[n, k, k] (a k x k similarity matrix per question)", validate)
    if validate:
        V.check_shape(a, name, (a.shape[0], a.shape[-1], a.shape[-1]), "[n, k, k] (square)")
        what = "similarities in [0, 1]" if hi == 1.0 else "non-negative edge weights"
        V.check_range(a, name, 0.0, hi, what=what)
    return V.as_float(a)


def _ids(x: Any, name: str, rank: int, what: str, validate: bool) -> jax.Array:
    """Integer labels (any integer values; only equality matters)."""
    a = V.checked_array(x, name, rank, what, validate)
    if not jnp.issubdtype(a.dtype, jnp.integer):
        raise ValueError(f"{name}: dtype {a.dtype}; expected integer labels ({what})")
    return a


def _first_occurrence(ids: jax.Array) -> jax.Array:
    """[..., k] bool: True where ids[..., j] differs from every ids[..., i], i < j."""
    k = ids.shape[-1]
    same = ids[..., :, None] == ids[..., None, :]  # [..., j, i]
    earlier = jnp.tril(jnp.ones((k, k), bool), -1)
    return ~jnp.any(same & earlier, axis=-1)


def _symmetrize(w: jax.Array) -> jax.Array:
    return 0.5 * (w + jnp.swapaxes(w, -1, -2))


# ---------------------------------------------------------------------------------------------
# Semantic entropy and number of semantic sets (given equivalence classes)
# ---------------------------------------------------------------------------------------------

_CLASS_PROB = ("sum", "frequency")
_ENTROPY_EST = ("mean", "direct")


@functools.partial(jax.jit, static_argnames=("class_probability_estimation", "entropy_estimation"))
def _semantic_entropy(ll, classes, ids, class_probability_estimation, entropy_estimation):
    same = classes[..., :, None] == classes[..., None, :]  # [n, j, i]: sample i in j's class
    k = classes.shape[-1]
    if class_probability_estimation == "sum":
        # log sum_{i in C(j)} exp(ll_i) over the first sample of each text id in the class; the
        # first member of C(j) always counts, so this is finite.
        dup = same & (ids[..., :, None] == ids[..., None, :])  # [n, i, i']: same class and text
        first = ~jnp.any(dup & jnp.tril(jnp.ones((k, k), bool), -1), axis=-1)  # [n, i]
        members = same & first[..., None, :]
        class_lp = jax.nn.logsumexp(jnp.where(members, ll[..., None, :], -jnp.inf), axis=-1)
    else:
        class_lp = jnp.log(jnp.sum(same, axis=-1) / k)
    if entropy_estimation == "mean":
        return -jnp.mean(class_lp, axis=-1)
    return -jnp.sum(class_lp * jnp.exp(class_lp), axis=-1)


def semantic_entropy(
    log_likelihoods: Any,
    classes: Any,
    *,
    class_probability_estimation: str = "sum",
    entropy_estimation: str = "mean",
    sample_ids: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Semantic entropy (uncertainty: higher = more uncertain), as LM-Polygraph's SemanticEntropy.

    Matches `estimators/semantic_entropy.py`, class `SemanticEntropy` (Kuhn et al. 2023,
    arXiv:2302.09664), with its defaults `class_probability_estimation="sum"`,
    `entropy_estimation="mean"`, `use_unique_responses=False` (`sample_ids` gives
    `use_unique_responses=True`: within a class, only the first sample of each text is summed).

    With C(j) the class of sample j among the k samples of a question:

    * class log-probability, "sum": log p(C(j)) = log sum_{i in C(j)} exp(ll_i), the sequence
      likelihoods of its members summed. NOT normalised over classes (LM-Polygraph does not
      normalise: the class probabilities of a question sum to sum_i p_i, not to 1, and duplicate
      samples are summed again, so SE can be negative when that sum exceeds 1). "frequency"
      (their `SemanticEntropyEmpirical`): log p(C(j)) = log(|C(j)| / k).
    * entropy, "mean" (the Monte-Carlo estimate of the paper): SE = -(1/k) sum_j log p(C(j)),
      the mean over SAMPLES (a class with m members counts m times). "direct" (SDLG's estimator,
      arXiv:2406.04306, as LM-Polygraph codes it): SE = -sum_j p(C(j)) log p(C(j)), also a sum
      over samples j (so each class is counted once per member, as in their code).

    With "frequency" + "mean" this is the entropy of the class frequencies: 0 when all samples are
    in one class, log 2 for two classes of equal size. With "sum" + "mean", k = 1 gives
    -ll_1 and one class gives -log sum_i exp(ll_i).

    LM-Polygraph builds the classes from `sample_texts` with an NLI test
    (`SemanticClassesCalculator`: sample i joins the first class whose first member entails it and
    is entailed by it, by DeBERTa's argmax); here the classes are given.

    Args:
      log_likelihoods: [n, k] sequence log-likelihood of each sample (sum of its token log-probs,
        LM-Polygraph's `sample_log_probs`); may be None with `class_probability_estimation=
        "frequency"`.
      classes: [n, k] integer class label of each sample (only equality within a row matters).
      class_probability_estimation: "sum" or "frequency".
      entropy_estimation: "mean" or "direct".
      sample_ids: optional [n, k] integers, equal for identical sample texts ("sum" only).
    Returns:
      [n] float.
    """
    V.check_choice(class_probability_estimation, "class_probability_estimation", _CLASS_PROB)
    V.check_choice(entropy_estimation, "entropy_estimation", _ENTROPY_EST)
    c = _ids(classes, "classes", 2, "[n, k] integer class labels", validate)
    if log_likelihoods is None:
        if class_probability_estimation == "sum":
            raise ValueError(
                "log_likelihoods: got None; expected [n, k] sequence log-likelihoods "
                '(or class_probability_estimation="frequency")'
            )
        ll = jnp.zeros(c.shape, V.default_float())
    else:
        ll = _floats(log_likelihoods, "log_likelihoods", 2, "[n, k]", validate)
        if validate:
            V.check_same_shape(ll, c, "log_likelihoods", "classes")
            V.check_range(ll, "log_likelihoods", -np.inf, 0.0, what="log-probabilities (<= 0)")
    if sample_ids is None:
        ids = jnp.arange(c.shape[-1]) + jnp.zeros_like(c)  # every sample distinct
    else:
        ids = _ids(sample_ids, "sample_ids", 2, "[n, k] integer text ids", validate)
        if validate:
            V.check_same_shape(c, ids, "classes", "sample_ids")
    return _semantic_entropy(ll, c, ids, class_probability_estimation, entropy_estimation)


@jax.jit
def _num_sem_sets(classes):
    return jnp.sum(_first_occurrence(classes), axis=-1).astype(V.default_float())


def num_sem_sets(classes: Any, *, validate: bool = True) -> jax.Array:
    """Number of semantic sets (uncertainty: higher = more uncertain), as LM-Polygraph's NumSemSets.

    Matches `estimators/num_sem_sets.py`, class `NumSemSets` (Lin et al. 2023, arXiv:2305.19187):
    the number of distinct classes among the k samples, as a float; 1 when all agree, k when all
    differ. LM-Polygraph forms the sets itself, as connected components of the graph with an edge
    i-j when p_entail > p_contra in both directions (DeBERTa); here the equivalence classes are
    given (e.g. from `semantic_entropy`'s classes), so the count is that of distinct labels.

    Args:
      classes: [n, k] integer class label of each sample.
    Returns:
      [n] float.
    """
    return _num_sem_sets(_ids(classes, "classes", 2, "[n, k] integer class labels", validate))


# ---------------------------------------------------------------------------------------------
# Graph spectra of the similarity matrix (EigValLaplacian, DegMat, Eccentricity, KLE)
# ---------------------------------------------------------------------------------------------


def _normalized_laplacian(w):
    """I - D^-1/2 W D^-1/2, with L_ii = 0 for a node of degree 0 (Chung's convention)."""
    d = jnp.sum(w, axis=-1)
    connected = d > 0
    dinv = jnp.where(connected, jax.lax.rsqrt(jnp.where(connected, d, 1.0)), 0.0)
    a = dinv[..., :, None] * w * dinv[..., None, :]
    eye = jnp.eye(w.shape[-1], dtype=w.dtype)
    return eye * connected[..., None, :].astype(w.dtype) - a


@jax.jit
def _eigval_laplacian(w):
    lam = jnp.linalg.eigvalsh(_normalized_laplacian(_symmetrize(w)))
    return jnp.sum(jnp.maximum(0.0, 1.0 - lam), axis=-1)


def eigval_laplacian(similarity: Any, *, validate: bool = True) -> jax.Array:
    """Sum of eigenvalues of the graph Laplacian (uncertainty: higher = more uncertain).

    Matches `estimators/eig_val_laplacian.py`, class `EigValLaplacian` (Lin et al. 2023): with
    W = (S + S^T) / 2, D = diag(W 1) and L = I - D^-1/2 W D^-1/2 (normalised Laplacian),
    U = sum_l max(0, 1 - lambda_l(L)). A continuous number of semantic sets: 1 when all samples
    are fully similar (W = all ones), k when none are (W = I).

    LM-Polygraph's S is `semantic_matrix_entail` (affinity "entail", the default) or
    1 - `semantic_matrix_contra` ("contra"), or a Jaccard matrix (see `jaccard_similarity`; their
    Jaccard path does not symmetrise, but that matrix is symmetric). Deviation: a sample with no
    similarity to any sample including itself (degree 0) makes their D singular (LinAlgError);
    here its row of L is 0 (eigenvalue 0), so it counts as a set of its own.

    Args:
      similarity: [n, k, k] pairwise similarities in [0, 1] (diagonal included, as given).
    Returns:
      [n] float in [0, k].
    """
    return _eigval_laplacian(_similarity(similarity, "similarity", validate))


@jax.jit
def _degree_matrix(w):
    k = w.shape[-1]
    d = jnp.sum(_symmetrize(w), axis=-1)
    return jnp.sum(k - d, axis=-1) / k**2


def degree_matrix(similarity: Any, *, validate: bool = True) -> jax.Array:
    """Degree-matrix uncertainty (higher = more uncertain), as LM-Polygraph's DegMat.

    Matches `estimators/deg_mat.py`, class `DegMat` (Lin et al. 2023): with W = (S + S^T) / 2 and
    D = diag(W 1), U = trace(k I - D) / k^2 = 1 - sum_ij W_ij / k^2. 0 when W is all ones (and for
    k = 1 with S = [[1]]), 1 - 1/k when W = I. (Their code writes trace(k - D), k minus the matrix
    elementwise; its trace is the same.) The similarity options are those of `eigval_laplacian`.

    Args:
      similarity: [n, k, k] pairwise similarities in [0, 1].
    Returns:
      [n] float in [0, 1].
    """
    return _degree_matrix(_similarity(similarity, "similarity", validate))


@functools.partial(jax.jit, static_argnames=("k_eigs",))
def _eccentricity(w, threshold, k_eigs):
    lam, u = jnp.linalg.eigh(_normalized_laplacian(_symmetrize(w)))  # columns u[..., :, l]
    keep = lam < threshold
    if k_eigs is not None:
        keep = keep & (jnp.arange(lam.shape[-1]) < k_eigs)
    centred = u - jnp.mean(u, axis=-2, keepdims=True)  # each eigenvector minus its mean
    sq = jnp.sum(centred**2, axis=-2)  # [n, l]: ||u_l - mean(u_l)||^2
    return jnp.sqrt(jnp.sum(jnp.where(keep, sq, 0.0), axis=-1))


def eccentricity(
    similarity: Any,
    *,
    threshold: float | None = 0.9,
    k_eigs: int | None = None,
    validate: bool = True,
) -> jax.Array:
    """Eccentricity (uncertainty: higher = more uncertain), as LM-Polygraph's Eccentricity.

    Matches `estimators/eccentricity.py`, class `Eccentricity` (Lin et al. 2023), default
    `thres=0.9`. With L the normalised Laplacian of W = (S + S^T) / 2 (as `eigval_laplacian`) and
    u_1, u_2, ... its unit eigenvectors, those with eigenvalue < `threshold` are kept; each sample j
    is embedded as v_j = (u_1[j], u_2[j], ...), and U = ||V - mean_j v_j||_F, the norm of the
    centred embedding = sqrt(sum_l ||u_l - mean(u_l)||^2) (their code computes it this second way,
    negating the per-eigenvector norms, which the outer norm undoes). It depends only on the kept
    eigenspaces, not on the eigenvectors' signs or basis. 0 when W is all ones (only the constant
    eigenvector is kept) or k = 1; sqrt(k - 1) when W = I.

    Args:
      similarity: [n, k, k] pairwise similarities in [0, 1].
      threshold: keep eigenvalues < threshold (theirs: 0.9); None: no threshold.
      k_eigs: also keep at most the k_eigs smallest eigenvalues (the paper's "k smallest"
        embedding; use `threshold=None, k_eigs=K` for that alone). LM-Polygraph has no such
        option (and fails when `thres=None`); here both None keeps every eigenvector.
    Returns:
      [n] float >= 0.
    """
    thr = np.inf if threshold is None else V.check_float_option(threshold, "threshold")
    if k_eigs is not None:
        k_eigs = V.check_int_option(k_eigs, "k_eigs", 1)
    return _eccentricity(_similarity(similarity, "similarity", validate), thr, k_eigs)


@functools.partial(jax.jit, static_argnames=("normalize", "scale"))
def _kle(w, t, jitter, normalize, scale):
    w = _symmetrize(w)
    k = w.shape[-1]
    lap = jnp.sum(w, axis=-1)[..., :, None] * jnp.eye(k, dtype=w.dtype) - w  # L = D - W
    lam, u = jnp.linalg.eigh(lap)
    kern = (u * jnp.exp(-t * lam)[..., None, :]) @ jnp.swapaxes(u, -1, -2)  # expm(-t L)
    if normalize:
        root = jnp.sqrt(jnp.diagonal(kern, axis1=-2, axis2=-1)) + 1e-12
        kern = kern / (root[..., :, None] * root[..., None, :]) / k
    e = jnp.linalg.eigvalsh(kern + jitter * jnp.eye(k, dtype=w.dtype))
    pos = e > 1e-8
    ent = -jnp.sum(jnp.where(pos, e * jnp.log(jnp.where(pos, e, 1.0)), 0.0), axis=-1)
    if scale:
        ent = ent / np.log(k) if k > 1 else jnp.zeros_like(ent)
    return ent


def kernel_language_entropy(
    similarity: Any,
    *,
    t: float = 0.3,
    normalize: bool = True,
    scale: bool = True,
    jitter: float = 0.0,
    validate: bool = True,
) -> jax.Array:
    """Kernel language entropy (uncertainty: higher = more uncertain), as LM-Polygraph's KLE.

    Matches `estimators/kernel_language_entropy.py`, class `KernelLanguageEntropy` (Nikitin et al.
    2024, arXiv:2405.20003), defaults t = 0.3, normalize = True, scale = True, jitter = 0:
    L = D - W (D = diag of W's column sums), K = expm(-t L) (the heat kernel); `normalize`:
    K_ij <- K_ij / ((sqrt(K_ii) + 1e-12)(sqrt(K_jj) + 1e-12)) / k, unit trace; then the von
    Neumann entropy VNE = -sum_l e_l log e_l over the eigenvalues e_l > 1e-8 of K + jitter I;
    `scale`: divided by log k (its maximum, reached when W has no off-diagonal weight). The
    diagonal of W does not enter L.

    LM-Polygraph's W is built from the NLI matrices: `kle_weighted_graph(entail, contra)` returns
    it (entries in [0, 2]); pass that to reproduce their numbers (the heat kernel depends on the
    scale of W). Deviations: W is symmetrised ((W + W^T) / 2; theirs is symmetric by
    construction); expm is computed through the eigendecomposition of the symmetric L and the
    eigenvalues of K with `eigvalsh` (theirs: scipy `expm` and the general `eig`, whose numerical
    negative eigenvalues below -1e-8 would give NaN; here only e > 1e-8 count); k = 1 with
    `scale` gives 0 (theirs: 0/0 = NaN).

    Args:
      similarity: [n, k, k] non-negative edge weights W.
      t: heat-kernel time (> 0).
      normalize, scale, jitter: as above.
    Returns:
      [n] float (in [0, 1] with the defaults).
    """
    t = V.check_float_option(t, "t", 0.0, lo_open=True)
    jitter = V.check_float_option(jitter, "jitter", 0.0)
    w = _similarity(similarity, "similarity", validate, hi=np.inf)
    return _kle(w, t, jitter, bool(normalize), bool(scale))


def kle_weighted_graph(entail: Any, contra: Any, *, validate: bool = True) -> jax.Array:
    """The weighted semantic graph LM-Polygraph's KernelLanguageEntropy builds from NLI.

    W = (E + E^T) + 0.5 (2 - (E + E^T) - (C + C^T)), i.e. the entailment probability plus half the
    neutral probability, summed over both directions (entries in [0, 2]); E, C are the
    `semantic_matrix_entail` / `semantic_matrix_contra` probabilities (E[i, j] = p(i entails j)).

    Args:
      entail, contra: [n, k, k] NLI probabilities in [0, 1].
    Returns:
      [n, k, k] float, symmetric.
    """
    e = _similarity(entail, "entail", validate)
    c = _similarity(contra, "contra", validate)
    if validate:
        V.check_same_shape(e, c, "entail", "contra")
    e2 = e + jnp.swapaxes(e, -1, -2)
    c2 = c + jnp.swapaxes(c, -1, -2)
    return e2 + 0.5 * (2.0 - e2 - c2)


# ---------------------------------------------------------------------------------------------
# SAR: shifting attention to relevance
# ---------------------------------------------------------------------------------------------


def _token_sar(logp, rel, mask):
    rel = jnp.where(mask, rel, 0.0)
    total = jnp.sum(rel, axis=-1, keepdims=True)
    count = jnp.sum(mask, axis=-1, keepdims=True).astype(rel.dtype)
    # Zero total relevance (theirs: 0/0 = NaN): uniform weights over the tokens.
    weight = jnp.where(
        total > 0, rel / jnp.where(total > 0, total, 1.0), mask / jnp.maximum(count, 1)
    )
    return -jnp.sum(jnp.where(mask, logp, 0.0) * weight, axis=-1)


@jax.jit
def _token_sar_jit(logp, rel, mask):
    return _token_sar(logp, rel, mask)


def _token_inputs(token_logprobs, token_relevance, mask, what, validate, rank=None):
    """(log-probs, relevances, mask) of one shape: rank `rank`, or >= 1 when None."""
    arrays = []
    for x, name in ((token_logprobs, "token_logprobs"), (token_relevance, "token_relevance")):
        a = V.as_array(x, name)
        if validate:
            if rank is None:
                V.check_min_rank(a, name, 1, what)
            else:
                V.check_rank(a, name, rank, what)
            V.check_not_empty(a, name)
        arrays.append(a)
    lp, rel = arrays
    if validate:
        V.check_same_shape(lp, rel, "token_logprobs", "token_relevance")
    m = V.as_mask(mask, lp.shape)
    if validate:
        V.check_range(lp, "token_logprobs", -np.inf, 0.0, m, what="log-probabilities (<= 0)")
        V.check_range(rel, "token_relevance", 0.0, np.inf, m, what="non-negative relevances")
    return V.as_float(lp), V.as_float(rel), m


def token_sar(
    token_logprobs: Any, token_relevance: Any, mask: Any = None, *, validate: bool = True
) -> jax.Array:
    """TokenSAR (uncertainty: higher = more uncertain), as LM-Polygraph's TokenSAR.

    Matches `estimators/token_sar.py`, class `TokenSAR` (Duan et al. 2024, arXiv:2307.01379):
    the relevance-weighted negative log-likelihood E = -sum_t log p(y_t) R_t / sum_t' R_t'.
    LM-Polygraph's relevance is R_t = 1 - s_t, s_t the cross-encoder similarity between the
    answer and the answer without token t (`token_similarity`; 0.5 for one-token answers, 1 for
    special tokens); pass R_t here. Deviation: when every relevance of a sequence is 0 (theirs:
    NaN), the weights are uniform (E = mean NLL); a sequence without tokens gives 0 (as theirs).

    Args:
      token_logprobs: [..., T] log p of each generated token (e.g. [n, T] for the greedy answer).
      token_relevance: [..., T] R_t >= 0.
      mask: optional [..., T] bool, the tokens that belong to the answer (padding may hold
        anything).
    Returns:
      [...] float.
    """
    lp, rel, m = _token_inputs(token_logprobs, token_relevance, mask, "[..., T]", validate)
    return _token_sar_jit(lp, rel, m)


def _sentence_sar(log_p, sim, t):
    k = sim.shape[-1]
    off = 1.0 - jnp.eye(k, dtype=sim.dtype)
    # log(p_j + sum_{i != j} s_ji p_i / t), in log space: weights 1 on i = j, s_ji / t elsewhere.
    weights = jnp.eye(k, dtype=sim.dtype) + sim * off / t
    terms = jnp.broadcast_to(log_p[..., None, :], sim.shape)
    return -jnp.mean(jax.nn.logsumexp(terms, axis=-1, b=weights), axis=-1)


@jax.jit
def _sentence_sar_jit(log_p, sim, t):
    return _sentence_sar(log_p, sim, t)


def sentence_sar(
    sample_log_probs: Any, sample_similarity: Any, *, t: float = 0.001, validate: bool = True
) -> jax.Array:
    """SentenceSAR (uncertainty: higher = more uncertain), as LM-Polygraph's SentenceSAR.

    Matches `estimators/sentence_sar.py`, class `SentenceSAR` (Duan et al. 2024), t = 0.001:
    E = -(1/k) sum_j log(p_j + (1/t) sum_{i != j} s_ji p_i), p_j = exp(sample_log_probs_j), s the
    cross-encoder similarity matrix of the samples (`sample_sentence_similarity`; its diagonal is
    not used). Deviation: computed in log space (theirs: exp then log, inf when every p underflows).
    k = 1 gives -log p_1.

    Args:
      sample_log_probs: [n, k] sequence log-likelihood of each sample.
      sample_similarity: [n, k, k] similarities in [0, 1].
      t: temperature (> 0).
    Returns:
      [n] float.
    """
    t = V.check_float_option(t, "t", 0.0, lo_open=True)
    lp = _floats(sample_log_probs, "sample_log_probs", 2, "[n, k]", validate)
    sim = _similarity(sample_similarity, "sample_similarity", validate)
    if validate:
        V.check_shape(sim, "sample_similarity", lp.shape + lp.shape[-1:], "[n, k, k]")
        V.check_range(lp, "sample_log_probs", -np.inf, 0.0, what="log-probabilities (<= 0)")
    return _sentence_sar_jit(lp, sim, t)


@jax.jit
def _sar(logp, rel, mask, sim, t):
    return _sentence_sar(-_token_sar(logp, rel, mask), sim, t)


def sar(
    token_logprobs: Any,
    token_relevance: Any,
    sample_similarity: Any,
    mask: Any = None,
    *,
    t: float = 0.001,
    validate: bool = True,
) -> jax.Array:
    """SAR (uncertainty: higher = more uncertain), as LM-Polygraph's SAR.

    Matches `estimators/sar.py`, class `SAR` (Duan et al. 2024), t = 0.001: SentenceSAR (see
    `sentence_sar`) with each sample's probability replaced by its TokenSAR-corrected probability
    p_j = exp(-TokenSAR_j) (see `token_sar`; LM-Polygraph's `sample_token_similarity` gives the
    relevances 1 - s). Same deviations as those two.

    Args:
      token_logprobs: [n, k, T] log p of each token of each sample.
      token_relevance: [n, k, T] relevance R_t >= 0 of each token.
      sample_similarity: [n, k, k] similarities in [0, 1] between the samples.
      mask: optional [n, k, T] bool, the tokens of each sample.
      t: temperature (> 0).
    Returns:
      [n] float.
    """
    t = V.check_float_option(t, "t", 0.0, lo_open=True)
    lp, rel, m = _token_inputs(token_logprobs, token_relevance, mask, "[n, k, T]", validate, rank=3)
    sim = _similarity(sample_similarity, "sample_similarity", validate)
    if validate:
        V.check_shape(sim, "sample_similarity", lp.shape[:2] + lp.shape[1:2], "[n, k, k]")
    return _sar(lp, rel, m, sim, t)


# ---------------------------------------------------------------------------------------------
# Semantic density and CoCoA (a greedy answer against the samples)
# ---------------------------------------------------------------------------------------------


@jax.jit
def _semantic_density(g_lp, g_len, s_lp, s_len, contra, neutral, keep):
    kernel = jnp.maximum(0.0, 1.0 - (contra + 0.5 * neutral))  # 1 - distance if distance <= 1
    log_w = jnp.concatenate([s_lp / s_len, (g_lp / g_len)[..., None]], axis=-1)  # log q
    log_w = jnp.where(jnp.concatenate([keep, jnp.ones_like(keep[..., :1])], -1), log_w, -jnp.inf)
    w = jnp.exp(log_w - jnp.max(log_w, axis=-1, keepdims=True))  # the greedy term is finite
    kern = jnp.concatenate([kernel, jnp.ones_like(kernel[..., :1])], axis=-1)
    return -jnp.sum(w * kern, axis=-1) / jnp.sum(w, axis=-1)


def semantic_density(
    greedy_log_prob: Any,
    greedy_length: Any,
    sample_log_probs: Any,
    sample_lengths: Any,
    contra: Any,
    neutral: Any,
    *,
    sample_ids: Any = None,
    validate: bool = True,
) -> jax.Array:
    """Negative semantic density (uncertainty: higher = more uncertain), as LM-Polygraph returns it.

    Matches `estimators/semantic_density.py`, class `SemanticDensity` (Qiu & Miikkulainen 2024,
    arXiv:2405.13845), which returns -SD; SD in (0, 1] is the paper's confidence:

      SD = (q_g + sum_{j unique} q_j K_j) / (q_g + sum_{j unique} q_j),
      q = p^(1/length) = exp(log p / length)   (length-normalised sequence probability),
      K_j = 1 - d_j if d_j <= 1 else 0,  d_j = p_contra(greedy, j) + p_neutral(greedy, j) / 2,

    the greedy answer counting with kernel 1. "unique": LM-Polygraph keeps the first sample of
    each distinct text (`np.unique(sample_texts, return_index=True)`); pass `sample_ids` (equal id
    = same text) for that, or None to keep every sample. Their NLI inputs are the forward
    (greedy -> sample) contradiction / neutral probabilities, of the answers concatenated with the
    question (`concat_input=True`, the default) or alone ("SemanticDensityOutput"); pass either.
    Deviation: the weights are normalised in log space (no underflow of q). All samples equivalent
    to the greedy answer (d = 0) give -1.

    Args:
      greedy_log_prob: [n] log-likelihood of the greedy answer (sum of its token log-probs).
      greedy_length: [n] its number of tokens (> 0).
      sample_log_probs: [n, k] log-likelihood of each sample.
      sample_lengths: [n, k] number of tokens of each sample (> 0).
      contra, neutral: [n, k] NLI probabilities in [0, 1] (greedy -> sample).
      sample_ids: optional [n, k] integers, equal for identical sample texts.
    Returns:
      [n] float in [-1, 0).
    """
    g_lp = _floats(greedy_log_prob, "greedy_log_prob", 1, "[n]", validate)
    g_len = _in_range(greedy_length, "greedy_length", 1, "[n]", validate, 0.0, np.inf)
    s_lp = _floats(sample_log_probs, "sample_log_probs", 2, "[n, k]", validate)
    s_len = _in_range(sample_lengths, "sample_lengths", 2, "[n, k]", validate, 0.0, np.inf)
    c = _in_range(contra, "contra", 2, "[n, k]", validate, 0.0, 1.0)
    nu = _in_range(neutral, "neutral", 2, "[n, k]", validate, 0.0, 1.0)
    if validate:
        V.check_same_shape(g_lp, g_len, "greedy_log_prob", "greedy_length")
        for x, name in ((s_len, "sample_lengths"), (c, "contra"), (nu, "neutral")):
            V.check_same_shape(s_lp, x, "sample_log_probs", name)
        V.check_leading(g_lp, s_lp, "greedy_log_prob", "sample_log_probs")
        for x, name in ((g_len, "greedy_length"), (s_len, "sample_lengths")):
            if V.is_concrete(x) and not bool(np.all(np.asarray(x) > 0)):
                raise ValueError(f"{name}: has zero lengths; expected token counts > 0")
        for x, name in ((g_lp, "greedy_log_prob"), (s_lp, "sample_log_probs")):
            V.check_range(x, name, -np.inf, 0.0, what="log-probabilities (<= 0)")
    if sample_ids is None:
        keep = jnp.ones(s_lp.shape, bool)
    else:
        ids = _ids(sample_ids, "sample_ids", 2, "[n, k] integer text ids", validate)
        if validate:
            V.check_same_shape(s_lp, ids, "sample_log_probs", "sample_ids")
        keep = _first_occurrence(ids)
    return _semantic_density(g_lp, g_len, s_lp, s_len, c, nu, keep)


_COCOA = ("msp", "ppl", "mte")


@functools.partial(jax.jit, static_argnames=("variant",))
def _cocoa(scores, sim, mask, variant):
    x = jnp.where(mask, scores, 0.0)
    total = jnp.sum(x, axis=-1)
    count = jnp.maximum(jnp.sum(mask, axis=-1), 1).astype(x.dtype)
    if variant == "msp":
        u = -total
    elif variant == "ppl":
        u = -total / count
    else:
        u = total / count
    return u * jnp.mean(1.0 - sim, axis=-1)


def cocoa(
    token_scores: Any,
    greedy_similarity: Any,
    mask: Any = None,
    *,
    variant: str = "msp",
    validate: bool = True,
) -> jax.Array:
    """CoCoA: confidence x consistency (uncertainty: higher = more uncertain), as LM-Polygraph.

    Matches `estimators/cocoa.py`, classes `CocoaMSP`, `CocoaPPL`, `CocoaMTE` (Vashurin et al.
    2025, arXiv:2502.04964): U = u(greedy answer) * (1/k) sum_j (1 - s_j), s_j the cross-encoder
    similarity between the greedy answer and sample j (`greedy_sentence_similarity`, the mean of
    both directions; every sample counts, duplicates included), and u by `variant`:

    * "msp": u = -sum_t log p(y_t) (token_scores = greedy token log-probs);
    * "ppl": u = -(1/T) sum_t log p(y_t) (log-perplexity, as their code, not exp of it);
    * "mte": u = (1/T) sum_t H_t (token_scores = per-token entropies of the greedy answer).

    An answer without tokens gives u = 0 (theirs: NaN for "ppl"/"mte").

    Args:
      token_scores: [n, T] greedy token log-probs ("msp", "ppl") or token entropies ("mte").
      greedy_similarity: [n, k] similarities in [0, 1] of the greedy answer to each sample.
      mask: optional [n, T] bool, the answer's tokens.
      variant: "msp", "ppl" or "mte".
    Returns:
      [n] float >= 0.
    """
    V.check_choice(variant, "variant", _COCOA)
    x = V.checked_array(token_scores, "token_scores", 2, "[n, T]", validate)
    m = V.as_mask(mask, x.shape)
    sim = _in_range(greedy_similarity, "greedy_similarity", 2, "[n, k]", validate, 0.0, 1.0)
    if validate:
        V.check_leading(x, sim, "token_scores", "greedy_similarity")
        if variant == "mte":
            V.check_range(x, "token_scores", 0.0, np.inf, m, what="token entropies (>= 0)")
        else:
            V.check_range(x, "token_scores", -np.inf, 0.0, m, what="log-probabilities (<= 0)")
    return _cocoa(V.as_float(x), sim, m, variant)


# ---------------------------------------------------------------------------------------------
# Text-based: lexical similarity (ROUGE) and the Jaccard similarity matrix (host, numpy)
# ---------------------------------------------------------------------------------------------

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")
_ROUGE_N = re.compile(r"rouge([1-9])$")

Stemmer = Any  # a function str -> str, or an object with .stem (e.g. nltk PorterStemmer())


def rouge_tokenize(text: str, stemmer: Stemmer | None = None) -> list[str]:
    """The `rouge_score` package's default tokenisation (`tokenize.tokenize`).

    Lowercase, every run of characters outside [a-z0-9] becomes a space, split on whitespace;
    with a stemmer, tokens longer than 3 characters are stemmed; empty tokens are dropped.
    (Non-ASCII letters are separators, as in rouge_score.)
    """
    if not isinstance(text, str):
        raise ValueError(f"text: got {type(text).__name__}; expected a string")
    tokens = re.split(r"\s+", _NON_ALNUM.sub(" ", text.lower()))
    if stemmer is not None:
        stem = stemmer.stem if hasattr(stemmer, "stem") else stemmer
        tokens = [stem(x) if len(x) > 3 else x for x in tokens]
    return [x for x in tokens if _VALID_TOKEN.match(x)]


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _fmeasure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _rouge_tokens(target: list[str], prediction: list[str], metric: str) -> float:
    if metric == "rougeL":
        if not target or not prediction:
            return 0.0
        lcs = _lcs_length(target, prediction)
        return _fmeasure(lcs / len(prediction), lcs / len(target))
    n = int(_ROUGE_N.match(metric).group(1))
    t = Counter(tuple(target[i : i + n]) for i in range(len(target) - n + 1))
    p = Counter(tuple(prediction[i : i + n]) for i in range(len(prediction) - n + 1))
    overlap = sum(min(c, p[g]) for g, c in t.items())
    return _fmeasure(overlap / max(sum(p.values()), 1), overlap / max(sum(t.values()), 1))


def _check_metric(metric: str) -> str:
    if metric != "rougeL" and not (isinstance(metric, str) and _ROUGE_N.match(metric)):
        raise ValueError(
            f"metric: expected 'rougeL' or 'rouge1'..'rouge9', got {metric!r} (LM-Polygraph's "
            "'BLEU' option is not implemented)"
        )
    return metric


def rouge(
    target: str, prediction: str, *, metric: str = "rougeL", stemmer: Stemmer | None = None
) -> float:
    """ROUGE F-measure of `prediction` against `target`, as `rouge_score.RougeScorer`.

    "rougeL": LCS of the token sequences, P = LCS / |prediction|, R = LCS / |target|,
    F = 2PR / (P + R) (0 when either text has no tokens). "rougeN": clipped n-gram overlap, P and
    R over max(count, 1). Tokens as `rouge_tokenize`. Symmetric in its arguments for rougeL.
    """
    _check_metric(metric)
    return _rouge_tokens(
        rouge_tokenize(target, stemmer), rouge_tokenize(prediction, stemmer), metric
    )


def _text_groups(texts: Any) -> list[list[str]]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError("texts: expected a non-empty sequence [n] of sequences of sample strings")
    out = []
    for i, group in enumerate(texts):
        if isinstance(group, str) or not isinstance(group, Sequence) or len(group) == 0:
            raise ValueError(f"texts[{i}]: expected a non-empty sequence of strings (the samples)")
        if not all(isinstance(t, str) for t in group):
            raise ValueError(f"texts[{i}]: expected strings only")
        out.append(list(group))
    return out


def lexical_similarity(
    texts: Sequence[Sequence[str]], *, metric: str = "rougeL", stemmer: Stemmer | None = None
) -> np.ndarray:
    """Minus the mean pairwise ROUGE of the samples (uncertainty: higher = more uncertain).

    Matches `estimators/lexical_similarity.py`, class `LexicalSimilarity` (Fomicheva et al. 2020,
    via Kuhn et al. 2023), default metric "rougeL": U = -(2 / (k (k - 1))) sum_{i < j}
    ROUGE_F(texts_i, texts_j) (see `rouge`; rouge_score's argument order (target, prediction) =
    (texts_i, texts_j), which matters only for rougeN). Deviations: LM-Polygraph builds its scorer
    with `use_stemmer=True` (nltk's Porter stemmer); the default here is no stemming
    (rouge_score's own default; no nltk dependency): pass `stemmer=nltk.stem.porter.PorterStemmer()`
    to reproduce their numbers exactly. A question with one sample gives -1 (theirs: the mean of
    no pairs, NaN). The "BLEU" metric is not implemented.

    Args:
      texts: [n] sequences of k_i >= 1 sample strings (k may differ between questions).
      metric: "rougeL" or "rouge1".."rouge9".
      stemmer: optional stemmer (a function, or an object with `.stem`).
    Returns:
      [n] float in [-1, 0].
    """
    _check_metric(metric)
    out = []
    for group in _text_groups(texts):
        toks = [rouge_tokenize(t, stemmer) for t in group]
        sims = [
            _rouge_tokens(toks[i], toks[j], metric)
            for i in range(len(toks))
            for j in range(i + 1, len(toks))
        ]
        out.append(-float(np.mean(sims)) if sims else -1.0)
    return np.asarray(out)


def jaccard_similarity(texts: Sequence[Sequence[str]]) -> np.ndarray:
    """Jaccard similarity matrices of the samples, as LM-Polygraph's "Jaccard_score" option.

    Matches `estimators/common.py`, `_compute_Jaccard_score` (used by EigValLaplacian, DegMat,
    Eccentricity with `similarity_score="Jaccard_score"`): sets of lowercased whitespace tokens,
    |A & B| / |A | B| (0 when both are empty), diagonal 1.

    Args:
      texts: [n] sequences of k sample strings (the same k for every question).
    Returns:
      [n, k, k] float64, symmetric.
    """
    groups = _text_groups(texts)
    k = len(groups[0])
    if any(len(g) != k for g in groups):
        raise ValueError(
            f"texts: questions have different numbers of samples "
            f"({sorted({len(g) for g in groups})}); expected the same k for every question"
        )
    out = np.tile(np.eye(k), (len(groups), 1, 1))
    for b, group in enumerate(groups):
        sets = [set(t.lower().split()) for t in group]
        for i in range(k):
            for j in range(i + 1, k):
                union = len(sets[i] | sets[j])
                out[b, i, j] = out[b, j, i] = len(sets[i] & sets[j]) / union if union else 0.0
    return out
