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


def test_split_steps_several_delimiters(smollm):
    tok = smollm.tokenizer
    ids = tok.encode("Add 3 and 4. That is 7.\nCheck: 7 - 4 = 3.\n\nSo 7")
    steps = sae.split_steps(tok, ids, delimiter=("\n", "."))
    assert [s.text.strip() for s in steps] == [
        "Add 3 and 4.",
        "That is 7.",
        "Check: 7 - 4 = 3.",
        "So 7",
    ]
    with pytest.raises(ValueError, match="delimiter must be a non-empty string"):
        sae.split_steps(tok, ids, delimiter=("\n", ""))


def test_latent_auroc_matches_the_metric_per_column():
    from introspect import metrics

    rng = np.random.default_rng(0)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        y = rng.random(60) < 0.3
        codes = np.maximum(rng.normal(size=(60, 7)) + 0.8 * y[:, None] * rng.normal(size=7), 0)
        codes[:, 3] = 0.0  # a dead latent: every score tied -> 0.5
        got = sae.latent_auroc(codes, y)
        want = [float(metrics.auroc(codes[:, j], y.astype(int))) for j in range(7)]
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert got[3] == 0.5
    with pytest.raises(ValueError, match="only one class"):
        sae.latent_auroc(codes, np.ones(60, bool))
    with pytest.raises(ValueError, match="codes must be"):
        sae.latent_auroc(codes, y[:10])
    codes[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sae.latent_auroc(codes, y)


def _random_sae(d, num_latents=16, seed=0):
    rng = np.random.default_rng(seed)
    dec = rng.normal(size=(num_latents, d)).astype(np.float32)
    return {"decoder": dec / np.linalg.norm(dec, axis=1, keepdims=True)}


def test_steering_alpha_zero_is_plain_generation(smollm, chat_prompt_ids):
    """alpha = 0 along a decoder row gives plain generation token for token; a sweep of
    (latent, alpha) rows in one call equals each row's (latent, alpha) applied to the whole
    batch (the calls share one batch shape: three compiles in all)."""
    prompts = chat_prompt_ids[:3]
    params = _random_sae(smollm.config.hidden_size)
    plain = smollm.generate(prompts, max_new_tokens=12)
    zero = smollm.generate(
        prompts,
        max_new_tokens=12,
        steering=sae.steering(params, 5, 0.0, layer=10),
        steer_prompt=True,
    )
    assert zero.tokens == plain.tokens
    np.testing.assert_allclose(np.concatenate(zero.logprobs), np.concatenate(plain.logprobs),
                               atol=1e-5)  # fmt: skip
    # A sweep: rows (latent 5, alpha 0), (latent 5, alpha 40), (latent 9, alpha -40).
    latents, alphas = np.array([5, 5, 9]), np.array([0.0, 40.0, -40.0])
    sweep = smollm.generate(
        prompts, max_new_tokens=12, steering=sae.steering(params, latents, alphas, layer=10)
    )
    assert sweep.tokens[0] == plain.tokens[0]
    for i in (1, 2):
        one = smollm.generate(
            prompts, max_new_tokens=12,
            steering=sae.steering(params, int(latents[i]), float(alphas[i]), layer=10),
        )  # fmt: skip
        assert one.tokens[i] == sweep.tokens[i]
    assert sweep.tokens[1] != plain.tokens[1] or sweep.tokens[2] != plain.tokens[2]
    # The vector is the unit decoder row, added after block layer - 1.
    st = sae.steering(params, latents, alphas, layer=10)
    assert st.layer == 9 and st.vector.shape == (3, smollm.config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(st.vector), axis=1), 1.0, atol=1e-6)


def test_steering_errors(smollm, chat_prompt_ids):
    params = _random_sae(smollm.config.hidden_size)
    with pytest.raises(ValueError, match="latents must be in \\[0, 16\\)"):
        sae.steering(params, [3, 16], [1.0, 1.0], layer=10)
    with pytest.raises(ValueError, match="layer must be a hidden-state index >= 1"):
        sae.steering(params, 3, 1.0, layer=0)
    with pytest.raises(ValueError, match="got 2 latents but 3 alphas"):
        sae.steering(params, [1, 2], [1.0, 2.0, 3.0], layer=10)
    with pytest.raises(ValueError, match="alphas must be a finite"):
        sae.steering(params, 1, float("nan"), layer=10)
    with pytest.raises(ValueError, match="steering.layer must be in"):
        smollm.generate(chat_prompt_ids[:1], max_new_tokens=2,
                        steering=sae.steering(params, 1, 1.0, layer=31))  # fmt: skip
    with pytest.raises(ValueError, match="steering.vector has 2 rows for 3 prompts"):
        smollm.generate(chat_prompt_ids[:3], max_new_tokens=2,
                        steering=sae.steering(params, [1, 2], [1.0, 1.0], layer=10))  # fmt: skip
    with pytest.raises(ValueError, match="steering.vector must be \\[hidden=576\\]"):
        bad = sae.steering({"decoder": np.ones((4, 8))}, 1, 1.0, layer=10)
        smollm.generate(chat_prompt_ids[:1], max_new_tokens=2, steering=bad)


def test_lm_loss_increase_at_positions(smollm):
    tok = smollm.tokenizer
    seqs = [tok.encode(TRACE), tok.encode("The sea is wide and the sky is blue.")]
    params, cfg = _identity_sae(smollm.config.hidden_size, "topk")
    params["decoder"] = np.zeros_like(params["decoder"])  # wipes the stream where it replaces
    every = sae.lm_loss_increase(smollm, params, seqs, config=cfg, layer=10)
    some = sae.lm_loss_increase(
        smollm, params, seqs, config=cfg, layer=10, positions=[[3, 7], [len(seqs[1]) - 2]]
    )
    none = sae.lm_loss_increase(smollm, params, seqs, config=cfg, layer=10, positions=[[], []])
    assert none["increase"] == 0.0 and none["loss"] == every["loss"]
    assert 0 < some["increase"] < every["increase"]
    # all positions listed == the default
    full = sae.lm_loss_increase(
        smollm, params, seqs, config=cfg, layer=10, positions=[range(len(s)) for s in seqs]
    )
    assert abs(full["loss_sae"] - every["loss_sae"]) < 1e-5
    with pytest.raises(ValueError, match="positions\\[1\\] must index its sequence"):
        sae.lm_loss_increase(smollm, params, seqs, config=cfg, layer=10, positions=[[0], [99]])
    with pytest.raises(ValueError, match="got 1 position lists for 2 sequences"):
        sae.lm_loss_increase(smollm, params, seqs, config=cfg, layer=10, positions=[[0]])
