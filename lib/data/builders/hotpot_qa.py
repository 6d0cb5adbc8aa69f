"""HotpotQA (Yang et al., 2018), distractor setting: multi-hop questions over 10 paragraphs
(2 gold, 8 distractors) given as context.

No installed package ships HotpotQA: it is the one real set still downloaded (needs internet).

Raw format (JSON arrays, hotpotqa.github.io): [{"_id", "question", "answer", "type" ("bridge" or
"comparison"), "level", "supporting_facts", "context": [[title, [sentence, ...]], ...]}, ...];
hotpot_train_v1.1.json (train, 90447) and hotpot_dev_distractor_v1.json (validation, 7405).
answer_type "text" (SQuAD exact match / F1).
"""

from __future__ import annotations

from typing import Any

from introspect.data.builders.common import (
    RemoteQABuilder,
    iter_json_array,
    make_example,
)

_BASE = "http://curtis.ml.cmu.edu/datasets/hotpot"
URLS = {
    "train": f"{_BASE}/hotpot_train_v1.1.json",
    "validation": f"{_BASE}/hotpot_dev_distractor_v1.json",
}


def format_context(paragraphs: list) -> str:
    """[[title, [sentence, ...]], ...] -> "title: sentences" paragraphs separated by blank lines
    (HotpotQA sentences carry their own leading spaces)."""
    return "\n\n".join(f"{title}: {''.join(sentences).strip()}" for title, sentences in paragraphs)


def parse_hotpot_qa(record: dict[str, Any]) -> dict[str, Any]:
    """One raw HotpotQA record -> the shared layout (task "hotpotqa/<type>")."""
    kind = record.get("type", "")
    return make_example(
        id=record["_id"],
        task=f"hotpotqa/{kind}" if kind else "hotpotqa",
        level=record.get("level", ""),
        question=record["question"].strip(),
        context=format_context(record["context"]),
        answer=record["answer"].strip(),
        answer_type="text",
    )


class IntrospectHotpotQa(RemoteQABuilder):
    """HotpotQA (distractor) in the shared introspect layout."""

    HOMEPAGE = "https://hotpotqa.github.io/"
    URLS = URLS

    def _examples(self, path, split):
        for record in iter_json_array(path):
            yield parse_hotpot_qa(record)
