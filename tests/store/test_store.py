"""The generation store: shard round trip, reuse, resumption after a kill, corruption."""

import json
import os

import numpy as np
import pytest

from introspect import store


def _record(i: int, rng=None) -> dict:
    rng = rng or np.random.default_rng(i)
    n = 1 + i % 5
    return {
        "tokens": np.arange(n, dtype=np.int32) + i,
        "stats": rng.normal(size=(n, 4)).astype(np.float32),
        "hidden": rng.normal(size=(3, 8)).astype(np.float32),
        "text": f"answer {i} é",
        "p_true": 0.25 + i / 1000,
        "correct": bool(i % 2),
        "extracted": None if i % 3 == 0 else str(i),
        "sample_texts": [f"s{i}-{k}" for k in range(2)],
    }


class Maker:
    """`make` for the store that counts calls and can fail on a given call (a killed run)."""

    def __init__(self, fail_on_call: int | None = None):
        self.calls: list[list[int]] = []
        self.fail_on_call = fail_on_call

    def __call__(self, positions):
        self.calls.append(list(positions))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt("killed")
        return [_record(p) for p in positions]


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k], k


KEY = {"model": "m", "task": "t", "split": "s", "max_new_tokens": 8, "hidden_layers": [1, 2]}


@pytest.mark.parametrize("seed", range(5))
def test_shard_round_trip(seed):
    rng = np.random.default_rng(seed)
    recs = [_record(int(i), rng) for i in rng.integers(0, 100, size=1 + seed * 3)]
    ids = [f"id{k}" for k in range(len(recs))]
    got_ids, got = store.decode_shard(store.encode_shard(recs, ids))
    assert got_ids == ids
    for a, b in zip(recs, got, strict=True):
        _same(a, b)


def test_shard_encoding_errors():
    with pytest.raises(ValueError, match="at least one record"):
        store.encode_shard([], [])
    with pytest.raises(ValueError, match="same fields"):
        store.encode_shard([{"a": 1}, {"b": 1}], ["x", "y"])
    bad = [{"x": np.zeros((2, 3))}, {"x": np.zeros((2, 4))}]
    with pytest.raises(ValueError, match=r"field 'x': record 1"):
        store.encode_shard(bad, ["x", "y"])
    with pytest.raises(ValueError, match="numpy arrays or JSON"):
        store.encode_shard([{"x": object()}], ["x"])
    with pytest.raises(ValueError, match="2 records for 1 ids"):
        store.encode_shard([{"a": 1}, {"a": 2}], ["x"])


def test_key_must_be_json_and_digest_is_order_free():
    assert store.key_digest({"a": 1, "b": [1, 2]}) == store.key_digest({"b": [1, 2], "a": 1})
    assert store.key_digest({"a": 1}) != store.key_digest({"a": 2})
    with pytest.raises(ValueError, match="must be JSON"):
        store.key_digest({"a": object()})
    with pytest.raises(ValueError, match="non-empty mapping"):
        store.key_digest({})


def test_second_run_with_the_same_key_makes_nothing(tmp_path):
    ids = [f"q{i}" for i in range(23)]
    first = store.GenerationStore(tmp_path).entry(KEY)
    make = Maker()
    a = first.get(ids, make, shard_size=8)
    assert first.counts == {"loaded": 0, "made": 23, "remade_shards": 0}
    assert [len(c) for c in make.calls] == [8, 8, 7]
    again = store.GenerationStore(tmp_path).entry(dict(reversed(list(KEY.items()))))
    make2 = Maker()
    b = again.get(ids, make2, shard_size=8)
    assert make2.calls == [] and again.counts == {"loaded": 23, "made": 0, "remade_shards": 0}
    for x, y in zip(a, b, strict=True):
        _same(x, y)
    for i, r in enumerate(b):  # records come back in the order asked for
        _same(r, _record(i))
    index = json.loads((tmp_path / os.path.basename(first.path) / "index.json").read_text())
    assert index["key"] == KEY and len(index["shards"]) == 3


def test_other_key_other_entry(tmp_path):
    s = store.GenerationStore(tmp_path)
    s.entry(KEY).get(["a", "b"], Maker())
    other = s.entry({**KEY, "max_new_tokens": 9})
    make = Maker()
    other.get(["a", "b"], make)
    assert make.calls == [[0, 1]] and other.counts["made"] == 2


def test_killed_run_resumes_after_its_last_finished_shard(tmp_path):
    ids = [f"q{i}" for i in range(40)]
    entry = store.GenerationStore(tmp_path).entry(KEY)
    with pytest.raises(KeyboardInterrupt):
        entry.get(ids, Maker(fail_on_call=3), shard_size=10)
    resumed = store.GenerationStore(tmp_path).entry(KEY)
    make = Maker()
    out = resumed.get(ids, make, shard_size=10)
    assert make.calls == [list(range(20, 30)), list(range(30, 40))]
    assert resumed.counts == {"loaded": 20, "made": 20, "remade_shards": 0}
    for i, r in enumerate(out):
        _same(r, _record(i))


def test_more_examples_later_reuse_the_finished_chunks(tmp_path):
    entry = store.GenerationStore(tmp_path).entry(KEY)
    entry.get([f"q{i}" for i in range(16)], Maker(), shard_size=8)
    make = Maker()
    entry = store.GenerationStore(tmp_path).entry(KEY)
    entry.get([f"q{i}" for i in range(30)], make, shard_size=8)
    assert make.calls == [list(range(16, 24)), list(range(24, 30))]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "garbage"])
def test_corrupted_shard_is_detected_and_only_it_is_made_again(tmp_path, damage):
    ids = [f"q{i}" for i in range(30)]
    entry = store.GenerationStore(tmp_path).entry(KEY)
    entry.get(ids, Maker(), shard_size=10)
    shards = sorted(f for f in os.listdir(entry.path) if f.startswith("shard-"))
    index = json.loads(open(entry.index_path).read())
    second = next(n for n, info in index["shards"].items() if info["ids"][0] == "q10")
    path = os.path.join(entry.path, second)
    raw = bytearray(open(path, "rb").read())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
        open(path, "wb").write(bytes(raw))
    elif damage == "truncate":
        open(path, "wb").write(bytes(raw[: len(raw) // 3]))
    elif damage == "delete":
        os.remove(path)
    else:
        open(path, "wb").write(b"not a zip file")
    entry = store.GenerationStore(tmp_path).entry(KEY)
    make = Maker()
    out = entry.get(ids, make, shard_size=10)
    assert make.calls == [list(range(10, 20))]
    assert entry.counts == {"loaded": 20, "made": 10, "remade_shards": 1}
    for i, r in enumerate(out):
        _same(r, _record(i))
    assert sorted(f for f in os.listdir(entry.path) if f.startswith("shard-")) == shards
    # ... and the repaired store is whole again.
    entry = store.GenerationStore(tmp_path).entry(KEY)
    entry.get(ids, Maker(), shard_size=10)
    assert entry.counts == {"loaded": 30, "made": 0, "remade_shards": 0}


@pytest.mark.parametrize("damage", ["garbage", "delete", "other_key"])
def test_lost_index_recovers_the_valid_shards(tmp_path, damage):
    ids = [f"q{i}" for i in range(20)]
    entry = store.GenerationStore(tmp_path).entry(KEY)
    entry.get(ids, Maker(), shard_size=10)
    if damage == "garbage":
        open(entry.index_path, "w").write("{not json")
    elif damage == "delete":
        os.remove(entry.index_path)
    else:
        index = json.loads(open(entry.index_path).read())
        index["key"] = {"model": "another"}
        open(entry.index_path, "w").write(json.dumps(index))
    entry = store.GenerationStore(tmp_path).entry(KEY)
    make = Maker()
    out = entry.get(ids, make, shard_size=10)
    assert make.calls == [] and entry.counts["loaded"] == 20
    for i, r in enumerate(out):
        _same(r, _record(i))
    assert json.loads(open(entry.index_path).read())["key"] == KEY


def test_get_errors(tmp_path):
    entry = store.GenerationStore(tmp_path).entry(KEY)
    with pytest.raises(ValueError, match=r"unique; repeated: \['a'\]"):
        entry.get(["a", "b", "a"], Maker())
    with pytest.raises(ValueError, match="shard_size must be a positive int"):
        entry.get(["a"], Maker(), shard_size=0)
    with pytest.raises(ValueError, match="make returned 1 records for 2 ids"):
        entry.get(["a", "b"], lambda pos: [_record(0)])
    with pytest.raises(ValueError, match="store root"):
        store.GenerationStore("")


def test_read_generations(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(
        json.dumps({"id": "a", "response": "4"})
        + "\n\n"
        + json.dumps({"id": "a", "task": "gsm8k", "split": "test", "response": "5"})
        + "\n"
        + json.dumps({"id": 7, "response": "x", "finish_reason": "length"})
        + "\n"
    )
    rows = store.read_generations(path)
    assert set(rows) == {("", "", "a"), ("gsm8k", "test", "a"), ("", "", "7")}
    cases = [
        ('{"id": "a"}\n', "expected an object with 'id', 'response'"),
        ('{"id": "a", "response": 3}\n', "response must be a string"),
        ('{"id": "a", "response": "x", "finish_reason": "eos"}\n', "finish_reason must be"),
        ('{"id": "a", "response": "x"}\n{"id": "a", "response": "y"}\n', "repeated"),
        ("{oops\n", r"bad.jsonl:1: not valid JSON"),
        ("\n", "no records"),
    ]
    for text, message in cases:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            store.read_generations(bad)
    with pytest.raises(FileNotFoundError):
        store.read_generations(tmp_path / "missing.jsonl")
