"""CRew-DPO of the embedded model on pairs from its own sampled answers.

    python -m experiments.dpo --config configs/dpo.py:smoke --workdir /tmp/dpo

`:smoke`: synthetic suite, 64 train and 32 held-out questions, 4 samples each (temperature
1, up to 24 tokens), CRew pairs; DPO beta 0.1, 20 steps of batch 8 (about 13 s each on 2
CPU cores), Adam 1e-6. The default (GSM8K, CoT) is sized for an accelerator.
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
    c.eval_split = ("test", 128)
    c.data_dir = ""
    c.prompt_format = "cot"
    c.samples = 8
    c.temperature = 1.0
    c.max_new_tokens = 256
    c.dpo = posttrain.dpo_config()
    c.run_name = ""
    c.results_root = "results"
    # Also write the tuned model as a Hugging Face directory <results>/model (models.save_hf:
    # loads with models.load and with the confidence benchmark's --config.model=<dir>).
    c.export_model = False
    if arg == "smoke":
        c.task = "synthetic_easy"
        c.train_split = ("train", 64)
        c.eval_split = ("test", 32)
        c.prompt_format = "plain"
        c.samples = 4
        c.max_new_tokens = 24
        c.dpo.train.num_steps = 20
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use :smoke or nothing")
    return c
