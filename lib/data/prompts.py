"""Prompt formats: an example (the shared layout of `introspect.data.builders`) -> chat messages.

  plain       the question and the answer form ("Answer with just the number.")
  cot         think step by step, end with "Answer: <answer>"
  verbalized  "Answer: <answer>" then "Confidence: X%" (0-100)
  rlcr        <think>..</think> <answer>..</answer> <analysis>..</analysis>
              <confidence>q</confidence> with q in [0, 1] (RLCR; parse with
              `introspect.losses.parse_rlcr`)
  topk        k guesses with probabilities, "G1: <answer> P1: <probability>" per line
  multistep   "Step i: <reasoning>, Confidence: X%" per step, then "Final Answer and Overall
              Confidence (0-100): <answer>, X%" (Xiong et al. 2024; step confidences are combined
              by `introspect.signals.verbalized.multistep_confidence`)
  self_probing  a fresh conversation that shows the question and a candidate answer
              (`answer=...`) and asks how likely that answer is to be correct: reasoning, then
              "Confidence: X%" (Xiong et al. 2024). The response holds no answer of its own, so
              `extract_answer_text` refuses it: grade the candidate answer itself.

The answer form follows the example's answer_type: a number, a LaTeX answer in \\boxed{}, a choice
letter (the options are listed), or a short phrase. Context (HotpotQA) comes before the question.

`build_prompt_ids(tokenizer, example, "verbalized")` renders the messages with the tokenizer's
chat template, ready to generate. `extract_answer_text(response, fmt)` cuts the answer out of a
response in that format (so "Confidence: 80%" is never graded as the answer); confidences are
parsed by `introspect.signals.parse_verbalized_confidence` / `introspect.losses.parse_rlcr`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from introspect.registry import Registry

Messages = list[dict[str, str]]

_LETTERS = "ABCDEFGHIJ"

_ANSWER_FORM = {
    "number": "a single number",
    "math": "a LaTeX expression inside \\boxed{}",
    "choice": "the letter of the correct option",
    "text": "a short phrase",
}

_GUESS_FORM = {
    "number": "a number",
    "math": "a LaTeX expression inside \\boxed{}",
    "choice": "an option letter",
    "text": "a short phrase",
}

_PLAIN_INSTRUCTION = {
    "number": "Answer with just the number.",
    "math": "Answer with just the final answer, inside \\boxed{}.",
    "choice": "Answer with just the letter of the correct option.",
    "text": "Answer with just a short phrase.",
}


def _answer_type(example: Mapping[str, Any]) -> str:
    kind = example.get("answer_type", "text")
    if kind not in _ANSWER_FORM:
        raise ValueError(f"answer_type must be one of {tuple(_ANSWER_FORM)}, got {kind!r}")
    return kind


def format_question(example: Mapping[str, Any]) -> str:
    """Context (if any), the question, and lettered options (if any), as one block of text."""
    if "question" not in example:
        raise ValueError(f"an example needs a 'question', got keys {sorted(example)}")
    parts = []
    context = example.get("context") or ""
    if context:
        parts.append(f"Context:\n{context}")
        parts.append(f"Question: {example['question']}")
    else:
        parts.append(str(example["question"]))
    choices = list(example.get("choices") or [])
    if choices:
        if len(choices) > len(_LETTERS):
            raise ValueError(f"at most {len(_LETTERS)} choices, got {len(choices)}")
        parts.append("\n".join(f"{_LETTERS[i]}. {c}" for i, c in enumerate(choices)))
    return "\n\n".join(parts)


def _user(example: Mapping[str, Any], instruction: str) -> Messages:
    return [{"role": "user", "content": f"{format_question(example)}\n\n{instruction}"}]


def plain(example: Mapping[str, Any]) -> Messages:
    """The question and a one-line instruction on the answer form."""
    kind = _answer_type(example)
    return _user(example, _PLAIN_INSTRUCTION[kind])


def chain_of_thought(example: Mapping[str, Any]) -> Messages:
    """Reason step by step, then a last line "Answer: <answer>"."""
    form = _ANSWER_FORM[_answer_type(example)]
    instruction = (
        "Think step by step. Then write the final answer on the last line as "
        f"'Answer: <answer>', where <answer> is {form}."
    )
    return _user(example, instruction)


def verbalized_confidence(example: Mapping[str, Any]) -> Messages:
    """Answer, then the probability that the answer is correct as "Confidence: X%"."""
    form = _ANSWER_FORM[_answer_type(example)]
    instruction = (
        f"Give your answer as 'Answer: <answer>', where <answer> is {form}. Then give your "
        "confidence that your answer is correct, from 0% to 100%, on the next line as "
        "'Confidence: X%'."
    )
    return _user(example, instruction)


def rlcr(example: Mapping[str, Any]) -> Messages:
    """RLCR tags: reasoning, answer, analysis of the answer's reliability, confidence in [0, 1]."""
    form = _ANSWER_FORM[_answer_type(example)]
    instruction = (
        "Respond in this format:\n"
        "<think> your step-by-step reasoning </think>\n"
        f"<answer> your final answer, {form} </answer>\n"
        "<analysis> how likely your answer is to be correct, and why </analysis>\n"
        "<confidence> the probability that your answer is correct, a number between 0 and 1 "
        "</confidence>"
    )
    return _user(example, instruction)


def top_k(example: Mapping[str, Any], *, k: int = 3) -> Messages:
    """k guesses, each with the probability it is correct: "G1: <answer> P1: <probability>"."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    form = _GUESS_FORM[_answer_type(example)]
    lines = "\n".join(f"G{i}: <guess {i}> P{i}: <probability>" for i in range(1, k + 1))
    instruction = (
        f"Give your {k} best guesses, each {form}, with the probability (between 0 and 1) that "
        f"it is correct, most likely first, one per line and nothing else:\n{lines}"
    )
    return _user(example, instruction)


def multistep(example: Mapping[str, Any]) -> Messages:
    """Multi-step verbalized confidence (Xiong et al. 2024): steps, each with the confidence that
    it is correct, then "Final Answer and Overall Confidence (0-100): <answer>, X%"."""
    form = _ANSWER_FORM[_answer_type(example)]
    instruction = (
        "Break the problem down into K steps and think step by step, giving your confidence that "
        "each step is correct; then give your final answer and your confidence in it. The "
        "confidence is how likely you think it is that the answer is true, from 0% to 100%. Use "
        "this format:\n\n"
        "Step 1: <reasoning>, Confidence: X%\n"
        "...\n"
        "Step K: <reasoning>, Confidence: X%\n"
        "Final Answer and Overall Confidence (0-100): <answer>, X%\n\n"
        f"where <answer> is only {form}, not a sentence."
    )
    return _user(example, instruction)


def self_probing(example: Mapping[str, Any], answer: str) -> Messages:
    """Self-probing (Xiong et al. 2024): a new conversation that shows the question and a candidate
    `answer` (e.g. the model's own earlier answer) and asks how likely it is to be correct, with
    a short analysis first and "Confidence: X%" last."""
    _answer_type(example)
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a string, got {type(answer).__name__}")
    block = format_question(example)
    if not example.get("context"):
        block = f"Question: {block}"
    instruction = (
        "How likely is the above answer to be correct? First analyse the possible answer and give "
        "your reasoning concisely. Then, on the last line, give the probability that the answer "
        f"{answer} is correct (not that of the answer you think is correct), from 0% to 100%, as "
        "'Confidence: X%'."
    )
    content = f"{block}\n\nPossible answer: {answer}\n\n{instruction}"
    return [{"role": "user", "content": content}]


# Prompt formats by name: (example, **options) -> chat messages.
PROMPT_FORMATS: Registry[Callable[..., Messages]] = Registry("prompt format")
PROMPT_FORMATS.register("plain", plain)
PROMPT_FORMATS.register("cot", chain_of_thought)
PROMPT_FORMATS.register("verbalized", verbalized_confidence)
PROMPT_FORMATS.register("rlcr", rlcr)
PROMPT_FORMATS.register("topk", top_k)
PROMPT_FORMATS.register("multistep", multistep)
PROMPT_FORMATS.register("self_probing", self_probing)


def get_format(name: str) -> Callable[..., Messages]:
    """The prompt format registered under `name` (ValueError listing the known names)."""
    return PROMPT_FORMATS.get(name)


def build_messages(
    example: Mapping[str, Any], fmt: str = "plain", *, system: str | None = None, **options: Any
) -> Messages:
    """Chat messages for `example` in format `fmt`.

    Args:
      example: an example dict in the shared layout.
      fmt: a name in PROMPT_FORMATS.
      system: a system message to put first (None: none, so the chat template's default applies).
      **options: format options (topk: k; self_probing: answer, required).
    """
    messages = get_format(fmt)(example, **options)
    return ([{"role": "system", "content": system}] if system is not None else []) + messages


def build_prompt_ids(
    tokenizer, example: Mapping[str, Any], fmt: str = "plain", **options: Any
) -> list[int]:
    """[length] token ids of the chat-templated prompt, ending with the assistant header.

    Args:
      tokenizer: an `introspect.models.Tokenizer` (anything with `apply_chat_template`).
      example: an example dict in the shared layout.
      fmt: a name in PROMPT_FORMATS.
      **options: `system` and format options (topk: k), as for `build_messages`.
    Returns:
      list of int ids.
    """
    messages = build_messages(example, fmt, **options)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def build_prompt_text(
    tokenizer, example: Mapping[str, Any], fmt: str = "plain", **options: Any
) -> str:
    """The chat-templated prompt as a string (what `build_prompt_ids` tokenizes)."""
    messages = build_messages(example, fmt, **options)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# ----------------------------------------------------------------------------- responses

_ANSWER_LINE = re.compile(r"answer\s*:\s*(.*)", re.I)
_CONFIDENCE = re.compile(r"\bconfidence\b", re.I)
_TOPK = re.compile(
    r"G(\d+)\s*[:.]\s*(.*?)\s*P\1\s*[:.]\s*([0-9]*\.?[0-9]+)\s*(%?)", re.I | re.DOTALL
)


def parse_top_k(response: str) -> list[tuple[str, float | None]]:
    """[(guess, probability in [0, 1] or None), ...] in the order G1, G2, ... of a top-k
    response ("G1: Paris P1: 0.8"); a percentage ("80%") is read as 0.8."""
    out = []
    for _, guess, prob, pct in _TOPK.findall(response):
        p = float(prob) / (100.0 if pct else 1.0)
        out.append((guess.strip(), p if 0.0 <= p <= 1.0 else None))
    return out


# A "Final Answer and Overall Confidence (0-100):" label (multistep), or any "... answer:" label.
_MULTISTEP_LABEL = re.compile(
    r"\banswer\b(?P<conf>\s+and\s+(?:overall\s+)?confidence)?\s*(?:\([^)\n]*\))?\s*:", re.I
)
# "<answer>, 85%" / "<answer> 85%" / "<answer>, Confidence: 85%", else "<answer>, 85".
_TRAILING_PCT = re.compile(
    r"^(?P<answer>.*?)[\s,;]+(?:confidence\s*[:=]?\s*)?(?P<conf>\d+(?:\.\d+)?\s*%)\W*$", re.I
)
_TRAILING_NUM = re.compile(
    r"^(?P<answer>.*?)(?:,\s+|;\s*)(?:confidence\s*[:=]?\s*)?(?P<conf>\d+(?:\.\d+)?)\W*$", re.I
)


def split_multistep_final(response: str) -> tuple[str | None, str | None]:
    """(answer text, confidence statement) of a multistep response's final line, from its last
    answer label; (None, None) without one.

    "Final Answer and Overall Confidence (0-100): 73, 85%" gives ("73", "Confidence: 85%"): the
    answer is what comes before a trailing "X%" (else before a trailing ", X"; else the whole
    line, with no confidence: "1,000" stays one answer). A plain "Final Answer: 73" line gives the
    text before any "confidence" on that line, and the rest of the response as the confidence
    statement (so a following "Overall Confidence: 85%" line is found). The confidence statement
    is in a form `introspect.signals.parse_verbalized_confidence` reads.
    """
    if not isinstance(response, str):
        raise ValueError(f"response must be a string, got {type(response).__name__}")
    labels = list(_MULTISTEP_LABEL.finditer(response))
    if not labels:
        return None, None
    label = labels[-1]
    rest = response[label.end() :]
    line = rest.split("\n", 1)[0].strip()
    if label.group("conf"):
        m = _TRAILING_PCT.match(line) or _TRAILING_NUM.match(line)
        if m is None:
            return _clean_answer(line), None
        return _clean_answer(m.group("answer")), f"Confidence: {m.group('conf').replace(' ', '')}"
    return _clean_answer(_CONFIDENCE.split(line, maxsplit=1)[0]), rest


def _clean_answer(text: str) -> str:
    """Without surrounding whitespace or markdown bold, nor a dangling "(" / "," at the end."""
    text = text.strip().strip("*").strip().rstrip("([{,;:-").strip()
    return text.strip("*").strip()


def extract_answer_text(response: str, fmt: str = "plain") -> str:
    """The part of a response in format `fmt` that holds the answer, for the graders.

    plain: the whole response. cot: after the last "Answer:" (else the whole response).
    verbalized: after "Answer:" (if present) and before "Confidence". rlcr: inside the last
    <answer>..</answer> ("" if missing). topk: the first guess (else the first line). multistep:
    the answer on the last answer line (`split_multistep_final`; "" if missing). self_probing:
    a ValueError (the response only rates a given answer; grade that answer instead).
    """
    get_format(fmt)
    if not isinstance(response, str):
        raise ValueError(f"response must be a string, got {type(response).__name__}")
    if fmt == "self_probing":
        raise ValueError(
            "a self_probing response holds no answer of its own (it rates the candidate answer "
            "shown in the prompt): grade the candidate answer, and read the confidence with "
            "introspect.signals.parse_verbalized_confidence"
        )
    if fmt == "multistep":
        answer, _ = split_multistep_final(response)
        return answer or ""
    if fmt == "plain":
        return response.strip()
    if fmt == "cot":
        found = _ANSWER_LINE.findall(response)
        return found[-1].strip() if found else response.strip()
    if fmt == "verbalized":
        head = _CONFIDENCE.split(response, maxsplit=1)[0]
        found = _ANSWER_LINE.findall(head)
        return (found[-1] if found else head).strip().rstrip("([{,;:-").strip()
    if fmt == "rlcr":
        found = re.findall(r"<answer>(.*?)</answer>", response, flags=re.DOTALL | re.I)
        return found[-1].strip() if found else ""
    guesses = parse_top_k(response)
    if guesses:
        return guesses[0][0]
    lines = response.strip().splitlines()
    return re.sub(r"^G1\s*[:.]\s*", "", lines[0]).strip() if lines else ""
