"""Tasks, answer extraction and grading.

So far: a seeded arithmetic question generator and a numeric grader (enough for the `answer`
experiment); the full task suite and TFDS builders are not implemented yet (see README).
"""

from introspect.data.arithmetic import arithmetic_questions
from introspect.data.grading import extract_number, grade_numeric

__all__ = ["arithmetic_questions", "extract_number", "grade_numeric"]
