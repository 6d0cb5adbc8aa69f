"""TriviaQA (Joshi et al., 2017), closed book: trivia questions with answer aliases, no evidence.

Raw format (triviaqa-unfiltered.tar.gz, nlp.cs.washington.edu/triviaqa): JSON files
{"Data": [{"Question", "QuestionId", "Answer": {"Value", "Aliases", "NormalizedAliases", ...},
...}], "Version", ...}; unfiltered-web-train.json (train, 87622) and unfiltered-web-dev.json
(validation, 11313). answer_type "text": SQuAD exact match against the value or any alias.
"""

from __future__ import annotations

import os
from typing import Any

from introspect.data.builders.common import (
    RemoteQABuilder,
    iter_json_array,
    make_example,
)

URL = "http://nlp.cs.washington.edu/triviaqa/data/triviaqa-unfiltered.tar.gz"
FILES = {
    "train": os.path.join("triviaqa-unfiltered", "unfiltered-web-train.json"),
    "validation": os.path.join("triviaqa-unfiltered", "unfiltered-web-dev.json"),
}


def parse_trivia_qa(record: dict[str, Any]) -> dict[str, Any]:
    """One raw TriviaQA question -> the shared layout; aliases are Aliases then
    NormalizedAliases, without repeats and without the value itself."""
    answer = record["Answer"]
    value = answer["Value"].strip()
    aliases = [
        a.strip()
        for a in dict.fromkeys([*answer.get("Aliases", []), *answer.get("NormalizedAliases", [])])
        if a.strip() and a.strip() != value
    ]
    return make_example(
        id=record["QuestionId"],
        task="triviaqa",
        question=record["Question"].strip(),
        answer=value,
        aliases=list(dict.fromkeys(aliases)),
        answer_type="text",
    )


class IntrospectTriviaQa(RemoteQABuilder):
    """TriviaQA (unfiltered, no context) in the shared introspect layout."""

    HOMEPAGE = "https://nlp.cs.washington.edu/triviaqa/"

    def _split_sources(self, dl_manager):
        root = dl_manager.download_and_extract(URL)
        return {split: root / path for split, path in FILES.items()}

    def _examples(self, path, split):
        for record in iter_json_array(path, key="Data"):
            yield parse_trivia_qa(record)
