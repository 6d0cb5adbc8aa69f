"""Sparse autoencoders on hidden states (RISE: reasoning behaviours as SAE directions).

    from introspect import sae
    cfg = sae.default_config()                 # kind: topk | jumprelu | relu, num_latents, k, l1
    params = sae.fit(x, cfg, workdir=DIR)       # x [n, d_in]; the one training loop, resumable
    codes = sae.encode(params, x, config=cfg)   # [n, num_latents]
    x_hat = sae.decode(params, codes, config=cfg)
    values, indices = sae.encode_topk(params, x, config=cfg)        # [n, k] each
    x_hat = sae.decode_sparse(params, values, indices, config=cfg)  # gathers k decoder rows
    sae.metrics(params, x, config=cfg)   # fvu, explained_variance, l0, dead_fraction, mse

Modules: `models` (parameters, activations with their straight-through estimators, the sparse
and dense forward passes), `objectives` (the losses registered in `introspect.losses`:
sae_topk, sae_relu_l1, sae_jumprelu, sae_mse), `training` (config, the SAE step, `fit`),
`api` (the validated public functions), `reasoning` (steps of a chain of thought, their
activations and behaviour labels).
"""

from introspect.sae import api, models, objectives, reasoning, training
from introspect.sae.api import decode, decode_sparse, encode, encode_topk, metrics
from introspect.sae.models import KINDS, SAESpec, forward, init_params, spec_from_config
from introspect.sae.reasoning import (
    BEHAVIOURS,
    Step,
    label_steps,
    latent_auroc,
    lm_loss_increase,
    split_steps,
    steering,
    step_activations,
)
from introspect.sae.training import (
    default_config,
    fit,
    loss_config,
    make_sae_step,
    make_spec,
    resolve_config,
)

__all__ = [
    "BEHAVIOURS",
    "KINDS",
    "SAESpec",
    "Step",
    "api",
    "decode",
    "decode_sparse",
    "default_config",
    "encode",
    "encode_topk",
    "fit",
    "forward",
    "init_params",
    "label_steps",
    "latent_auroc",
    "lm_loss_increase",
    "loss_config",
    "make_sae_step",
    "make_spec",
    "metrics",
    "models",
    "objectives",
    "reasoning",
    "resolve_config",
    "spec_from_config",
    "split_steps",
    "steering",
    "step_activations",
    "training",
]
