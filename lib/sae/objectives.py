"""The SAE training losses, registered by name in `introspect.losses` (the one loss contract).

The contract `loss(*, outputs, batch, **options) -> [batch]` fits an SAE: every term is a sum
over one row's features or latents, so the per-row values below, averaged by
`losses.reduce`, are the SAE objective. `outputs` is `introspect.sae.models.forward`'s dict
(normalised space, E ||x_n||^2 = d_in):

    sae_mse        ||x_n - x_hat_n||^2
    sae_topk       ||x_n - x_hat_n||^2 + aux_coef * AuxK term          (Gao et al. 2024)
    sae_relu_l1    ||x_n - x_hat_n||^2 + l1 * sum_j z_j                 (z >= 0, unit decoder rows)
    sae_jumprelu   ||x_n - x_hat_n||^2 + l0 * sum_j H(pre_j - theta_j)  (Rajamanoharan et al. 2024)

A loss of your own reads the same outputs: `@losses.register("my_sae_loss")`, then
`config.loss.name = "my_sae_loss"` in the SAE config.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

from introspect import losses


def _need(outputs: Mapping, key: str, loss: str, kind: str) -> jax.Array:
    if key not in outputs:
        raise ValueError(
            f"loss {loss!r} needs outputs[{key!r}], which only a {kind} SAE computes; "
            f"the outputs have {sorted(outputs)} (pick the loss that matches config.kind)"
        )
    return outputs[key]


@losses.register("sae_mse", outputs=("sq_error",), batch=())
def sae_mse(*, outputs, batch):
    """[n] squared reconstruction error ||x_n - x_hat_n||^2 of each row."""
    del batch
    return outputs["sq_error"]


@losses.register("sae_topk", outputs=("sq_error", "aux_error"), batch=())
def sae_topk(*, outputs, batch, aux_coef=1.0 / 32.0):
    """[n] ||x_n - x_hat_n||^2 + aux_coef * AuxK (Gao et al. use aux_coef = 1/32)."""
    del batch
    return outputs["sq_error"] + aux_coef * outputs["aux_error"]


@losses.register("sae_relu_l1", outputs=("sq_error", "l1"), batch=())
def sae_relu_l1(*, outputs, batch, l1=1.0):
    """[n] ||x_n - x_hat_n||^2 + l1 * sum_j z_j (the codes are >= 0, so sum z = ||z||_1)."""
    del batch
    return outputs["sq_error"] + l1 * _need(outputs, "l1", "sae_relu_l1", "relu")


@losses.register("sae_jumprelu", outputs=("sq_error", "l0_ste"), batch=())
def sae_jumprelu(*, outputs, batch, l0=1e-3):
    """[n] ||x_n - x_hat_n||^2 + l0 * ||z||_0, the L0 through the step function's STE."""
    del batch
    return outputs["sq_error"] + l0 * _need(outputs, "l0_ste", "sae_jumprelu", "jumprelu")


# The loss each kind trains with by default, and the config field its coefficient comes from.
DEFAULT_LOSS = {"topk": "sae_topk", "relu": "sae_relu_l1", "jumprelu": "sae_jumprelu"}
DEFAULT_OPTIONS = {"sae_topk": ("aux_coef", "aux_coef"), "sae_relu_l1": ("l1", "l1"),
                   "sae_jumprelu": ("l0", "l0")}  # fmt: skip
