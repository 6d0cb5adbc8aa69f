"""A synthetic, verifiable task suite that a 135M instruct model gets partly right.

Five task families, every gold answer an integer or decimal computed exactly:

  arithmetic    "What is 37 + 58 * 4?"  (digits, operators and operand count set by the level)
  comparison    "Which is larger, 37 or 73?", "Which is smaller, 9.11 or 9.9?"
  letter_count  'How many times does the letter "r" appear in the word "strawberry"?'
  word_count    'How many words are in the sentence "the red kite flew over the hill"?'
  word_problem  "Tom has 3 apples. Tom buys 5 more apples. ... How many apples does Tom have now?"

The generator (`synthetic_split`, `synthetic_suite`) is pure Python and deterministic given the
config (seed included); `IntrospectSynthetic` writes it as a TFDS dataset (array_record) with
splits train / calibration / test and one builder config per difficulty level:

  tfds.data_source("introspect_synthetic/easy", data_dir=...)  # or load_task("synthetic_easy", ...)

Splits are generated in the order test, calibration, train from independent random streams, and a
question already used in an earlier split is redrawn (up to a retry limit, so tiny question spaces
such as 1-digit sums can still repeat): the test set does not change when the train size does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from introspect.data.arithmetic import arithmetic_questions
from introspect.data.builders.common import ArrayRecordBuilder, make_example, qa_features

SYNTHETIC_TASKS = ("arithmetic", "comparison", "letter_count", "word_count", "word_problem")
SPLITS = ("train", "calibration", "test")
# Generation order: the held-out splits first, so they do not depend on the train size.
_GENERATION_ORDER = ("test", "calibration", "train")
_MAX_REDRAWS = 20

# fmt: off
_WORDS = tuple(dict.fromkeys("""
apple banana cherry strawberry raspberry blueberry orange lemon grape melon peach pear plum mango
kiwi bottle window garden pencil paper letter mirror carrot tomato potato butter coffee dinner
summer winter river forest mountain valley island ocean desert flower rabbit turtle parrot monkey
giraffe elephant kitten puppy horse zebra tiger lion bread cheese pepper button ladder basket pillow
blanket balloon bicycle rocket planet silver yellow purple green little happy quickly slowly bright
sunny rainy school teacher doctor farmer sister brother mother father friend people street market
bridge castle dragon wizard jungle barrel hammer scissors cookie candle kettle puzzle rhythm
assessment committee mississippi necessary occasion parallel possession accommodate tomorrow
success address cat dog sun sky sea tree book door hat cup fish bird milk rain snow moon star ball
car bus boat
""".split()))
_NAMES = ("Tom", "Mia", "Sam", "Ana", "Leo", "Zoe", "Max", "Ivy", "Ben", "Eva", "Raj", "Lily")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "balloons",
          "stamps", "shells", "coins", "crayons")
# fmt: on
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclasses.dataclass(eq=False, kw_only=True)
class SyntheticConfig(tfds.core.BuilderConfig):
    """One difficulty level of the synthetic suite (a TFDS builder config).

    Attributes:
      seed: the same seed (and fields) gives the same examples.
      tasks: task families to mix, in equal shares (subset of SYNTHETIC_TASKS).
      num_train, num_calibration, num_test: split sizes.
      digits, operators, num_operands: arithmetic operands have `digits` digits, operators are
        drawn from `operators` (subset of "+", "-", "*"), `num_operands` >= 2 operands.
      compare_digits: digits of the integers compared.
      compare_decimals: half the comparisons are decimals with the same integer part and a
        different number of decimal places ("9.11 or 9.9").
      letter_words: (min, max) words in the phrase whose letters are counted.
      count_words: (min, max) words in the sentence whose words are counted.
      word_problem_steps: changes to the starting quantity in a word problem.
      word_problem_multiply: word problems may buy "p packs of q" (a product).
      max_quantity: largest quantity in a word-problem step.

    A custom level is built like a registered one; give it its own name, since the prepared
    files live under it:
      tfds.data_source("introspect_synthetic", data_dir=...,
                       builder_kwargs={"config": SyntheticConfig(name="seed3", seed=3)})
    """

    seed: int = 0
    tasks: tuple[str, ...] = SYNTHETIC_TASKS
    num_train: int = 4000
    num_calibration: int = 1000
    num_test: int = 1000
    digits: int = 2
    operators: tuple[str, ...] = ("+", "-")
    num_operands: int = 2
    compare_digits: int = 2
    compare_decimals: bool = False
    letter_words: tuple[int, int] = (1, 1)
    count_words: tuple[int, int] = (3, 6)
    word_problem_steps: int = 1
    word_problem_multiply: bool = False
    max_quantity: int = 10

    def split_size(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; the synthetic suite has {SPLITS}")
        return getattr(self, f"num_{split}")


LEVELS = {
    "easy": SyntheticConfig(
        name="easy",
        description="1-digit sums/differences, 2-digit comparisons, one-word letter counts, "
        "3-6 word sentences, one-step word problems.",
        digits=1,
        operators=("+", "-"),
        num_operands=2,
        compare_digits=2,
        letter_words=(1, 1),
        count_words=(3, 6),
        word_problem_steps=1,
        max_quantity=10,
    ),
    "medium": SyntheticConfig(
        name="medium",
        description="2-digit sums/differences, 3-digit comparisons (often digit permutations), "
        "1-2 word letter counts, 5-10 word sentences, two-step word problems.",
        digits=2,
        operators=("+", "-"),
        num_operands=2,
        compare_digits=3,
        letter_words=(1, 2),
        count_words=(5, 10),
        word_problem_steps=2,
        max_quantity=20,
    ),
    "hard": SyntheticConfig(
        name="hard",
        description="three 2-digit operands with + - *, decimal comparisons (9.11 vs 9.9), "
        "2-4 word letter counts, 8-16 word sentences, three-step word problems with products.",
        digits=2,
        operators=("+", "-", "*"),
        num_operands=3,
        compare_digits=4,
        compare_decimals=True,
        letter_words=(2, 4),
        count_words=(8, 16),
        word_problem_steps=3,
        word_problem_multiply=True,
        max_quantity=50,
    ),
}


def _check_config(config: SyntheticConfig) -> None:
    bad = [t for t in config.tasks if t not in SYNTHETIC_TASKS]
    if bad or not config.tasks:
        raise ValueError(
            f"tasks must be a non-empty subset of {SYNTHETIC_TASKS}, got {config.tasks}"
        )
    for lo_hi, name in ((config.letter_words, "letter_words"), (config.count_words, "count_words")):
        if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1]:
            raise ValueError(f"{name} must be (min, max) with 1 <= min <= max, got {lo_hi}")
    for name in ("compare_digits", "word_problem_steps", "max_quantity"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    for split in SPLITS:
        if config.split_size(split) < 0:
            raise ValueError(f"num_{split} must be >= 0, got {config.split_size(split)}")


# ----------------------------------------------------------------------------- task generators
# Each takes a numpy Generator and the config and returns (question, answer, solution).


def _arithmetic(rng: np.random.Generator, c: SyntheticConfig) -> tuple[str, str, str]:
    (q,) = arithmetic_questions(
        1,
        seed=int(rng.integers(2**32)),
        digits=c.digits,
        operators=tuple(c.operators),
        num_operands=c.num_operands,
    )
    return q["question"], q["answer"], f"{q['expression']} = {q['answer']}"


def _comparison(rng: np.random.Generator, c: SyntheticConfig) -> tuple[str, str, str]:
    if c.compare_decimals and rng.random() < 0.5:
        whole = int(rng.integers(1, 100))
        short = int(rng.integers(1, 10))  # one decimal place: 9.9
        long = int(rng.integers(10, 100))  # two decimal places: 9.11
        while long % 10 == 0:
            long = int(rng.integers(10, 100))
        a, b = f"{whole}.{short}", f"{whole}.{long:02d}"
        values = {a: short / 10, b: long / 100}
    else:
        low = 0 if c.compare_digits == 1 else 10 ** (c.compare_digits - 1)
        x = int(rng.integers(low, 10**c.compare_digits))
        digits = list(str(x))
        rng.shuffle(digits)
        y = int("".join(digits))
        # Half the time the digits of one number, permuted ("37 or 73"), when that is distinct.
        if not (rng.random() < 0.5 and y != x and len(str(y)) == len(str(x))):
            y = x
            while y == x:
                y = int(rng.integers(low, 10**c.compare_digits))
        a, b = str(x), str(y)
        values = {a: x, b: y}
    if rng.random() < 0.5:
        a, b = b, a
    larger = rng.random() < 0.5
    pick = max if larger else min
    answer = pick((a, b), key=lambda s: values[s])
    word = "larger" if larger else "smaller"
    return f"Which is {word}, {a} or {b}?", answer, ""


def _letter_count(rng: np.random.Generator, c: SyntheticConfig) -> tuple[str, str, str]:
    n = int(rng.integers(c.letter_words[0], c.letter_words[1] + 1))
    phrase = " ".join(_WORDS[i] for i in rng.integers(0, len(_WORDS), size=n))
    present = sorted(set(phrase) - {" "})
    if rng.random() < 0.9:
        letter = present[int(rng.integers(len(present)))]
    else:
        absent = [ch for ch in _LETTERS if ch not in present]
        letter = absent[int(rng.integers(len(absent)))]
    where = "the word" if n == 1 else "the phrase"
    question = f'How many times does the letter "{letter}" appear in {where} "{phrase}"?'
    return question, str(phrase.count(letter)), ""


def _word_count(rng: np.random.Generator, c: SyntheticConfig) -> tuple[str, str, str]:
    n = int(rng.integers(c.count_words[0], c.count_words[1] + 1))
    sentence = " ".join(_WORDS[i] for i in rng.integers(0, len(_WORDS), size=n))
    return f'How many words are in the sentence "{sentence}"?', str(n), ""


def _word_problem(rng: np.random.Generator, c: SyntheticConfig) -> tuple[str, str, str]:
    i, j = rng.permutation(len(_NAMES))[:2]
    name, friend = _NAMES[i], _NAMES[j]
    items = _ITEMS[int(rng.integers(len(_ITEMS)))]
    total = int(rng.integers(1, c.max_quantity + 1))
    sentences = [f"{name} has {total} {items}."]
    terms = [str(total)]
    kinds = ["buy", "receive", "give", "lose"] + (["packs"] if c.word_problem_multiply else [])
    for _ in range(c.word_problem_steps):
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind in ("give", "lose") and total == 0:
            kind = "buy"
        if kind == "packs":
            p = int(rng.integers(2, 6))
            q = int(rng.integers(2, min(c.max_quantity, 12) + 1))
            sentences.append(f"{name} buys {p} packs of {items} with {q} {items} in each pack.")
            total += p * q
            terms.append(f"+ {p} * {q}")
            continue
        if kind in ("give", "lose"):
            k = int(rng.integers(1, total + 1))
            total -= k
            terms.append(f"- {k}")
        else:
            k = int(rng.integers(1, c.max_quantity + 1))
            total += k
            terms.append(f"+ {k}")
        sentences.append(
            {
                "buy": f"{name} buys {k} more {items}.",
                "receive": f"{friend} gives {name} {k} more {items}.",
                "give": f"{name} gives {k} {items} to {friend}.",
                "lose": f"{name} loses {k} {items}.",
            }[kind]
        )
    sentences.append(f"How many {items} does {name} have now?")
    return " ".join(sentences), str(total), f"{' '.join(terms)} = {total}"


_GENERATORS = {
    "arithmetic": _arithmetic,
    "comparison": _comparison,
    "letter_count": _letter_count,
    "word_count": _word_count,
    "word_problem": _word_problem,
}


# ----------------------------------------------------------------------------- the suite


def synthetic_split(
    config: SyntheticConfig, split: str, *, exclude: set[str] | None = None
) -> list[dict[str, Any]]:
    """The examples of one split, in the shared feature layout (see builders.common).

    Tasks come in equal shares (in a seeded random order). Deterministic given `config`, `split`
    and `exclude`.

    Args:
      config: the level (its seed included).
      split: "train", "calibration" or "test".
      exclude: questions to avoid (redrawn up to a retry limit); the new questions are added.
    Returns:
      list of example dicts; id "<level>-<split>-<index>", answer_type "number".
    """
    _check_config(config)
    n = config.split_size(split)
    seen = exclude if exclude is not None else set()
    rng = np.random.default_rng([config.seed, SPLITS.index(split)])
    tasks = [config.tasks[i % len(config.tasks)] for i in range(n)]
    rng.shuffle(tasks)
    exhausted: set[str] = set()  # tasks whose question space ran out: stop redrawing
    out = []
    for i, task in enumerate(tasks):
        for _ in range(1 if task in exhausted else _MAX_REDRAWS):
            question, answer, solution = _GENERATORS[task](rng, config)
            if question not in seen:
                break
        else:
            exhausted.add(task)
        seen.add(question)
        out.append(
            make_example(
                id=f"{config.name}-{split}-{i:06d}",
                task=task,
                level=config.name,
                question=question,
                answer=answer,
                answer_type="number",
                solution=solution,
            )
        )
    return out


def synthetic_suite(config: SyntheticConfig) -> dict[str, list[dict[str, Any]]]:
    """All three splits, generated test -> calibration -> train with questions kept disjoint
    where the question space allows."""
    seen: set[str] = set()
    generated = {split: synthetic_split(config, split, exclude=seen) for split in _GENERATION_ORDER}
    return {split: generated[split] for split in SPLITS}


class IntrospectSynthetic(ArrayRecordBuilder):
    """TFDS builder of the synthetic suite; configs "easy", "medium", "hard" (LEVELS)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Arithmetic, comparison, counting and word problems."}
    BUILDER_CONFIGS = list(LEVELS.values())
    DEFAULT_CONFIG_NAME = "medium"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__.split("\n\n")[0],
            features=qa_features(),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        suite = synthetic_suite(self.builder_config)
        return {split: self._generate_examples(suite[split]) for split in SPLITS}

    def _generate_examples(self, examples):
        for ex in examples:
            yield ex["id"], ex
