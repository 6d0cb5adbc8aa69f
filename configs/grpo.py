"""GRPO on the embedded model: a learnable toy reward (`:toy`), or RLVR vs RLCR on a task.

    python -m experiments.grpo --config configs/grpo.py:toy --workdir /tmp/grpo_toy
    python -m experiments.grpo --config configs/grpo.py:smoke --workdir /tmp/rlcr
    python -m experiments.grpo --config configs/grpo.py:smoke_rlvr --workdir /tmp/rlvr

`:toy`: 8 yes/no questions ("Answer yes or no."), reward 1 when the response starts with "No"
(the model starts that way about a third of the time), 4 prompts x 4 samples per step, 4 new
tokens, Adam 1e-5, 12 steps; about 4 minutes on 2 CPU cores. The reward curve is
<workdir>/metrics.jsonl (one row per step: step, reward_mean, loss, grad_norm, entropy, ...).

Default: the synthetic suite in the RLCR paper's format (<think>, <answer>, <analysis>,
<confidence>), reward "rlcr" (the paper's scale); before/after accuracy, Brier, ECE and AUROC
of the stated confidence on held-out questions; sized for an accelerator.

`:smoke` (RLCR) / `:smoke_rlvr` (RLVR: binary_correct on the <answer>): the paper's comparison
at CPU scale. The 135M model never follows the tag format unprompted (0 of 32 samples), so a
16-step format warm-up comes first, as the paper's SFT+RLCR: gold answers and a stated
confidence drawn from 0.1 .. 0.9 per row, unrelated to correctness. Then 4 GRPO steps of 4
prompts x 4 samples (48 new tokens) on 64 train questions; 32 held-out questions x 2 samples
before and after: about 9 minutes on 2 CPU cores (the README's table ran 24 + 8 steps,
`--config.warmup_steps=24 --config.grpo.train.num_steps=8`, about 16 minutes).
"""

import ml_collections

from introspect import posttrain

YES_NO = (
    "Is the sky blue?",
    "Is water wet?",
    "Do cats bark?",
    "Is 7 a prime number?",
    "Is fire cold?",
    "Can birds fly?",
    "Is the sun a star?",
    "Do fish swim?",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.imports = ""
    c.model = "smollm2-135m-instruct"
    c.dtype = "float32"
    # Training prompts: a task (introspect.data) and its prompt format, or `questions` (a
    # tuple of strings, each + `question_suffix`, chat-templated) when non-empty.
    c.task = "synthetic_easy"
    c.train_split = ("train", 256)
    c.eval_split = ("test", 64)
    c.data_dir = ""
    c.prompt_format = "rlcr"
    c.questions = ()
    c.question_suffix = ""
    # Held-out evaluation before and after: eval_samples sampled responses per prompt
    # (temperature grpo.temperature), scored by the training reward.
    c.eval_samples = 4
    # Format warm-up before GRPO (0 = none): SFT on the RLCR format with the gold answer and a
    # fixed stated confidence (answer NLL only), as the RLCR paper's SFT+RLCR variant.
    c.warmup_steps = 0
    c.warmup_confidence = 0.5
    # Draw the warm-up confidence per row from 0.1 .. 0.9 instead (unrelated to correctness).
    c.warmup_confidence_random = False
    c.warmup = posttrain.sft_config()
    c.warmup.loss.options = {"lm_coef": 1.0, "brier_coef": 0.0}
    c.warmup.max_prompt_tokens = 0
    c.warmup.max_response_tokens = 0
    c.warmup.train.optimizer.lr = 5e-5
    c.warmup.train.tensorboard = False
    c.grpo = posttrain.grpo_config()
    c.grpo.reward.name = "rlcr"
    c.grpo.max_prompt_tokens = 160
    c.grpo.max_new_tokens = 256
    c.grpo.prompts_per_step = 8
    c.grpo.group_size = 8
    c.grpo.train.batch_size = 64
    c.grpo.train.num_steps = 200
    c.grpo.train.optimizer.lr = 1e-6
    c.run_name = ""
    c.results_root = "results"
    # Also write the tuned model as a Hugging Face directory <results>/model (models.save_hf:
    # loads with models.load and with the confidence benchmark's --config.model=<dir>).
    c.export_model = False
    if arg == "toy":
        c.questions = YES_NO
        c.question_suffix = " Answer yes or no."
        c.grpo.reward.name = "starts_with"
        c.grpo.reward.options = {"prefix": "No"}
        c.grpo.max_prompt_tokens = 64
        c.grpo.max_new_tokens = 4
        c.grpo.prompts_per_step = 4
        c.grpo.group_size = 4
        c.grpo.train.batch_size = 16
        c.grpo.train.num_steps = 12
        c.grpo.train.optimizer.lr = 1e-5
        c.grpo.train.tensorboard = False
        c.eval_samples = 8
    elif arg in ("smoke", "smoke_rlvr"):
        c.train_split = ("train", 64)
        c.eval_split = ("test", 32)
        c.eval_samples = 2
        c.warmup_steps = 16
        c.warmup_confidence_random = True
        c.grpo.reward.options = {"require_think": False}
        if arg == "smoke_rlvr":
            c.grpo.reward.name = "binary_correct"
            c.grpo.reward.options = {"prompt_format": "rlcr"}
        c.grpo.temperature = 0.7
        c.grpo.max_prompt_tokens = 160
        c.grpo.max_new_tokens = 48
        c.grpo.prompts_per_step = 4
        c.grpo.group_size = 4
        c.grpo.train.batch_size = 16
        c.grpo.train.num_steps = 4
        c.grpo.train.optimizer.lr = 1e-5
        c.grpo.train.tensorboard = False
    elif arg not in (None, ""):
        raise ValueError(
            f"unknown config variant {arg!r}; use :toy, :smoke, :smoke_rlvr or nothing"
        )
    return c
