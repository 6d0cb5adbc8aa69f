"""Tasks, answer extraction and grading.

So far: a seeded arithmetic question generator and graders (numeric, \\boxed{}, SQuAD exact
match / F1, multiple-choice letters), each returning (extracted, correct). The full task suite and
TFDS builders are not implemented yet (see README).
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
