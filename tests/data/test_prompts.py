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
    "multistep": ["step by step", "Step 1: <reasoning>, Confidence: X%", "Step K:",
                  "Final Answer and Overall Confidence (0-100): <answer>, X%", "0% to 100%"],
}  # fmt: skip

ANSWER_FORM = {
    "number": "number",
    "math": "\\boxed{}",
    "choice": "letter",
    "text": "short phrase",
}


MULTISTEP = """Step 1: 37 has 3 tens and 73 has 7 tens, Confidence: 90%
Step 2: So 73 is larger, Confidence: 80%
Final Answer and Overall Confidence (0-100): 73, 85%"""


@pytest.fixture(scope="module")
def tokenizer():
    from introspect import models

    return models.Tokenizer.from_gguf(models.resolve("smollm2-135m-instruct"))


def test_registry_names():
    assert PROMPT_FORMATS.names() == (
        "cot", "multistep", "plain", "rlcr", "self_probing", "topk", "verbalized"
    )  # fmt: skip


# self_probing shows a candidate answer instead of the answer form: its own test below.
@pytest.mark.parametrize("fmt", [f for f in PROMPT_FORMATS if f != "self_probing"])
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


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_self_probing_renders_question_and_candidate(tokenizer, kind):
    example = EXAMPLES[kind]
    candidate = {"number": "37", "math": "\\boxed{5}", "choice": "B", "text": "no"}[kind]
    text = build_prompt_text(tokenizer, example, "self_probing", answer=candidate)
    assert build_prompt_ids(tokenizer, example, "self_probing", answer=candidate) == (
        tokenizer.encode(text)
    )
    assert text.count("<|im_start|>user\n") == 1
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    user = text.split("<|im_start|>user\n")[1].split("<|im_end|>")[0]
    assert f"Question: {example['question']}" in user
    assert f"Possible answer: {candidate}\n" in user
    phrases = [
        "How likely is the above answer to be correct?",
        "reasoning",
        f"the answer {candidate} is correct",
        "0% to 100%",
        "Confidence: X%",
    ]
    for phrase in phrases:
        assert phrase in user, phrase
    if kind == "choice":
        assert "A. fridge\nB. oven" in user
    if kind == "text":
        assert user.startswith("Context:\nEd Wood:")


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
    with pytest.raises(ValueError, match="unknown prompt format 'json'; known: cot, multistep, "):
        build_messages(EXAMPLES["number"], "json")
    with pytest.raises(ValueError, match="answer_type must be one of"):
        build_messages({"question": "q", "answer_type": "bool"}, "plain")
    with pytest.raises(ValueError, match="needs a 'question'"):
        build_messages({"answer": "1"}, "plain")
    with pytest.raises(ValueError, match="k must be"):
        build_messages(EXAMPLES["number"], "topk", k=0)
    with pytest.raises(TypeError, match="answer"):
        build_messages(EXAMPLES["number"], "self_probing")
    with pytest.raises(ValueError, match="answer must be a string"):
        build_messages(EXAMPLES["number"], "self_probing", answer=73)
    with pytest.raises(ValueError, match="holds no answer of its own"):
        extract_answer_text("It is likely right. Confidence: 80%", "self_probing")
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
        ("multistep", MULTISTEP, "73"),
        ("multistep", "Step 1: x, Confidence: 90%\nFinal Answer and Overall Confidence (0-100): "
                      "\\boxed{(1, 2)}, 80%", "\\boxed{(1, 2)}"),
        ("multistep", "Final Answer and Overall Confidence (0-100): 1,000, 85", "1,000"),
        ("multistep", "Final Answer and Overall Confidence (0-100): 1,000", "1,000"),
        ("multistep", "Final Answer and Overall Confidence (1-100): (A) fridge 90%.",
                      "(A) fridge"),
        ("multistep", "**Final Answer and Overall Confidence (0-100):** B, 60%", "B"),
        ("multistep", "Step 1: sum, Confidence: 90%\nFinal Answer: 12\nOverall Confidence: 60%",
                      "12"),
        ("multistep", "Step 1: 3 < 7, Confidence: 90%", ""),
    ],
)  # fmt: skip
def test_extract_answer_text(fmt, response, want):
    assert extract_answer_text(response, fmt) == want


@pytest.mark.parametrize(
    "response, want",
    [
        ("Final Answer and Overall Confidence (0-100): 73, 85%", ("73", "Confidence: 85%")),
        ("Final Answer and Overall Confidence: Paris, Confidence: 70%",
         ("Paris", "Confidence: 70%")),
        ("Final Answer and Overall Confidence (0-100): 1,000", ("1,000", None)),
        ("Final Answer: 42 (Confidence: 75%)", ("42", " 42 (Confidence: 75%)")),
        ("no label", (None, None)),
    ],
)  # fmt: skip
def test_split_multistep_final(response, want):
    assert prompts.split_multistep_final(response) == want


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_multistep_responses_grade(kind):
    from introspect import data

    example = EXAMPLES[kind]
    right = {"number": "73", "math": "\\boxed{\\frac{14}{3}}", "choice": "(A) fridge",
             "text": "yes"}[kind]  # fmt: skip
    wrong = {"number": "37", "math": "\\boxed{3}", "choice": "B", "text": "no"}[kind]
    steps = "Step 1: think, Confidence: 90%\nStep 2: check 100 times, Confidence: 80%\n"
    for answer, correct in [(right, True), (wrong, False)]:
        response = f"{steps}Final Answer and Overall Confidence (0-100): {answer}, 85%"
        assert data.grade(example, response, fmt="multistep")[1] is correct, (kind, answer)


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
