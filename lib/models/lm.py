"""`LM`: a loaded model and its API (load, forward, generate, score).

from introspect import models
lm = models.load("smollm2-135m-instruct")          # or "path/model.gguf" or "path/hf_dir"
ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}],
                                       add_generation_prompt=True)
out = lm.forward([ids])                            # logits [1, len, vocab], hidden_states
gen = lm.generate([ids], max_new_tokens=64)        # gen.tokens, gen.logprobs, gen.texts
sc = lm.score([ids], [gen.tokens[0]])              # teacher-forced log-probs

Batching (sort, bucket, pad, shard, progress, reassemble) is `introspect.models.runner.Runner`,
shared with CNTP; names resolve through `introspect.models.registry`; parameters are placed by
`introspect.sharding` (the same layout as training).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from introspect import sharding
from introspect.models import generate as gen_lib
from introspect.models import loaders
from introspect.models.config import ModelConfig
from introspect.models.llama import Replace, Steering, apply
from introspect.models.registry import resolve
from introspect.models.runner import Runner, left_pad, next_power_of_two
from introspect.models.tokenizer import Tokenizer

# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ForwardOutput:
    """logits: [batch, length, vocab] float32 (None with return_logits=False);
    hidden_states: [layers, batch, length, hidden]
    (layers = `hidden_layers` in the order given; all = num_layers + 1) or None;
    attention: with `attention_layers`, the post-softmax weights [batch, len(attention_layers),
    heads (or len(attention_heads)), length (queries), length (keys)] float32, 0 at masked keys
    and padding queries (transformers' `output_attentions` layout), else None.
    jax.Arrays on one host; on a mesh spanning several processes the rows of the other hosts are
    all-gathered (numpy arrays of the whole batch on every process)."""

    logits: jax.Array
    hidden_states: jax.Array | None
    hidden_layers: tuple[int, ...] | None
    attention: jax.Array | None = None
    attention_layers: tuple[int, ...] | None = None
    attention_heads: tuple[int, ...] | None = None


@dataclasses.dataclass
class Generation:
    """Output of `LM.generate`, one entry per prompt (in the order given).

    tokens: new token ids; a row ends with its stop token when it stopped (finish_reason "stop").
    logprobs: [n_new] log p(token) under the model's untempered distribution.
    texts: decoded new tokens, special tokens skipped.
    stats: optional {name: [n_new] array} for each of STAT_NAMES, the full-vocabulary statistics
      of the distribution each new token was drawn from.
    hidden_states: optional [len(hidden_layers), num_prompts, len(hidden_steps), hidden]: at step s
      the hidden state the distribution of new token s was computed from (s = 0: last prompt
      token). Steps past a row's end are zero.
    exit_steps: with an exit rule, per row the index (into tokens) of the cue token where the
      row exited, -1 when it did not (finish_reason is then "exit" instead of "stop"/"length").
    cue_probs: with an exit rule, per row [n_new] the probe's probability at each evaluated cue
      token, NaN elsewhere.
    attention: with `attention_layers`, per row [n_new, len(attention_layers), heads (or
      len(attention_heads))] float32: for new token s, the post-softmax weight that the query
      which produced it (at the token fed at that step: new token s - 1, the last prompt token for
      s = 0) puts on its own key, per block and query head. Steps s >= 1 are RAUQ's "attention
      to the previous token" (`introspect.signals.attention.rauq`); they equal
      `forward(prompt + tokens, attention_layers=...)` weights at [P + s - 1, P + s - 1].
    """

    tokens: list[list[int]]
    logprobs: list[np.ndarray]
    texts: list[str]
    finish_reasons: list[str]
    stats: dict[str, list[np.ndarray]] | None = None
    hidden_states: np.ndarray | None = None
    hidden_layers: tuple[int, ...] | None = None
    hidden_steps: tuple[int, ...] | None = None
    seconds: float = 0.0
    exit_steps: list[int] | None = None
    cue_probs: list[np.ndarray] | None = None
    attention: list[np.ndarray] | None = None
    attention_layers: tuple[int, ...] | None = None
    attention_heads: tuple[int, ...] | None = None

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)


@dataclasses.dataclass
class Prefix:
    """Prefilled prefixes (`LM.prefill`) that many `generate` rows continue (KV reuse).

    cache: the KVCache of the left-padded prefixes [num_prefixes, slots] (on the mesh when the
      model has one).
    lengths: [num_prefixes] real tokens of each prefix.
    """

    cache: object
    lengths: np.ndarray

    @property
    def slots(self) -> int:
        return int(self.cache.valid.shape[1])


@dataclasses.dataclass
class Scores:
    """Output of `LM.score`: per continuation token, log p(token | prompt, earlier tokens).

    logprobs: list of [n_cont] arrays; stats: {name: list of [n_cont]} for STAT_NAMES, the
    statistics of the distribution that predicted each continuation token.
    """

    logprobs: list[np.ndarray]
    stats: dict[str, list[np.ndarray]] | None

    @property
    def sum_logprobs(self) -> np.ndarray:
        return np.array([lp.sum() for lp in self.logprobs])


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------

_forward = jax.jit(
    apply,
    static_argnames=(
        "config",
        "capture",
        "last_only",
        "with_logits",
        "dtype",
        "attention",
        "attention_heads",
    ),
)


class LM:
    """A loaded model: config, params (a pytree of jax arrays), tokenizer, optional mesh.

    With a mesh, params are laid out by `introspect.sharding.param_specs(params, mesh,
    sharding_config)` (tensor parallel over "model", the same layout as training) and batches
    are split over "data".
    """

    def __init__(
        self,
        config: ModelConfig,
        params,
        tokenizer: Tokenizer,
        *,
        name: str = "",
        dtype: str = "float32",
        mesh: jax.sharding.Mesh | None = None,
        sharding_config=None,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.name = name
        self.dtype = jnp.dtype(dtype).name
        self.mesh = mesh
        self.sharding_config = sharding_config
        self.runner = Runner(mesh)
        params = jax.tree.map(lambda x: jnp.asarray(x, self.dtype), params)
        self.params = sharding.shard(params, mesh, sharding_config) if mesh is not None else params

    def __repr__(self):
        c = self.config
        return (
            f"LM({self.name!r}, {c.architecture}, layers={c.num_layers}, "
            f"hidden={c.hidden_size}, vocab={c.vocab_size}, dtype={self.dtype})"
        )

    def with_mesh(self, mesh: jax.sharding.Mesh, sharding_config=None) -> LM:
        """The same model with params placed on `mesh` (see `introspect.sharding`)."""
        return LM(
            self.config,
            self.params,
            self.tokenizer,
            name=self.name,
            dtype=self.dtype,
            mesh=mesh,
            sharding_config=sharding_config,
        )

    def with_params(self, params) -> LM:
        """The same model (tokenizer, mesh, layout) with other parameters, e.g. fine-tuned ones.

        Raises ValueError when the parameter tree or a shape differs from this model's.
        """
        want = jax.tree.map(lambda x: x.shape, self.params)
        got = jax.tree.map(np.shape, params)
        if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
            raise ValueError(
                "params do not fit this model: expected the tree and shapes of lm.params "
                f"({self.config.architecture}, {self.config.num_layers} layers)"
            )
        return LM(
            self.config,
            params,
            self.tokenizer,
            name=self.name,
            dtype=self.dtype,
            mesh=self.mesh,
            sharding_config=self.sharding_config,
        )

    # -- input checking (public: decoders built on LM use the same checks) ----------------------

    def check_ids(self, seqs, what: str) -> list[list[int]]:
        """Token-id lists, validated (ValueError naming `what` and what was wrong)."""
        if isinstance(seqs, np.ndarray | jax.Array):
            seqs = np.asarray(seqs).tolist()
        if not isinstance(seqs, Sequence) or isinstance(seqs, str) or not seqs:
            raise ValueError(f"{what} must be a non-empty list of token-id lists, got {seqs!r:.80}")
        out = []
        for i, s in enumerate(seqs):
            if isinstance(s, str):
                raise ValueError(
                    f"{what}[{i}] is a string; pass token ids (lm.tokenizer.encode(text))"
                )
            s = [int(t) for t in s]
            if not s:
                raise ValueError(f"{what}[{i}] is empty; every sequence needs at least one token")
            bad = [t for t in s if not 0 <= t < self.config.vocab_size]
            if bad:
                raise ValueError(
                    f"{what}[{i}] has token ids outside [0, {self.config.vocab_size}): {bad[:5]}"
                )
            out.append(s)
        return out

    def check_layers(self, layers) -> tuple[int, ...] | None:
        """Hidden-state indices (0 = embeddings .. num_layers = final norm; negative ones
        count from the end; "all"; None) as a tuple, or ValueError naming the valid range."""
        n = self.config.num_layers + 1
        if layers is None:
            return None
        if isinstance(layers, str):
            if layers != "all":
                raise ValueError(
                    f"hidden_layers must be 'all', None or a list of ints, got {layers!r}"
                )
            return tuple(range(n))
        layers = tuple(int(i) % n if -n <= int(i) < n else int(i) for i in layers)
        bad = [i for i in layers if not 0 <= i < n]
        if bad:
            raise ValueError(
                f"hidden_layers {bad} out of range: the model has {n} hidden states "
                f"(0 = embeddings .. {n - 1} = final norm)"
            )
        return layers

    def check_attention(self, layers, heads=None):
        """(block indices, query heads or None) for an attention request: `layers` "all", an int
        or ints in [-num_layers, num_layers) (blocks, not hidden-state indices; negative ones
        count from the end), `heads` None (all), an int or ints in [-num_heads, num_heads).
        (None, None) when layers is None; ValueError naming the valid range otherwise."""

        def norm(idx, n, what, unit):
            if isinstance(idx, str):
                if idx != "all":
                    raise ValueError(f"{what} must be 'all', an int or a list of ints, got {idx!r}")
                return tuple(range(n))
            if isinstance(idx, int | np.integer):
                idx = (idx,)
            idx = tuple(int(i) for i in idx)
            bad = [i for i in idx if not -n <= i < n]
            if bad or not idx:
                raise ValueError(
                    f"{what} {bad or list(idx)} out of range: the model has {n} {unit} "
                    f"(0 .. {n - 1}, or negative from the end)"
                )
            return tuple(i % n for i in idx)

        if layers is None:
            if heads is not None:
                raise ValueError("attention_heads needs attention_layers")
            return None, None
        layers = norm(layers, self.config.num_layers, "attention_layers", "blocks")
        if heads is not None:
            heads = norm(heads, self.config.num_heads, "attention_heads", "query heads")
        return layers, heads

    def _exit_args(self, rule):
        """(exit layers, decode's exit_args) of an online exit rule, checked against the model:
        its layers exist, the probe takes len(layers) * hidden_size features."""
        if rule is None:
            return None, None
        for field in ("probe", "variables", "layers", "cues", "q0", "q1", "input_dim", "tables"):
            if not hasattr(rule, field):
                raise TypeError(
                    f"exit_rule must be an introspect.probes.ExitRule, got {type(rule).__name__} "
                    f"without {field!r}"
                )
        try:
            layers = self.check_layers(rule.layers)
        except ValueError as e:
            raise ValueError(f"exit rule: {e}") from None
        if not layers:
            raise ValueError("exit rule: layers must name at least one hidden state")
        dim = len(layers) * self.config.hidden_size
        if rule.input_dim != dim:
            raise ValueError(
                f"exit rule: the probe takes {rule.input_dim} features but layers {list(layers)} "
                f"of this model give {len(layers)} x {self.config.hidden_size} = {dim}"
            )
        nxt, hit = rule.tables(self.tokenizer, self.config.vocab_size)
        args = {
            "next_state": jnp.asarray(nxt, jnp.int32),
            "hit": jnp.asarray(hit, bool),
            "variables": jax.tree.map(jnp.asarray, rule.variables),
            "q0": jnp.asarray(rule.q0, jnp.float32),
            "q1": jnp.asarray(rule.q1, jnp.float32),
        }
        return layers, args

    def _check_steering(self, steering: Steering | None):
        if steering is None:
            return None
        if not 0 <= steering.layer < self.config.num_layers:
            raise ValueError(
                f"steering.layer must be in [0, {self.config.num_layers}), got {steering.layer}"
            )
        vec = jnp.asarray(steering.vector, jnp.float32)
        if vec.shape[-1] != self.config.hidden_size or vec.ndim not in (1, 2):
            raise ValueError(
                f"steering.vector must be [hidden={self.config.hidden_size}] or "
                f"[batch, hidden], got shape {vec.shape}"
            )
        return Steering(
            vec, jnp.asarray(steering.scale, jnp.float32), steering.layer, steering.mask
        )

    def _check_replace(self, replace: Replace | None):
        if replace is None:
            return None
        if not isinstance(replace, Replace):
            raise TypeError(f"replace must be a models.Replace, got {type(replace).__name__}")
        if not 0 <= replace.layer < self.config.num_layers:
            raise ValueError(
                f"replace.layer must be in [0, {self.config.num_layers}), got {replace.layer}"
            )
        if not callable(replace.fn):
            raise TypeError(f"replace.fn must be callable (args, x) -> x, got {replace.fn!r}")
        return replace

    def check_context(self, prompts: list[list[int]], max_new_tokens: int) -> None:
        """ValueError when a prompt plus `max_new_tokens` exceeds the context length."""
        ctx = self.config.max_position_embeddings
        for i, p in enumerate(prompts):
            if len(p) + max_new_tokens > ctx:
                raise ValueError(
                    f"prompts[{i}] has {len(p)} tokens; with max_new_tokens={max_new_tokens} that "
                    f"is {len(p) + max_new_tokens} > the model's context length {ctx}"
                )

    def stop_and_pad(self, extra: Sequence[int] = ()) -> tuple[np.ndarray, int]:
        """(ids that end a row: EOS ids and `extra` ([-1] if none), id written after the end)."""
        stop_ids = np.array(
            sorted(set(self.tokenizer.eos_token_ids) | set(extra)) or [-1], np.int32
        )
        pad_id = self.tokenizer.pad_token_id
        return stop_ids, int(stop_ids[0]) if pad_id is None else int(pad_id)

    def texts_and_finish(
        self, tokens: list[list[int]], stop_ids, *, ignore_eos: bool = False
    ) -> tuple[list[str], list[str]]:
        """Decoded texts (special tokens skipped) and finish reasons ("stop": the row ends with
        one of `stop_ids`; else "length") of generated rows."""
        stop_set = set(np.asarray(stop_ids).tolist())
        texts = [self.tokenizer.decode(t, skip_special_tokens=True) for t in tokens]
        finish = [
            "stop" if t and t[-1] in stop_set and not ignore_eos else "length" for t in tokens
        ]
        return texts, finish

    # -- forward --------------------------------------------------------------------------------

    def forward(
        self,
        tokens,
        *,
        mask=None,
        hidden_layers="all",
        steering: Steering | None = None,
        replace: Replace | None = None,
        return_logits: bool = True,
        attention_layers=None,
        attention_heads=None,
    ):
        """Full-sequence forward pass.

        Args:
          tokens: [batch, length] int token ids (array or list of equal-length lists).
          mask: optional [batch, length] bool, False at padding (left or right padding).
          hidden_layers: "all" (num_layers + 1 states), None, or indices into hidden_states
            (0 = embeddings, i = after block i - 1, num_layers = final-norm output; negative ok).
          steering: optional residual-stream intervention (applied at all positions unless its
            mask says otherwise).
          replace: optional substitution of the residual stream after a block
            (`models.Replace`), e.g. a sparse autoencoder's reconstruction.
          return_logits: False skips the LM head (logits is None): hidden-state features only.
          attention_layers: blocks (0 .. num_layers - 1, negative ok, "all") whose attention
            weights to return; None (default) = none, and the compiled program is the one
            without them.
          attention_heads: query heads to keep (default all).
        Returns:
          ForwardOutput(logits [batch, length, vocab] float32,
                        hidden_states [layers, batch, length, hidden] or None,
                        attention [batch, layers, heads, length, length] or None).
        """
        tokens = np.asarray(self.check_ids(tokens, "tokens"), dtype=np.int32)
        if tokens.ndim != 2:
            raise ValueError(
                f"tokens must be [batch, length] with equal lengths; got {tokens.shape}"
            )
        if tokens.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"tokens has length {tokens.shape[1]} > the model's context length "
                f"{self.config.max_position_embeddings}"
            )
        valid = np.ones(tokens.shape, bool) if mask is None else np.asarray(mask, bool)
        if valid.shape != tokens.shape:
            raise ValueError(f"mask shape {valid.shape} != tokens shape {tokens.shape}")
        positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0).astype(np.int32)
        capture = self.check_layers(hidden_layers)
        att_layers, att_heads = self.check_attention(attention_layers, attention_heads)
        att_kw = {}
        if att_layers is not None:
            att_kw = {"attention": att_layers, "attention_heads": att_heads}
        tokens, positions, valid = self.runner.place(tokens, positions, valid)
        out = _forward(
            self.params,
            tokens,
            positions,
            config=self.config,
            valid=valid,
            capture=capture,
            steering=self._check_steering(steering),
            with_logits=return_logits,
            dtype=self.dtype,
            replace=self._check_replace(replace),
            **att_kw,
        )
        # on a mesh spanning several processes, every process gets the whole batch (a collective)
        out = sharding.gather(tuple(out))
        logits, hs = out[:2]
        att = out[3] if att_layers is not None else None
        return ForwardOutput(logits, hs, capture, att, att_layers, att_heads)

    # -- generation -----------------------------------------------------------------------------

    def prefill(self, prefixes) -> Prefix:
        """The KV caches of `prefixes` (token-id lists), computed once in one compiled call, for
        `generate(..., prefix=)` rows to continue: e.g. every forced exit of a reasoning trace
        continues a cut of the same trace.

        Raises NotImplementedError for sliding-window models (a row's kept prefix and its prompt
        are not adjacent in cache slots; local attention counts slots).
        """
        if self.config.sliding_window is not None:
            raise NotImplementedError(
                "prefix KV reuse is not implemented for sliding-window attention "
                f"({self.config.architecture}, window {self.config.sliding_window}); generate "
                "from the full prompts instead"
            )
        prefixes = self.check_ids(prefixes, "prefixes")
        _, pad_id = self.stop_and_pad()
        idx = list(range(len(prefixes)))
        tokens, valid, _ = left_pad(
            prefixes, idx, batch=self.runner.batch_bucket(len(idx)), pad_id=pad_id
        )
        cache = gen_lib.prefill(
            self.params,
            *self.runner.place(tokens, valid),
            config=self.config,
            dtype=self.dtype,
        )
        lengths = np.zeros((tokens.shape[0],), np.int32)
        lengths[: len(prefixes)] = [len(p) for p in prefixes]
        return Prefix(cache, lengths)

    def _prefix_rows(self, prefix, rows, keep, prompts):
        """Checked per-row (prefix index, kept tokens) arrays for `generate(prefix=)`."""
        if not isinstance(prefix, Prefix):
            raise TypeError(f"prefix must be an LM.prefill() Prefix, got {type(prefix).__name__}")
        n = len(prompts)
        rows = np.asarray(rows if rows is not None else np.arange(n), np.int64)
        real = int(np.count_nonzero(prefix.lengths))
        if rows.shape != (n,) or (rows < 0).any() or (rows >= real).any():
            raise ValueError(
                f"prefix_rows must be {n} indices into the {real} prefixes, got {rows.tolist()[:8]}"
            )
        full = prefix.lengths[rows]
        keep = np.asarray(full if keep is None else keep, np.int64)
        if keep.shape != (n,) or (keep < 0).any() or (keep > full).any():
            raise ValueError(
                f"prefix_keep must be {n} counts in [0, prefix length], got {keep.tolist()[:8]} "
                f"for prefix lengths {full.tolist()[:8]}"
            )
        return rows.astype(np.int32), keep.astype(np.int32)

    def generate(
        self,
        prompts,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        ignore_eos: bool = False,
        *,
        stop_token_ids: Sequence[int] = (),
        suppress_token_ids: Sequence[int] = (),
        return_stats: bool = False,
        hidden_layers=None,
        hidden_steps=None,
        attention_layers=None,
        attention_heads=None,
        steering: Steering | None = None,
        steer_prompt: bool = False,
        exit_rule=None,
        prefix: Prefix | None = None,
        prefix_rows=None,
        prefix_keep=None,
        batch_size: int = 32,
        progress: bool | None = None,
    ) -> Generation:
        """Generate continuations for ragged prompts with one compiled loop per chunk.

        Args:
          prompts: list of token-id lists (different lengths allowed).
          max_new_tokens: new tokens per prompt (upper bound; rows stop at a stop token).
          temperature: 0 = greedy; > 0 samples from softmax(logits / temperature).
          top_p, top_k: nucleus and top-k filtering when sampling (1.0 / 0 = off).
          seed: sampling seed; row i's randomness depends only on (seed, i), not on batching.
          ignore_eos: never stop early: exactly max_new_tokens per prompt.
          stop_token_ids: extra ids that end a row (the tokenizer's EOS ids always do).
          suppress_token_ids: ids never generated (their logits are -inf before sampling or
            argmax; logprobs and stats are those of the renormalised rest), e.g. ZIP-RC's
            reserved slice (`introspect.heads.zip_rc.reserved_ids`).
          return_stats: also return per-step STAT_NAMES statistics.
          hidden_layers: indices into hidden_states to capture during decoding ("all" ok).
          hidden_steps: which steps' hidden states to keep (default: all steps) when
            hidden_layers is set.
          attention_layers: blocks (0 .. num_layers - 1, negative ok, "all") whose attention
            to record at every step: the weight of the step's query on its own key (see
            `Generation.attention`), [n_new, layers, heads] per row, not the full rows over
            the context. None (default) = off, and the compiled loop is the one without it.
          attention_heads: query heads to record (default all).
          steering: residual-stream intervention on generated tokens (and the prompt when
            steer_prompt); vector [hidden] or [num_prompts, hidden] and scale [] or
            [num_prompts] (per-row vectors/scales: a steering sweep in one call).
          exit_rule: an online early-exit rule (`introspect.probes.ExitRule`, LYNX): at every
            generated token that completes a cue the probe reads the hidden states and the row
            ends when the conformal prediction set is {1} (see `generate.decode`). Rows report
            `exit_steps` and `cue_probs`; `decoding.lynx` appends the exit string and answers.
          prefix, prefix_rows, prefix_keep: prefix KV reuse: row i continues the first
            `prefix_keep[i]` tokens of prefix `prefix_rows[i]` of `prefix` (`LM.prefill`) with
            `prompts[i]`, without recomputing them (default rows: i, keep: the whole prefix).
            The same tokens as generating from the concatenation, up to float rounding.
          batch_size: prompts per compiled call; more prompts are processed in chunks with a
            progress bar.
          progress: show the progress bar (default: when there is more than one chunk).
        Returns:
          Generation.
        """
        prompts = self.check_ids(prompts, "prompts")
        if not isinstance(max_new_tokens, int | np.integer) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
        if temperature < 0 or not np.isfinite(temperature):
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prefix is not None:
            prefix_rows, prefix_keep = self._prefix_rows(prefix, prefix_rows, prefix_keep, prompts)
            if steering is not None:
                raise ValueError("steering with a prefix is not supported (prefill is unsteered)")
            self.check_context(
                [[0] * int(k) + p for k, p in zip(prefix_keep, prompts, strict=True)],
                max_new_tokens,
            )
        elif prefix_rows is not None or prefix_keep is not None:
            raise ValueError("prefix_rows / prefix_keep need a prefix (LM.prefill)")
        else:
            self.check_context(prompts, max_new_tokens)
        layers = self.check_layers(hidden_layers)
        if layers is not None:
            steps = (
                tuple(range(max_new_tokens))
                if hidden_steps is None
                else tuple(int(s) for s in hidden_steps)
            )
            bad = [s for s in steps if not 0 <= s < max_new_tokens]
            if bad or not steps:
                raise ValueError(
                    f"hidden_steps must be non-empty and in [0, {max_new_tokens}), "
                    f"got {list(steps)[:8]}"
                )
        else:
            steps = ()
        att_layers, att_heads = self.check_attention(attention_layers, attention_heads)
        steering = self._check_steering(steering)
        per_row = steering is not None and (steering.vector.ndim == 2 or steering.scale.ndim)
        if per_row:
            # Row i of the prompts gets vector[i] * scale[i] (a sweep in one call).
            n = len(prompts)
            if steering.vector.ndim == 2 and steering.vector.shape[0] != n:
                raise ValueError(
                    f"steering.vector has {steering.vector.shape[0]} rows for {n} prompts; "
                    "pass [hidden] or one row per prompt"
                )
            if steering.scale.shape not in ((), (n,)):
                raise ValueError(
                    f"steering.scale must be a scalar or [{n}] (one per prompt), got shape "
                    f"{steering.scale.shape}"
                )
            steering = steering.replace(
                vector=jnp.broadcast_to(steering.vector, (n, self.config.hidden_size)),
                scale=jnp.broadcast_to(steering.scale, (n,)),
            )

        exit_layers, exit_args = self._exit_args(exit_rule)
        suppress = None
        if len(suppress_token_ids):
            bad = [t for t in suppress_token_ids if not 0 <= int(t) < self.config.vocab_size]
            if bad:
                raise ValueError(
                    f"suppress_token_ids {bad[:5]} outside [0, {self.config.vocab_size})"
                )
            suppress = np.zeros((self.config.vocab_size,), bool)
            suppress[np.asarray(suppress_token_ids, np.int64)] = True
            suppress = jnp.asarray(suppress)
        num_new = next_power_of_two(max_new_tokens, 8)
        slots = next_power_of_two(len(steps)) if steps else 0
        slot_of_step = np.full((num_new,), -1, np.int32)
        slot_of_step[list(steps)] = np.arange(len(steps), dtype=np.int32)
        sample = temperature > 0
        spec = gen_lib.DecodeSpec(
            config=self.config,
            num_new=num_new,
            sample=sample,
            filtered=sample and (top_k > 0 or top_p < 1.0),
            want_stats=return_stats,
            hidden_layers=layers,
            num_hidden_slots=slots,
            steer_layer=None if steering is None else steering.layer,
            steer_prompt=steer_prompt,
            dtype=self.dtype,
            exit_layers=exit_layers,
            exit_probe=None if exit_rule is None else exit_rule.probe,
            attention_layers=att_layers,
            attention_heads=att_heads,
        )
        stop_ids, pad_id = self.stop_and_pad(stop_token_ids)
        steer_vec = (
            steering.vector
            if steering is not None
            else jnp.zeros((self.config.hidden_size,), jnp.float32)
        )
        steer_scale = steering.scale if steering is not None else jnp.zeros((), jnp.float32)
        base_key = jax.random.PRNGKey(seed)

        t0 = time.perf_counter()

        def run(chunk):
            row_keys = _row_keys(base_key, jnp.asarray(chunk.row_ids))
            pre = None
            if prefix is not None:
                rows, keep = prefix_rows[chunk.row_ids], prefix_keep[chunk.row_ids]
                keep_slot = prefix.slots - prefix.lengths[rows] + keep
                rows, keep, keep_slot = self.runner.place(rows, keep, keep_slot)
                pre = {"cache": prefix.cache, "rows": rows, "keep": keep, "keep_slot": keep_slot}
            vec, scale = steer_vec, steer_scale
            if per_row:
                vec, scale = self.runner.place(steer_vec[chunk.row_ids], steer_scale[chunk.row_ids])
            out = gen_lib.decode(
                self.params,
                *self.runner.place(chunk.tokens, chunk.valid, row_keys, chunk.active),
                np.int32(max_new_tokens),
                np.float32(temperature),
                np.int32(top_k),
                np.float32(top_p),
                stop_ids,
                np.bool_(ignore_eos),
                np.int32(pad_id),
                slot_of_step,
                vec,
                scale,
                exit_args,
                pre,
                suppress,
                spec=spec,
            )
            out = self.runner.fetch(out)
            rows = []
            for r in range(len(chunk.indices)):
                n = int(out["lengths"][r])
                rows.append(
                    (
                        out["tokens"][r, :n],
                        out["logprobs"][r, :n],
                        out["stats"][r, :n] if return_stats else None,
                        out["hidden"][:, r, : len(steps)] if slots else None,
                        int(out["exit_step"][r]) if exit_layers else None,
                        out["cue_probs"][r, :n] if exit_layers else None,
                        out["attention"][r, :n] if att_layers is not None else None,
                    )
                )
            return rows

        results = self.runner.map(
            prompts,
            run,
            batch_size=batch_size,
            pad_id=pad_id,
            desc="generate",
            progress=progress,
            count=lambda row: len(row[0]),
        )
        tokens = [results[i][0].tolist() for i in range(len(prompts))]
        texts, finish = self.texts_and_finish(tokens, stop_ids, ignore_eos=ignore_eos)
        stats = None
        if return_stats:
            stats = {
                name: [results[i][2][:, k] for i in range(len(prompts))]
                for k, name in enumerate(gen_lib.STAT_NAMES)
            }
        hidden = None
        if slots:
            hidden = np.stack([results[i][3] for i in range(len(prompts))], axis=1)
        exit_steps = cue_probs = None
        if exit_layers:
            exit_steps = [results[i][4] for i in range(len(prompts))]
            cue_probs = [results[i][5] for i in range(len(prompts))]
            finish = ["exit" if e >= 0 else f for e, f in zip(exit_steps, finish, strict=True)]
        return Generation(
            tokens=tokens,
            logprobs=[results[i][1] for i in range(len(prompts))],
            texts=texts,
            finish_reasons=finish,
            stats=stats,
            hidden_states=hidden,
            hidden_layers=layers,
            hidden_steps=steps or None,
            seconds=time.perf_counter() - t0,
            exit_steps=exit_steps,
            cue_probs=cue_probs,
            attention=None if att_layers is None else [results[i][6] for i in range(len(prompts))],
            attention_layers=att_layers,
            attention_heads=att_heads,
        )

    # -- scoring --------------------------------------------------------------------------------

    def score(
        self,
        prompts,
        continuations,
        *,
        return_stats: bool = True,
        batch_size: int = 16,
        progress: bool | None = None,
    ) -> Scores:
        """Teacher-forced log-probabilities of `continuations` given `prompts`.

        Args:
          prompts: list of token-id lists.
          continuations: list (same length) of non-empty token-id lists.
          return_stats: also return the STAT_NAMES statistics at each continuation token.
        Returns:
          Scores with per-token logprobs [n_cont] for each pair.
        """
        prompts = self.check_ids(prompts, "prompts")
        continuations = self.check_ids(continuations, "continuations")
        if len(prompts) != len(continuations):
            raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
        ctx = self.config.max_position_embeddings
        seqs = [p + c for p, c in zip(prompts, continuations, strict=True)]
        for i, s in enumerate(seqs):
            if len(s) > ctx:
                raise ValueError(f"prompt + continuation {i} has {len(s)} tokens > context {ctx}")

        def run(chunk):
            length = chunk.length
            target = np.zeros(chunk.tokens.shape, bool)
            for r, i in enumerate(chunk.indices):
                target[r, length - len(continuations[i]) :] = True
            # Continuations are right-aligned: the LM head runs on their (bucketed) span only.
            longest = max(len(continuations[i]) for i in chunk.indices)
            out = gen_lib.score_tokens(
                self.params,
                *self.runner.place(chunk.tokens, chunk.valid, target),
                config=self.config,
                dtype=self.dtype,
                want_stats=return_stats,
                tail=next_power_of_two(longest, 8),
            )
            out = self.runner.fetch(out)
            rows = []
            for r, i in enumerate(chunk.indices):
                c = len(continuations[i])
                rows.append(
                    (
                        out["logprobs"][r, length - c :],
                        out["stats"][r, length - c :] if return_stats else None,
                    )
                )
            return rows

        results = self.runner.map(
            seqs, run, batch_size=batch_size, pad_id=0, desc="score", progress=progress
        )
        logprobs = [r[0] for r in results]
        stats = [r[1] for r in results]
        n = len(seqs)
        return Scores(
            logprobs=[logprobs[i] for i in range(n)],
            stats=(
                {
                    name: [stats[i][:, k] for i in range(n)]
                    for k, name in enumerate(gen_lib.STAT_NAMES)
                }
                if return_stats
                else None
            ),
        )


@jax.jit
def _row_keys(base_key, rows):
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base_key, rows)


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _fingerprint(path: str) -> tuple:
    """(name, size, mtime_ns) of the file, or of every file in the directory: a changed or
    replaced weights file gives a new key, so the cache never serves stale parameters."""
    files = (
        [path]
        if os.path.isfile(path)
        else sorted(
            os.path.join(path, f) for f in os.listdir(path) if os.path.isfile(os.path.join(path, f))
        )
    )
    return tuple((f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)


@functools.lru_cache(maxsize=4)
def _read(path: str, fingerprint: tuple):
    del fingerprint  # part of the cache key only
    if os.path.isdir(path):
        config, params = loaders.load_hf_dir(path, dtype=np.float32)
        tokenizer = Tokenizer.from_hf_dir(path)
    elif path.endswith(".gguf") or os.path.isfile(path):
        config, params, reader = loaders.load_gguf(path, dtype=np.float32)
        tokenizer = Tokenizer.from_gguf(reader)
    else:
        raise FileNotFoundError(f"model file or directory not found: {path}")
    return config, params, tokenizer


def clear_cache() -> None:
    """Forget the host copies of loaded weights (`load(..., cache=True)` keeps up to 4)."""
    _read.cache_clear()


def load(
    name_or_path: str = "smollm2-135m-instruct",
    *,
    dtype: str = "float32",
    mesh: jax.sharding.Mesh | None = None,
    sharding_config=None,
    cache: bool = True,
) -> LM:
    """Load a model by registered name, GGUF path or Hugging Face directory.

    Args:
      name_or_path: e.g. "smollm2-135m-instruct", "path/model.gguf", "path/hf_dir".
      dtype: compute and parameter dtype ("float32", "bfloat16" or "float16").
      mesh: optional device mesh (`introspect.sharding.make_mesh`); params are placed on it with
        `introspect.sharding` (the training layout) and batches are split over "data".
      sharding_config: the `sharding` config (fsdp, min_size, rules) of that placement; None =
        `introspect.sharding.default_config().sharding`, the training default.
      cache: reuse the host copy of the weights read earlier in this process (keyed by path,
        size and modification time of every file, so a changed file is read again);
        `clear_cache()` drops them.
    Returns:
      LM.
    """
    if jnp.dtype(dtype) not in (jnp.float32, jnp.bfloat16, jnp.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    path = os.path.abspath(resolve(name_or_path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file or directory not found: {path}")
    key = _fingerprint(path)
    config, params, tokenizer = (_read if cache else _read.__wrapped__)(path, key)
    return LM(
        config,
        params,
        tokenizer,
        name=str(name_or_path),
        dtype=dtype,
        mesh=mesh,
        sharding_config=sharding_config,
    )
