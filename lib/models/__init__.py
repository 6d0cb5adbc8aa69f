"""Flax Llama-family decoder, loaders (GGUF, HF safetensors), tokenizer, generation."""

from introspect.models.config import ModelConfig, rope_inv_freq
from introspect.models.generate import STAT_NAMES, step_statistics
from introspect.models.handle import (
    LM,
    ForwardOutput,
    Generation,
    Scores,
    load,
    register_model,
    registered_models,
    resolve,
)
from introspect.models.llama import Decoder, KVCache, Steering, apply
from introspect.models.loaders import WeightsMismatchError, load_gguf, load_hf_dir
from introspect.models.sharding import make_mesh
from introspect.models.tokenizer import Tokenizer

__all__ = [
    "LM",
    "STAT_NAMES",
    "Decoder",
    "ForwardOutput",
    "Generation",
    "KVCache",
    "ModelConfig",
    "Scores",
    "Steering",
    "Tokenizer",
    "WeightsMismatchError",
    "apply",
    "load",
    "load_gguf",
    "load_hf_dir",
    "make_mesh",
    "register_model",
    "registered_models",
    "resolve",
    "rope_inv_freq",
    "step_statistics",
]
