"""LYNX online exit on the embedded SmolLM2: the probe runs inside the compiled decode loop.

- An impossible rule changes nothing: tokens equal plain generation token for token.
- The online exit and the post-hoc scan of the same traces (same probe, same thresholds) make
  identical decisions, with the same probabilities up to float32 rounding.
- Bad exit rules give clear errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import data, decoding, probes

LAYERS = (10, 20, 30)
CUES = ("\n\n", ". ")
MAX_NEW = 48


@pytest.fixture(scope="module")
def setup(smollm):
    examples = data.load_task("synthetic_easy", "test", num=8)
    prompts = [data.build_prompt_ids(smollm.tokenizer, e, "cot") for e in examples]
    probe = probes.make_probe("mlp", hidden=(32, 8))
    dim = len(LAYERS) * smollm.config.hidden_size
    variables = jax.tree.map(np.asarray, probe.init(jax.random.PRNGKey(0), jnp.zeros((1, dim))))
    never = probes.ExitRule(probe, variables, LAYERS, CUES, q0=2.0, q1=-1.0)
    full = smollm.generate(prompts, max_new_tokens=MAX_NEW, exit_rule=never, batch_size=8)
    return prompts, probe, variables, full


def test_impossible_rule_equals_plain_generation(smollm, setup):
    prompts, _, _, full = setup
    plain = smollm.generate(prompts, max_new_tokens=MAX_NEW, batch_size=8)
    assert full.tokens == plain.tokens
    assert full.finish_reasons == plain.finish_reasons
    for a, b in zip(full.logprobs, plain.logprobs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert full.exit_steps == [-1] * len(prompts)
    assert plain.exit_steps is None


def test_online_and_posthoc_decisions_are_identical(smollm, setup):
    prompts, probe, variables, full = setup
    never = probes.ExitRule(probe, variables, LAYERS, CUES, q0=2.0, q1=-1.0)
    scan = probes.scan_exits(smollm, prompts, full.tokens, never)
    for i in range(len(prompts)):
        online = np.flatnonzero(~np.isnan(full.cue_probs[i]))
        assert online.tolist() == scan.cues[i].tolist()
        # KV-cached decoding vs one teacher-forced pass
        np.testing.assert_allclose(full.cue_probs[i][online], scan.probs[i], rtol=1e-4, atol=1e-6)
    assert sum(len(c) for c in scan.cues) >= 8, "too few cues to test anything"
    p = np.concatenate(scan.probs)
    # thresholds at several quantiles of the cue probabilities: some rows exit, some not
    for qt in (0.4, 0.8):
        q0 = float(np.quantile(p, qt)) + 1e-7
        rule = probes.ExitRule(probe, variables, LAYERS, CUES, q0=q0, q1=1.0)
        post = probes.scan_exits(smollm, prompts, full.tokens, rule)
        gen = smollm.generate(prompts, max_new_tokens=MAX_NEW, exit_rule=rule, batch_size=8)
        assert gen.exit_steps == post.exit_steps.tolist(), qt
        assert 0 < sum(e >= 0 for e in gen.exit_steps) < len(prompts)
        for i, e in enumerate(gen.exit_steps):
            if e >= 0:  # the loop really stopped there; what came before is unchanged
                assert gen.tokens[i] == full.tokens[i][: e + 1]
                assert gen.finish_reasons[i] == "exit"
            else:
                assert gen.tokens[i] == full.tokens[i]


def test_lynx_generate_answers_every_row(smollm, setup):
    prompts, probe, variables, full = setup
    never = probes.ExitRule(probe, variables, LAYERS, CUES, q0=2.0, q1=-1.0)
    scan = probes.scan_exits(smollm, prompts, full.tokens, never)
    q0 = float(np.quantile(np.concatenate(scan.probs), 0.5))
    rule = probes.ExitRule(probe, variables, LAYERS, CUES, q0=q0, q1=1.0)
    out = decoding.lynx.generate(
        smollm, prompts, rule, max_new_tokens=MAX_NEW, answer_tokens=6, batch_size=8
    )
    assert out.exited.any() and len(out.answers) == len(prompts)
    exited = np.flatnonzero(out.exited)
    np.testing.assert_array_equal(out.reasoning_tokens[exited], out.exit_token[exited] + 1)
    assert (out.answer_tokens >= 1).all() and (out.answer_tokens <= 6).all()
    # rows that did not exit reasoned to the end, exactly as without a rule
    for i in np.flatnonzero(~out.exited):
        assert out.trace_ids[i] == full.tokens[i]
    assert out.reasoning_tokens.sum() < sum(len(t) for t in full.tokens)


def test_forced_answers_reuse_the_trace_cache(smollm, setup):
    """Forced answers at every cue of three traces (and after two whole traces) from the
    prefilled traces (KV reuse, two groups) == the answers generated from
    prompt + forced_exit_ids(...) from scratch."""
    prompts, _, _, full = setup
    traces = [
        t[:-1] if f == "stop" else t
        for t, f in zip(full.tokens[:3], full.finish_reasons[:3], strict=True)
    ]
    exits = [
        (r, int(c))
        for r, t in enumerate(traces)
        for c in probes.evaluable_cues(smollm.tokenizer, t, CUES)
    ]
    exits += [(0, None), (2, None)]
    assert len(exits) >= 6, "too few cues to test anything"
    kw = dict(cues=CUES, exit_text="\nFinal answer:")
    got = decoding.lynx.forced_answers(
        smollm, prompts, traces, exits, answer_tokens=6, batch_size=16, group_size=2, **kw
    )
    want = smollm.generate(
        [
            prompts[r] + decoding.lynx.forced_exit_ids(smollm.tokenizer, traces[r], c, **kw)
            for r, c in exits
        ],
        max_new_tokens=6,
        batch_size=16,
    )
    assert got.tokens == want.tokens
    for a, b in zip(got.logprobs, want.logprobs, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-4)


def test_exit_rule_errors(smollm, setup):
    prompts, probe, variables, _ = setup
    with pytest.raises(ValueError, match="exit rule: hidden_layers \\[99\\] out of range"):
        smollm.generate(
            prompts[:1],
            max_new_tokens=4,
            exit_rule=probes.ExitRule(probe, variables, (10, 20, 99), CUES, q0=0.5, q1=0.5),
        )
    with pytest.raises(ValueError, match="the probe takes 1728 features but layers \\[10, 20\\]"):
        smollm.generate(
            prompts[:1],
            max_new_tokens=4,
            exit_rule=probes.ExitRule(probe, variables, (10, 20), CUES, q0=0.5, q1=0.5),
        )
    with pytest.raises(ValueError, match="non-empty list of non-empty strings"):
        probes.ExitRule(probe, variables, LAYERS, (), q0=0.5, q1=0.5)
    with pytest.raises(ValueError, match="at least one hidden-state layer"):
        probes.ExitRule(probe, variables, (), CUES, q0=0.5, q1=0.5)
    with pytest.raises(ValueError, match="q0 must be a number"):
        probes.ExitRule(probe, variables, LAYERS, CUES, q0=float("nan"), q1=0.5)
    for delta in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="delta must be in \\(0, 1\\)"):
            probes.ExitRule.calibrate(
                probe,
                variables,
                layers=LAYERS,
                cues=CUES,
                cal_probs=[0.2, 0.8],
                cal_labels=[0, 1],
                delta=delta,
            )
    with pytest.raises(TypeError, match="exit_rule must be an introspect.probes.ExitRule"):
        smollm.generate(prompts[:1], max_new_tokens=4, exit_rule=object())
    with pytest.raises(ValueError, match="features, the cue features have"):
        probes.scan_exits(
            smollm,
            prompts[:1],
            [[1, 2]],
            probes.ExitRule(probe, variables, LAYERS, CUES, q0=0.5, q1=0.5),
            features=[np.zeros((1, 7), np.float32)],
        )
