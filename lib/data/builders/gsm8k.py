"""GSM8K (Cobbe et al., 2021): grade-school math word problems with a numeric final answer.

Raw format (JSON lines, github.com/openai/grade-school-math): {"question": ..., "answer": worked
solution with calculator annotations "<<48/2=24>>" and a last line "#### 72"}.
Splits: train (7473), test (1319). answer_type "number".
"""

from __future__ import annotations

import re
from typing import Any

from introspect.data.builders.common import (
    RemoteQABuilder,
    iter_jsonl,
    make_example,
)

_BASE = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data"
URLS = {"train": f"{_BASE}/train.jsonl", "test": f"{_BASE}/test.jsonl"}

_CALCULATOR = re.compile(r"<<[^>]*>>")


def parse_gsm8k(record: dict[str, Any], *, id: str) -> dict[str, Any]:
    """One raw GSM8K record -> the shared layout. The gold is the text after "####", commas
    removed ("1,200" -> "1200"); the solution is the reasoning above it without "<<...>>"."""
    raw = record["answer"]
    if "####" not in raw:
        raise ValueError(f"GSM8K record {id}: no '####' final answer in {raw!r}")
    reasoning, final = raw.rsplit("####", 1)
    answer = final.strip().replace(",", "").rstrip(".")
    return make_example(
        id=id,
        task="gsm8k",
        question=record["question"].strip(),
        answer=answer,
        answer_type="number",
        solution=_CALCULATOR.sub("", reasoning).strip(),
    )


class IntrospectGsm8k(RemoteQABuilder):
    """GSM8K in the shared introspect layout."""

    HOMEPAGE = "https://github.com/openai/grade-school-math"
    URLS = URLS

    def _examples(self, path, split):
        for i, record in enumerate(iter_jsonl(path)):
            yield parse_gsm8k(record, id=f"{split}-{i:05d}")
