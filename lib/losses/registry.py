"""Losses, rewards and advantage transforms by name, so a config can say `loss="focal"`.

Adding a loss = write one function (keyword-only arguments) and add one line to `LOSSES` below
(or call `register_loss("name", fn)` from your own module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from introspect.losses import policy, preference, rewards, scoring, tokenized

__all__ = [
    "LOSSES",
    "REWARDS",
    "ADVANTAGES",
    "get_loss",
    "get_reward",
    "get_advantage",
    "register_loss",
    "register_reward",
    "register_advantage",
]

LOSSES: dict[str, Callable[..., Any]] = {
    "brier": scoring.brier_loss,
    "log": scoring.log_loss,
    "spherical": scoring.spherical_loss,
    "cross_entropy": scoring.cross_entropy,
    "label_smoothing_ce": scoring.label_smoothing_cross_entropy,
    "focal": scoring.focal_loss,
    "tokenized_brier": tokenized.tokenized_brier,
    "clipped_policy": policy.clipped_policy_loss,
    "dpo": preference.dpo_loss,
    "vpo": preference.vpo_loss,
}

REWARDS: dict[str, Callable[..., Any]] = {
    "rlcr": rewards.rlcr_reward,
    "crew": rewards.crew_reward,
    "hyperclick": rewards.hyperclick_reward,
    "ppo_c": policy.ppo_c_rewards,
}

ADVANTAGES: dict[str, Callable[..., Any]] = {
    "grpo": policy.grpo_advantages,
    "ucas": policy.ucas_advantages,
    "empg": policy.empg_advantages,
    "riskpo": policy.riskpo_advantages,
    "steer": policy.steer_weights,
}


def _get(table: dict[str, Callable[..., Any]], kind: str, name: str) -> Callable[..., Any]:
    if not isinstance(name, str) or name not in table:
        known = ", ".join(sorted(table))
        raise ValueError(f"name: unknown {kind} {name!r}; expected one of: {known}")
    return table[name]


def _register(table, kind: str, name: str, fn, overwrite: bool):
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")

    def add(f):
        if not callable(f):
            raise ValueError(f"fn: expected a callable, got {f!r}")
        if name in table and table[name] is not f and not overwrite:
            raise ValueError(f"name: {kind} {name!r} is already registered; pass overwrite=True")
        table[name] = f
        return f

    return add if fn is None else add(fn)


def get_loss(name: str) -> Callable[..., Any]:
    """The loss function registered as `name` (ValueError listing the known names otherwise)."""
    return _get(LOSSES, "loss", name)


def get_reward(name: str) -> Callable[..., Any]:
    """The reward function registered as `name`."""
    return _get(REWARDS, "reward", name)


def get_advantage(name: str) -> Callable[..., Any]:
    """The advantage/weight transform registered as `name`."""
    return _get(ADVANTAGES, "advantage transform", name)


def register_loss(name: str, fn: Callable[..., Any] | None = None, *, overwrite: bool = False):
    """Registers `fn` as loss `name`; without `fn`, returns a decorator."""
    return _register(LOSSES, "loss", name, fn, overwrite)


def register_reward(name: str, fn: Callable[..., Any] | None = None, *, overwrite: bool = False):
    """Registers `fn` as reward `name`; without `fn`, returns a decorator."""
    return _register(REWARDS, "reward", name, fn, overwrite)


def register_advantage(name: str, fn: Callable[..., Any] | None = None, *, overwrite: bool = False):
    """Registers `fn` as advantage transform `name`; without `fn`, returns a decorator."""
    return _register(ADVANTAGES, "advantage transform", name, fn, overwrite)
