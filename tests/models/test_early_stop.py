"""Confidence-triggered early stop: chunked reasoning is plain greedy decoding when it never
triggers, and stops after the first probe when it always does."""

import numpy as np
import pytest
from tiny_models import random_ids

from introspect.decoding import early_stop


def test_never_confident_enough_equals_one_shot_greedy(tiny_lm):
    rng = np.random.default_rng(40)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (5, 8)]
    res = early_stop.generate(
        tiny_lm, prompts, max_new_tokens=12, chunk=5, threshold=1.0, answer_tokens=3
    )
    full = tiny_lm.generate(prompts, max_new_tokens=12, ignore_eos=False)
    for i in range(2):
        want = [t for t in full.tokens[i] if t not in tiny_lm.tokenizer.eos_token_ids]
        assert res.traces[i] == tiny_lm.tokenizer.decode(want, skip_special_tokens=True)
    assert not res.stopped_early.any()
    assert np.all((res.confidence > 0) & (res.confidence <= 1))


def test_always_confident_stops_after_first_chunk(tiny_lm):
    rng = np.random.default_rng(41)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (5, 8, 3)]
    res = early_stop.generate(
        tiny_lm, prompts, max_new_tokens=20, chunk=4, threshold=1e-9, answer_tokens=2
    )
    assert res.trace_tokens.tolist() == [4, 4, 4]
    assert res.stopped_early.all()
    with pytest.raises(ValueError, match="threshold"):
        early_stop.generate(tiny_lm, prompts, threshold=0.0)
