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


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces), or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i != -1 and text[start + len("\\boxed") : i].strip() == "":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1 : j].strip()
        start = text.rfind("\\boxed", 0, start)
    return None


def grade_boxed(text: str, gold: str, *, tol: float = 1e-6):
    """Grade the last \\boxed{} answer: numerically when both sides are numbers, else by
    normalised string equality (spaces, `\\left`/`\\right`, `\\!`, trailing dot removed).
    Returns (extracted, correct)."""
    boxed = extract_boxed(text)
    if boxed is None:
        return None, False
    got_num, want_num = extract_number(boxed), extract_number(str(gold))
    if (
        got_num is not None
        and want_num is not None
        and _is_plain_number(boxed)
        and _is_plain_number(str(gold))
    ):
        return boxed, grade_numeric(got_num, want_num, tol=tol)[1]
    return boxed, _normalise_math(boxed) == _normalise_math(str(gold))


def _is_plain_number(s: str) -> bool:
    return re.fullmatch(r"\s*\$?\s*-?[\d,]+(?:\.\d+)?(?:/\d+)?\s*%?\s*\.?\s*", s) is not None


def _normalise_math(s: str) -> str:
    s = re.sub(r"\\(left|right|!|,|;|\s)", "", s)
    s = s.replace("dfrac", "frac").replace("tfrac", "frac").replace("$", "")
    return re.sub(r"\s+", "", s).rstrip(".")


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.I)


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    import string

    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, golds) -> bool:
    """SQuAD exact match against one gold string or any of a list."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    p = normalize_answer(prediction)
    return any(p == normalize_answer(g) for g in golds)


def f1_score(prediction: str, golds) -> float:
    """SQuAD token F1 (max over golds)."""
    from collections import Counter

    golds = [golds] if isinstance(golds, str) else list(golds)
    pred = normalize_answer(prediction).split()
    best = 0.0
    for g in golds:
        gold = normalize_answer(g).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if not pred or not gold:
            best = max(best, float(pred == gold))
            continue
        if common == 0:
            continue
        precision, recall = common / len(pred), common / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def alias_match(prediction: str, golds) -> bool:
    """True when a gold (or alias), SQuAD-normalised, appears as a run of whole words in the
    normalised prediction ("Jimmy Carter was president" matches "jimmy carter"; "Carterville"
    does not match "carter"). An empty gold never matches."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    words = normalize_answer(prediction).split()
    for g in golds:
        want = normalize_answer(g).split()
        n = len(want)
        if n and any(words[i : i + n] == want for i in range(len(words) - n + 1)):
            return True
    return False


def grade_alias_match(text: str, golds):
    """(first line of the answer, correct): exact match, or a gold alias appearing as whole
    words in the first line (`alias_match`): the usual grading of closed-book QA (TriviaQA,
    NQ-open) for free-form answers, which rarely are the bare alias."""
    answer = text.strip().split("\n")[0].strip()
    return answer, exact_match(answer, golds) or alias_match(answer, golds)


def grade_exact_match(text: str, golds):
    """(first line of the answer, SQuAD exact match)."""
    answer = text.strip().split("\n")[0].strip()
    return answer, exact_match(answer, golds)


def extract_choice(text: str, *, letters: str = "ABCDE") -> str | None:
    """The multiple-choice letter a response commits to: "The answer is (B)", "B.", "(c)"...
    Prefers an explicit "answer is X"; otherwise the last standalone letter among `letters`."""
    explicit = re.findall(r"answer\s*(?:is|:)?\s*\(?([A-Ja-j])\)?\b", text, re.I)
    cands = [c.upper() for c in explicit if c.upper() in letters]
    if cands:
        return cands[-1]
    # "(B)" anywhere, or a bare capital followed by . ) : , or the end ("A dog" is not a choice).
    pattern = r"(?<![A-Za-z])(?:\(([A-J])\)|([A-J])(?=[.):,]|\s*$))"
    found = [a or b for a, b in re.findall(pattern, text)]
    found = [c for c in found if c in letters]
    return found[-1] if found else None


def grade_choice(text: str, gold: str, *, letters: str = "ABCDE"):
    """(extracted letter, correct) for a multiple-choice response."""
    got = extract_choice(text, letters=letters)
    return got, got is not None and got == gold.strip().upper()
