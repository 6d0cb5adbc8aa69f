"""ConfTuner SFT of the embedded model on its own graded answers.

    python -m experiments.sft --config configs/sft.py:smoke --workdir /tmp/sft

`:smoke`: synthetic suite, 128 train and 64 held-out questions (plain prompt, greedy answers of
up to 24 tokens), then "\\nConfidence: " and a digit 0..9 (= k / 9); 30 steps of batch 8, Adam
1e-5, loss = answer NLL + tokenized Brier. The default (GSM8K, CoT answers) is sized for an
accelerator.
"""

import ml_collections

from introspect import posttrain


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.imports = ""
    c.model = "smollm2-135m-instruct"
    c.dtype = "float32"
    c.task = "gsm8k"
    c.train_split = ("test", 512)
    c.eval_split = ("test", 256)
    c.data_dir = ""
    c.prompt_format = "cot"
    c.sft = posttrain.sft_config()
    c.sft.max_prompt_tokens = 256
    c.sft.max_new_tokens = 256
    c.sft.max_response_tokens = 264
    c.sft.train.num_steps = 500
    c.run_name = ""
    c.results_root = "results"
    # Also write the tuned model as a Hugging Face directory <results>/model (models.save_hf:
    # loads with models.load and with the confidence benchmark's --config.model=<dir>).
    c.export_model = False
    if arg == "smoke":
        c.task = "synthetic_easy"
        c.train_split = ("train", 128)
        c.eval_split = ("test", 64)
        c.prompt_format = "plain"
        c.sft.max_prompt_tokens = 0  # the longest prompt
        c.sft.max_new_tokens = 24
        c.sft.max_response_tokens = 0
        c.sft.train.num_steps = 30
        c.sft.train.log_every = 10
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use :smoke or nothing")
    return c
