"""Graders on a table of tricky strings; the arithmetic generator against Python arithmetic."""

import pytest

from introspect import data


@pytest.mark.parametrize(
    "text, gold, extracted, correct",
    [
        ("12 + 7 = 19", "19", "19", True),
        ("The answer is 1,234.", "1234", "1234", True),
        ("It is -5", "-5", "-5", True),
        ("3/4 of the cake", "0.75", "3/4", True),
        ("about 2.50 dollars", "2.5", "2.50", True),
        ("First 3, then 4", "3", "4", False),  # the last number counts
        ("no number here", "1", None, False),
        ("x = 1e3", "1000", "3", False),  # scientific notation is not parsed
        ("The total is 10.", "10", "10", True),
    ],
)
def test_grade_numeric(text, gold, extracted, correct):
    assert data.grade_numeric(text, gold) == (extracted, correct)


@pytest.mark.parametrize(
    "text, gold, correct",
    [
        (r"so the answer is \boxed{42}.", "42", True),
        (r"\boxed{1,000}", "1000", True),
        (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", True),
        (r"\boxed{\left( 1, 2 \right)}", "(1,2)", True),
        (r"first \boxed{3} then \boxed{4}", "4", True),
        (r"\boxed{x^{2}+1}", "x^{2}+1", True),
        (r"\boxed{5}", "6", False),
        ("no box 42", "42", False),
    ],
)
def test_grade_boxed(text, gold, correct):
    assert data.grade_boxed(text, gold)[1] is correct


def test_extract_boxed_nested_and_missing():
    assert data.extract_boxed(r"\boxed{\frac{a}{b}}") == r"\frac{a}{b}"
    assert data.extract_boxed(r"\boxed{unclosed") is None
    assert data.extract_boxed("nothing") is None


@pytest.mark.parametrize(
    "pred, golds, em, f1",
    [
        ("The Eiffel Tower!", ["eiffel tower"], True, 1.0),
        ("the big red dog", "red dog", False, 0.8),
        ("Paris", ["London", "paris"], True, 1.0),
        ("", "x", False, 0.0),
        ("blue", "red", False, 0.0),
    ],
)
def test_squad_em_f1(pred, golds, em, f1):
    assert data.exact_match(pred, golds) is em
    assert data.f1_score(pred, golds) == pytest.approx(f1)


@pytest.mark.parametrize(
    "text, letter",
    [
        ("The answer is (B).", "B"),
        ("answer: c", "C"),
        ("I think C. Actually, D", "D"),
        ("(A) is wrong, (E) is right", "E"),
        ("A dog would chase it", None),
        ("B", "B"),
        ("Answer is F", None),  # not among the letters offered
    ],
)
def test_extract_choice(text, letter):
    assert data.extract_choice(text) == letter


def test_arithmetic_generator():
    qs = data.arithmetic_questions(300, seed=3, digits=2, operators=("+", "-", "*"), num_operands=3)
    for q in qs:
        assert int(q["answer"]) == eval(q["expression"])  # the reference: Python arithmetic
    assert qs == data.arithmetic_questions(
        300, seed=3, digits=2, operators=("+", "-", "*"), num_operands=3
    )
    assert qs != data.arithmetic_questions(
        300, seed=4, digits=2, operators=("+", "-", "*"), num_operands=3
    )
    with pytest.raises(ValueError, match="operators"):
        data.arithmetic_questions(2, operators=("/",))
    with pytest.raises(ValueError, match="digits"):
        data.arithmetic_questions(2, digits=0)


def test_alias_match_is_whole_words_after_normalisation():
    from introspect.data import grading

    assert grading.alias_match("I think it was Jimmy Carter, in 1977.", ["jimmy carter"])
    assert grading.alias_match("The Beatles", "beatles")  # articles and case normalised
    assert not grading.alias_match("Carterville", "Carter")
    assert not grading.alias_match("Jimmy was there. Carter too", "Jimmy Carter")
    assert not grading.alias_match("anything", ["", "  "])
    assert grading.alias_match("x", ["no", "X!"])


def test_triviaqa_and_nq_open_grade_by_alias_in_the_first_line():
    from introspect import data

    for task in ("triviaqa", "nq_open"):
        ex = {"task": task, "answer": "James Garner", "aliases": ["Garner"], "answer_type": "text"}
        assert data.grade(ex, "It was James Garner who played him.") == (
            "It was James Garner who played him.",
            True,
        )
        assert data.grade(ex, "Rockford.\nJames Garner")[1] is False  # first line only
        assert data.grade(ex, "garner")[1] is True
    # Other text tasks keep SQuAD exact match.
    ex = {"task": "hotpotqa/bridge", "answer": "James Garner", "answer_type": "text"}
    assert data.grade(ex, "It was James Garner.")[1] is False
    assert data.grade(ex, "james garner.")[1] is True
