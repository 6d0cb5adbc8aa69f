"""ZIP-RC on the embedded model's own sampled answers: predict P(correct) and the remaining
length from reserved logits.

    python -m experiments.zip_rc --config configs/zip_rc.py:smoke --workdir /tmp/zip_rc

`:smoke` (under 10 minutes on an idle 2-core CPU, most of it sampling; measured 13.7 min wall,
8.5 min CPU, on a shared 2-core machine at load 7-10): synthetic suite (easy and
hard questions mixed), 192 train and 96 held-out questions, plain prompts, one sample each at
temperature 0.7 (up to 32 new tokens; unfinished samples dropped), length-bin edges scaled down
128x (0, 2, 4, ..., 256 tokens: the answers are short). Only the slice's 16 LM-head rows train
(`zip.trainable = "slice"`: 300 Adam steps of 16 answers on the frozen final hidden states;
full fine-tuning of the 135M model does not fit a CPU budget), so the rest of the distribution is
the starting model's exactly. Prints the held-out slice CE, reward / length accuracy, the AUROC
and Brier of the predicted P(correct) at the first answer token and averaged over the answer,
the remaining-length error, the KL to the starting model and the slice's share of the unmasked
softmax, before and after. The default (GSM8K, chain of thought, the authors' length edges,
full fine-tuning) is sized for an accelerator.
"""

import ml_collections

from introspect.heads import zip_rc


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.imports = ""
    c.model = "smollm2-135m-instruct"
    c.dtype = "float32"
    # Tasks mixed into one pool (each contributes the same number of questions).
    c.tasks = ("gsm8k",)
    c.train_split = ("test", 512)
    c.eval_split = ("test", 256)
    c.data_dir = ""
    c.prompt_format = "cot"
    # Rollouts: samples per question, sampling temperature (the authors: 1.0 with min_p 0.1;
    # generate has no min_p), new-token budget, seed.
    c.samples = 2
    c.temperature = 1.0
    c.top_p = 1.0
    c.max_new_tokens = 512
    c.seed = 0
    # The ZIP-RC head and its training (introspect.heads.zip_rc.zip_rc_config; the authors'
    # optimiser: AdamW 1e-3, betas (0.9, 0.95), warm-up, cosine, clip 1).
    c.zip = zip_rc.zip_rc_config()
    c.zip.train.num_steps = 200
    c.zip.train.batch_size = 8
    c.run_name = ""
    c.results_root = "results"
    if arg == "smoke":
        c.tasks = ("synthetic_easy", "synthetic_hard")
        c.train_split = ("train", 96)
        c.eval_split = ("test", 48)
        c.samples = 1
        c.temperature = 0.7
        c.prompt_format = "plain"
        c.max_new_tokens = 32
        c.zip.edges = (0, 2, 4, 8, 16, 32, 64, 128, 256)
        c.zip.trainable = "slice"
        c.zip.train.num_steps = 300
        c.zip.train.batch_size = 16
        c.zip.train.optimizer.name = "adam"
        c.zip.train.optimizer.lr = 1e-2
        c.zip.train.schedule.warmup_steps = 10
        c.zip.train.log_every = 50
        c.zip.train.steps_per_dispatch = 50
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use :smoke or nothing")
    return c
