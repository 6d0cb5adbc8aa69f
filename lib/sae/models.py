"""Sparse autoencoders as pure functions on a parameter dict: ReLU + L1, TopK, JumpReLU.

The model (Bricken et al. 2023; Gao et al. 2024; Rajamanoharan et al. 2024), for an input row x
[d_in] in the *normalised* space x_n = s * x (s = `params["stats"]["input_scale"]`, chosen at fit
time so that E ||x_n||^2 = d_in, as SAELens and Gao et al. do):

    pre   = W_enc (x_n - b_dec) + b_enc                        [num_latents]
    z     = act(pre)                                           [num_latents]
    x_hat = (z @ W_dec + b_dec) / s                            [d_in]

with act one of

    relu      z = max(pre, 0)                      (trained with an L1 penalty on z)
    topk      z = ReLU of the k largest entries of pre, 0 elsewhere   (Gao et al.)
    jumprelu  z = pre * H(pre - theta)             (a learned threshold theta >= 0 per latent)

Parameters (a plain dict, every leaf a float32 array; `num_latents` = L):

    encoder    [L, d_in]   rows of W_enc (a latent's encoder vector; the layout of W_dec)
    b_enc      [L]
    decoder    [L, d_in]   rows of W_dec, unit L2 norm (the "reasoning vectors" of RISE)
    b_dec      [d_in]      pre-encoder centring and output bias (normalised space)
    threshold  [L]         jumprelu only: theta, kept >= 0 (SAELens' direct parametrisation)
    stats      {"input_scale": [] s, "tokens_since_active": [L]}: a non-trained collection
               (see `introspect.sae.training` for why it lives in the parameter tree).

**TopK decodes sparsely.** A TopK code is (values [n, k], indices [n, k]); the reconstruction is
the gather of k decoder rows and a weighted sum (`decode_sparse`), never the dense
[n, L] x [L, d_in] product. In training the dense pre-activations [n, L] (the one dense
product left: top-k needs every latent's score) only *select* the latents, under stop_gradient;
the k values read from them carry the gradient of the k-sparse expression (`_select`), so the
backward pass is sparse too: the encoder and decoder gradients are scatter-adds of n * k rows
and the input gradients gathers of k rows, instead of four dense [n, L]-sized products (dense
TopK: 5 products of n * L * d_in multiply-adds per step; sparse: 1). The dense path
(`SAESpec.decode = "dense"`) is kept for ReLU and JumpReLU, and for TopK as the reference the
tests compare the sparse path with.

**Unit-norm decoder rows.** The training forward passes the decoder through `project_rows`, an
identity whose backward pass removes from each row's gradient its component parallel to the row
(Gao et al., SAELens); after every optimiser step the rows are renormalised to unit norm
(`constrain`). The two together keep the rows exactly unit norm without a parametrisation.

**JumpReLU** (Rajamanoharan et al. 2024, "Jumping Ahead"): the Heaviside step H has the
rectangle-kernel pseudo-derivative of bandwidth epsilon with respect to theta,
    d/dtheta JumpReLU(pre; theta) := -(theta / eps) K((pre - theta) / eps),
    d/dtheta H(pre - theta)      := -(1 / eps) K((pre - theta) / eps),
K(u) = 1{|u| < 1/2}; no pseudo-gradient reaches `pre` through H (DeepMind's choice), and the
JumpReLU output passes the ordinary gradient H(pre - theta) to `pre`. The sparsity penalty is L0:
sum_j H(pre_j - theta_j) per row (`outputs["l0_ste"]`).

**AuxK** (Gao et al. 2024, appendix A.2): a latent is dead when it was not active for
`dead_tokens` training tokens. With e = x_n - x_hat_n (no gradient), the top-`aux_k`
pre-activations among the dead latents (no ReLU, as in EleutherAI's sae and SAELens) reconstruct
e without b_dec: e_hat = z_aux @ W_dec; the per-row term is ||e - e_hat||^2, scaled by
min(num_dead / aux_k, 1) (fewer dead latents than aux_k use them all). It is computed only when
some latent is dead (`lax.cond`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks

KINDS = ("topk", "jumprelu", "relu")
DECODES = ("auto", "sparse", "dense")


@flax.struct.dataclass
class SAESpec:
    """The static description of an SAE (hashable: a jit static argument).

    kind: "topk", "jumprelu" or "relu"; k: active latents per row (topk); bandwidth: the
    JumpReLU pseudo-derivative's epsilon; aux_k: dead latents of the AuxK loss (0 = off);
    dead_tokens: tokens without activity after which a latent counts as dead; decode: "sparse"
    (topk only) or "dense".
    """

    kind: str = flax.struct.field(pytree_node=False, default="topk")
    k: int = flax.struct.field(pytree_node=False, default=32)
    bandwidth: float = flax.struct.field(pytree_node=False, default=0.05)
    aux_k: int = flax.struct.field(pytree_node=False, default=0)
    dead_tokens: float = flax.struct.field(pytree_node=False, default=1e6)
    decode: str = flax.struct.field(pytree_node=False, default="sparse")

    @property
    def sparse(self) -> bool:
        return self.kind == "topk" and self.decode == "sparse"


def spec_from_config(config, *, name: str = "sae") -> SAESpec:
    """The SAESpec of an SAE config (see `introspect.sae.default_config`); ValueError on a bad
    kind, k or decode."""
    kind = config.get("kind", "topk")
    if kind not in KINDS:
        raise ValueError(f"{name}.kind: unknown SAE kind {kind!r}; expected one of {KINDS}")
    k = config.get("k", 32)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"{name}.k: expected an integer >= 1 (active latents per row), got {k!r}")
    num_latents = config.get("num_latents", None)
    if kind == "topk" and num_latents is not None and k > num_latents:
        raise ValueError(
            f"{name}.k={k} is larger than {name}.num_latents={num_latents}; expected "
            "1 <= k <= num_latents"
        )
    decode = config.get("decode", "auto")
    if decode not in DECODES:
        raise ValueError(f"{name}.decode: expected one of {DECODES}, got {decode!r}")
    if decode == "auto":
        decode = "sparse" if kind == "topk" else "dense"
    if decode == "sparse" and kind != "topk":
        raise ValueError(
            f"{name}.decode='sparse' needs kind='topk' (a {kind} code has no fixed number of "
            "active latents); use 'dense' or 'auto'"
        )
    return SAESpec(
        kind=kind,
        k=int(k),
        bandwidth=float(config.get("bandwidth", 0.05)),
        aux_k=int(config.get("aux_k", 0)),
        dead_tokens=float(config.get("dead_tokens", 1e6)),
        decode=decode,
    )


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


def init_params(
    rng: jax.Array,
    *,
    d_in: int,
    num_latents: int,
    kind: str = "topk",
    input_scale: float = 1.0,
    b_dec: Any = None,
    threshold: float = 0.01,
) -> dict:
    """Fresh parameters: random unit decoder rows, encoder = decoder (W_enc = W_dec^T, Gao et
    al.), b_enc = 0, b_dec = `b_dec` (the normalised data mean at fit time) or 0.

    Args:
      rng: PRNG key.
      d_in, num_latents: input width and dictionary size L.
      kind: "topk", "jumprelu" (adds "threshold" [L] = `threshold`) or "relu".
      input_scale: s of x_n = s * x.
      b_dec: [d_in] initial decoder bias in the normalised space, or None for zeros.
      threshold: initial JumpReLU threshold.
    Returns:
      The parameter dict (module docstring).
    """
    w = jax.random.normal(rng, (num_latents, d_in), jnp.float32)
    w = normalize_rows(w)
    params = {
        "encoder": w,
        "b_enc": jnp.zeros((num_latents,), jnp.float32),
        "decoder": w,
        "b_dec": (
            jnp.zeros((d_in,), jnp.float32) if b_dec is None else jnp.asarray(b_dec, jnp.float32)
        ),
        "stats": {
            "input_scale": jnp.asarray(input_scale, jnp.float32),
            "tokens_since_active": jnp.zeros((num_latents,), jnp.float32),
        },
    }
    if kind == "jumprelu":
        params["threshold"] = jnp.full((num_latents,), threshold, jnp.float32)
    return params


def normalize_rows(w: jax.Array, eps: float = 1e-12) -> jax.Array:
    """[L, d] -> the rows scaled to unit L2 norm (a zero row stays zero)."""
    norm = jnp.sqrt(jnp.sum(w * w, axis=-1, keepdims=True))
    return w / jnp.maximum(norm, eps)


@jax.custom_vjp
def project_rows(w: jax.Array) -> jax.Array:
    """Identity on [L, d]; its gradient has the component parallel to each row removed."""
    return w


def _project_fwd(w):
    return w, w


def _project_bwd(w, g):
    u = normalize_rows(w)
    return (g - jnp.sum(g * u, axis=-1, keepdims=True) * u,)


project_rows.defvjp(_project_fwd, _project_bwd)


def constrain(params: dict) -> dict:
    """After an optimiser step: unit decoder rows, threshold >= 0 (other leaves unchanged)."""
    out = dict(params)
    out["decoder"] = normalize_rows(params["decoder"])
    if "threshold" in params:
        out["threshold"] = jnp.maximum(params["threshold"], 0.0)
    return out


def input_scale(params: Mapping) -> jax.Array:
    """s of x_n = s * x (1 when the parameters have no "stats")."""
    stats = params.get("stats")
    if stats is None or "input_scale" not in stats:
        return jnp.ones((), jnp.float32)
    return jax.lax.stop_gradient(jnp.asarray(stats["input_scale"], jnp.float32))


# ----------------------------------------------------------------------------------------------
# Activations with straight-through estimators (JumpReLU)
# ----------------------------------------------------------------------------------------------


def _rectangle(u: jax.Array) -> jax.Array:
    return ((u > -0.5) & (u < 0.5)).astype(u.dtype)


def _sum_to(g: jax.Array, shape) -> jax.Array:
    """Sum the leading (broadcast) axes of g [..., L] down to `shape` [L]."""
    return jnp.sum(g, axis=tuple(range(g.ndim - len(shape))))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def jumprelu(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """pre * H(pre - threshold); pre [..., L], threshold [L]. Gradient to threshold: the
    rectangle-kernel pseudo-derivative -(threshold / bandwidth) K((pre - threshold) / bandwidth)."""
    return pre * (pre > threshold).astype(pre.dtype)


def _jumprelu_fwd(pre, threshold, bandwidth):
    return jumprelu(pre, threshold, bandwidth), (pre, threshold)


def _jumprelu_bwd(bandwidth, res, g):
    pre, threshold = res
    gate = (pre > threshold).astype(pre.dtype)
    kernel = _rectangle((pre - threshold) / bandwidth)
    d_threshold = _sum_to(-(threshold / bandwidth) * kernel * g, threshold.shape)
    return g * gate, d_threshold


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def step_ste(pre: jax.Array, threshold: jax.Array, bandwidth: float) -> jax.Array:
    """H(pre - threshold) in {0, 1}; pre [..., L], threshold [L]. Gradient: none to pre, the
    pseudo-derivative -(1 / bandwidth) K((pre - threshold) / bandwidth) to threshold."""
    return (pre > threshold).astype(pre.dtype)


def _step_fwd(pre, threshold, bandwidth):
    return step_ste(pre, threshold, bandwidth), (pre, threshold)


def _step_bwd(bandwidth, res, g):
    pre, threshold = res
    kernel = _rectangle((pre - threshold) / bandwidth)
    return jnp.zeros_like(pre), _sum_to(-(1.0 / bandwidth) * kernel * g, threshold.shape)


step_ste.defvjp(_step_fwd, _step_bwd)


# ----------------------------------------------------------------------------------------------
# Sparse building blocks: gathers of k rows instead of dense [n, L] products
# ----------------------------------------------------------------------------------------------


# The k selected rows are visited one column j at a time (`lax.fori_loop`): each iteration
# gathers n rows [n, d_in] and fuses the multiply-add, so no [n, k, d_in] block is ever built,
# and the weight gradient is a scatter-add of n rows per iteration (XLA's CPU scatter of a
# materialised [n * k, d_in] update, or of the unrolled loop, is several times slower). Indices
# come from `top_k` and are in bounds ("promise_in_bounds" drops the per-row checks).
_IN_BOUNDS = "promise_in_bounds"


def _column(a: jax.Array, j) -> jax.Array:
    """a[:, j] of a [n, k] array (j traced)."""
    return jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)


def _rows_scatter(coef: jax.Array, indices: jax.Array, rows: jax.Array, num: int) -> jax.Array:
    """out[l] = sum_{n, j: indices[n, j] = l} coef[n, j] rows[n]; coef, indices [n, k],
    rows [n, d] -> [num, d]."""

    def body(j, out):
        return out.at[_column(indices, j)].add(_column(coef, j)[:, None] * rows, mode=_IN_BOUNDS)

    return jax.lax.fori_loop(0, indices.shape[1], body, jnp.zeros((num, rows.shape[1]), rows.dtype))


def _rows_sum(values: jax.Array, indices: jax.Array, w: jax.Array) -> jax.Array:
    """out[n] = sum_j values[n, j] w[indices[n, j]] -> [n, d]."""

    def body(j, acc):
        rows = w.at[_column(indices, j)].get(mode=_IN_BOUNDS)
        return acc + _column(values, j)[:, None] * rows

    n, d = values.shape[0], w.shape[1]
    return jax.lax.fori_loop(0, indices.shape[1], body, jnp.zeros((n, d), w.dtype))


def _rows_dot(x: jax.Array, w: jax.Array, indices: jax.Array) -> jax.Array:
    """out[n, j] = <x[n], w[indices[n, j]]> -> [n, k]."""
    cols = indices.T  # [k, n]: iteration j writes one contiguous row

    def body(j, out):
        rows = w.at[cols[j]].get(mode=_IN_BOUNDS)
        return out.at[j].set(jnp.sum(x * rows, axis=-1))

    out = jnp.zeros(cols.shape, x.dtype)
    return jax.lax.fori_loop(0, cols.shape[0], body, out).T


@jax.custom_vjp
def _gather_sum(values: jax.Array, indices: jax.Array, w: jax.Array) -> jax.Array:
    """out[n] = sum_j values[n, j] w[indices[n, j]]; values, indices [n, k], w [L, d] -> [n, d].

    Backward: d values[n, j] = <g[n], w[indices[n, j]]> (gathers), d w = scatter-add of
    values[n, j] g[n].
    """
    return _rows_sum(values, indices, w)


def _gather_sum_fwd(values, indices, w):
    return _rows_sum(values, indices, w), (values, indices, w)


def _gather_sum_bwd(res, g):
    values, indices, w = res
    return _rows_dot(g, w, indices), None, _rows_scatter(values, indices, g, w.shape[0])


_gather_sum.defvjp(_gather_sum_fwd, _gather_sum_bwd)


@jax.custom_vjp
def _select(
    pre: jax.Array, centred: jax.Array, encoder: jax.Array, b_enc: jax.Array, indices: jax.Array
) -> jax.Array:
    """The selected pre-activations pre[n, indices[n, j]] = <centred[n], encoder[l]> + b_enc[l]
    [n, k], read from the dense pre [n, L] (no gradient: it only selects) with the gradient of
    the k-sparse expression: d centred = sum_j g[:, j] encoder[indices[:, j]] (gathers),
    d encoder and d b_enc = scatter-adds of the k selected rows."""
    return jnp.take_along_axis(pre, indices, axis=-1)


def _select_fwd(pre, centred, encoder, b_enc, indices):
    return jnp.take_along_axis(pre, indices, axis=-1), (centred, encoder, indices)


def _select_bwd(res, g):
    centred, encoder, indices = res
    num = encoder.shape[0]
    d_b_enc = jnp.zeros((num,), g.dtype).at[indices.reshape(-1)].add(g.reshape(-1))
    d_centred = _rows_sum(g, indices, encoder)
    return None, d_centred, _rows_scatter(g, indices, centred, num), d_b_enc, None


_select.defvjp(_select_fwd, _select_bwd)


def _densify(values: jax.Array, indices: jax.Array, num_latents: int) -> jax.Array:
    """(values, indices) [n, k] -> dense codes [n, L] (zeros elsewhere)."""
    n = values.shape[0]
    rows = jnp.arange(n)[:, None]
    return jnp.zeros((n, num_latents), values.dtype).at[rows, indices].set(values)


# ----------------------------------------------------------------------------------------------
# Forward passes (normalised space)
# ----------------------------------------------------------------------------------------------


def pre_activations(params: Mapping, x_n: jax.Array) -> jax.Array:
    """x_n [n, d_in] (normalised) -> pre [n, L] = (x_n - b_dec) W_enc^T + b_enc."""
    return (x_n - params["b_dec"]) @ params["encoder"].T + params["b_enc"]


def _topk_select(pre: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    values, indices = jax.lax.top_k(pre, k)
    return jax.nn.relu(values), indices


def codes_dense(params: Mapping, x_n: jax.Array, spec: SAESpec) -> jax.Array:
    """Dense codes z [n, L] of normalised inputs x_n [n, d_in]."""
    pre = pre_activations(params, x_n)
    if spec.kind == "relu":
        return jax.nn.relu(pre)
    if spec.kind == "jumprelu":
        return jumprelu(pre, params["threshold"], spec.bandwidth)
    values, indices = _topk_select(pre, spec.k)
    return _densify(values, indices, pre.shape[-1])


def forward(
    params: Mapping, x: jax.Array, *, spec: SAESpec, train: bool = False
) -> dict[str, jax.Array]:
    """Everything the SAE losses and metrics read, for raw inputs x [n, d_in].

    Args:
      params: SAE parameters.
      x: [n, d_in] raw inputs (the forward multiplies them by the input scale).
      spec: the SAESpec.
      train: pass the decoder through `project_rows` (the training step) and compute AuxK.
    Returns:
      {"input": [n, d_in] x_n, "reconstruction": [n, d_in] x_hat_n (normalised space),
       "sq_error": [n] ||x_n - x_hat_n||^2, "active": [n] active latents per row,
       "fired": [L] bool, latent active in some row, "l1": [n] sum_j z_j (relu),
       "l0_ste": [n] sum_j H(pre_j - theta_j) with the STE (jumprelu),
       "aux_error": [n] scaled AuxK term (topk; zeros when nothing is dead or aux_k = 0),
       "dead_fraction": [] fraction of latents dead by the training counter}.
    """
    x_n = jnp.asarray(x, jnp.float32) * input_scale(params)
    decoder = project_rows(params["decoder"]) if train else params["decoder"]
    num_latents = decoder.shape[0]
    n = x_n.shape[0]
    out: dict[str, jax.Array] = {"input": x_n}
    centred = x_n - params["b_dec"]
    pre = centred @ params["encoder"].T + params["b_enc"]
    if spec.sparse:
        # The dense pre-activations only select the k latents: no gradient flows back through
        # the dense product. `_select` reads the k values from it and gives them the gradient of
        # the k-sparse expression, so the backward pass is k-sparse.
        pre = jax.lax.stop_gradient(pre)
        _, indices = jax.lax.top_k(pre, spec.k)
        values = jax.nn.relu(_select(pre, centred, params["encoder"], params["b_enc"], indices))
        recon = _gather_sum(values, indices, decoder) + params["b_dec"]
        active = values > 0
        out["active"] = jnp.sum(active, axis=-1).astype(jnp.float32)
        counts = (
            jnp.zeros((num_latents,), jnp.float32)
            .at[indices.reshape(-1)]
            .add(active.reshape(-1).astype(jnp.float32))
        )
        out["fired"] = counts > 0
    else:
        if spec.kind == "relu":
            z = jax.nn.relu(pre)
            out["l1"] = jnp.sum(z, axis=-1)
        elif spec.kind == "jumprelu":
            threshold = params["threshold"]
            z = jumprelu(pre, threshold, spec.bandwidth)
            out["l0_ste"] = jnp.sum(step_ste(pre, threshold, spec.bandwidth), axis=-1)
        else:
            values, indices = jax.lax.top_k(pre, spec.k)
            z = _densify(jax.nn.relu(values), indices, num_latents)
        recon = z @ decoder + params["b_dec"]
        active = z > 0
        out["active"] = jnp.sum(active, axis=-1).astype(jnp.float32)
        out["fired"] = jnp.any(active, axis=0)

    out["reconstruction"] = recon
    out["sq_error"] = jnp.sum(jnp.square(x_n - recon), axis=-1)

    since = params.get("stats", {}).get("tokens_since_active")
    if since is not None:
        dead = jax.lax.stop_gradient(since) >= spec.dead_tokens
        out["dead_fraction"] = jnp.mean(dead.astype(jnp.float32))
    else:
        dead = jnp.zeros((num_latents,), bool)
        out["dead_fraction"] = jnp.zeros((), jnp.float32)

    if spec.kind == "topk" and train and spec.aux_k > 0:
        aux_k = min(spec.aux_k, num_latents)
        residual = jax.lax.stop_gradient(x_n - recon)

        def aux(operands):
            pre, centred, decoder, encoder, b_enc = operands
            masked = jnp.where(dead, jax.lax.stop_gradient(pre), -jnp.inf)
            _, idx = jax.lax.top_k(masked, aux_k)
            keep = dead[idx].astype(jnp.float32)  # fewer dead than aux_k: the rest drop out
            if spec.sparse:
                vals = _select(pre, centred, encoder, b_enc, idx) * keep
                e_hat = _gather_sum(vals, idx, decoder)
            else:
                vals = jnp.take_along_axis(pre, idx, axis=-1) * keep
                e_hat = _densify(vals, idx, num_latents) @ decoder
            num_dead = jnp.sum(dead.astype(jnp.float32))
            scale = jnp.minimum(num_dead / aux_k, 1.0)
            return scale * jnp.sum(jnp.square(residual - e_hat), axis=-1)

        operands = (pre, centred, decoder, params["encoder"], params["b_enc"])
        out["aux_error"] = jax.lax.cond(
            jnp.any(dead), aux, lambda _: jnp.zeros((n,), jnp.float32), operands
        )
    else:
        out["aux_error"] = jnp.zeros((n,), jnp.float32)
    return out


# ----------------------------------------------------------------------------------------------
# Public encode / decode (raw input space), validated
# ----------------------------------------------------------------------------------------------


def check_params(params: Any, spec: SAESpec, *, name: str = "params") -> tuple[int, int]:
    """(num_latents, d_in) of SAE parameters; ValueError if a leaf is missing or mis-shaped."""
    if not isinstance(params, Mapping):
        raise ValueError(f"{name}: expected the SAE parameter dict, got {type(params).__name__}")
    need = ("encoder", "b_enc", "decoder", "b_dec") + (
        ("threshold",) if spec.kind == "jumprelu" else ()
    )
    missing = [k for k in need if k not in params]
    if missing:
        raise ValueError(
            f"{name}: missing {missing} for a {spec.kind} SAE; expected keys {list(need)}"
        )
    dec = np.shape(params["decoder"])
    if len(dec) != 2:
        raise ValueError(f"{name}['decoder']: has shape {dec}; expected [num_latents, d_in]")
    num_latents, d_in = dec
    shapes = {
        "encoder": (num_latents, d_in),
        "b_enc": (num_latents,),
        "b_dec": (d_in,),
        "threshold": (num_latents,),
    }
    for key, shape in shapes.items():
        if key in need and tuple(np.shape(params[key])) != shape:
            raise ValueError(
                f"{name}[{key!r}]: has shape {tuple(np.shape(params[key]))}; expected {shape} "
                f"(num_latents={num_latents}, d_in={d_in} from the decoder)"
            )
    if spec.kind == "topk" and spec.k > num_latents:
        raise ValueError(
            f"k={spec.k} is larger than the SAE's num_latents={num_latents}; expected "
            "1 <= k <= num_latents"
        )
    return int(num_latents), int(d_in)


def check_inputs(
    x: Any, width: int | None, *, name: str = "x", what: str = "d_in"
) -> jax.Array | np.ndarray:
    """x as a float array [n, width]; ValueError if not 2-D, empty, the wrong width or not
    finite. `what` names the width in messages ("d_in", "num_latents")."""
    arr = _checks.as_array(x, name)
    _checks.check_rank(arr, name, 2, f"[n, {what}] (one row per vector)")
    _checks.check_not_empty(arr, name)
    if width is not None and arr.shape[1] != width:
        raise ValueError(
            f"{name}: has {arr.shape[1]} features per row (shape {tuple(arr.shape)}); the SAE "
            f"expects {what}={width}"
        )
    arr = _checks.as_float(arr)
    _checks.check_finite(arr, name)
    return arr


@functools.partial(jax.jit, static_argnames=("spec",))
def _encode(params, x, spec):
    return codes_dense(params, x * input_scale(params), spec)


@functools.partial(jax.jit, static_argnames=("k",))
def _encode_topk(params, x, k):
    pre = pre_activations(params, x * input_scale(params))
    return _topk_select(pre, k)


@functools.partial(jax.jit, static_argnames=("spec", "k"))
def _encode_topk_of_codes(params, x, spec, k):
    values, indices = jax.lax.top_k(_encode(params, x, spec), k)
    return values, indices


@jax.jit
def _decode(params, codes):
    return (codes @ params["decoder"] + params["b_dec"]) / input_scale(params)


@jax.jit
def _decode_sparse(params, values, indices):
    return (_gather_sum(values, indices, params["decoder"]) + params["b_dec"]) / input_scale(params)
