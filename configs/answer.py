"""The embedded model answers generated arithmetic questions; accuracy and token confidence.

    python -m experiments.answer --config configs/answer.py:smoke

Runtime on a 2-core CPU: ~1 minute for `:smoke` (16 questions; model load ~10 s, one compile
~20 s), ~3 minutes for the default (128 questions). Prints accuracy, then one line per question
(correct?, mean token probability, the answer), and writes results/answer/<run>/ with config.json,
metrics.json and answers.jsonl.

Override any field, e.g. `--config.num_questions=64 --config.model=path/to/model.gguf`.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # A registered name ("smollm2-135m-instruct"), a .gguf file or a Hugging Face directory.
    c.model = "smollm2-135m-instruct"
    # Compute dtype of the model: float32 or bfloat16.
    c.dtype = "float32"
    # Questions: how many, their seed, operand digits, operators and operands per question.
    c.num_questions = 128
    c.seed = 0
    c.digits = 2
    c.operators = ("+", "-")
    c.num_operands = 2
    # The user turn sent to the chat template; {question} is replaced by the question.
    c.prompt = "{question} Answer with just the number."
    # Decoding: greedy unless temperature > 0.
    c.max_new_tokens = 24
    c.temperature = 0.0
    c.batch_size = 32
    # Results go to results/answer/<run_name> (default: a UTC timestamp).
    c.run_name = ""
    c.results_root = "results"
    if arg == "smoke":
        c.num_questions = 16
        c.batch_size = 16
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use configs/answer.py or :smoke")
    return c
