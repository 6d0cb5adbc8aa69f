"""MATH-500 (Lightman et al., 2023): 500 competition problems of MATH (Hendrycks et al., 2021).

Raw format (JSON lines, huggingface.co/datasets/HuggingFaceH4/MATH-500): {"problem",
"solution" (LaTeX, final answer in \\boxed{...}), "answer", "subject", "level", "unique_id"}.
Split: test (500). answer_type "math" (graded by `grade_boxed`).
"""

from __future__ import annotations

import re
from typing import Any

from introspect.data.builders.common import (
    RemoteQABuilder,
    iter_jsonl,
    make_example,
)
from introspect.data.grading import extract_boxed

URLS = {"test": "https://huggingface.co/datasets/HuggingFaceH4/MATH-500/resolve/main/test.jsonl"}


def parse_math(record: dict[str, Any], *, id: str | None = None) -> dict[str, Any]:
    """One raw MATH / MATH-500 record -> the shared layout.

    The gold is the record's "answer" when present (MATH-500), else the last \\boxed{...} of the
    solution (original MATH files). task is "math500/<subject>" ("math500/intermediate_algebra").
    """
    answer = record.get("answer")
    if answer is None or not str(answer).strip():
        answer = extract_boxed(record.get("solution", ""))
    if answer is None:
        raise ValueError(f"MATH record {id}: no 'answer' and no \\boxed{{}} in the solution")
    subject = re.sub(
        r"[^a-z0-9]+", "_", str(record.get("subject", "") or record.get("type", "")).lower()
    )
    level = str(record.get("level", ""))
    level = level.removeprefix("Level ").strip()
    return make_example(
        id=id if id is not None else record.get("unique_id", ""),
        task=f"math500/{subject.strip('_')}" if subject.strip("_") else "math500",
        level=level,
        question=record["problem"].strip(),
        answer=str(answer).strip(),
        answer_type="math",
        solution=record.get("solution", "").strip(),
    )


class IntrospectMath500(RemoteQABuilder):
    """MATH-500 in the shared introspect layout."""

    HOMEPAGE = "https://github.com/openai/prm800k"
    URLS = URLS

    def _examples(self, path, split):
        for i, record in enumerate(iter_jsonl(path)):
            yield parse_math(record, id=record.get("unique_id") or f"{split}-{i:04d}")
