"""DPO / VPO on the Flax LM: training raises the chosen-vs-rejected margin; the loss at the
start is log 2; the CRew pair builder's rule; errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import posttrain


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    return {
        "prompts": [rng.integers(5, 2000, rng.integers(2, 8)).tolist() for _ in range(n)],
        "chosen": [rng.integers(5, 2000, rng.integers(1, 6)).tolist() for _ in range(n)],
        "rejected": [rng.integers(5, 2000, rng.integers(1, 6)).tolist() for _ in range(n)],
    }


def _cfg(loss="dpo"):
    c = posttrain.dpo_config()
    c.max_prompt_tokens = 8
    c.max_response_tokens = 6
    c.loss.name = loss
    c.train.batch_size = 8
    c.train.num_steps = 15
    c.train.optimizer.lr = 1e-3
    return c


def test_training_raises_the_margin(tiny_policy, tmp_path):
    lm, cfg = tiny_policy, _cfg("dpo")
    rows = _rows(16, 0)
    arrays = jax.tree.map(jnp.asarray, posttrain.dpo.pack_pairs(lm, rows, cfg))
    for name in ("dpo", "vpo"):
        value, aux = posttrain.dpo.make_loss(lm, _cfg(name))(
            lm.params, arrays, jax.random.PRNGKey(0)
        )
        assert abs(float(aux["margin"])) < 1e-4  # the policy is the reference at the start
        if name == "dpo":
            assert float(value) == pytest.approx(math.log(2), abs=1e-5)
        else:  # VPO adds its value regulariser: not log 2, finite
            assert np.isfinite(float(value))
    result = posttrain.train_dpo(lm, rows, cfg, workdir=str(tmp_path))
    margins = posttrain.pair_margins(lm, result.params, rows, cfg)
    assert margins.mean() > 1.0 and (margins > 0).mean() >= 0.9, margins


def test_dpo_errors(tiny_policy, tmp_path):
    lm = tiny_policy
    rows = _rows(4, 1)
    with pytest.raises(ValueError, match="'dpo' or 'vpo'"):
        posttrain.train_dpo(lm, rows, _cfg("bce"), workdir=str(tmp_path))
    bad = dict(rows, rejected=rows["rejected"][:3])
    with pytest.raises(ValueError, match="as many chosen and rejected"):
        posttrain.train_dpo(lm, bad, _cfg(), workdir=str(tmp_path))
    empty = dict(rows, chosen=[[]] * 4)
    with pytest.raises(ValueError, match="at least one token"):
        posttrain.train_dpo(lm, empty, _cfg(), workdir=str(tmp_path))
    with pytest.raises(ValueError, match="samples must be >= 2"):
        posttrain.crew_pairs(lm, rows["prompts"], [{}] * 4, samples=1)


def test_crew_pairs_follow_the_rule(tiny_policy, monkeypatch):
    """With grading stubbed to a known pattern, pairs are (most confident right, most
    confident wrong) and all-wrong groups give none."""
    lm = tiny_policy
    prompts = [[5, 6, 7], [8, 9, 10], [11, 12]]
    exs = [{"id": str(i)} for i in range(3)]
    pattern = iter([True, False, True, False, False, False, True, True, False])
    monkeypatch.setattr(posttrain.dpo.data, "grade", lambda ex, t, fmt: (t, next(pattern)))
    out = posttrain.crew_pairs(lm, prompts, exs, samples=3, max_new_tokens=4)
    assert out["indices"] == [0, 2]  # group 1 has no right answer
    gen = lm.generate([p for p in prompts for _ in range(3)], max_new_tokens=4, temperature=1.0,
                      seed=0)  # fmt: skip
    conf = [float(np.exp(np.mean(lp))) for lp in gen.logprobs]
    g0 = [0, 2]  # right answers of group 0; its wrong one is sample 1
    assert out["chosen"][0] == gen.tokens[max(g0, key=lambda k: conf[k])]
    assert out["rejected"][0] == gen.tokens[1]
    assert out["rejected"][1] == gen.tokens[8]  # group 2: the only wrong answer
