"""CommonsenseQA (Talmor et al., 2019): 5-way multiple-choice commonsense questions.

Raw format (JSON lines, www.tau-nlp.org/commonsenseqa): {"id", "answerKey": "A".."E", "question":
{"stem", "question_concept", "choices": [{"label": "A", "text": ...}, ...]}}; train_rand_split
(train, 9741) and dev_rand_split (validation, 1221); the test split has no answers and is left
out. answer_type "choice": the gold is a letter, `choices` are the option texts in letter order.
"""

from __future__ import annotations

from typing import Any

from introspect.data.builders.common import (
    RemoteQABuilder,
    iter_jsonl,
    make_example,
)

_BASE = "https://s3.amazonaws.com/commensenseqa"
URLS = {
    "train": f"{_BASE}/train_rand_split.jsonl",
    "validation": f"{_BASE}/dev_rand_split.jsonl",
}


def parse_commonsense_qa(record: dict[str, Any]) -> dict[str, Any]:
    """One raw CommonsenseQA record -> the shared layout (choices sorted by label)."""
    q = record["question"]
    options = sorted(q["choices"], key=lambda c: c["label"])
    labels = "".join(c["label"] for c in options)
    if labels != "ABCDEFGHIJ"[: len(options)]:
        raise ValueError(f"CommonsenseQA record {record.get('id')}: choice labels {labels!r}")
    return make_example(
        id=record["id"],
        task="commonsenseqa",
        question=q["stem"].strip(),
        choices=[c["text"].strip() for c in options],
        answer=record["answerKey"].strip().upper(),
        answer_type="choice",
    )


class IntrospectCommonsenseQa(RemoteQABuilder):
    """CommonsenseQA in the shared introspect layout."""

    HOMEPAGE = "https://www.tau-nlp.org/commonsenseqa"
    URLS = URLS

    def _examples(self, path, split):
        for record in iter_jsonl(path):
            yield parse_commonsense_qa(record)
