"""The experiments end to end on a tiny checkpoint (fast): artefacts written, tables complete."""

import json
import os

import pytest

from configs import answer as answer_config
from configs import confidence_benchmark as cb_config
from experiments import answer, confidence_benchmark


def test_answer_experiment(tiny_dirs, tmp_path):
    c = answer_config.get_config("smoke")
    c.model = tiny_dirs["llama3"][0]
    c.num_questions = 6
    c.max_new_tokens = 4
    c.results_root = str(tmp_path)
    c.run_name = "t"
    m = answer.run(c)
    out = tmp_path / "answer" / "t"
    assert sorted(os.listdir(out)) == ["answers.jsonl", "config.json", "metrics.json"]
    assert (
        json.loads((out / "metrics.json").read_text())["num_questions"] == 6 == m["num_questions"]
    )
    assert len((out / "answers.jsonl").read_text().splitlines()) == 6


def test_confidence_benchmark_experiment(tiny_dirs, tmp_path):
    c = cb_config.get_config("smoke")
    c.model = tiny_dirs["llama3"][0]
    c.data_dir = str(tmp_path / "tfds")
    c.num_calibration = c.num_test = 8
    c.num_samples = 2
    c.best_of_n = (1, 2)
    c.cntp_trials = 2
    c.max_new_tokens = c.verbalized_max_new_tokens = 4
    c.cascade_model = tiny_dirs["qwen2"][0]  # a second model to defer to
    c.store_hidden_layers = (-1,)  # hidden-state estimators fitted on the calibration split
    c.samples_on_calibration = True  # semantic entropies to train the SEP on
    c.results_root = str(tmp_path)
    c.run_name = "t"
    summary = confidence_benchmark.run(c)["tasks"]["synthetic_easy"]
    out = tmp_path / "confidence_benchmark" / "t"
    for f in ("config.json", "metrics.json", "table.md", "answers.jsonl", "risk_coverage.png"):
        assert (out / f).is_file(), f
    from introspect import signals

    assert set(signals.stats_signals()) <= set(summary["signals"])
    assert {"p_true", "consistency", "hedge"} <= set(summary["signals"])
    # every estimator signals.estimate can run from what the benchmark has
    assert {
        "semantic_entropy", "num_sem_sets", "lexical_similarity", "eigval_laplacian",
        "kernel_language_entropy", "cocoa_msp", "answer_confidence", "mahalanobis", "huq",
    } <= set(summary["signals"])  # fmt: skip
    assert [r["N"] for r in summary["best_of_n"]] == [1, 2]
    assert [r["method"].split()[0] for r in summary["cntp"]] == ["greedy", "nucleus", "CNTP"]
    assert [r["target_coverage"] for r in summary["cascade"]] == [0.25, 0.5, 0.75, 1.0]
    assert all(0 <= r["cascade_accuracy"] <= 1 for r in summary["cascade"])
    table = (out / "table.md").read_text()
    assert "| self_certainty |" in table and "Best-of-N" in table


def test_config_variant_errors():
    with pytest.raises(ValueError, match="unknown config variant"):
        cb_config.get_config("huge")
    with pytest.raises(ValueError, match="unknown config variant"):
        answer_config.get_config("huge")
