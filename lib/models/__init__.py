"""Flax Llama-family decoder, loaders (GGUF, HF safetensors), tokenizer, generation."""

from introspect.models.config import ModelConfig, rope_inv_freq
from introspect.models.encoder import Encoder, EncoderConfig, load_encoder
from introspect.models.export import save_hf, save_tokenizer
from introspect.models.generate import STAT_NAMES, step_statistics
from introspect.models.llama import Decoder, KVCache, Replace, Steering, apply
from introspect.models.lm import (
    LM,
    ForwardOutput,
    Generation,
    Prefix,
    Scores,
    clear_cache,
    load,
)
from introspect.models.loaders import WeightsMismatchError, load_gguf, load_hf_dir
from introspect.models.registry import MODELS, register_model, registered_models, resolve
from introspect.models.runner import Chunk, Runner
from introspect.models.tokenizer import Tokenizer
from introspect.sharding import make_mesh

__all__ = [
    "Encoder",
    "EncoderConfig",
    "load_encoder",
    "LM",
    "MODELS",
    "Chunk",
    "Runner",
    "clear_cache",
    "STAT_NAMES",
    "Decoder",
    "ForwardOutput",
    "Generation",
    "Prefix",
    "Replace",
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
    "save_hf",
    "save_tokenizer",
    "rope_inv_freq",
    "step_statistics",
]
