"""ConfTuner's tokenized Brier score and the confidence tokens it reads.

The model states its confidence as a number token after "Confidence:". Fine mode uses the tokens
"0".."100" with values k / 100; coarse mode the single digits "0".."9" with values k / 9. The
loss softmaxes the logits of those K tokens at the confidence slot into q and scores
sum_k q_k (y - v_k)^2, a proper scoring rule over the value grid: its expectation under
y ~ Bernoulli(p) is sum_k q_k [(v_k - p)^2 + p (1 - p)], minimised by all mass on the value
nearest p.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from introspect import _checks as V

__all__ = [
    "MODES",
    "confidence_values",
    "confidence_strings",
    "confidence_token_ids",
    "tokenized_brier",
    "expected_confidence",
]

MODES = ("fine", "coarse")


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def confidence_strings(*, mode: str = "fine") -> list[str]:
    """The confidence token texts: "0".."100" (fine) or "0".."9" (coarse)."""
    V.check_choice(mode, "mode", MODES)
    return [str(k) for k in range(101 if mode == "fine" else 10)]


def confidence_values(*, mode: str = "fine", dtype: Any = None) -> jax.Array:
    """Probability each confidence token stands for: [101] k / 100 (fine) or [10] k / 9 (coarse).

    Args:
      mode: "fine" or "coarse".
      dtype: float dtype (default: the default float dtype).
    Returns:
      [K] values in [0, 1], ascending.
    """
    V.check_choice(mode, "mode", MODES)
    top = 100 if mode == "fine" else 9
    np_dtype = np.dtype(dtype or V.default_float())
    # Host-side division keeps k / top correctly rounded.
    return jnp.asarray(np.arange(top + 1, dtype=np_dtype) / np_dtype.type(top))


def confidence_token_ids(
    tokenizer: Tokenizer, *, mode: str = "fine", prefix: str = ""
) -> jax.Array:
    """Token ids of the confidence values "0".."100" (fine) or "0".."9" (coarse).

    Each value must be exactly one token. With a `prefix` (e.g. " " when the number follows
    "Confidence:" and a space), the text prefix + value is encoded and the tokens of the prefix
    alone are removed from its front if they are there (so " 85" may be one token " 85").

    Args:
      tokenizer: any object with `encode(text, add_special_tokens=False) -> list[int]`.
      mode: "fine" or "coarse".
      prefix: text written before the number.
    Returns:
      [K] int32 token ids, in value order.
    Raises:
      ValueError: a value encodes to zero or several tokens (many tokenizers split "100" or
        every multi-digit number into digits; use mode="coarse" for them), or two values
        share a token.
    """
    strings = confidence_strings(mode=mode)
    if not hasattr(tokenizer, "encode"):
        raise ValueError(
            "tokenizer: has no encode method; expected an object with "
            "encode(text, add_special_tokens=False) -> list[int]"
        )
    prefix_ids = list(tokenizer.encode(prefix, add_special_tokens=False)) if prefix else []
    ids, bad = [], []
    for s in strings:
        toks = list(tokenizer.encode(prefix + s, add_special_tokens=False))
        if prefix_ids and toks[: len(prefix_ids)] == prefix_ids and len(toks) > len(prefix_ids):
            toks = toks[len(prefix_ids) :]
        if len(toks) != 1:
            bad.append((s, toks))
        else:
            ids.append(int(toks[0]))
    if bad:
        shown = ", ".join(f"{prefix + s!r} -> {t}" for s, t in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        hint = (
            " Use mode='coarse' (single digits 0..9) for a tokenizer that splits numbers into "
            "digits."
            if mode == "fine"
            else ""
        )
        raise ValueError(
            f"tokenizer: {len(bad)} of the {len(strings)} confidence values do not encode to "
            f"exactly one token ({shown}{more}); the tokenized Brier score needs one token per "
            f"value.{hint}"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(
            "tokenizer: two confidence values encode to the same token id; expected distinct tokens"
        )
    return jnp.asarray(ids, dtype=jnp.int32)


def _prepare(conf_logits: Any, values: Any, validate: bool) -> tuple[jax.Array, jax.Array]:
    z = V.as_array(conf_logits, "conf_logits")
    v = V.as_array(values, "values")
    if validate:
        V.check_rank(z, "conf_logits", (1, 2, 3), "[..., K] logits of the K confidence tokens")
        V.check_rank(v, "values", 1, "a 1-D array [K]")
        V.check_not_empty(v, "values")
        if z.shape[-1] != v.shape[0]:
            raise ValueError(
                f"conf_logits and values: conf_logits has {z.shape[-1]} logits per row but "
                f"values has {v.shape[0]} entries; expected one value per confidence token"
            )
        V.check_finite(z, "conf_logits")
        V.check_probabilities(v, "values")
    return jnp.asarray(V.as_float(z)), jnp.asarray(V.as_float(v))


def tokenized_brier(
    *, conf_logits: Any, correct: Any, values: Any, validate: bool = True
) -> jax.Array:
    """ConfTuner's tokenized Brier score (a proper scoring rule); lower = better.

    Args:
      conf_logits: [batch, K] logits of the K confidence tokens at the confidence slot.
      correct: [batch] 1.0 if the answer was right, else 0.0.
      values: [K] the probability each confidence token stands for, in [0, 1].
      validate: check the input (value checks skipped on tracers).
    Returns:
      [batch] loss sum_k softmax(conf_logits)_k (correct - values_k)^2.
    """
    z, v = _prepare(conf_logits, values, validate)
    y = V.as_array(correct, "correct")
    if validate:
        if tuple(y.shape) != tuple(z.shape[:-1]):
            raise ValueError(
                f"correct: has shape {tuple(y.shape)}; expected {tuple(z.shape[:-1])} (the "
                "leading shape of conf_logits)"
            )
        V.check_range(y, "correct", 0.0, 1.0, what="1.0 (right) or 0.0 (wrong)")
    q = jax.nn.softmax(z, axis=-1)
    return jnp.sum(q * (jnp.asarray(y, dtype=z.dtype)[..., None] - v) ** 2, axis=-1)


def expected_confidence(*, conf_logits: Any, values: Any, validate: bool = True) -> jax.Array:
    """The model's stated confidence as the mean value under the confidence-token softmax.

    Args:
      conf_logits: [batch, K] logits of the confidence tokens.
      values: [K] values of the tokens.
      validate: check the input.
    Returns:
      [batch] confidence sum_k q_k v_k in [0, 1]; higher = more confident.
    """
    z, v = _prepare(conf_logits, values, validate)
    return jax.nn.softmax(z, axis=-1) @ v
