"""Hidden-state features for probes: positions, extraction from the model, an on-disk store.

Positions (indices into a token sequence = prompt + response):
  "last_prompt"  the last prompt token (its state produced the first response token);
  "answer"       every response token;
  "every_k"      every k-th response token (k = `every`), counting from the first;
  "cues"         response tokens that complete a match of a cue string ("wait", "hmm", ...),
                 case-insensitive on the decoded text (LYNX);
  "last"         the last token of the sequence (SEP's SLT when the sequence stops before
                 the end-of-sequence token).

Extraction: `extract_forward(lm, sequences, positions, layers=...)` runs `lm.forward` on the
runner's bucketed, left-padded batches (few compiled shapes) and gathers the hidden states of the
chosen layers at the chosen positions, concatenated over layers -> [positions, layers * hidden].
`generation_features(gen)` does the same for states captured during `lm.generate` (hidden_steps).

Store: `build_store(directory, examples, extract_fn, meta=...)` applies `extract_fn` to chunks of
examples and writes one shard per chunk (`<column>.<shard>.npy`, atomically) plus `index.json`
(columns, shard sizes, the meta, progress). A rerun with the same meta reuses the finished store,
or continues an interrupted one after its last finished shard; a different meta is a ValueError.
`FeatureStore(directory)` memory-maps the shards and is a training-loop source:
`len(store)`, `store[indices] -> {column: array [len(indices), ...]}`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from introspect import results
from introspect.probes.cues import CueMatcher, token_pieces

POSITION_KINDS = ("last_prompt", "answer", "every_k", "cues", "last")
STORE_FORMAT = "introspect.features/1"


# ----------------------------------------------------------------------------------------------
# Positions
# ----------------------------------------------------------------------------------------------


def token_char_ends(tokenizer, ids: Sequence[int]) -> tuple[np.ndarray, str]:
    """([len(ids)] end offset of each token, text): the text is the concatenation of the
    per-token decodings (a character split across tokens decodes as U+FFFD on both sides, which
    never matches an ASCII cue)."""
    pieces = token_pieces(tokenizer, ids)
    return np.cumsum([len(p) for p in pieces], dtype=np.int64), "".join(pieces)


def cue_positions(tokenizer, ids: Sequence[int], cues: Sequence[str]) -> np.ndarray:
    """Indices into `ids` of the tokens that complete a case-insensitive match of any cue
    (`CueMatcher`: non-overlapping, possibly spanning tokens; the decode loop's online exit
    finds the same tokens).

    Args:
      tokenizer: has decode(list[int]) -> str.
      ids: token ids (usually the response).
      cues: strings such as ("hmm", "wait", "alternatively"); "\\n\\n" works too.
    Returns:
      sorted unique int64 indices (a token that completes several matches appears once).
    """
    matcher = CueMatcher(cues)
    return matcher.positions(token_pieces(tokenizer, ids))


def select_positions(
    kind: str,
    *,
    prompt_len: int,
    total_len: int,
    every: int = 1,
    cues: Sequence[str] = (),
    tokenizer=None,
    ids: Sequence[int] | None = None,
) -> np.ndarray:
    """Indices into a sequence of `total_len` tokens whose first `prompt_len` are the prompt.

    Args:
      kind: one of POSITION_KINDS.
      prompt_len, total_len: 1 <= prompt_len <= total_len.
      every: k for "every_k" (>= 1).
      cues, tokenizer, ids: for "cues": the cue strings, a tokenizer and the full sequence ids.
    Returns:
      int64 [num_positions] sorted indices.
    """
    if kind not in POSITION_KINDS:
        raise ValueError(f"position kind {kind!r} is unknown; choose one of {POSITION_KINDS}")
    if not 1 <= prompt_len <= total_len:
        raise ValueError(f"need 1 <= prompt_len <= total_len, got {prompt_len}, {total_len}")
    if kind == "last_prompt":
        return np.array([prompt_len - 1], np.int64)
    if kind == "last":
        return np.array([total_len - 1], np.int64)
    if kind == "answer":
        return np.arange(prompt_len, total_len, dtype=np.int64)
    if kind == "every_k":
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        return np.arange(prompt_len, total_len, every, dtype=np.int64)
    if tokenizer is None or ids is None or len(ids) != total_len:
        raise ValueError("position kind 'cues' needs tokenizer= and ids= (the full sequence)")
    return prompt_len + cue_positions(tokenizer, list(ids)[prompt_len:], cues)


# ----------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------


def extract_forward(
    lm,
    sequences: Sequence[Sequence[int]],
    positions: Sequence[Sequence[int]],
    *,
    layers: Sequence[int],
    batch_size: int = 8,
    dtype=np.float32,
) -> list[np.ndarray]:
    """Hidden states at chosen positions of full sequences (teacher-forced `lm.forward`).

    Args:
      lm: an `introspect.models.LM`.
      sequences: token-id lists (prompt + response), any lengths.
      positions: per sequence, indices into it (e.g. from `select_positions`); may be empty.
      layers: hidden-state indices (0 = embeddings, i = after block i - 1, num_layers = final
        norm; negative counts from the end).
      batch_size: rows per forward call (`lm.runner`: bucketed batch and length shapes, split
        over the mesh's "data" axis when the LM has one).
      dtype: dtype of the returned features.
    Returns:
      per sequence an array [len(positions[i]), len(layers) * hidden], layers concatenated in the
      order given.
    """
    if len(sequences) != len(positions):
        raise ValueError(f"got {len(sequences)} sequences but {len(positions)} position lists")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not layers:
        raise ValueError("layers must name at least one hidden-state index")
    pos = [np.asarray(p, np.int64).reshape(-1) for p in positions]
    for i, (s, p) in enumerate(zip(sequences, pos, strict=True)):
        if p.size and (p.min() < 0 or p.max() >= len(s)):
            raise ValueError(f"positions[{i}] out of range for a sequence of {len(s)} tokens")
    hidden = lm.config.hidden_size

    def run(chunk):
        hs = lm.forward(
            chunk.tokens, mask=chunk.valid, hidden_layers=list(layers), return_logits=False
        ).hidden_states
        hs = np.asarray(hs)  # [layers, batch, length, hidden]
        rows = []
        for r, i in enumerate(chunk.indices):
            offset = chunk.length - len(sequences[i])  # left padding
            h = hs[:, r, offset + pos[i], :]  # [layers, positions, hidden]
            rows.append(np.transpose(h, (1, 0, 2)).reshape(len(pos[i]), len(layers) * hidden))
        return rows

    out = lm.runner.map(
        sequences, run, batch_size=batch_size, pad_id=lm.tokenizer.pad_token_id or 0
    )
    return [np.asarray(o, dtype) for o in out]


def generation_features(gen, *, step: int = 0, dtype=np.float32) -> np.ndarray:
    """Features [prompts, layers * hidden] from `lm.generate(..., hidden_layers=..., hidden_steps=
    [...])`: the captured states at generation step `step` (0 = the last prompt token)."""
    if gen.hidden_states is None:
        raise ValueError("the generation has no hidden states; pass hidden_layers= to generate")
    steps = list(gen.hidden_steps or ())
    if step not in steps:
        raise ValueError(f"step {step} was not captured; captured hidden_steps={steps}")
    h = np.asarray(gen.hidden_states)[:, :, steps.index(step), :]  # [layers, prompts, hidden]
    n_layers, n, hidden = h.shape
    return np.transpose(h, (1, 0, 2)).reshape(n, n_layers * hidden).astype(dtype)


# ----------------------------------------------------------------------------------------------
# On-disk store
# ----------------------------------------------------------------------------------------------


def _save_npy(path: str, array: np.ndarray) -> None:
    directory = os.path.dirname(path)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_index(directory: str) -> dict | None:
    path = os.path.join(directory, "index.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _jsonable(meta: Mapping) -> dict:
    return json.loads(json.dumps(dict(meta), default=lambda x: np.asarray(x).tolist()))


def build_store(
    directory: str,
    examples: Sequence,
    extract_fn: Callable[[Sequence], Mapping[str, np.ndarray]],
    *,
    meta: Mapping,
    chunk_size: int = 256,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FeatureStore:
    """Extract features once into `directory`; resume or reuse an existing store.

    Args:
      directory: the store (created).
      examples: the inputs, processed in order in chunks of `chunk_size`.
      extract_fn: chunk of examples -> {column: array [rows, ...]} (all columns the same number
        of rows, which may differ from the chunk length; same columns/dtypes every chunk).
      meta: JSON-serialisable description of what is extracted (model, layers, positions, data);
        a store built with other meta is not reused (ValueError, or rebuilt with overwrite=True).
      chunk_size: examples per shard.
      overwrite: rebuild from scratch when the existing store's meta differs.
      progress: optional callback(examples_done, examples_total).
    Returns:
      FeatureStore over the finished store.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    meta = _jsonable(meta)
    spec = {"meta": meta, "num_examples": len(examples), "chunk_size": int(chunk_size)}
    index = _read_index(directory)
    if index is not None and index.get("spec") != spec:
        if not overwrite:
            raise ValueError(
                f"{directory} holds a feature store built with other settings "
                f"({index.get('spec')!r:.300}); use another directory or overwrite=True"
            )
        for f in os.listdir(directory):
            if f.endswith(".npy") or f == "index.json":
                os.unlink(os.path.join(directory, f))
        index = None
    os.makedirs(directory, exist_ok=True)
    if index is None:
        index = {"format": STORE_FORMAT, "spec": spec, "columns": None, "shards": [],
                 "examples_done": 0, "complete": False}  # fmt: skip
    n = len(examples)
    while index["examples_done"] < n:
        lo = index["examples_done"]
        hi = min(lo + chunk_size, n)
        columns = {k: np.asarray(v) for k, v in extract_fn(examples[lo:hi]).items()}
        rows = {k: v.shape[0] if v.ndim else None for k, v in columns.items()}
        if not columns or len(set(rows.values())) != 1 or None in rows.values():
            raise ValueError(f"extract_fn must return columns with equal leading sizes: {rows}")
        described = {
            k: {"dtype": v.dtype.str, "shape": list(v.shape[1:])} for k, v in columns.items()
        }
        if index["columns"] is None:
            index["columns"] = described
        elif index["columns"] != described:
            raise ValueError(
                f"extract_fn returned {described} for examples [{lo}, {hi}); earlier chunks "
                f"returned {index['columns']}"
            )
        shard = len(index["shards"])
        for k, v in columns.items():
            _save_npy(os.path.join(directory, f"{k}.{shard:05d}.npy"), v)
        index["shards"].append({"rows": int(next(iter(rows.values()))), "examples": [lo, hi]})
        index["examples_done"] = hi
        results.write_json(os.path.join(directory, "index.json"), index)
        if progress is not None:
            progress(hi, n)
    if not index["complete"]:
        index["complete"] = True
        results.write_json(os.path.join(directory, "index.json"), index)
    return FeatureStore(directory)


class FeatureStore:
    """Read side of a store written by `build_store` (memory-mapped `.npy` shards).

    `len(store)` rows; `store[indices]` -> {column: [len(indices), ...]} in the order of
    `indices`; `store.column(name)` -> the whole column; `store.meta`; `store.columns`.
    """

    def __init__(self, directory: str):
        index = _read_index(directory)
        if index is None:
            raise FileNotFoundError(f"no feature store at {directory} (index.json missing)")
        if index.get("format") != STORE_FORMAT:
            raise ValueError(f"{directory}/index.json is not a {STORE_FORMAT} store")
        if not index.get("complete"):
            raise ValueError(
                f"the feature store at {directory} is incomplete "
                f"({index.get('examples_done')} of {index['spec']['num_examples']} examples); "
                "run build_store again to finish it"
            )
        self.directory = directory
        self.index = index
        self.meta = index["spec"]["meta"]
        self.columns = index["columns"] or {}
        sizes = [s["rows"] for s in index["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._arrays = {
            k: [
                np.load(os.path.join(directory, f"{k}.{i:05d}.npy"), mmap_mode="r")
                for i in range(len(sizes))
            ]
            for k in self.columns
        }
        for k, arrays in self._arrays.items():
            for i, a in enumerate(arrays):
                if a.shape[0] != sizes[i]:
                    raise ValueError(f"{directory}: shard {i} of {k!r} has {a.shape[0]} rows, "
                                     f"index.json says {sizes[i]}")  # fmt: skip

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, indices) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for a store of {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        shard = np.searchsorted(self.offsets, idx, side="right") - 1
        out = {}
        for k, spec in self.columns.items():
            arr = np.empty((idx.size, *spec["shape"]), np.dtype(spec["dtype"]))
            for s in np.unique(shard):
                rows = shard == s
                arr[rows] = self._arrays[k][s][idx[rows] - self.offsets[s]]
            out[k] = arr
        return out

    def column(self, name: str) -> np.ndarray:
        """The whole column `name` [rows, ...] in memory."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {sorted(self.columns)}")
        return np.concatenate([np.asarray(a) for a in self._arrays[name]], axis=0)


class Subset:
    """Rows `indices` of a source, as a source (train/validation splits of a store)."""

    def __init__(self, source, indices):
        self.source = source
        self.indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, idx):
        return self.source[self.indices[np.asarray(idx, np.int64)]]
