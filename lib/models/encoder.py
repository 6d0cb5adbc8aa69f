"""A small Flax BERT sentence encoder, loaded from a sentence-transformers directory by path.

Used to compare sampled answers by cosine similarity (semantic-consistency signals):

    enc = load_encoder("/path/to/all-MiniLM-L6-v2")
    emb = enc.encode(["Paris.", "It is Paris.", "London."])      # [3, 384] float32
    sim = enc.similarity(["Paris.", "It is Paris.", "London."])  # [3, 3] cosine matrix

What is read from the directory (the layout `SentenceTransformer.save` writes):

* `modules.json`: the module pipeline. Supported: `...Transformer` (BERT), then `...Pooling`,
  then optionally `...Normalize`. Any other module (Dense, LayerNorm, ...) raises
  NotImplementedError.
* in the Transformer module's folder (the directory itself when its "path" is ""):
  `config.json` (model_type "bert" only; RoBERTa/XLM-R position offsets, DistilBERT etc. raise
  NotImplementedError), `model.safetensors` (a pickled `pytorch_model.bin` is refused: convert
  it to safetensors), `tokenizer.json` (the fast-tokenizer format, read
  with the `tokenizers` package), and optionally `sentence_bert_config.json` (`max_seq_length`,
  `do_lower_case`) and `tokenizer_config.json` (`model_max_length`, the fallback truncation length,
  as in sentence-transformers).
* the Pooling module's `config.json` (e.g. `1_Pooling/config.json`): `pooling_mode_cls_token`,
  `pooling_mode_max_tokens`, `pooling_mode_mean_tokens`, `pooling_mode_mean_sqrt_len_tokens`,
  `pooling_mode_weightedmean_tokens`, `pooling_mode_lasttoken` (or a single `pooling_mode`
  string). Several enabled modes are concatenated in sentence-transformers' order
  (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken). A missing key defaults as in
  sentence-transformers (mean on, the others off).
* a `...Normalize` module needs no files (its folder is often absent in hub snapshots).

Weight names: the `BertModel` ones (`embeddings.word_embeddings.weight`,
`encoder.layer.{i}.attention.self.query.weight`, ...), with or without a `bert.` prefix;
`pooler.*`, `embeddings.position_ids` and heads outside the prefix (`cls.*`) are ignored, any other
tensor is an error. LayerNorm `gamma`/`beta` (old checkpoints) are accepted for `weight`/`bias`.

Numerics: texts are right-padded, positions are 0..len-1 as in BERT, padded keys are masked out of
attention and pooling, so a text's embedding does not depend on its batch. Batches are sorted by
length and padded to bucketed shapes (lengths: powers of two from 16, capped at max_seq_length;
rows: powers of two from 8, capped at batch_size), so the jit-compiled forward compiles a handful of
programs, not one per batch. Pooling and normalisation run in float32 whatever the model dtype.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tokenizers

from introspect.models.loaders import WeightsMismatchError

Array = jax.Array

# Pooling modes in the order sentence-transformers concatenates them.
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}

# config.json hidden_act -> activation (HF names; "gelu" is the exact erf GELU).
_ACTIVATIONS = {
    "gelu": functools.partial(nn.gelu, approximate=False),
    "gelu_new": functools.partial(nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(nn.gelu, approximate=True),
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
}

_EXPECTED_LAYOUT = (
    "a sentence-transformers directory: modules.json, config.json, model.safetensors, "
    "tokenizer.json, 1_Pooling/config.json (optionally sentence_bert_config.json and a "
    "Normalize module)"
)

_SHORTEST_BUCKET = 16  # tokens
_FEWEST_ROWS = 8  # rows per batch (capped at batch_size): one text or seven share a program


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The BERT architecture (from config.json). Hashable: it is a static jit argument."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf(cls, cfg: dict, source: str = "config.json") -> EncoderConfig:
        """Read a transformers BertConfig dict. Raises NotImplementedError for non-BERT models."""
        model_type = cfg.get("model_type")
        if model_type != "bert":
            raise NotImplementedError(
                f"{source}: model_type {model_type!r} is not supported; the sentence encoder "
                'implements the BERT family only (model_type "bert"; RoBERTa-style position '
                "offsets, DistilBERT, MPNet, ... are not implemented)"
            )
        position_type = cfg.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise NotImplementedError(
                f"{source}: position_embedding_type {position_type!r} is not supported "
                '(only "absolute")'
            )
        act = cfg.get("hidden_act", "gelu")
        if act not in _ACTIVATIONS:
            raise NotImplementedError(
                f"{source}: hidden_act {act!r} is not supported (supported: {sorted(_ACTIVATIONS)})"
            )
        required = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        )
        missing = [k for k in required if k not in cfg]
        if missing:
            raise ValueError(f"{source}: missing BERT config keys {missing}")
        config = cls(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=int(cfg["hidden_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=int(cfg["num_attention_heads"]),
            intermediate_size=int(cfg["intermediate_size"]),
            hidden_act=act,
            max_position_embeddings=int(cfg.get("max_position_embeddings", 512)),
            type_vocab_size=int(cfg.get("type_vocab_size", 2)),
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        )
        if config.hidden_size % config.num_heads:
            raise ValueError(
                f"{source}: hidden_size {config.hidden_size} is not a multiple of "
                f"num_attention_heads {config.num_heads}"
            )
        return config


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


def _layer_norm(config: EncoderConfig, dtype, name: str) -> nn.LayerNorm:
    # Two-pass variance, as PyTorch computes it (the default E[x^2] - E[x]^2 loses digits).
    return nn.LayerNorm(
        epsilon=config.layer_norm_eps, dtype=dtype, use_fast_variance=False, name=name
    )


class BertLayer(nn.Module):
    """Post-LN transformer block: self-attention, add & norm, MLP, add & norm."""

    config: EncoderConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask):
        cfg = self.config
        b, t, _ = x.shape
        dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)
        heads = lambda y: y.reshape(b, t, cfg.num_heads, cfg.head_dim)
        q = heads(dense(cfg.hidden_size, "query")(x))
        k = heads(dense(cfg.hidden_size, "key")(x))
        v = heads(dense(cfg.hidden_size, "value")(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores / np.sqrt(cfg.head_dim).astype(np.float32)
        # Padding keys are masked; padding queries still attend (their outputs are never used).
        scores = jnp.where(mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        attn = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, cfg.hidden_size)
        attn = dense(cfg.hidden_size, "attention_output")(attn)
        x = _layer_norm(cfg, self.dtype, "attention_norm")(x + attn)
        h = _ACTIVATIONS[cfg.hidden_act](dense(cfg.intermediate_size, "intermediate")(x))
        h = dense(cfg.hidden_size, "output")(h)
        return _layer_norm(cfg, self.dtype, "output_norm")(x + h)


class BertEncoder(nn.Module):
    """BERT without the pooler: token ids -> last hidden states [batch, length, hidden]."""

    config: EncoderConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, mask):
        cfg = self.config
        embed = lambda n, name: nn.Embed(n, cfg.hidden_size, dtype=self.dtype, name=name)
        positions = jnp.arange(input_ids.shape[1])[None, :]
        # Same summation order as transformers' BertEmbeddings: word + token type + position.
        x = embed(cfg.vocab_size, "word_embeddings")(input_ids)
        x = x + embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids)
        x = x + embed(cfg.max_position_embeddings, "position_embeddings")(positions)
        x = _layer_norm(cfg, self.dtype, "embeddings_norm")(x)
        for i in range(cfg.num_layers):
            x = BertLayer(cfg, self.dtype, name=f"layer_{i}")(x, mask)
        return x


def apply(
    params,
    input_ids: Array,
    mask: Array | None = None,
    token_type_ids: Array | None = None,
    *,
    config: EncoderConfig,
    dtype=jnp.float32,
) -> Array:
    """Pure forward pass: the last hidden states [batch, length, hidden] (float32).

    Args:
      params: the BertEncoder parameter tree (without the {"params": ...} wrapper).
      input_ids: [batch, length] int32 token ids, right-padded.
      mask: [batch, length] bool/int, False/0 at padding; default all valid.
      token_type_ids: [batch, length] segment ids; default zeros.
      config: the architecture (static).
      dtype: compute dtype of activations.
    """
    input_ids = jnp.asarray(input_ids, jnp.int32)
    mask = jnp.ones(input_ids.shape, bool) if mask is None else jnp.asarray(mask).astype(bool)
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    out = BertEncoder(config, dtype).apply(
        {"params": params}, input_ids, jnp.asarray(token_type_ids, jnp.int32), mask
    )
    return out.astype(jnp.float32)


def param_shapes(config: EncoderConfig) -> dict:
    """The parameter tree (jax.ShapeDtypeStruct leaves) for `config`, without allocating."""
    ids = jnp.zeros((1, 1), jnp.int32)
    variables = jax.eval_shape(
        lambda: BertEncoder(config).init(jax.random.PRNGKey(0), ids, ids, ids == 0)
    )
    return variables["params"]


def pool(hidden: Array, mask: Array, modes: Sequence[str]) -> Array:
    """sentence-transformers pooling of [batch, length, hidden] over valid (mask) positions.

    Several modes are concatenated in the given order (load_encoder passes POOLING_MODES order).
    """
    hidden = hidden.astype(jnp.float32)
    m = jnp.asarray(mask).astype(jnp.float32)[..., None]  # [b, t, 1]
    count = jnp.maximum(m.sum(axis=1), 1e-9)  # [b, 1]
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(jnp.where(m > 0, hidden, -1e9).max(axis=1))
        elif mode == "mean":
            out.append((hidden * m).sum(axis=1) / count)
        elif mode == "mean_sqrt_len_tokens":
            out.append((hidden * m).sum(axis=1) / jnp.sqrt(count))
        elif mode == "weightedmean":
            w = m * jnp.arange(1, hidden.shape[1] + 1, dtype=jnp.float32)[None, :, None]
            out.append((hidden * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1e-9))
        elif mode == "lasttoken":  # right padding: the last valid position
            last = jnp.maximum(m[..., 0].sum(axis=1).astype(jnp.int32) - 1, 0)
            out.append(jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0])
        else:
            raise ValueError(f"unknown pooling mode {mode!r} (known: {POOLING_MODES})")
    return jnp.concatenate(out, axis=-1)


def _l2_normalize(x: Array) -> Array:
    # torch.nn.functional.normalize(p=2, eps=1e-12), as sentence-transformers' Normalize.
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@functools.partial(jax.jit, static_argnames=("config", "modes", "normalize", "dtype"))
def _embed(params, input_ids, token_type_ids, mask, *, config, modes, normalize, dtype):
    hidden = apply(params, input_ids, mask, token_type_ids, config=config, dtype=dtype)
    emb = pool(hidden, mask, modes)
    return _l2_normalize(emb) if normalize else emb


# ----------------------------------------------------------------------------------------------
# The handle
# ----------------------------------------------------------------------------------------------


class Encoder:
    """A loaded sentence encoder. Build it with `load_encoder(path)`.

    Attributes:
      path: the directory it was loaded from.
      config: the BERT architecture.
      params: the BertEncoder parameter tree (plain nested dict of jax arrays).
      tokenizer: the `tokenizers.Tokenizer` (truncating to max_seq_length, no padding).
      pooling: the pooling modes, in concatenation order.
      normalize: whether embeddings are L2-normalised (a Normalize module is present).
      max_seq_length: tokens per text after truncation, special tokens included.
      do_lower_case: texts are lower-cased before tokenizing (sentence_bert_config.json).
      dtype: the compute dtype.
    """

    def __init__(
        self,
        *,
        path: str,
        config: EncoderConfig,
        params: dict,
        tokenizer: tokenizers.Tokenizer,
        pooling: tuple[str, ...],
        normalize: bool,
        max_seq_length: int,
        do_lower_case: bool = False,
        dtype=jnp.float32,
    ):
        self.path = path
        self.config = config
        self.params = params
        self.tokenizer = tokenizer
        self.pooling = tuple(pooling)
        self.normalize = normalize
        self.max_seq_length = int(max_seq_length)
        self.do_lower_case = do_lower_case
        self.dtype = jnp.dtype(dtype)

    def __repr__(self) -> str:
        return (
            f"Encoder({self.path!r}, layers={self.config.num_layers}, dim={self.dim}, "
            f"pooling={'+'.join(self.pooling)}, normalize={self.normalize}, "
            f"max_seq_length={self.max_seq_length}, dtype={self.dtype.name})"
        )

    @property
    def dim(self) -> int:
        """Embedding dimension (hidden size times the number of pooling modes)."""
        return self.config.hidden_size * len(self.pooling)

    def tokenize(self, texts: Sequence[str]) -> list[tokenizers.Encoding]:
        """Encodings (ids, type_ids; special tokens added, truncated to max_seq_length)."""
        texts = _check_texts(texts, "texts")
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        return self.tokenizer.encode_batch(texts, add_special_tokens=True)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Sentence embeddings [len(texts), dim] float32, in the order of `texts`.

        Raises:
          ValueError: `texts` is empty or batch_size < 1.
          TypeError: `texts` is a single string or holds a non-string.
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        encodings = self.tokenize(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(-lengths, kind="stable")  # longest first: little padding per batch
        out = np.empty((len(encodings), self.dim), np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            n_rows = _bucket_rows(len(rows), batch_size)
            length = _bucket_length(int(lengths[rows].max()), self.max_seq_length)
            ids = np.zeros((n_rows, length), np.int32)
            types = np.zeros((n_rows, length), np.int32)
            mask = np.zeros((n_rows, length), bool)
            for r, i in enumerate(rows):
                e = encodings[i]
                ids[r, : len(e.ids)] = e.ids
                types[r, : len(e.ids)] = e.type_ids
                mask[r, : len(e.ids)] = True
            emb = _embed(
                self.params,
                ids,
                types,
                mask,
                config=self.config,
                modes=self.pooling,
                normalize=self.normalize,
                dtype=self.dtype,
            )
            out[rows] = np.asarray(emb[: len(rows)], np.float32)
        return out

    def similarity(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str] | None = None,
        *,
        batch_size: int = 64,
    ) -> np.ndarray:
        """Cosine similarity matrix [len(texts_a), len(texts_b)] (float64, clipped to [-1, 1]).

        With texts_b None: the [n, n] matrix of texts_a against itself, exactly symmetric.
        Cosine is taken on the embeddings whether or not the model normalises them.
        """
        a = _unit_rows(self.encode(texts_a, batch_size=batch_size))
        if texts_b is None:
            sim = a @ a.T
            sim = (sim + sim.T) / 2
        else:
            sim = a @ _unit_rows(self.encode(texts_b, batch_size=batch_size)).T
        return np.clip(sim, -1.0, 1.0)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _check_texts(texts, name: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings, got a single str; wrap it in a list")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{name} is empty: nothing to encode")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"{name}[{bad[0]}] is a {type(texts[bad[0]]).__name__}, not a str")
    return texts


def _bucket_length(n: int, max_len: int) -> int:
    b = _SHORTEST_BUCKET
    while b < n:
        b *= 2
    return max(min(b, max_len), n)


def _bucket_rows(n: int, batch_size: int) -> int:
    b = _FEWEST_ROWS
    while b < n:
        b *= 2
    return min(b, batch_size)


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _read_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found ({what}); expected {_EXPECTED_LAYOUT}")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(value, (dict, list)):
        raise ValueError(f"{path} must hold a JSON object or list, got {type(value).__name__}")
    return value


def _read_modules(path: str) -> tuple[str, str, bool]:
    """modules.json -> (transformer dir, pooling dir, normalize)."""
    modules_path = os.path.join(path, "modules.json")
    modules = _read_json(modules_path, "the module list")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{modules_path}: expected a list of module objects")
    modules = sorted(modules, key=lambda m: m.get("idx", 0))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    unsupported = [
        m.get("type")
        for m, k in zip(modules, kinds, strict=True)
        if k not in ("Transformer", "Pooling", "Normalize")
    ]
    if unsupported:
        raise NotImplementedError(
            f"{modules_path}: module type(s) {unsupported} are not supported (supported: "
            "Transformer, Pooling, Normalize)"
        )
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise NotImplementedError(
            f"{modules_path}: module sequence {kinds} is not supported; expected "
            "Transformer, Pooling[, Normalize]"
        )
    sub = lambda m: os.path.join(path, m.get("path", "") or "")
    return sub(modules[0]), sub(modules[1]), len(kinds) == 3


def _pooling_modes(pool_dir: str, hidden_size: int) -> tuple[str, ...]:
    cfg_path = os.path.join(pool_dir, "config.json")
    cfg = _read_json(cfg_path, "the Pooling module's config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    mode = cfg.get("pooling_mode")
    if mode is not None:  # a single mode by name overrides the flags
        mode = str(mode).lower()
        if mode not in POOLING_MODES:
            raise ValueError(f"{cfg_path}: unknown pooling_mode {mode!r} ({POOLING_MODES})")
        modes = (mode,)
    else:
        defaults = {"mean": True}
        modes = tuple(m for m in POOLING_MODES if cfg.get(_POOLING_KEYS[m], defaults.get(m, False)))
    if not modes:
        raise ValueError(f"{cfg_path}: no pooling mode is enabled")
    if cfg.get("include_prompt", True) is False:
        raise NotImplementedError(f"{cfg_path}: include_prompt=false is not supported")
    dim = cfg.get("word_embedding_dimension")
    if dim is not None and int(dim) != hidden_size:
        raise ValueError(
            f"{cfg_path}: word_embedding_dimension {dim} != the model's hidden_size {hidden_size}"
        )
    return modes


def _read_tensors(model_dir: str) -> dict[str, np.ndarray]:
    st_path = os.path.join(model_dir, "model.safetensors")
    if os.path.isfile(st_path):
        from safetensors import safe_open

        with safe_open(st_path, framework="flax") as f:
            return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}
    if os.path.isfile(os.path.join(model_dir, "pytorch_model.bin")):
        raise FileNotFoundError(
            f"{model_dir}: found pytorch_model.bin but no model.safetensors; pickled weights are "
            "not loaded (unsafe): convert them to model.safetensors"
        )
    raise FileNotFoundError(
        f"{model_dir}: no model.safetensors found; expected "
        f"{_EXPECTED_LAYOUT}. Found: {sorted(os.listdir(model_dir))}"
    )


# Our parameter path -> the BertModel tensor name (without prefix and ".weight"/".bias").
def _hf_names(config: EncoderConfig) -> dict[tuple[str, ...], str]:
    names = {
        ("word_embeddings",): "embeddings.word_embeddings",
        ("token_type_embeddings",): "embeddings.token_type_embeddings",
        ("position_embeddings",): "embeddings.position_embeddings",
        ("embeddings_norm",): "embeddings.LayerNorm",
    }
    for i in range(config.num_layers):
        layer = f"encoder.layer.{i}"
        names |= {
            (f"layer_{i}", "query"): f"{layer}.attention.self.query",
            (f"layer_{i}", "key"): f"{layer}.attention.self.key",
            (f"layer_{i}", "value"): f"{layer}.attention.self.value",
            (f"layer_{i}", "attention_output"): f"{layer}.attention.output.dense",
            (f"layer_{i}", "attention_norm"): f"{layer}.attention.output.LayerNorm",
            (f"layer_{i}", "intermediate"): f"{layer}.intermediate.dense",
            (f"layer_{i}", "output"): f"{layer}.output.dense",
            (f"layer_{i}", "output_norm"): f"{layer}.output.LayerNorm",
        }
    return names


def _assemble(config: EncoderConfig, tensors: dict[str, np.ndarray], dtype, source: str) -> dict:
    if "embeddings.word_embeddings.weight" in tensors:
        prefix = ""
    elif "bert.embeddings.word_embeddings.weight" in tensors:
        prefix = "bert."
    else:
        raise WeightsMismatchError(
            f"{source}: no embeddings.word_embeddings.weight (with or without a 'bert.' prefix); "
            "not a BERT checkpoint"
        )
    expected = param_shapes(config)
    used: set[str] = set()

    def fetch(*candidates: str) -> np.ndarray:
        for c in candidates:
            if prefix + c in tensors:
                used.add(prefix + c)
                return tensors[prefix + c]
        raise WeightsMismatchError(f"{source}: tensor {prefix + candidates[0]!r} is missing")

    params: dict = {}
    for path, hf in _hf_names(config).items():
        node = params
        for p in path:
            node = node.setdefault(p, {})
        want = expected
        for p in path:
            want = want[p]
        for leaf in want:
            if leaf == "embedding":
                arr = fetch(f"{hf}.weight")
            elif leaf == "kernel":
                arr = fetch(f"{hf}.weight").T
            elif leaf == "scale":
                arr = fetch(f"{hf}.weight", f"{hf}.gamma")
            else:  # bias
                arr = fetch(f"{hf}.bias", f"{hf}.beta")
            if arr.shape != want[leaf].shape:
                raise WeightsMismatchError(
                    f"{source}: {prefix}{hf} ({leaf}) has shape {arr.shape}, config.json implies "
                    f"{want[leaf].shape}"
                )
            node[leaf] = jnp.asarray(arr, dtype)
    ignored = (prefix + "pooler.", prefix + "embeddings.position_ids")
    extra = sorted(
        k for k in tensors if k.startswith(prefix) and k not in used and not k.startswith(ignored)
    )
    if prefix == "":  # without a prefix every tensor must be ours (or the pooler)
        extra = [k for k in extra if not k.startswith(("cls.", "bert."))]
    if extra:
        shown = ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise WeightsMismatchError(
            f"{source}: {len(extra)} tensor(s) are not used by the BERT architecture in "
            f"config.json (e.g. {shown}); the config and the weights disagree"
        )
    return params


def _max_seq_length(model_dir: str, config: EncoderConfig) -> tuple[int, bool]:
    st_cfg_path = os.path.join(model_dir, "sentence_bert_config.json")
    st_cfg = _read_json(st_cfg_path, "") if os.path.isfile(st_cfg_path) else {}
    max_len = st_cfg.get("max_seq_length")
    if max_len is None:  # as sentence-transformers: min(positions, tokenizer's model_max_length)
        max_len = config.max_position_embeddings
        tok_cfg_path = os.path.join(model_dir, "tokenizer_config.json")
        if os.path.isfile(tok_cfg_path):
            model_max = _read_json(tok_cfg_path, "").get("model_max_length")
            if isinstance(model_max, (int, float)) and 0 < model_max < max_len:
                max_len = int(model_max)
    max_len = int(max_len)
    if not 1 <= max_len <= config.max_position_embeddings:
        raise ValueError(
            f"{st_cfg_path}: max_seq_length {max_len} is outside [1, max_position_embeddings="
            f"{config.max_position_embeddings}]"
        )
    return max_len, bool(st_cfg.get("do_lower_case", False))


def load_encoder(path: str | os.PathLike, *, dtype="float32") -> Encoder:
    """Load a sentence-transformers BERT encoder from a local directory.

    Args:
      path: the sentence-transformers directory (see the module docstring for the files read).
      dtype: compute/parameter dtype ("float32", "bfloat16", "float16" or a dtype); pooling and
        normalisation are float32 regardless.

    Raises:
      FileNotFoundError: the directory or a required file is missing (the message says which and
        what layout is expected).
      NotImplementedError: a non-BERT model_type, an unsupported activation / position embedding,
        or a module other than Transformer, Pooling, Normalize.
      ValueError: malformed JSON, inconsistent configuration, or a non-float dtype.
      WeightsMismatchError: the tensors do not fit config.json.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"encoder directory not found: {path}; expected {_EXPECTED_LAYOUT}")
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating type (float32, bfloat16, ...), got {dtype}")
    model_dir, pool_dir, normalize = _read_modules(path)
    cfg_path = os.path.join(model_dir, "config.json")
    cfg = _read_json(cfg_path, "the BERT config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    config = EncoderConfig.from_hf(cfg, cfg_path)
    modes = _pooling_modes(pool_dir, config.hidden_size)

    tok_path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.isfile(tok_path):
        raise FileNotFoundError(
            f"{tok_path} not found; the encoder needs the fast-tokenizer file tokenizer.json "
            f"(expected {_EXPECTED_LAYOUT}). Found: {sorted(os.listdir(model_dir))}"
        )
    tokenizer = tokenizers.Tokenizer.from_file(tok_path)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    if vocab > config.vocab_size:
        raise ValueError(
            f"{tok_path}: the tokenizer has {vocab} tokens, more than the model's vocab_size "
            f"{config.vocab_size}"
        )
    max_len, lower = _max_seq_length(model_dir, config)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_len)

    params = _assemble(config, _read_tensors(model_dir), dtype, model_dir)
    return Encoder(
        path=path,
        config=config,
        params=params,
        tokenizer=tokenizer,
        pooling=modes,
        normalize=normalize,
        max_seq_length=max_len,
        do_lower_case=lower,
        dtype=dtype,
    )
