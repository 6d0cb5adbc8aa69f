"""The generation store through the confidence benchmark: a second run with the same key makes
nothing, a corrupted shard is made again alone, and generations exported to JSONL and imported
are scored and graded like the same answers generated in-process (tiny model: fast)."""

import glob
import json
import os

import numpy as np
import pytest

from configs import confidence_benchmark as cb_config
from experiments import confidence_benchmark
from introspect import store


def _config(model, tmp_path, run_name, **overrides):
    c = cb_config.get_config("smoke")
    c.model = model
    c.data_dir = str(tmp_path / "tfds")
    c.num_calibration = c.num_test = 6
    c.num_samples = 2
    c.best_of_n = (1, 2)
    c.cntp_trials = 0
    c.blackbox = False
    c.max_new_tokens = 6
    c.store_shard_size = 4  # 6 examples per split: shards of 4 and 2
    c.bootstrap_resamples = 0
    c.results_root = str(tmp_path)
    c.run_name = run_name
    for k, v in overrides.items():
        c[k] = v
    return c


def _answers(tmp_path, run_name):
    path = tmp_path / "confidence_benchmark" / run_name / "answers.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _entries(root):
    """[(entry directory, its index.json)] of a store."""
    out = []
    for path in sorted(glob.glob(str(root / "*" / "index.json"))):
        with open(path) as f:
            out.append((os.path.dirname(path), json.load(f)))
    return out


@pytest.fixture(scope="module")
def store_runs(tiny_dirs, tmp_path_factory):
    """Three runs with one key: cold, warm, then warm after one shard of the test split was
    corrupted on disk."""
    tmp = tmp_path_factory.mktemp("bench-store")
    model = tiny_dirs["llama3"][0]
    first = confidence_benchmark.run(_config(model, tmp, "first"))
    second = confidence_benchmark.run(_config(model, tmp, "second"))
    entries = _entries(tmp / "store")
    test_dir, test_index = next((d, i) for d, i in entries if i["key"]["split"] == "test")
    name = next(n for n, s in test_index["shards"].items() if len(s["ids"]) == 4)
    with open(os.path.join(test_dir, name), "r+b") as f:
        f.seek(100)
        f.write(b"\x00corrupted\x00")
    third = confidence_benchmark.run(_config(model, tmp, "third"))
    return tmp, first, second, third


def test_second_run_generates_nothing(store_runs):
    tmp, first, second, _ = store_runs
    assert first["store"] == {
        "synthetic_easy/calibration": {"loaded": 0, "made": 6, "remade_shards": 0},
        "synthetic_easy/test": {"loaded": 0, "made": 6, "remade_shards": 0},
    }
    assert second["store"] == {
        "synthetic_easy/calibration": {"loaded": 6, "made": 0, "remade_shards": 0},
        "synthetic_easy/test": {"loaded": 6, "made": 0, "remade_shards": 0},
    }
    a, b = _answers(tmp, "first"), _answers(tmp, "second")
    assert [r["response"] for r in a] == [r["response"] for r in b]
    assert [r["signals"] for r in a] == [r["signals"] for r in b]
    t1, t2 = first["tasks"]["synthetic_easy"], second["tasks"]["synthetic_easy"]
    assert t1["signals"] == t2["signals"] and t1["best_of_n"] == t2["best_of_n"]


def test_corrupted_shard_is_made_again_alone(store_runs):
    tmp, first, _, third = store_runs
    assert third["store"]["synthetic_easy/test"] == {"loaded": 2, "made": 4, "remade_shards": 1}
    assert third["store"]["synthetic_easy/calibration"] == {
        "loaded": 6,
        "made": 0,
        "remade_shards": 0,
    }
    # The same seeds give the same answers and samples: nothing changed but the work done.
    a, c = _answers(tmp, "first"), _answers(tmp, "third")
    assert [r["response"] for r in a] == [r["response"] for r in c]
    for ra, rc in zip(a, c, strict=True):
        for name, v in ra["signals"].items():
            np.testing.assert_allclose(rc["signals"][name], v, rtol=1e-5, atol=1e-6, err_msg=name)


def test_imported_generations_through_the_benchmark(store_runs, tiny_dirs):
    """The answers of the first run, exported from the store to JSONL and imported, are
    scored teacher-forced (a new key: everything is made) and graded the same. (Log-prob
    parity of imported vs generated answers on the real model: tests/store.)"""
    tmp, first, _, _ = store_runs
    lines = []
    for entry_dir, index in _entries(tmp / "store"):
        for name in index["shards"]:
            with open(os.path.join(entry_dir, name), "rb") as f:
                ids, records = store.decode_shard(f.read())
            lines += [
                {
                    "task": index["key"]["task"],
                    "split": index["key"]["split"],
                    "id": i,
                    "response": r["text"],
                    "finish_reason": str(r["finish_reason"]),
                }
                for i, r in zip(ids, records, strict=True)
            ]
    assert len(lines) == 12
    path = tmp / "outside.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    c = _config(tiny_dirs["llama3"][0], tmp, "imported", num_samples=0, best_of_n=(1,))
    c.import_generations = str(path)
    imported = confidence_benchmark.run(c)
    assert imported["store"] == {
        "synthetic_easy/calibration": {"loaded": 0, "made": 6, "remade_shards": 0},
        "synthetic_easy/test": {"loaded": 0, "made": 6, "remade_shards": 0},
    }
    a, b = _answers(tmp, "first"), _answers(tmp, "imported")
    assert [r["response"] for r in a] == [r["response"] for r in b]
    assert [r["correct"] for r in a] == [r["correct"] for r in b]
    assert all(np.isfinite(list(r["signals"].values())).all() for r in b)
