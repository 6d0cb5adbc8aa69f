"""LYNX: exit probes at reasoning cues, conformal exit guarantee, online early exit.

    python -m experiments.lynx --config configs/lynx.py:smoke --workdir /tmp/lynx

Runtime on a 2-core CPU: 9.5 minutes for `:smoke` (embedded SmolLM2-135M-Instruct, synthetic
suite: 64 training, 32 calibration and 32 test traces of up to 96 tokens, cues "\\n\\n" and
sentence ends, an MLP probe, four deltas each run online over the test prompts); a rerun reads
traces, labels and features from the generation store. The default (GSM8K, 600/300/400 traces of
up to 256 tokens) is sized for an accelerator: on 2 CPU cores expect several hours, and the
135M model's forced answers are almost never right on GSM8K, so its table says little there;
point `model` at a reasoning checkpoint (e.g. an HF directory of
DeepSeek-R1-Distill-Qwen-1.5B, cues ("hmm", "wait", "alternatively"), exit_text
"</think> Final Answer: \\boxed{") on a TPU/GPU host.

Prints the table of the paper's form (per delta: premature-exit rate, accuracy, mean tokens,
token savings, exit rate; baselines "always full" and "exit at the first cue"; the online run's
agreement with the post-hoc scan and its measured speed-up) and writes results/lynx/<run>/:
config.json, metrics.json, table.md, reliability.png (the probe on test cues), tradeoff.png.
<workdir> holds the probe's training checkpoints and the saved probe.
"""

import ml_collections

from configs.common import probe_fields


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Comma-separated modules imported first (their @losses.register entries, e.g. a probe loss).
    c.imports = ""
    # A registered name, a .gguf file or a Hugging Face directory; compute dtype.
    c.model = "smollm2-135m-instruct"
    c.dtype = "float32"
    # Device mesh for generation and forced answers: batches split over "data", weights over
    # "model" (tensor parallel); used when there is more than one device.
    c.mesh = ml_collections.ConfigDict({"data": -1, "model": 1})
    # Task (introspect.data) and its three disjoint example sets: (split, count) per role. Roles
    # naming the same split take consecutive slices of it (train first, then calibration, test).
    c.task = "gsm8k"
    c.train_split = ("test", 600)
    c.calibration_split = ("test", 300)
    c.test_split = ("test", 400)
    c.data_dir = ""
    # Reasoning prompt (introspect.data.PROMPT_FORMATS) and greedy reasoning budget.
    c.prompt_format = "cot"
    c.max_new_tokens = 256
    c.batch_size = 32
    # Cues (case-insensitive; a match may span tokens). Reasoning models say "wait"/"hmm"/
    # "alternatively"; small instruct models never do, so paragraph and sentence ends instead.
    c.cues = ("\n\n", ". ")
    # Forced exit: the trace is cut before the cue, exit_text appended, answer_tokens decoded
    # greedily; the first line of that answer is graded by the task's grader.
    c.exit_text = "\nFinal answer:"
    c.answer_tokens = 16
    # Hidden-state indices (0 = embeddings .. num_layers = final norm) concatenated as features.
    c.layers = (10, 20, 30)
    # Conformal levels: P(exit | forced answer wrong) <= delta.
    c.deltas = (0.05, 0.1, 0.2, 0.3)
    # Run the exit online (lm.generate(exit_rule=...)) on the test prompts for every delta.
    c.online = True
    c.num_bins = 10
    c.seed = 0

    # Exit probe: MLP 256-64 on standardised features, class-balanced, BCE (loss by name:
    # c.probe.loss.name), trained by the one training loop (configs/common.py).
    c.probe, c.train = probe_fields(num_steps=1500, eval_every=0)

    # Generation store (introspect.store): traces, forced-exit labels and cue features are made
    # once per key and read back by later runs ("" = <results_root>/store); False = no store.
    c.use_store = True
    c.store = ""
    c.store_shard_size = 32
    # Results go to <results_root>/lynx/<run_name> (default: a UTC timestamp).
    c.run_name = ""
    c.results_root = "results"
    if arg == "smoke":
        c.task = "synthetic_easy"
        c.train_split = ("train", 64)
        c.calibration_split = ("calibration", 32)
        c.test_split = ("test", 32)
        c.max_new_tokens = 96
        c.answer_tokens = 8
        c.train.num_steps = 400
        c.train.log_every = 100
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use :smoke or nothing")
    return c
