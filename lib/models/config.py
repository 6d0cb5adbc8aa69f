"""Architecture description of a Llama-family decoder.

One frozen dataclass covers Llama 2/3 (incl. Llama-3 RoPE scaling), SmolLM2, Mistral (sliding
window), Qwen2/2.5 (q/k/v bias) and Qwen3 (q/k RMSNorm). It is hashable, so it is passed to
`jax.jit` as a static argument.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

# Architectures the decoder implements, as named by GGUF `general.architecture` or HF `model_type`.
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "smollm", "smollm2")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the decoder (all static).

    Attributes:
      architecture: family name, informational ("llama", "qwen2", "qwen3", ...).
      vocab_size: rows of the embedding matrix.
      hidden_size: width of the residual stream.
      intermediate_size: SwiGLU hidden width.
      num_layers: number of transformer blocks.
      num_heads: query heads.
      num_kv_heads: key/value heads (GQA when < num_heads).
      head_dim: per-head width (Qwen3 sets it independently of hidden_size / num_heads).
      rope_theta: RoPE base.
      rope_scaling: None, or a tuple of (key, value) pairs, e.g. (("rope_type", "llama3"),
        ("factor", 8.0), ("low_freq_factor", 1.0), ("high_freq_factor", 4.0),
        ("original_max_position_embeddings", 8192)) or (("rope_type", "linear"), ("factor", 2.0)).
      rope_freq_factors: per-frequency divisors stored in some GGUF files (`rope_freqs.weight`);
        when set they replace `rope_scaling`'s frequency rule.
      rms_norm_eps: epsilon of every RMSNorm.
      tie_embeddings: the LM head reuses the token embedding.
      qkv_bias: q/k/v projections carry a bias (Qwen2).
      qk_norm: RMSNorm over head_dim on q and k before RoPE (Qwen3).
      sliding_window: Mistral-style local attention width, or None.
      max_position_embeddings: the context length the model was trained for.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    architecture: str = "llama"
    rope_theta: float = 10000.0
    rope_scaling: tuple | None = None
    rope_freq_factors: tuple | None = None
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    sliding_window: int | None = None
    max_position_embeddings: int = 4096

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelConfig.num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
                f"({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"ModelConfig.head_dim must be even for RoPE, got {self.head_dim}")
        if self.rope_freq_factors is not None and len(self.rope_freq_factors) != self.head_dim // 2:
            raise ValueError(
                f"ModelConfig.rope_freq_factors has {len(self.rope_freq_factors)} entries, "
                f"expected head_dim // 2 = {self.head_dim // 2}"
            )

    @property
    def rope_scaling_dict(self) -> dict:
        return dict(self.rope_scaling or ())


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
    """Inverse frequencies of the rotary embedding, [head_dim // 2] float64.

    Applies (in order of precedence) explicit GGUF frequency factors, Llama-3 scaling, or linear
    scaling (handled on the frequencies: dividing every frequency by `factor` is the same as
    dividing positions by it).
    """
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    if config.rope_freq_factors is not None:
        return inv_freq / np.asarray(config.rope_freq_factors, np.float64)
    scaling = config.rope_scaling_dict
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind in (None, "default"):
        return inv_freq
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        factor = float(scaling["factor"])
        low = float(scaling.get("low_freq_factor", 1.0))
        high = float(scaling.get("high_freq_factor", 4.0))
        old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
        wavelen = 2 * math.pi / inv_freq
        smooth = (old_ctx / wavelen - low) / (high - low)
        mid = (1 - smooth) * inv_freq / factor + smooth * inv_freq
        out = np.where(wavelen > old_ctx / low, inv_freq / factor, mid)
        return np.where(wavelen < old_ctx / high, inv_freq, out)
    raise NotImplementedError(
        f"RoPE scaling type {kind!r} is not implemented (supported: default, linear, llama3)"
    )
