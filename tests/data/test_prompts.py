"""Prompt formats rendered through the real SmolLM2 tokenizer and chat template; answer cutting."""

import pytest

from introspect.data import prompts
from introspect.data.prompts import (
    PROMPT_FORMATS,
    build_messages,
    build_prompt_ids,
    build_prompt_text,
    extract_answer_text,
    parse_top_k,
)

EXAMPLES = {
    "number": {
        "question": "Which is larger, 37 or 73?",
        "answer": "73",
        "answer_type": "number",
    },
    "math": {
        "question": "Solve $3x = 14$ for $x$.",
        "answer": "\\frac{14}{3}",
        "answer_type": "math",
    },
    "choice": {
        "question": "Where would you keep milk cold?",
        "choices": ["fridge", "oven", "car", "bed", "shoe"],
        "answer": "A",
        "answer_type": "choice",
    },
    "text": {
        "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
        "context": "Ed Wood: Edward Davis Wood Jr. was an American filmmaker.",
        "answer": "yes",
        "answer_type": "text",
    },
}

# Phrases each format must put in front of the model.
REQUIRED = {
    "plain": ["Answer with just"],
    "cot": ["step by step", "Answer: <answer>"],
    "verbalized": ["Answer: <answer>", "Confidence: X%", "0% to 100%"],
    "rlcr": ["<think>", "</think>", "<answer>", "</answer>", "<analysis>", "</analysis>",
             "<confidence>", "</confidence>", "between 0 and 1"],
    "topk": ["3 best guesses", "G1:", "P1:", "G3:", "P3:", "between 0 and 1"],
}  # fmt: skip

ANSWER_FORM = {
    "number": "number",
    "math": "\\boxed{}",
    "choice": "letter",
    "text": "short phrase",
}


@pytest.fixture(scope="module")
def tokenizer():
    from introspect import models

    return models.Tokenizer.from_gguf(models.resolve("smollm2-135m-instruct"))


def test_registry_names():
    assert PROMPT_FORMATS.names() == ("cot", "plain", "rlcr", "topk", "verbalized")


@pytest.mark.parametrize("fmt", list(PROMPT_FORMATS))
@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_formats_render_through_the_chat_template(tokenizer, fmt, kind):
    example = EXAMPLES[kind]
    text = build_prompt_text(tokenizer, example, fmt)
    ids = build_prompt_ids(tokenizer, example, fmt)
    assert ids == tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    # SmolLM2's ChatML: a user turn, then an open assistant turn ready to generate.
    assert text.count("<|im_start|>user\n") == 1
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    user = text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
    assert example["question"] in user
    for phrase in REQUIRED[fmt]:
        assert phrase in user, (fmt, phrase)
    if kind == "choice":
        assert "A. fridge\nB. oven\nC. car\nD. bed\nE. shoe" in user
    if kind == "text":
        assert user.startswith("Context:\nEd Wood:") and "Question: Were" in user
    assert ANSWER_FORM[kind] in user
    assert "\\boxed{}" in user if kind == "math" else "\\boxed" not in user


def test_options_and_system_message(tokenizer):
    messages = build_messages(EXAMPLES["number"], "topk", k=5)
    assert "G5: <guess 5> P5: <probability>" in messages[-1]["content"]
    assert "G6" not in messages[-1]["content"]
    text = build_prompt_text(tokenizer, EXAMPLES["number"], "plain", system="Be terse.")
    assert text.startswith("<|im_start|>system\nBe terse.<|im_end|>")
    assert "SmolLM" not in text  # the template's default system prompt is replaced
    default = build_prompt_text(tokenizer, EXAMPLES["number"], "plain")
    assert default.startswith("<|im_start|>system\n")  # the template's own default


def test_bad_names_and_inputs():
    with pytest.raises(ValueError, match="unknown prompt format 'json'; known: cot, plain"):
        build_messages(EXAMPLES["number"], "json")
    with pytest.raises(ValueError, match="answer_type must be one of"):
        build_messages({"question": "q", "answer_type": "bool"}, "plain")
    with pytest.raises(ValueError, match="needs a 'question'"):
        build_messages({"answer": "1"}, "plain")
    with pytest.raises(ValueError, match="k must be"):
        build_messages(EXAMPLES["number"], "topk", k=0)
    with pytest.raises(ValueError, match="unknown prompt format"):
        extract_answer_text("x", "fewshot")
    with pytest.raises(ValueError, match="must be a string"):
        extract_answer_text(None, "plain")


@pytest.mark.parametrize(
    "fmt, response, want",
    [
        ("plain", "  73 \n", "73"),
        ("cot", "37 < 73, so the larger is 73.\nAnswer: 73", "73"),
        ("cot", "Answer: 37\nWait, no.\nFinal answer: \\boxed{73}", "\\boxed{73}"),
        ("cot", "It is 73.", "It is 73."),
        ("verbalized", "Answer: 73\nConfidence: 85%", "73"),
        ("verbalized", "73\nConfidence: 60%", "73"),
        ("verbalized", "Answer: Paris (confidence: 90%)", "Paris"),
        ("rlcr", "<think>x</think> <answer> 73 </answer> <analysis>sure</analysis>", "73"),
        ("rlcr", "no tags at all", ""),
        ("topk", "G1: 73 P1: 0.8\nG2: 37 P2: 0.2", "73"),
        ("topk", "G1: Paris", "Paris"),
    ],
)
def test_extract_answer_text(fmt, response, want):
    assert extract_answer_text(response, fmt) == want


def test_parse_top_k():
    assert parse_top_k("G1: Paris P1: 0.7\nG2: Lyon P2: 20%\nG3: Nice P3: 3") == [
        ("Paris", 0.7),
        ("Lyon", 0.2),
        ("Nice", None),  # 3 is not a probability
    ]
    assert parse_top_k("no guesses") == []


def test_format_question_numbers_choices():
    block = prompts.format_question({"question": "Pick.", "choices": ["x", "y"]})
    assert block == "Pick.\n\nA. x\nB. y"
    with pytest.raises(ValueError, match="at most 10 choices"):
        prompts.format_question({"question": "q", "choices": list("abcdefghijk")})
