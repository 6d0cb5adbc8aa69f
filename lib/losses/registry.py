"""Trainable losses by name, under one contract, and the rewards / advantage transforms by name.

The loss contract (every trainer picks its loss by `config.loss.name`):

    @losses.register("my_loss")
    def my_loss(*, outputs, batch, **options) -> jax.Array:   # [batch] per-example values
        ...

* `outputs` is what the model head returned, a dict: "logits" ([batch] binary logit or
  [batch, K]), "conf_logits", "hidden", "policy_chosen_logps", ...
* `batch` is the data dict: "label", "correct", "mask", "weight", ...
* `options` are `config.loss.options`; float coefficients arrive as float32 arrays (traced
  values of the step; ints and strings, which may select code paths, stay Python values).
* The trainer reduces the [batch] values with `reduce`: the mean over rows with `batch["mask"]`
  (all rows when absent), each row weighted by `batch["weight"]` when present.

Registered here: bce, cross_entropy, focal, brier, log, spherical, label_smoothing_ce,
tokenized_brier, dpo, vpo, clipped_policy. Rewards (`REWARDS`) and advantage transforms
(`ADVANTAGES`) keep their own keyword signatures (they are not minimised directly).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from introspect.losses import policy, preference, rewards, scoring, tokenized
from introspect.registry import Registry

__all__ = [
    "ADVANTAGES",
    "LOSSES",
    "REWARDS",
    "get_advantage",
    "get_loss",
    "get_reward",
    "objective",
    "reduce",
    "register",
    "register_advantage",
    "register_loss",
    "register_reward",
    "resolve_options",
]

LossFn = Callable[..., jax.Array]

# Metadata of a loss entry: `outputs` / `batch` name the fields it reads (documentation and
# early errors), `options` the options it accepts (derived from the signature when omitted).
LOSSES: Registry[LossFn] = Registry("loss", defaults={"outputs": ("logits",), "batch": ("label",)})
REWARDS: Registry[Callable[..., Any]] = Registry("reward")
ADVANTAGES: Registry[Callable[..., Any]] = Registry("advantage transform")


def register(name: str, fn: LossFn | None = None, *, overwrite: bool = False, **meta):
    """Registers a contract loss `fn(*, outputs, batch, **options) -> [batch]` as `name`.

    Use as a decorator, `@losses.register("my_loss")`. Metadata: `outputs=(...)`, `batch=(...)`
    (the fields it reads). Raises ValueError for a taken name (unless `overwrite`) or a function
    without keyword-only `outputs` and `batch` parameters.
    """

    def add(f: LossFn) -> LossFn:
        params = inspect.signature(f).parameters
        for arg in ("outputs", "batch"):
            if arg not in params or params[arg].kind not in (
                inspect.Parameter.KEYWORD_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
            ):
                raise ValueError(
                    f"loss {name!r}: {f.__qualname__} must take keyword arguments `outputs` and "
                    f"`batch` (def {name}(*, outputs, batch, **options) -> [batch] values); "
                    f"its signature is {inspect.signature(f)}"
                )
        return LOSSES.register(name, f, overwrite=overwrite, **meta)

    return add if fn is None else add(fn)


register_loss = register


def register_reward(name: str, fn: Callable[..., Any] | None = None, *, overwrite=False, **meta):
    """Registers a reward function (keyword arguments, [batch] rewards) as `name`."""
    return REWARDS.register(name, fn, overwrite=overwrite, **meta)


def register_advantage(name: str, fn: Callable[..., Any] | None = None, *, overwrite=False, **meta):
    """Registers an advantage / token-weight transform as `name`."""
    return ADVANTAGES.register(name, fn, overwrite=overwrite, **meta)


def get_loss(name: str) -> LossFn:
    """The contract loss registered as `name` (ValueError listing the known names otherwise)."""
    return LOSSES.get(name)


def get_reward(name: str) -> Callable[..., Any]:
    return REWARDS.get(name)


def get_advantage(name: str) -> Callable[..., Any]:
    return ADVANTAGES.get(name)


# ----------------------------------------------------------------------------------------------
# Options, reduction and the objective a trainer minimises
# ----------------------------------------------------------------------------------------------


def resolve_options(name: str, options: Mapping[str, Any] | None, *, field: str = "loss"):
    """`options` checked against loss `name`'s signature; floats become float32 arrays.

    Integers, strings and booleans (modes, signs, counts) stay Python values: they may select
    code paths. Floats (coefficients) become arrays, so they are traced values of the step.

    Returns:
      (the loss function, {option: value}).
    Raises:
      ValueError: unknown loss (listing the known ones) or an option the loss does not take
        (listing the ones it does).
    """
    fn = LOSSES.get(LOSSES.check(name, field=f"{field}.name"))
    options = dict(options or {})
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    known = [k for k in params if k not in ("outputs", "batch")]
    out = {}
    for key, value in options.items():
        if not takes_any and key not in params:
            raise ValueError(
                f"{field}.options.{key}: loss {name!r} has no option {key!r}; "
                f"its options: {', '.join(known) or '(none)'}"
            )
        if isinstance(value, float):  # coefficients: traced arrays
            out[key] = jnp.asarray(value, jnp.float32)
        elif isinstance(value, list | tuple) and any(isinstance(v, float) for v in value):
            out[key] = jnp.asarray(value, jnp.float32)
        else:
            out[key] = value
    return fn, out


def reduce(values: jax.Array, batch: Mapping[str, Any]) -> jax.Array:
    """The scalar a trainer minimises from per-example `values` [batch].

    mean over rows of `weight_i * values_i`, counting only rows with `batch["mask"]` true (all
    rows when there is no mask; `weight` defaults to 1). A batch whose mask is all false gives 0.
    """
    values = jnp.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"a loss must return per-example values [batch]; got shape {values.shape}")
    weight = batch.get("weight")
    if weight is not None:
        values = values * jnp.asarray(weight, values.dtype)
    mask = batch.get("mask")
    if mask is None:
        return jnp.mean(values)
    m = jnp.asarray(mask, values.dtype)
    return jnp.sum(values * m) / jnp.maximum(jnp.sum(m), 1)


def objective(
    forward: Callable[[Any, Mapping[str, Any], jax.Array], Mapping[str, jax.Array]],
    loss: Mapping[str, Any],
    *,
    penalty: Callable[[Any], jax.Array] | None = None,
    metrics: Callable[[Mapping[str, jax.Array], Mapping[str, Any]], Mapping] | None = None,
    field: str = "loss",
):
    """The training loop's `loss_fn(params, batch, rng) -> (scalar, aux)` for a named loss.

    Args:
      forward: (params, batch, rng) -> outputs dict (what the model head returns).
      loss: `config.loss`: {"name": registered loss, "options": {...}}.
      penalty: optional params -> scalar added to the loss (e.g. an L2 term).
      metrics: optional (outputs, batch) -> {name: scalar} logged with the loss.
      field: how the config is called in error messages.
    Returns:
      loss_fn with aux {"<name>": the reduced data loss, **metrics}.
    """
    name = loss.get("name") if isinstance(loss, Mapping) else getattr(loss, "name", None)
    opts = loss.get("options") if isinstance(loss, Mapping) else getattr(loss, "options", None)
    fn, options = resolve_options(name, opts, field=field)

    def loss_fn(params, batch, rng):
        outputs = forward(params, batch, rng)
        data_loss = reduce(fn(outputs=outputs, batch=batch, **options), batch)
        total = data_loss if penalty is None else data_loss + penalty(params)
        aux = {name: data_loss}
        if metrics is not None:
            aux.update(metrics(outputs, batch))
        return total, aux

    return loss_fn


# ----------------------------------------------------------------------------------------------
# The built-in contract losses: thin adapters over the pure functions of this package
# ----------------------------------------------------------------------------------------------


def _field(outputs: Mapping, batch: Mapping, key: str, loss: str) -> jax.Array:
    """outputs[key], else batch[key] (precomputed values, e.g. reference log-probs)."""
    if key in outputs:
        return outputs[key]
    if key in batch:
        return batch[key]
    raise ValueError(
        f"loss {loss!r} needs {key!r} in the model outputs or the batch; outputs have "
        f"{sorted(outputs)}, batch has {sorted(batch)}"
    )


def _probs(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary logits [batch] -> P(1); class logits [batch, K] -> softmax."""
    if logits.ndim == labels.ndim:
        return jax.nn.sigmoid(logits)
    return jax.nn.softmax(logits, axis=-1)


@register("bce")
def _bce(*, outputs, batch):
    """Sigmoid binary cross-entropy of the [batch] logit against `label` in [0, 1]."""
    z = jnp.asarray(outputs["logits"], jnp.float32)
    y = jnp.asarray(batch["label"], jnp.float32)
    return jnp.logaddexp(0.0, z) - y * z


@register("cross_entropy")
def _cross_entropy(*, outputs, batch):
    return scoring.cross_entropy(logits=outputs["logits"], labels=batch["label"], validate=False)


@register("label_smoothing_ce")
def _label_smoothing_ce(*, outputs, batch, smoothing=0.1):
    return scoring.label_smoothing_cross_entropy(
        logits=outputs["logits"], labels=batch["label"], smoothing=smoothing, validate=False
    )


@register("focal")
def _focal(*, outputs, batch, gamma=2.0, alpha=None):
    return scoring.focal_loss(
        logits=outputs["logits"], labels=batch["label"], gamma=gamma, alpha=alpha, validate=False
    )


@register("brier")
def _brier(*, outputs, batch):
    y = batch["label"]
    return scoring.brier_loss(probs=_probs(outputs["logits"], y), labels=y, validate=False)


@register("log")
def _log(*, outputs, batch, eps=None):
    y = batch["label"]
    return scoring.log_loss(probs=_probs(outputs["logits"], y), labels=y, eps=eps, validate=False)


@register("spherical")
def _spherical(*, outputs, batch):
    y = batch["label"]
    return scoring.spherical_loss(probs=_probs(outputs["logits"], y), labels=y, validate=False)


@register("tokenized_brier", outputs=("conf_logits",), batch=("correct",))
def _tokenized_brier(*, outputs, batch, values):
    return tokenized.tokenized_brier(
        conf_logits=outputs["conf_logits"], correct=batch["correct"], values=values, validate=False
    )


_PAIR_FIELDS = (
    "policy_chosen_logps",
    "policy_rejected_logps",
    "ref_chosen_logps",
    "ref_rejected_logps",
)


@register("dpo", outputs=_PAIR_FIELDS[:2], batch=_PAIR_FIELDS[2:])
def _dpo(*, outputs, batch, beta=0.1, label_smoothing=0.0):
    pairs = {k: _field(outputs, batch, k, "dpo") for k in _PAIR_FIELDS}
    return preference.dpo_loss(**pairs, beta=beta, label_smoothing=label_smoothing, validate=False)


@register("reward_bt", outputs=("chosen_rewards", "rejected_rewards"))
def _reward_bt(*, outputs, batch, margin=0.0):
    return preference.reward_bt_loss(
        chosen_rewards=_field(outputs, batch, "chosen_rewards", "reward_bt"),
        rejected_rewards=_field(outputs, batch, "rejected_rewards", "reward_bt"),
        margin=margin,
        validate=False,
    )


_PPO_M_FIELDS = (
    "chosen_high_rewards",
    "chosen_low_rewards",
    "rejected_high_rewards",
    "rejected_low_rewards",
)


@register("ppo_m", outputs=_PPO_M_FIELDS)
def _ppo_m(*, outputs, batch, with_pairs=False):
    out = preference.ppo_m_loss(
        **{k: _field(outputs, batch, k, "ppo_m") for k in _PPO_M_FIELDS}, validate=False
    )
    if with_pairs:  # the authors' "combined" variant: plus the plain chosen-vs-rejected term
        out = out + preference.reward_bt_loss(
            chosen_rewards=_field(outputs, batch, "chosen_rewards", "ppo_m"),
            rejected_rewards=_field(outputs, batch, "rejected_rewards", "ppo_m"),
            validate=False,
        )
    return out


@register("vpo", outputs=_PAIR_FIELDS[:2], batch=_PAIR_FIELDS[2:])
def _vpo(*, outputs, batch, beta=0.1, alpha=0.1, sign=-1, value_on="both"):
    pairs = {k: _field(outputs, batch, k, "vpo") for k in _PAIR_FIELDS}
    return preference.vpo_loss(
        **pairs, beta=beta, alpha=alpha, sign=sign, value_on=value_on, validate=False
    )


@register(
    "clipped_policy",
    outputs=("logprobs",),
    batch=("old_logprobs", "advantages", "token_mask"),
)
def _clipped_policy(
    *,
    outputs,
    batch,
    clip_eps=0.2,
    clip_eps_high=None,
    kl_coef=0.0,
    aggregation="token_mean",
    dual_clip=None,
):
    """Per-sequence contributions whose `reduce` mean equals `clipped_policy_loss`.

    Token arrays are [batch, length] with `batch["token_mask"]` [batch, length] (the batch's
    "mask", if any, is the [batch] row mask that `reduce` applies). Each row is scored alone
    with "sequence_mean" and rescaled so that the batch mean reproduces `aggregation`
    ("token_mean": by the row's share of all tokens; "fixed_length": by n_i / length).
    """
    lp = outputs["logprobs"]
    mask = jnp.asarray(batch["token_mask"], bool)
    ref = (
        _field(outputs, batch, "ref_logprobs", "clipped_policy")
        if ("ref_logprobs" in outputs or "ref_logprobs" in batch)
        else None
    )
    # Per-token weights computed in the forward (STEER: from the current policy) or given.
    weights = outputs.get("token_weights", batch.get("token_weights"))

    def row(lp_i, old_i, adv_i, m_i, ref_i, w_i):
        loss, _ = policy.clipped_policy_loss(
            logprobs=lp_i[None],
            old_logprobs=old_i[None],
            advantages=adv_i[None],
            mask=m_i[None],
            clip_eps=clip_eps,
            clip_eps_high=clip_eps_high,
            ref_logprobs=None if ref_i is None else ref_i[None],
            kl_coef=kl_coef,
            token_weights=None if w_i is None else w_i[None],
            aggregation="sequence_mean",
            dual_clip=dual_clip,
            validate=False,
        )
        return loss

    per_row = jax.vmap(row)(lp, batch["old_logprobs"], batch["advantages"], mask, ref, weights)
    n = jnp.sum(mask, axis=-1).astype(per_row.dtype)
    if aggregation == "token_mean":
        return per_row * n * lp.shape[0] / jnp.maximum(jnp.sum(n), 1)
    if aggregation == "fixed_length":
        return per_row * n / lp.shape[-1]
    if aggregation == "sequence_mean":
        return per_row
    raise ValueError(
        f"loss.options.aggregation: expected one of {policy.AGGREGATIONS}, got {aggregation!r}"
    )


for _name, _fn in (
    ("rlcr", rewards.rlcr_reward),
    ("crew", rewards.crew_reward),
    ("hyperclick", rewards.hyperclick_reward),
    ("ppo_c", policy.ppo_c_rewards),
):
    REWARDS.register(_name, _fn)

for _name, _fn in (
    ("grpo", policy.grpo_advantages),
    ("ucas", policy.ucas_advantages),
    ("empg", policy.empg_advantages),
    ("riskpo", policy.riskpo_advantages),
    ("steer", policy.steer_weights),
    ("negative_only", policy.negative_only_advantages),
    ("trust_grpo", policy.trust_grpo_rewards),
):
    ADVANTAGES.register(_name, _fn)
