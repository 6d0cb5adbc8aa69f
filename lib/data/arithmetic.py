"""Seeded arithmetic questions with exact integer answers."""

from __future__ import annotations

import numpy as np

OPERATORS = ("+", "-", "*")


def arithmetic_questions(
    num: int,
    *,
    seed: int = 0,
    digits: int = 2,
    operators: tuple[str, ...] = ("+", "-"),
    num_operands: int = 2,
) -> list[dict]:
    """`num` questions like "What is 37 + 58?" with their integer answers.

    Args:
      num: number of questions.
      seed: the same seed gives the same questions.
      digits: operands have exactly this many digits (1 allows 0..9).
      operators: drawn uniformly from these (subset of OPERATORS).
      num_operands: operands per expression, evaluated left to right with usual precedence.
    Returns:
      list of {"id", "question", "expression", "answer" (str of an int), "answer_type": "number"}.
    """
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    if digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    if num_operands < 2:
        raise ValueError(f"num_operands must be >= 2, got {num_operands}")
    bad = [op for op in operators if op not in OPERATORS]
    if bad or not operators:
        raise ValueError(f"operators must be a non-empty subset of {OPERATORS}, got {operators}")
    rng = np.random.default_rng(seed)
    low = 0 if digits == 1 else 10 ** (digits - 1)
    out = []
    for i in range(num):
        operands = rng.integers(low, 10**digits, size=num_operands).tolist()
        ops = [operators[j] for j in rng.integers(0, len(operators), size=num_operands - 1)]
        expression = str(operands[0])
        for op, x in zip(ops, operands[1:], strict=True):
            expression += f" {op} {x}"
        answer = _evaluate(operands, ops)
        out.append(
            {
                "id": i,
                "question": f"What is {expression}?",
                "expression": expression,
                "answer": str(answer),
                "answer_type": "number",
            }
        )
    return out


def _evaluate(operands: list[int], ops: list[str]) -> int:
    """Left-to-right evaluation with * binding tighter than + and -."""
    terms = [operands[0]]
    signs = [1]
    for op, x in zip(ops, operands[1:], strict=True):
        if op == "*":
            terms[-1] *= x
        else:
            terms.append(x)
            signs.append(1 if op == "+" else -1)
    return sum(s * t for s, t in zip(signs, terms, strict=True))
