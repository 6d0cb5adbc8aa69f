"""The GRPO experiment's configs and its RLCR format warm-up rows (cheap: no training)."""

import numpy as np
import pytest

from configs import grpo as grpo_configs
from experiments import grpo as grpo_experiment
from introspect import data, posttrain


@pytest.mark.parametrize("variant", [None, "toy", "smoke", "smoke_rlvr"])
def test_config_variants_are_valid(variant):
    cfg = grpo_configs.get_config(variant)
    posttrain.check_config(cfg.grpo)
    if variant == "smoke_rlvr":
        assert cfg.grpo.reward.name == "binary_correct"
    with pytest.raises(ValueError, match="unknown config variant 'nope'"):
        grpo_configs.get_config("nope")


def test_warmup_rows_teach_a_parseable_rlcr_response(tiny_policy):
    lm = tiny_policy
    cfg = grpo_configs.get_config("smoke")
    cfg.warmup_confidence_random = False
    exs = data.load_roles("synthetic_easy", {"train": ("train", 6)})["train"]
    prompts = [data.build_prompt_ids(lm.tokenizer, ex, "rlcr") for ex in exs]
    rows = grpo_experiment.warmup_rows(lm, prompts, exs, cfg)
    stop = int(lm.stop_and_pad(())[0][0])
    assert all(a[-1] == stop for a in rows["answers"])
    texts = [lm.tokenizer.decode(a[:-1]) for a in rows["answers"]]
    rlcr = posttrain.compute_reward("rlcr", texts, exs, {"require_think": False})
    np.testing.assert_array_equal(rlcr["correct"], 1)  # the gold answer, graded right
    np.testing.assert_allclose(rlcr["confidence"], cfg.warmup_confidence)
    rlvr = posttrain.compute_reward("binary_correct", texts, exs, {"prompt_format": "rlcr"})
    np.testing.assert_array_equal(rlvr["reward"], 1)

    cfg.warmup_confidence_random = True
    rows = grpo_experiment.warmup_rows(lm, prompts, exs, cfg)
    texts = [lm.tokenizer.decode(a[:-1]) for a in rows["answers"]]
    conf = posttrain.compute_reward("rlcr", texts, exs, {"require_think": False})["confidence"]
    tenths = np.round(np.asarray(conf, np.float64) * 10)
    np.testing.assert_allclose(tenths, np.asarray(conf, np.float64) * 10, atol=1e-5)
    assert set(tenths) <= set(range(1, 10)) and len(set(tenths)) > 1
