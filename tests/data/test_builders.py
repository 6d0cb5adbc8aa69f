"""TFDS builders (TF-less, array_record), the synthetic suite's gold answers, the task registry."""

import dataclasses
import json
import re
import sys
from collections import Counter

import pytest
import tensorflow_datasets as tfds

from introspect.data import builders, grading, tasks  # noqa: E402
from introspect.data.builders import (  # noqa: E402
    FEATURE_KEYS,
    LEVELS,
    SYNTHETIC_TASKS,
    SyntheticConfig,
    common,
    iter_json_array,
    parse_commonsense_qa,
    parse_gsm8k,
    parse_hotpot_qa,
    parse_math,
    parse_trivia_qa,
    synthetic_suite,
)


def small(level, **kw):
    sizes = dict(num_train=120, num_calibration=60, num_test=60)
    return dataclasses.replace(LEVELS[level], **{**sizes, **kw})


# ----------------------------------------------------------------------------- synthetic suite


def _independent_answer(ex):
    """Recompute the gold from the question text alone (Python arithmetic, str.count, ...)."""
    q, task = ex["question"], ex["task"]
    if task == "arithmetic":
        expr = re.fullmatch(r"What is ([\d +*-]+)\?", q).group(1)
        return eval(expr)  # only digits, spaces and + - * (checked by the regex)
    if task == "comparison":
        word, a, b = re.fullmatch(r"Which is (larger|smaller), ([\d.]+) or ([\d.]+)\?", q).groups()
        pick = max if word == "larger" else min
        return pick(float(a), float(b))
    if task == "letter_count":
        letter, text = re.fullmatch(
            r'How many times does the letter "(.)" appear in the (?:word|phrase) "(.+)"\?', q
        ).groups()
        return text.count(letter)
    if task == "word_count":
        return len(re.fullmatch(r'How many words are in the sentence "(.+)"\?', q).group(1).split())
    if task == "word_problem":
        sentences = re.split(r"(?<=[.?])\s+", q)
        name, total = re.fullmatch(r"(\w+) has (\d+) \w+\.", sentences[0]).groups()
        total = int(total)
        for s in sentences[1:-1]:
            if m := re.fullmatch(
                rf"{name} buys (\d+) packs of \w+ with (\d+) \w+ in each pack\.", s
            ):
                total += int(m.group(1)) * int(m.group(2))
            elif m := re.fullmatch(rf"(?:{name} buys|\w+ gives {name}) (\d+) more \w+\.", s):
                total += int(m.group(1))
            elif m := re.fullmatch(rf"{name} (?:gives|loses) (\d+) \w+(?: to \w+)?\.", s):
                total -= int(m.group(1))
            else:
                raise AssertionError(f"unparsed sentence {s!r}")
        assert re.fullmatch(rf"How many \w+ does {name} have now\?", sentences[-1])
        return total
    raise AssertionError(task)


@pytest.mark.parametrize("level", list(LEVELS))
def test_synthetic_gold_answers_match_independent_computation(level):
    suite = synthetic_suite(small(level))
    examples = [ex for split in suite.values() for ex in split]
    assert {ex["task"] for ex in examples} == set(SYNTHETIC_TASKS)
    for ex in examples:
        assert tuple(sorted(ex)) == tuple(sorted(FEATURE_KEYS))
        assert ex["answer_type"] == "number" and ex["level"] == level
        want = _independent_answer(ex)
        assert float(ex["answer"]) == pytest.approx(want, abs=1e-9), ex
        # The gold passes its own grader.
        assert tasks.grade(ex, f"The answer is {ex['answer']}.")[1]
    if level == "hard":
        assert any("*" in ex["question"] for ex in examples)
        assert any(re.search(r"\d\.\d", ex["question"]) for ex in examples)
        assert any("packs of" in ex["question"] for ex in examples)


def test_synthetic_split_sizes_balance_and_disjointness():
    config = small("medium")
    suite = synthetic_suite(config)
    assert {k: len(v) for k, v in suite.items()} == {"train": 120, "calibration": 60, "test": 60}
    counts = Counter(ex["task"] for ex in suite["test"])
    assert set(counts.values()) == {60 // len(SYNTHETIC_TASKS)}
    ids = [ex["id"] for split in suite.values() for ex in split]
    assert len(set(ids)) == len(ids)
    questions = {k: {ex["question"] for ex in v} for k, v in suite.items()}
    assert not questions["test"] & questions["calibration"]
    assert not questions["test"] & questions["train"]
    assert not questions["calibration"] & questions["train"]


def test_synthetic_is_deterministic_by_seed():
    a, b = synthetic_suite(small("hard")), synthetic_suite(small("hard"))
    assert a == b
    c = synthetic_suite(small("hard", seed=1))
    assert [ex["question"] for ex in c["test"]] != [ex["question"] for ex in a["test"]]
    # The held-out splits do not depend on the train size.
    d = synthetic_suite(small("hard", num_train=10))
    assert d["test"] == a["test"] and d["calibration"] == a["calibration"]


def test_synthetic_task_subset_and_bad_configs():
    suite = synthetic_suite(small("easy", tasks=("letter_count",)))
    assert {ex["task"] for ex in suite["train"]} == {"letter_count"}
    with pytest.raises(ValueError, match="tasks must be"):
        synthetic_suite(small("easy", tasks=("spelling",)))
    with pytest.raises(ValueError, match="count_words"):
        synthetic_suite(small("easy", count_words=(5, 2)))
    with pytest.raises(ValueError, match="unknown split"):
        LEVELS["easy"].split_size("dev")


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """introspect_synthetic/easy built once into a temporary data_dir."""
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.data_source("introspect_synthetic/easy", data_dir=str(data_dir))
    return str(data_dir)


def test_synthetic_builder_reads_back_through_data_source(synthetic_dir):
    source = tfds.data_source("introspect_synthetic/easy", data_dir=synthetic_dir)
    config = LEVELS["easy"]
    assert {k: len(v) for k, v in source.items()} == {
        "train": config.num_train,
        "calibration": config.num_calibration,
        "test": config.num_test,
    }
    files = sorted(p.name for p in _version_dir(synthetic_dir).iterdir())
    assert any(".array_record" in f for f in files), files
    assert not any("tfrecord" in f for f in files), files
    want = {ex["id"]: ex for ex in synthetic_suite(config)["test"]}
    got = [builders.decode_record(source["test"][i]) for i in range(len(source["test"]))]
    assert {ex["id"]: ex for ex in got} == want
    assert "tensorflow" not in sys.modules


def test_custom_synthetic_config_builds(tmp_path):
    config = SyntheticConfig(
        name="tiny_seed7", seed=7, num_train=8, num_calibration=4, num_test=3, tasks=("word_count",)
    )
    source = tfds.data_source(
        "introspect_synthetic", data_dir=str(tmp_path), builder_kwargs={"config": config}
    )
    assert {k: len(v) for k, v in source.items()} == {"train": 8, "calibration": 4, "test": 3}
    got = sorted(
        (builders.decode_record(source["train"][i]) for i in range(8)), key=lambda e: e["id"]
    )
    assert got == synthetic_suite(config)["train"]


def _version_dir(data_dir):
    from pathlib import Path

    return Path(data_dir) / "introspect_synthetic" / "easy" / "1.0.0"


def test_load_task_synthetic(synthetic_dir):
    test = tasks.load_task("synthetic_easy", "test", data_dir=synthetic_dir)
    assert len(test) == LEVELS["easy"].num_test
    first = tasks.load_task("synthetic_easy", "test", data_dir=synthetic_dir, num=7)
    assert first == test[:7]
    assert all(isinstance(ex["question"], str) and ex["choices"] == [] for ex in first)
    calibration = tasks.load_task("synthetic_easy", "calibration", data_dir=synthetic_dir)
    assert len(calibration) == 1000  # the suite's own split, in stored order (no carve)
    source = tfds.data_source("introspect_synthetic/easy", data_dir=synthetic_dir)
    assert calibration[:5] == [builders.decode_record(source["calibration"][i]) for i in range(5)]


_LOAD_FIVE = """
import json, sys
from introspect.data import tasks
rows = tasks.load_task("synthetic_easy", "test", data_dir=sys.argv[1], num=5)
print(json.dumps([r["id"] for r in rows]))
"""


def test_load_task_builds_once_when_processes_ask_at_once(tmp_path):
    # The processes of a multi-process run share the data_dir on a host: started together on an
    # empty directory, one builds the set and the others wait for it (TFDS alone would let two
    # build and fail on the second rename).
    import subprocess

    data_dir = str(tmp_path / "tfds")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOAD_FIVE, data_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    ids = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 5
    assert _version_dir(data_dir).is_dir()
    leftovers = [d.name for d in _version_dir(data_dir).parent.iterdir() if "incomplete" in d.name]
    assert leftovers == []


# ----------------------------------------------------------------------------- raw formats

GSM8K_RECORD = {
    "question": "A shop sells 600 pens a day for 2 days and 72 more on the third. How many pens?",
    "answer": "Two days: 600*2 = <<600*2=1200>>1200 pens.\nTotal: 1200+72 = <<1200+72=1272>>1272."
    "\n#### 1,272",
}
MATH_RECORD = {
    "problem": "Solve $3x = 14$ for $x$.",
    "solution": "Divide by 3: $x = \\boxed{\\frac{14}{3}}$.",
    "answer": "\\frac{14}{3}",
    "subject": "Intermediate Algebra",
    "level": 4,
    "unique_id": "test/intermediate_algebra/42.json",
}
MATH_RAW_RECORD = {  # the original MATH files: no "answer", "type" and "Level n"
    "problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?",
    "level": "Level 1",
    "type": "Prealgebra",
    "solution": "It is $\\boxed{\\frac{1}{2}}$, since $\\frac{2}{4} = {\\frac{1}{2}}$.",
}
CSQA_RECORD = {
    "answerKey": "B",
    "id": "075e483d21c29a511267ef62bedc0461",
    "question": {
        "question_concept": "punishing",
        "choices": [
            {"label": "B", "text": "enforce"},
            {"label": "A", "text": "ignore"},
            {"label": "C", "text": "authoritarian"},
            {"label": "D", "text": "yell at"},
            {"label": "E", "text": "avoid"},
        ],
        "stem": "The sanctions against the school were a punishing blow, and they seemed to what?",
    },
}
TRIVIA_RECORD = {
    "Question": "Which planet is known as the Red Planet?",
    "QuestionId": "tc_7",
    "QuestionSource": "http://www.example.com/",
    "Answer": {
        "Value": "Mars",
        "Aliases": ["Mars", "Planet Mars", "The Red Planet"],
        "NormalizedAliases": ["mars", "planet mars", "red planet"],
        "NormalizedValue": "mars",
        "Type": "WikipediaEntity",
    },
    "SearchResults": [{"Description": "Mars is the fourth planet.", "Rank": 0}],
}
HOTPOT_RECORD = {
    "_id": "5a8b57f25542995d1e6f1371",
    "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
    "answer": "yes",
    "type": "comparison",
    "level": "hard",
    "supporting_facts": [["Scott Derrickson", 0], ["Ed Wood", 0]],
    "context": [
        ["Ed Wood", ["Edward Davis Wood Jr. was an American filmmaker.", " He made films."]],
        ["Scott Derrickson", ["Scott Derrickson is an American director."]],
    ],
}


def test_parse_gsm8k():
    ex = parse_gsm8k(GSM8K_RECORD, id="test-00000")
    assert ex["answer"] == "1272" and ex["answer_type"] == "number" and ex["task"] == "gsm8k"
    assert "<<" not in ex["solution"] and "####" not in ex["solution"]
    assert ex["solution"].startswith("Two days: 600*2 = 1200 pens.")
    assert tasks.grade(ex, "So the shop sold 1,272 pens.")[1]
    with pytest.raises(ValueError, match="####"):
        parse_gsm8k({"question": "q", "answer": "no final answer"}, id="x")


def test_parse_math():
    ex = parse_math(MATH_RECORD)
    assert ex["answer"] == "\\frac{14}{3}" and ex["answer_type"] == "math"
    assert ex["task"] == "math500/intermediate_algebra" and ex["level"] == "4"
    assert ex["id"] == "test/intermediate_algebra/42.json"
    assert tasks.grade(ex, "Thus $x = \\boxed{\\dfrac{14}{3}}$.") == ("\\dfrac{14}{3}", True)
    assert not tasks.grade(ex, "$\\boxed{\\frac{3}{14}}$")[1]
    raw = parse_math(MATH_RAW_RECORD, id="m1")
    assert raw["answer"] == "\\frac{1}{2}"  # the last \boxed{}, nested braces intact
    assert raw["task"] == "math500/prealgebra" and raw["level"] == "1"
    with pytest.raises(ValueError, match="boxed"):
        parse_math({"problem": "p", "solution": "no box"}, id="m2")


def test_parse_commonsense_qa():
    ex = parse_commonsense_qa(CSQA_RECORD)
    assert ex["choices"] == ["ignore", "enforce", "authoritarian", "yell at", "avoid"]
    assert ex["answer"] == "B" and ex["answer_type"] == "choice"
    assert tasks.grade(ex, "The answer is (B) enforce.") == ("B", True)
    assert tasks.grade(ex, "A.") == ("A", False)
    bad = json.loads(json.dumps(CSQA_RECORD))
    bad["question"]["choices"][0]["label"] = "F"
    with pytest.raises(ValueError, match="labels"):
        parse_commonsense_qa(bad)


def test_parse_trivia_qa():
    ex = parse_trivia_qa(TRIVIA_RECORD)
    assert ex["answer"] == "Mars" and ex["id"] == "tc_7" and ex["context"] == ""
    assert ex["aliases"] == ["Planet Mars", "The Red Planet", "mars", "planet mars", "red planet"]
    assert tasks.grade(ex, "the red planet\nIt is Mars.") == ("the red planet", True)
    assert not tasks.grade(ex, "Venus")[1]


def test_parse_hotpot_qa():
    ex = parse_hotpot_qa(HOTPOT_RECORD)
    assert ex["task"] == "hotpotqa/comparison" and ex["level"] == "hard"
    assert ex["context"] == (
        "Ed Wood: Edward Davis Wood Jr. was an American filmmaker. He made films.\n\n"
        "Scott Derrickson: Scott Derrickson is an American director."
    )
    assert tasks.grade(ex, "Yes.", fmt="plain")[1]


def test_iter_json_array_streams_with_tiny_chunks(tmp_path):
    doc = {"Version": 1.0, "Split": "dev", "Data": [{"a": [1, 2, {"b": "x]"}]}, 12345, "s", []]}
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc, indent=1))
    for chunk in (1, 3, 7, 1 << 20):
        assert list(iter_json_array(path, key="Data", chunk_chars=chunk)) == doc["Data"]
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([HOTPOT_RECORD, 7.5, None]))
    assert list(iter_json_array(arr, chunk_chars=5)) == [HOTPOT_RECORD, 7.5, None]
    empty = tmp_path / "empty.json"
    empty.write_text(" [ ] ")
    assert list(iter_json_array(empty)) == []
    with pytest.raises(ValueError, match="not found"):
        list(iter_json_array(path, key="Missing"))
    with pytest.raises(ValueError, match="expected"):
        list(iter_json_array(path))  # an object, not an array
    broken = tmp_path / "broken.json"
    broken.write_text('[{"a": 1}, {"a": ')
    with pytest.raises(ValueError, match="invalid JSON"):
        list(iter_json_array(broken, chunk_chars=4))


# ----------------------------------------------------------------------------- real builders

REAL = {
    # task name: (builder class, raw records per split, parser)
    "gsm8k": (builders.IntrospectGsm8k, ("test",)),
    "math500": (builders.IntrospectMath500, ("test",)),
    "triviaqa": (builders.IntrospectTriviaQa, ("validation",)),
    "hotpotqa": (builders.IntrospectHotpotQa, ("train", "validation")),
    "commonsenseqa": (builders.IntrospectCommonsenseQa, ("validation",)),
    "mmlu": (builders.IntrospectMmlu, ("test", "validation", "dev")),
    "arc_easy": (builders.IntrospectArcEasy, ("validation",)),
    "arc_challenge": (builders.IntrospectArcChallenge, ("validation",)),
    "boolq": (builders.IntrospectBoolq, ("validation",)),
    "sciq": (builders.IntrospectSciq, ("validation",)),
    "nq_open": (builders.IntrospectNqOpen, ("validation",)),
}


def test_registry_matches_builders():
    for name, (cls, splits) in REAL.items():
        spec = tasks.TASKS[name]
        assert spec.builder == cls.name and spec.stored_splits == splits
        assert spec.splits == (*splits, "calibration", "evaluation")
        test_carved = name in ("gsm8k", "math500", "mmlu")
        assert spec.carve_from == ("test" if test_carved else "validation")
        assert "50/50 carve" in spec.description
        assert common.CARVE_NOTE in cls(data_dir="/nonexistent-unused").info.description


@pytest.mark.parametrize("name", list(REAL))
def test_real_builder_under_mock_data(name):
    cls, splits = REAL[name]
    with tfds.testing.mock_data(num_examples=4):
        for split in splits:
            source = tfds.data_source(cls.name, split=split)
            assert len(source) == 4
            assert set(source[0]) == set(FEATURE_KEYS)
        examples = tasks.load_task(name, splits[-1], num=3)
        carved = [tasks.load_task(name, split) for split in tasks.CARVED_SPLITS]
    assert len(examples) == 3 and set(examples[0]) == set(FEATURE_KEYS)
    assert [len(c) for c in carved] == [2, 2] and all(
        set(c[0]) == set(FEATURE_KEYS) for c in carved
    )
    assert all(isinstance(ex["answer"], str) for ex in examples)


def test_hotpot_builder_prepares_from_raw_files(tmp_path, monkeypatch):
    """The download_and_prepare path of the one downloaded set, with the download replaced by
    local raw files (the installed sets are tested on their real files in
    test_installed_data.py)."""
    from etils import epath

    from introspect.data.builders import hotpot_qa

    second_hotpot = HOTPOT_RECORD | {"_id": "h2", "answer": "no"}
    (tmp_path / "h_train.json").write_text(json.dumps([HOTPOT_RECORD, second_hotpot]))
    (tmp_path / "h_dev.json").write_text(json.dumps([second_hotpot]))
    urls = {
        hotpot_qa.URLS["train"]: str(tmp_path / "h_train.json"),
        hotpot_qa.URLS["validation"]: str(tmp_path / "h_dev.json"),
    }

    def download(self, url_or_urls):
        return {k: epath.Path(urls[v]) for k, v in url_or_urls.items()}

    monkeypatch.setattr(tfds.download.DownloadManager, "download", download)
    data_dir = str(tmp_path / "tfds")
    got = {s: tasks.load_task("hotpotqa", s, data_dir=data_dir) for s in ("train", "validation")}
    assert {s: len(v) for s, v in got.items()} == {"train": 2, "validation": 1}
    hotpot = {ex["id"]: ex for ex in got["train"]}
    assert hotpot[HOTPOT_RECORD["_id"]] == parse_hotpot_qa(HOTPOT_RECORD)
    assert "tensorflow" not in sys.modules


# ----------------------------------------------------------------------------- registry


def test_grader_for_wires_answer_types():
    assert tasks.grader_for("number") is grading.grade_numeric
    assert tasks.grader_for("math") is grading.grade_boxed
    assert tasks.grader_for("choice") is grading.grade_choice
    assert tasks.grader_for("text") is grading.grade_exact_match
    assert set(tasks.GRADERS) == set(builders.ANSWER_TYPES) | {"alias"}
    with pytest.raises(
        ValueError, match="unknown answer type 'boolean'; known: alias, choice, math, number, text"
    ):
        tasks.grader_for("boolean")


def test_grade_cuts_the_answer_out_of_each_format():
    ex = builders.make_example(id="1", task="t", question="2+3?", answer="5", answer_type="number")
    assert tasks.grade(ex, "Answer: 5\nConfidence: 90%", fmt="verbalized") == ("5", True)
    # Without cutting, the confidence would be graded as the answer.
    assert tasks.grade(ex, "Answer: 5\nConfidence: 90%", fmt="plain") == ("90", False)
    rlcr = "<think>2+3</think> <answer>5</answer> <analysis>easy</analysis> <confidence>0.9"
    assert tasks.grade(ex, rlcr + "</confidence>", fmt="rlcr") == ("5", True)
    assert tasks.grade(ex, "G1: 5 P1: 0.7\nG2: 6 P2: 0.2", fmt="topk") == ("5", True)
    assert tasks.grade(ex, "2 plus 3 is 5.\nAnswer: 5", fmt="cot") == ("5", True)
    with pytest.raises(ValueError, match="unknown prompt format"):
        tasks.grade(ex, "5", fmt="json")
    with pytest.raises(ValueError, match="needs 'answer_type'"):
        tasks.grade({"answer": "5"}, "5")


def test_load_task_bad_names():
    with pytest.raises(
        ValueError, match="unknown task 'squad'.*commonsenseqa.*gsm8k.*synthetic_easy"
    ):
        tasks.load_task("squad", "test")
    with pytest.raises(ValueError, match="no split 'validation'.*'test'"):
        tasks.load_task("math500", "validation")
    with pytest.raises(ValueError, match="num must be"):
        tasks.load_task("gsm8k", "test", num=0)
    assert "synthetic_hard" in tasks.registered_tasks()


def test_make_example_validates():
    with pytest.raises(ValueError, match="answer_type"):
        builders.make_example(id="1", task="t", question="q", answer="a", answer_type="bool")
    with pytest.raises(ValueError, match="not a letter"):
        builders.make_example(
            id="1", task="t", question="q", answer="C", answer_type="choice", choices=["x", "y"]
        )


def test_synthetic_config_is_a_builder_config():
    assert isinstance(LEVELS["easy"], SyntheticConfig)
    assert [c.name for c in builders.IntrospectSynthetic.BUILDER_CONFIGS] == list(LEVELS)
