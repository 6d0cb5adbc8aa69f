"""Greedy generation of the embedded model split across simulated hosts: 2 processes x 4 CPU
devices on a (data 4, model 2) mesh (rows of the batch on both hosts, weights tensor-parallel
within each) give the tokens of one device, token for token (1 process x 8 devices against one
device: tests/models/test_sharding.py). The same run checks the other paths that fetch compiled
outputs back to the host: hidden-state features, CNTP and CK-PLUG scores."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from multihost import QUESTIONS, launch  # noqa: E402
from run_generate import paths  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(__file__), "run_generate.py")
NEW_TOKENS = 6


def test_two_hosts_generate_the_tokens_of_one_device(smollm, tmp_path):
    chats = [[{"role": "user", "content": q}] for q in QUESTIONS]
    prompts = [smollm.tokenizer.apply_chat_template(c, add_generation_prompt=True) for c in chats]
    single = smollm.generate(prompts, max_new_tokens=NEW_TOKENS, batch_size=len(prompts))
    run = launch(SCRIPT, f"--max_new_tokens={NEW_TOKENS}", "--model_axis=2", "--paths",
                 processes=2, devices=4, log_dir=tmp_path / "logs", timeout=400)  # fmt: skip
    run.check()
    assert run.info["processes"] == 2 and run.info["devices"] == 8
    assert run.info["tokens"] == single.tokens
    assert run.info["texts"] == single.texts
    assert len(set(map(tuple, single.tokens))) > 4  # the rows differ: a row mix-up would show

    # the other paths: features within float32 noise of the tensor-parallel sums, CNTP's sampled
    # tokens (keys depend on (seed, row) only) and CK-PLUG's gains on those tokens
    one = paths(smollm, prompts, NEW_TOKENS)
    np.testing.assert_allclose(run.info["features"], one["features"], rtol=1e-3, atol=1e-3)
    assert run.info["cntp"] == one["cntp"]
    for got, want in zip(run.info["ckplug"], one["ckplug"], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
