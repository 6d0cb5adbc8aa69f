"""A generation store: expensive model outputs computed once per key, on disk, resumable.

Generating is the slow part of every confidence experiment; scoring a signal is cheap. The store
keeps per-example records (token ids, per-step log-probs and statistics, samples, hidden states,
grades: whatever the caller computes) under a key that names everything the records depend on
(model, task, split, prompt format, decoding settings). A later run with the same key reads the
records instead of generating them.

Layout of one entry, `<root>/<digest>/` (digest = sha256 of the key's canonical JSON):

  index.json              {"format", "key", "shards": {name: {"ids", "sha256", "bytes"}}}
  shard-<ids digest>.npz  the records of one chunk of examples (numpy .npz, no pickles)

Examples are processed in chunks of `shard_size` ids (in the order asked for); each finished
chunk is written as one shard (atomically: temporary file, fsync, rename) and the index is
rewritten after it, so a killed run loses at most the chunk in flight and the next run resumes
after the last finished shard. A shard is named by the digest of its example ids, so asking for
more examples later reuses every chunk whose ids are unchanged. Each shard's sha256 is checked
on read: a corrupted or missing shard is reported and made again, nothing else is touched.
Shards name their own example ids, so a valid shard the index does not list (a run killed
between the shard and the index write, a lost index.json) is taken back, not made again.
One writer per entry at a time (concurrent runs on one key may both generate a chunk; the last
rename wins, both copies being valid).

Record fields (the same set for every record of an entry) may be:
  numpy arrays (any shape; ragged along axis 0 between records, same trailing shape and dtype),
  or JSON values (str, int, float, bool, None, lists and dicts of these).

    store = GenerationStore("results/store")
    entry = store.entry({"model": ..., "task": "triviaqa", "split": "evaluation", ...})
    records = entry.get(ids, make)   # make(list of positions) -> list of record dicts
    entry.counts                      # {"loaded": ..., "made": ..., "remade_shards": ...}
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from absl import logging
from tqdm.auto import tqdm

from introspect import results

FORMAT = 1

__all__ = [
    "FORMAT",
    "GenerationStore",
    "StoreEntry",
    "decode_shard",
    "encode_shard",
    "generation_records",
    "key_digest",
    "model_key",
    "logit_inputs",
    "read_generations",
    "response_ids",
    "scored_records",
]


def _canonical(obj: Any) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"store key must be JSON (str, numbers, bools, None, lists, dicts), got {obj!r}: {e}"
        ) from None


def model_key(model: str, dtype: str) -> dict:
    """What stored generations depend on about a model: its name, the bytes of its weights
    file(s) (a different file under the same name is a different model) and compute dtype."""
    from introspect import models

    path = models.resolve(model)
    files = (
        [path]
        if os.path.isfile(path)
        else [os.path.join(path, f) for f in sorted(os.listdir(path))]
    )
    size = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    return {"model": str(model), "model_bytes": size, "dtype": dtype}


def key_digest(key: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of `key` (sorted keys, no whitespace)."""
    if not isinstance(key, Mapping) or not key:
        raise ValueError(f"store key must be a non-empty mapping, got {key!r}")
    return hashlib.sha256(_canonical(dict(key)).encode()).hexdigest()


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(ids).encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------------------------
# Shard encoding
# ---------------------------------------------------------------------------------------------


def encode_shard(records: Sequence[Mapping[str, Any]], ids: Sequence[str]) -> bytes:
    """Records (of examples `ids`) -> bytes of one .npz: each array field concatenated along
    axis 0 with per-record lengths; the ids and JSON fields in one JSON document. All records
    must have the same fields."""
    if not records:
        raise ValueError("a shard needs at least one record")
    if len(ids) != len(records):
        raise ValueError(f"got {len(records)} records for {len(ids)} ids")
    fields = sorted(records[0])
    arrays: dict[str, np.ndarray] = {}
    plain: dict[str, list] = {}
    for name in fields:
        values = []
        for i, r in enumerate(records):
            if sorted(r) != fields:
                raise ValueError(
                    f"record {i} has fields {sorted(r)}, record 0 has {fields}; every record of a "
                    "store entry needs the same fields"
                )
            values.append(r[name])
        if isinstance(values[0], np.ndarray):
            first = values[0]
            for i, v in enumerate(values):
                if (
                    not isinstance(v, np.ndarray)
                    or v.ndim == 0
                    or v.shape[1:] != first.shape[1:]
                    or v.dtype != first.dtype
                ):
                    raise ValueError(
                        f"field {name!r}: record {i} is {type(v).__name__} "
                        f"{getattr(v, 'shape', '')} {getattr(v, 'dtype', '')}; expected arrays "
                        f"of shape [n, *{first.shape[1:]}] and dtype {first.dtype} in every record"
                    )
            arrays[f"a:{name}"] = np.concatenate(values, axis=0)
            arrays[f"n:{name}"] = np.array([len(v) for v in values], np.int64)
        else:
            plain[name] = values
    try:
        doc = json.dumps({"ids": [str(i) for i in ids], "fields": plain}, allow_nan=True)
    except TypeError as e:
        raise ValueError(f"record fields must be numpy arrays or JSON values: {e}") from None
    arrays["json"] = np.frombuffer(doc.encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_shard(data: bytes) -> tuple[list[str], list[dict[str, Any]]]:
    """bytes of `encode_shard` -> (ids, records)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        doc = json.loads(bytes(z["json"]).decode())
        arrays = {k[2:]: (z[k], z["n:" + k[2:]]) for k in z.files if k.startswith("a:")}
    ids, plain = doc["ids"], doc["fields"]
    sizes = {len(ids)} | {len(v) for v in plain.values()} | {len(n) for _, n in arrays.values()}
    if len(sizes) != 1:
        raise ValueError(f"shard fields disagree on the number of records: {sorted(sizes)}")
    (num,) = sizes
    records: list[dict[str, Any]] = [{} for _ in range(num)]
    for name, values in plain.items():
        for r, v in zip(records, values, strict=True):
            r[name] = v
    for name, (flat, lengths) in arrays.items():
        ends = np.cumsum(lengths)
        if num and ends[-1] != len(flat):
            raise ValueError(f"field {name!r}: lengths sum to {ends[-1]}, data has {len(flat)}")
        for r, lo, hi in zip(records, ends - lengths, ends, strict=True):
            r[name] = flat[lo:hi]
    return ids, records


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class StoreEntry:
    """The records of one key. `counts`: examples loaded from disk and made by `make` in this
    process, and shards made again because they were corrupted or missing."""

    path: str
    key: dict
    counts: dict = dataclasses.field(
        default_factory=lambda: {"loaded": 0, "made": 0, "remade_shards": 0}
    )

    @property
    def index_path(self) -> str:
        return os.path.join(self.path, "index.json")

    def _index(self) -> dict:
        empty = {"format": FORMAT, "key": self.key, "shards": {}}
        if not os.path.exists(self.index_path):
            return empty
        try:
            with open(self.index_path) as f:
                index = json.load(f)
            if index.get("format") != FORMAT or index.get("key") != self.key:
                raise ValueError(f"format {index.get('format')}, key {index.get('key')}")
            if not isinstance(index.get("shards"), dict):
                raise ValueError("no shard table")
        except (OSError, ValueError) as e:
            logging.warning("store %s: unreadable index (%s); starting a new one", self.path, e)
            return empty
        return index

    def _write_index(self, index: dict) -> None:
        results.write_json(self.index_path, index)

    def _read_shard(self, name: str, ids: Sequence[str], sha256: str | None) -> list[dict] | None:
        """The records of shard `name` if its file holds exactly `ids` (and, when the index
        lists it, has the listed sha256); None otherwise."""
        path = os.path.join(self.path, name)
        with open(path, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise ValueError(f"sha256 {digest[:12]}... differs from the index's {sha256[:12]}...")
        stored_ids, records = decode_shard(data)
        if stored_ids != list(ids):
            raise ValueError("holds other example ids")
        return records, digest, len(data)

    def _load(self, index: dict, name: str, ids: Sequence[str]):
        """(records, sha256, bytes) of a finished shard, or None when it must be made: not
        listed and not on disk, or corrupted (reported, counted in remade_shards). A valid
        shard file missing from the index (a run killed between the two writes, a lost index)
        is taken back."""
        info = index["shards"].get(name)
        path = os.path.join(self.path, name)
        if info is None and not os.path.exists(path):
            return None
        try:
            out = self._read_shard(name, ids, None if info is None else info.get("sha256"))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            logging.warning(
                "store %s: shard %s is corrupted or missing (%s); making it again",
                self.path,
                name,
                e,
            )
            self.counts["remade_shards"] += 1
            return None
        if info is None:
            logging.info("store %s: shard %s recovered (not in the index)", self.path, name)
        return out

    def get(
        self,
        ids: Sequence[str],
        make: Callable[[list[int]], list[dict[str, Any]]],
        *,
        shard_size: int = 64,
        desc: str = "",
    ) -> list[dict[str, Any]]:
        """The records of `ids`, read from finished shards or made by `make` (and stored).

        Args:
          ids: unique example ids, in the order wanted.
          make: positions (into `ids`) of one chunk -> its records, in that order.
          shard_size: examples per shard (the unit of resumption).
          desc: a label for the log lines.
        Returns:
          one record dict per id, in the order of `ids`.
        """
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
            raise ValueError(f"store ids must be unique; repeated: {dup}")
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive int, got {shard_size!r}")
        os.makedirs(self.path, exist_ok=True)
        index = self._index()
        if not os.path.exists(self.index_path):
            self._write_index(index)
        out: list[dict[str, Any]] = []
        start = 0
        chunks = _chunks(ids, shard_size)
        bar = tqdm(total=len(ids), unit="ex", desc=f"store {desc}".strip(), disable=len(chunks) < 2)
        for k, chunk in enumerate(chunks):
            bar.update(len(out) - bar.n)
            positions = list(range(start, start + len(chunk)))
            start += len(chunk)
            name = f"shard-{_ids_digest(chunk)}.npz"
            found = self._load(index, name, chunk)
            if found is not None:
                records, digest, size = found
                if name not in index["shards"]:
                    index["shards"][name] = {"ids": chunk, "sha256": digest, "bytes": size}
                    self._write_index(index)
                self.counts["loaded"] += len(chunk)
                out.extend(records)
                continue
            logging.info("store %s: making %s chunk %d/%d", self.path, desc, k + 1, len(chunks))
            records = make(positions)
            if len(records) != len(chunk):
                raise ValueError(f"make returned {len(records)} records for {len(chunk)} ids")
            data = encode_shard(records, chunk)
            results.write_bytes(os.path.join(self.path, name), data)
            index["shards"][name] = {
                "ids": chunk,
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
            self._write_index(index)
            self.counts["made"] += len(chunk)
            # Round-trip what was stored, so a run sees exactly what a later run will read.
            out.extend(decode_shard(data)[1])
        bar.update(len(out) - bar.n)
        bar.close()
        return out


def _chunks(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


class GenerationStore:
    """A directory of entries, one per key (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        if not str(root):
            raise ValueError("store root must be a directory path, got ''")
        self.root = os.fspath(root)

    def __repr__(self) -> str:
        return f"GenerationStore({self.root!r})"

    def entry(self, key: Mapping[str, Any]) -> StoreEntry:
        """The entry of `key` (created on first write). The key must be JSON; it is stored in
        the entry's index.json for people to read, and checked against it on every read."""
        digest = key_digest(key)
        key = json.loads(_canonical(dict(key)))
        return StoreEntry(os.path.join(self.root, digest[:32]), key)


# ---------------------------------------------------------------------------------------------
# Generation records: what the confidence experiments store per example
# ---------------------------------------------------------------------------------------------
#
#   prompt_ids     int32 [p]          the prompt the model saw
#   tokens         int32 [n]          the answer's tokens (ending with the stop token if it stopped)
#   logprobs       float32 [n]        log p(token) under the untempered distribution
#   stats          float32 [n, S]     the S = len(STAT_NAMES) statistics of each step's distribution
#   text           str                the decoded answer, special tokens skipped
#   finish_reason  str                "stop" or "length"
#
# In-process generations (`generation_records`) and outside ones scored teacher-forced
# (`scored_records`) give the same fields, so every logit signal reads both the same way
# (`logit_inputs`).


def generation_records(gen, prompts: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """One record per prompt of an `LM.generate(..., return_stats=True)` output."""
    if gen.stats is None:
        raise ValueError("generation_records needs LM.generate(..., return_stats=True)")
    from introspect.signals.stats import STAT_NAMES

    out = []
    for i, prompt in enumerate(prompts):
        out.append(
            {
                "prompt_ids": np.asarray(prompt, np.int32),
                "tokens": np.asarray(gen.tokens[i], np.int32),
                "logprobs": np.asarray(gen.logprobs[i], np.float32),
                "stats": np.stack([gen.stats[s][i] for s in STAT_NAMES], -1).astype(np.float32),
                "text": gen.texts[i],
                "finish_reason": gen.finish_reasons[i],
            }
        )
    return out


def response_ids(lm, response: str, finish_reason: str = "stop") -> list[int]:
    """The token ids of an outside response: its text encoded without special tokens, followed
    by the model's EOS token when the response ended by stopping ("stop"; "length" = cut off)."""
    if finish_reason not in ("stop", "length"):
        raise ValueError(f"finish_reason must be 'stop' or 'length', got {finish_reason!r}")
    ids = lm.tokenizer.encode(response)
    if finish_reason == "stop":
        if lm.tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; give finish_reason 'length'")
        ids = ids + [lm.tokenizer.eos_token_id]
    if not ids:
        raise ValueError("an empty response cut off by length has no tokens to score")
    return ids


def scored_records(
    lm,
    prompts: Sequence[Sequence[int]],
    responses: Sequence[str],
    finish_reasons: Sequence[str] | None = None,
    *,
    batch_size: int = 16,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Records of outside responses, scored teacher-forced by `lm` (`LM.score`): the same fields
    as `generation_records`, so every logit signal scores them as if `lm` had generated them.

    Args:
      prompts: token ids of each prompt, as the model saw it.
      responses: the response texts.
      finish_reasons: per response "stop" (default: EOS appended and scored) or "length".
    """
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    finish_reasons = list(finish_reasons or ["stop"] * len(responses))
    if len(finish_reasons) != len(responses):
        raise ValueError(f"got {len(finish_reasons)} finish_reasons for {len(responses)} responses")
    conts = [response_ids(lm, r, f) for r, f in zip(responses, finish_reasons, strict=True)]
    sc = lm.score(prompts, conts, return_stats=True, batch_size=batch_size, progress=progress)
    from introspect.signals.stats import STAT_NAMES

    return [
        {
            "prompt_ids": np.asarray(prompts[i], np.int32),
            "tokens": np.asarray(conts[i], np.int32),
            "logprobs": np.asarray(sc.logprobs[i], np.float32),
            "stats": np.stack([sc.stats[s][i] for s in STAT_NAMES], -1).astype(np.float32),
            "text": lm.tokenizer.decode(conts[i], skip_special_tokens=True),
            "finish_reason": finish_reasons[i],
        }
        for i in range(len(prompts))
    ]


def logit_inputs(records: Sequence[Mapping[str, Any]]):
    """(stats, mask) of `introspect.signals.from_ragged` for generation records."""
    from introspect.signals import from_ragged
    from introspect.signals.stats import STAT_NAMES

    logprobs = [r["logprobs"] for r in records]
    stats = {s: [r["stats"][:, k] for r in records] for k, s in enumerate(STAT_NAMES)}
    return from_ragged(logprobs, stats)


def read_generations(path: str | os.PathLike) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Outside generations from a JSON-lines file: {(task, split, id): row}.

    Each line is an object with "id" (the id of the task example answered) and "response"
    (text), optionally "finish_reason" ("stop", the default: the response ended with the end of
    turn, whose token is scored too; or "length": cut off) and "task" / "split" ("" or absent:
    the row answers that id in any task and split).
    """
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for n, row in enumerate(results.read_jsonl(os.fspath(path), required=("id", "response")), 1):
        if not isinstance(row["response"], str):
            raise ValueError(
                f"{path}: record {n}: response must be a string, got {row['response']!r:.60}"
            )
        if row.get("finish_reason", "stop") not in ("stop", "length"):
            raise ValueError(
                f"{path}: record {n}: finish_reason must be 'stop' or 'length', "
                f"got {row['finish_reason']!r}"
            )
        k = (str(row.get("task") or ""), str(row.get("split") or ""), str(row["id"]))
        if k in out:
            raise ValueError(f"{path}: record {n}: repeated (task, split, id) {k}")
        out[k] = row
    return out
