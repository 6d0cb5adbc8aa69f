"""RISE step segmentation, behaviour labels and step activations on the embedded model."""

import numpy as np
import pytest

from introspect import sae

TRACE = "First, 3 + 4 = 7.\n\nWait, let me check: 7 - 4 = 3.\n\n\n\nSo the answer is 7"


def test_split_steps_covers_the_trace_and_ends_at_delimiters(smollm):
    tok = smollm.tokenizer
    ids = tok.encode(TRACE)
    steps = sae.split_steps(tok, ids)
    assert [s.text.strip() for s in steps] == [
        "First, 3 + 4 = 7.",
        "Wait, let me check: 7 - 4 = 3.",
        "So the answer is 7",
    ]
    assert steps[-1].end == len(ids) - 1
    for s in steps[:-1]:  # each step ends at the token that completes "\n\n"
        assert tok.decode(ids[: s.end + 1]).endswith("\n\n")
        assert not tok.decode(ids[: s.end]).endswith("\n\n")
    assert sae.split_steps(tok, []) == []
    with pytest.raises(ValueError, match="delimiter must be a non-empty string"):
        sae.split_steps(tok, ids, delimiter="")


def test_label_steps_rules():
    texts = [
        "Wait, that is wrong. Let me try again.",
        "Let me verify by substituting x = 2 back.",
        "I'm fairly sure the result holds.",
        "Therefore, the final answer is 12.",
        "Add 3 and 4.",
    ]
    got = sae.label_steps(texts)
    names = list(sae.BEHAVIOURS)
    want = {
        0: {"reflection", "backtracking"},
        1: {"verification"},
        2: {"confidence"},
        3: {"final_answer"},
        4: set(),
    }
    for i, expected in want.items():
        assert {names[j] for j in np.flatnonzero(got[i])} == expected, texts[i]
    custom = sae.label_steps(texts, {"numbers": (r"\d",)})
    assert custom[:, 0].tolist() == [False, True, False, True, True]
    with pytest.raises(ValueError, match="at least one behaviour"):
        sae.label_steps(texts, {})


def test_step_activations_delimiter_and_mean(smollm):
    tok = smollm.tokenizer
    prompts = [tok.encode("Q: 3 + 4?\n"), tok.encode("Q: 2 * 5, explain.\n")]
    traces = [tok.encode(TRACE), tok.encode("2 * 5 = 10.\n\nThe answer is 10.")]
    layer = 12
    steps, acts = sae.step_activations(smollm, prompts, traces, layer=layer)
    _, means = sae.step_activations(smollm, prompts, traces, layer=layer, pool="mean")
    assert [len(s) for s in steps] == [3, 2]
    for p, t, st, a, m in zip(prompts, traces, steps, acts, means, strict=True):
        h = np.asarray(smollm.forward([p + t], hidden_layers=[layer]).hidden_states)[0, 0]
        np.testing.assert_allclose(a, h[[len(p) + s.end for s in st]], atol=2e-4)
        want = [h[len(p) + s.start : len(p) + s.end + 1].mean(0) for s in st]
        np.testing.assert_allclose(m, np.stack(want), atol=2e-4)
    with pytest.raises(ValueError, match="pool must be"):
        sae.step_activations(smollm, prompts, traces, layer=layer, pool="max")
    with pytest.raises(ValueError, match="out of range"):
        sae.step_activations(smollm, prompts, traces, layer=99)


def _identity_sae(d, kind):
    """An SAE that reconstructs exactly: latents [I; -I] (relu(x) and relu(-x)), k = d."""
    eye = np.eye(d, dtype=np.float32)
    w = np.concatenate([eye, -eye])
    params = {
        "encoder": w,
        "b_enc": np.zeros((2 * d,), np.float32),
        "decoder": w,
        "b_dec": np.zeros((d,), np.float32),
        "stats": {"input_scale": np.float32(0.7), "tokens_since_active": np.zeros(2 * d)},
    }
    cfg = sae.default_config()
    cfg.kind, cfg.num_latents, cfg.k = kind, 2 * d, d
    return params, cfg


def test_lm_loss_increase(smollm):
    tok = smollm.tokenizer
    seqs = [tok.encode(TRACE), tok.encode("The sea is wide and the sky is blue.")]
    d = smollm.config.hidden_size
    for kind in ("topk", "relu"):
        params, cfg = _identity_sae(d, kind)
        out = sae.lm_loss_increase(smollm, params, seqs, config=cfg, layer=10)
        assert out["tokens"] == sum(len(s) - 1 for s in seqs)
        assert 0.5 < out["loss"] < 8
        assert abs(out["increase"]) < 1e-3, (kind, out)
    params, cfg = _identity_sae(d, "topk")
    params["decoder"] = np.zeros_like(params["decoder"])  # reconstructs 0: the stream is wiped
    out = sae.lm_loss_increase(smollm, params, seqs, config=cfg, layer=10)
    assert out["increase"] > 0.5
    with pytest.raises(ValueError, match="layer must be in \\[1, 29\\]"):
        sae.lm_loss_increase(smollm, params, seqs, config=cfg, layer=30)
    small, small_cfg = _identity_sae(8, "topk")
    with pytest.raises(ValueError, match="d_in is 8 but the model's hidden size is 576"):
        sae.lm_loss_increase(smollm, small, seqs, config=small_cfg, layer=10)
