"""CommonsenseQA (Talmor et al., 2019): 5-way multiple-choice commonsense questions.

Raw format (JSON lines, www.tau-nlp.org/commonsenseqa): {"id", "answerKey": "A".."E", "question":
{"stem", "question_concept", "choices": [{"label": "A", "text": ...}, ...]}}; train_rand_split
(train, 9741) and dev_rand_split (validation, 1221); the test split has no answers and is left
out. answer_type "choice": the gold is a letter, `choices` are the option texts in letter order.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from introspect.data.builders.common import (
    ArrayRecordBuilder,
    iter_jsonl,
    make_example,
    qa_features,
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


class IntrospectCommonsenseQa(ArrayRecordBuilder):
    """CommonsenseQA in the shared introspect layout."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=qa_features(),
            homepage="https://www.tau-nlp.org/commonsenseqa",
        )

    def _split_generators(self, dl_manager):
        paths = dl_manager.download(URLS)
        return {split: self._generate_examples(paths[split]) for split in URLS}

    def _generate_examples(self, path):
        for record in iter_jsonl(path):
            ex = parse_commonsense_qa(record)
            yield ex["id"], ex
