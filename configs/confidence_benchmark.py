"""The confidence benchmark: every signal's AUROC/AUPRC/ECE/Brier/AURC/PRR, plus paper tables.

    python -m experiments.confidence_benchmark --config configs/confidence_benchmark.py:smoke

Runtime on a 2-core CPU: ~6 minutes for `:smoke` (24 calibration + 24 test questions of the
synthetic suite, 4 samples each, CNTP with 4 trials), ~1 hour for the default. Prints a markdown
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
    # hotpotqa, commonsenseqa), its splits and the TFDS data_dir ("" = TFDS's default).
    c.task = "synthetic_easy"
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
    # ECE bins.
    c.num_bins = 10
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
    elif arg not in (None, ""):
        raise ValueError(f"unknown config variant {arg!r}; use :smoke or nothing")
    return c
