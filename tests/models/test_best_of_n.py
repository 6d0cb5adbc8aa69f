"""Best-of-N over a (tiny) model: batching, signals, choice rules."""

import numpy as np
import pytest
from tiny_models import random_ids

from introspect.decoding import best_of_n


def test_best_of_n_one_greedy_sample_is_greedy(tiny_lm):
    rng = np.random.default_rng(20)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (4, 6)]
    greedy = tiny_lm.generate(prompts, max_new_tokens=5)
    s = best_of_n.sample(tiny_lm, prompts, n=1, max_new_tokens=5, temperature=0.0)
    assert [row[0] for row in s.tokens] == greedy.tokens
    assert s.signals["self_certainty"].shape == (2, 1)
    picked = best_of_n.choose(
        [[t] for t in greedy.texts], s.signals["self_certainty"], method="borda"
    )
    assert picked == greedy.texts


def test_best_of_n_samples_and_choices(tiny_lm):
    rng = np.random.default_rng(21)
    prompts = [random_ids(rng, 1, n)[0].tolist() for n in (4, 6, 3)]
    s = best_of_n.sample(tiny_lm, prompts, n=4, max_new_tokens=4, temperature=1.0, seed=2)
    assert len(s.texts) == 3 and all(len(r) == 4 for r in s.texts)
    assert len({tuple(t) for t in s.tokens[0]}) > 1  # distinct samples per question
    for name, v in s.signals.items():
        assert v.shape == (3, 4) and np.all(np.isfinite(v)), name
    # "score" picks the argmax sample of the given signal.
    answers = [[f"{i}-{j}" for j in range(4)] for i in range(3)]
    sc = s.signals["mean_logprob"]
    chosen = best_of_n.choose(answers, sc, method="score")
    assert chosen == [f"{i}-{int(np.argmax(sc[i]))}" for i in range(3)]
    assert best_of_n.choose([["a", "b", "b", None]], method="majority") == ["b"]
    with pytest.raises(ValueError, match="method"):
        best_of_n.choose(answers, sc, method="oracle")
    with pytest.raises(ValueError, match="needs scores"):
        best_of_n.choose(answers, method="borda")
    with pytest.raises(ValueError, match="n must be"):
        best_of_n.sample(tiny_lm, prompts, n=0)
