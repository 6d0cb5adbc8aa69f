"""Answer extraction and grading. Every grader returns (extracted, correct)."""

from __future__ import annotations

import re
from fractions import Fraction

# An optionally signed number with thousands separators, decimals or a fraction: -1,234.5, 3/4.
_NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?")


def extract_number(text: str, *, which: str = "last") -> str | None:
    """The first or last number in `text` (commas removed), or None."""
    if which not in ("first", "last"):
        raise ValueError(f"which must be 'first' or 'last', got {which!r}")
    found = _NUMBER.findall(text)
    if not found:
        return None
    return (found[0] if which == "first" else found[-1]).replace(",", "")


def _to_fraction(s: str) -> Fraction | None:
    try:
        return Fraction(s)
    except (ValueError, ZeroDivisionError):
        return None


def grade_numeric(text: str, gold: str, *, tol: float = 1e-6, which: str = "last"):
    """Extract a number from `text` and compare it with `gold` within a relative tolerance.

    Returns:
      (extracted string or None, correct bool).
    """
    extracted = extract_number(text, which=which)
    if extracted is None:
        return None, False
    got, want = _to_fraction(extracted), _to_fraction(str(gold).replace(",", ""))
    if got is None or want is None:
        return extracted, False
    return extracted, abs(float(got) - float(want)) <= tol * max(1.0, abs(float(want)))
