"""Policy-gradient pieces, preference losses and the registry, each against a small example
computed by hand from its formula (METHODS.md)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses as L


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def test_grpo_advantages():
    r = np.array([[1.0, 0.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0], [1.0, 0.0, 1.0, 9.0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]], bool)
    a = np.asarray(L.grpo_advantages(rewards=r, mask=mask, eps=0.0))
    np.testing.assert_allclose(a[0], [1, -1, 1, -1])
    np.testing.assert_allclose(a[1], [0, 0, 0, 0])  # no signal in a uniform group
    # mean 2/3, population std sqrt(2)/3
    np.testing.assert_allclose(a[2], [math.sqrt(2) / 2, -math.sqrt(2), math.sqrt(2) / 2, 0])
    centred = L.grpo_advantages(rewards=r[:1], scale_by_std=False)
    np.testing.assert_allclose(centred, [[0.5, -0.5, 0.5, -0.5]])
    unbiased = L.grpo_advantages(rewards=r[:1], ddof=1, eps=0.0)
    np.testing.assert_allclose(unbiased, [[1, -1, 1, -1] / np.sqrt(4 / 3)])


def test_clipped_policy_loss():
    old = np.zeros((1, 2))
    lp = np.log(np.array([[1.5, 0.5]]))
    mask = np.ones((1, 2), bool)
    loss, m = L.clipped_policy_loss(logprobs=lp, old_logprobs=old, advantages=np.ones(1), mask=mask)
    assert float(loss) == pytest.approx(-(1.2 + 0.5) / 2)  # min(1.5, 1.2), min(0.5, 0.8)
    assert float(m["clip_fraction"]) == pytest.approx(0.5)
    loss, _ = L.clipped_policy_loss(
        logprobs=lp, old_logprobs=old, advantages=-np.ones((1, 2)), mask=mask
    )
    assert float(loss) == pytest.approx((1.5 + 0.8) / 2)  # min(-1.5, -1.2), min(-0.5, -0.8)
    # KL (k3) to a reference at log-prob 0: exp(d) - d - 1 with d = -logp.
    kl = [1 / 1.5 + math.log(1.5) - 1, 2 + math.log(0.5) - 1]
    loss, m = L.clipped_policy_loss(
        logprobs=lp,
        old_logprobs=lp,
        advantages=np.zeros(1),
        mask=mask,
        ref_logprobs=np.zeros((1, 2)),
        kl_coef=0.1,
    )
    assert float(loss) == pytest.approx(0.1 * np.mean(kl))
    assert float(m["kl"]) == pytest.approx(np.mean(kl))


def test_clipped_policy_loss_aggregation_weights_and_grad():
    lp = jnp.log(jnp.array([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]))
    adv = jnp.array([1.0, 2.0])
    mask = jnp.array([[1, 1, 1], [1, 0, 0]], bool)
    kw = dict(old_logprobs=lp, advantages=adv, mask=mask)
    tok, _ = L.clipped_policy_loss(logprobs=lp, **kw)
    seq, _ = L.clipped_policy_loss(logprobs=lp, aggregation="sequence_mean", **kw)
    fixed, _ = L.clipped_policy_loss(logprobs=lp, aggregation="fixed_length", **kw)
    assert float(tok) == pytest.approx(-(3 * 1 + 2) / 4)
    assert float(seq) == pytest.approx(-(1 + 2) / 2)
    assert float(fixed) == pytest.approx(-(3 * 1 + 2) / 6)
    w = jnp.array([[1.0, 0.8, 1.2], [0.9, 1.0, 1.0]])
    weighted, _ = L.clipped_policy_loss(logprobs=lp, token_weights=w, **kw)
    assert float(weighted) == pytest.approx(-(1 + 0.8 + 1.2 + 2 * 0.9) / 4)
    # At ratio 1 the gradient is -A on each token (token mean).
    g = jax.grad(lambda x: L.clipped_policy_loss(logprobs=x, **kw)[0])(lp)
    np.testing.assert_allclose(g, [[-0.25, -0.25, -0.25], [-0.5, 0, 0]])


def test_ucas_advantages():
    rewards = np.array([[1.0, 0.0]])
    certainty = np.array([[3.0, 1.0]])
    logits = np.array([[[2.0, 4.0, 3.0], [1.0, 1.0, 9.0]]])
    mask = np.array([[[1, 1, 1], [1, 1, 0]]], bool)
    a = np.asarray(
        L.ucas_advantages(
            rewards=rewards, certainty=certainty, sampled_logits=logits, mask=mask, eps=0.0
        )
    )
    pos = math.exp(-0.25)  # A = 1, Cz = 1
    neg = -math.exp(-0.35)  # A = -1, Cz = -1
    np.testing.assert_allclose(a[0, 0], [pos, pos - 0.05, pos - 0.025])
    np.testing.assert_allclose(a[0, 1], [neg, neg, 0.0])  # equal logits: no token penalty
    clamped = np.asarray(
        L.ucas_advantages(
            rewards=rewards,
            certainty=certainty,
            sampled_logits=logits,
            mask=mask,
            eps=0.0,
            token_coef=1.0,
        )
    )
    np.testing.assert_allclose(clamped[0, 0], [pos, 0.0, pos - 0.5])  # A' > 0: clamped at 0
    # Token certainty: logsumexp - mean; 0 for uniform logits.
    z = np.array([[0.0, 0.0], [0.0, math.log(3.0)]])
    c = L.ucas_token_certainty(logits=z)
    np.testing.assert_allclose(c, [math.log(2), math.log(4) - math.log(3) / 2])
    seq = L.ucas_sequence_certainty(logits=z[None], mask=np.array([[True, False]]))
    np.testing.assert_allclose(seq, [math.log(2)])


def test_empg_advantages():
    h = np.array([[0.0, 1.0, 2.0, 5.0]])
    mask = np.array([[1, 1, 1, 0]], bool)
    a = np.asarray(
        L.empg_advantages(advantages=np.array([2.0]), step_entropy=h, step_mask=mask, eps=0.0)
    )
    conf = np.exp(-np.array([0.0, 0.5, 1.0]))
    g = conf / conf.mean()
    f = np.array([math.exp(-0.5), math.exp(-1.0), 0.0])
    np.testing.assert_allclose(a[0, :3], g * 2 + 0.1 * f)
    assert a[0, 3] == 0
    np.testing.assert_allclose(a[0, :3], [3.0995, 1.8800, 1.1180], atol=5e-4)


def test_steer_weights():
    pi = np.array([[0.5, 0.9, 0.7, 0.3]])
    pi_old = np.array([[0.5, 0.5, 0.7, 0.3]])
    ent = np.array([[1.0, 0.2, 0.5, 1.0]])
    mask = np.array([[1, 1, 1, 0]], bool)
    w = np.asarray(
        L.steer_weights(
            logprobs=np.log(pi),
            old_logprobs=np.log(pi_old),
            entropy=ent,
            advantages=np.ones(1),
            mask=mask,
        )
    )
    omega = (1 / pi_old) * pi * (1 - pi) * (np.log(pi) + ent)
    o = np.abs(omega[0, :3])
    nrm = (o - o.min()) / (o.max() - o.min())
    np.testing.assert_allclose(w[0, :3], 1.2 - 0.4 * nrm)
    np.testing.assert_allclose(w[0], [0.8, 1.2, 1.123858, 0.0], atol=1e-6)
    # all |Omega| equal: the mid weight (the reference's max == min case), 0 on padding
    same = L.steer_weights(
        logprobs=np.log(np.full((1, 4), 0.5)),
        old_logprobs=np.log(np.full((1, 4), 0.5)),
        entropy=np.ones((1, 4)),
        advantages=np.ones(1),
        mask=mask,
    )
    np.testing.assert_allclose(same[0], [1.0, 1.0, 1.0, 0.0])
    # pi = 1 (log-prob 0) is clamped to 1 - 1e-8: finite weights
    w1 = L.steer_weights(
        logprobs=np.zeros((1, 4)), old_logprobs=np.log(pi_old), entropy=ent,
        advantages=np.ones(1), mask=mask,
    )  # fmt: skip
    assert np.isfinite(np.asarray(w1)).all()


def _riskpo_reference(r, alpha=0.2, beta=0.8, w=1.5, eps=1e-6, natural=True, credit="uniform",
                      qs=None):  # fmt: skip
    """The authors' formulas, loop by loop (numpy; r [bundles, questions, samples])."""
    bundles, questions, n = r.shape
    out = np.zeros_like(r)
    for b in range(bundles):
        s = r[b].sum(0)  # paper scores
        qa, qb = np.quantile(s, [alpha, beta]) if qs is None else qs
        g = np.maximum(s - qa, 0) - np.maximum(s - qb, 0) + ((qa - qb) if natural else 0)
        g = g / (beta - alpha + eps)
        c = -np.maximum(qa - s, 0) / (alpha + eps)
        adv = (w * c + g) / (w + 1) / ((np.std(s, ddof=1) if n > 1 else 1.0) + eps)
        for q in range(questions):
            for j in range(n):
                a = adv[j]
                if credit == "std":
                    sd = np.std(r[b, q], ddof=1)
                    a = a / ((1.0 if sd <= 1e-3 else sd) + 1e-6)
                elif credit == "sum_mean":
                    dev = r[b, :, j] - r[b].mean(1)
                    tot = dev.sum()
                    a = a / questions if abs(tot) <= 1e-6 else a * dev[q] / tot
                elif credit == "score":
                    a = a * (0.5 if r[b, q, j] > 0 else 1.5)
                out[b, q, j] = a
    return out


@pytest.mark.parametrize("credit", ["uniform", "std", "sum_mean", "score"])
def test_riskpo_advantages_match_the_authors_formulas(credit):
    for seed in range(10):
        rng = np.random.default_rng(seed)
        r = rng.integers(0, 2, size=(3, 5, 6)).astype(float)  # 3 bundles of 5 questions, n = 6
        if seed % 2:
            r = rng.normal(size=r.shape)
        got = L.riskpo_advantages(rewards=r, credit=credit)
        np.testing.assert_allclose(got, _riskpo_reference(r, credit=credit), rtol=1e-9, atol=1e-9)
    got = L.riskpo_advantages(rewards=r, natural_baseline=False, alpha=0.1, beta=0.9, weight=0.5)
    want = _riskpo_reference(r, alpha=0.1, beta=0.9, w=0.5, natural=False)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_riskpo_paper_scores_and_masking():
    r = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_allclose(L.riskpo_paper_scores(rewards=r), r.sum(1))
    mask = np.ones(r.shape, bool)
    mask[1, 2] = False  # a short last bundle: its third question is padding
    np.testing.assert_allclose(L.riskpo_paper_scores(rewards=r, mask=mask)[1], r[1, :2].sum(0))
    a = np.asarray(L.riskpo_advantages(rewards=r, mask=mask))
    assert (a[1, 2] == 0).all()
    np.testing.assert_allclose(a[1, :2], _riskpo_reference(r[1:, :2])[0], atol=1e-9)


def test_riskpo_tracker():
    """The first batch sets the tracker to the empirical quantiles; later batches move each
    q_k by lr * (level_k - fraction below); "track" uses the grid level nearest alpha/beta."""
    rng = np.random.default_rng(0)
    state = L.riskpo_tracker_init()
    assert not bool(state["initialized"])
    r = rng.normal(size=(4, 5, 6))
    # an uninitialised tracker falls back to the batch quantiles
    np.testing.assert_allclose(
        L.riskpo_advantages(rewards=r, quantile_mode="track", tracker=state),
        L.riskpo_advantages(rewards=r),
        atol=1e-6,
    )
    s1 = np.asarray(L.riskpo_paper_scores(rewards=r))
    state = L.riskpo_tracker_update(state, s1)
    levels = np.arange(1, 20) * 0.05
    np.testing.assert_allclose(state["q"], np.quantile(s1.ravel(), levels), atol=1e-5)
    s2 = s1 + 3.0
    q_prev = np.asarray(state["q"])
    state2 = L.riskpo_tracker_update(state, s2, lr=0.1)
    want = q_prev + 0.1 * (levels - (s2.ravel()[None, :] < q_prev[:, None]).mean(1))
    np.testing.assert_allclose(state2["q"], want, atol=1e-6)
    qa, qb = float(state2["q"][3]), float(state2["q"][15])  # levels 0.2 and 0.8
    got = L.riskpo_advantages(rewards=r, quantile_mode="track", tracker=state2)
    np.testing.assert_allclose(got, _riskpo_reference(r, qs=(qa, qb)), rtol=1e-5, atol=1e-5)
    mix = L.riskpo_advantages(rewards=r[:1], quantile_mode="mix", tracker=state2)
    batch_q = np.quantile(r[0].sum(0), [0.2, 0.8])
    want = _riskpo_reference(r[:1], qs=((qa + batch_q[0]) / 2, (qb + batch_q[1]) / 2))
    np.testing.assert_allclose(mix, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="tracker: quantile_mode 'track' needs"):
        L.riskpo_advantages(rewards=r, quantile_mode="track")
    with pytest.raises(ValueError, match="credit"):
        L.riskpo_advantages(rewards=r, credit="equal")


def test_dual_clip_caps_negative_advantage_tokens():
    lp = np.log(np.array([[0.9, 0.5, 0.2]]))
    old = np.log(np.array([[0.1, 0.5, 0.2]]))  # ratio 9 on the first token
    mask = np.ones((1, 3), bool)
    for adv, want_first in ((-1.0, 3.0), (1.0, -1.2)):
        per, _ = L.clipped_policy_loss(
            logprobs=lp, old_logprobs=old, advantages=np.array([adv]), mask=mask,
            dual_clip=3.0, aggregation="fixed_length",
        )  # fmt: skip
        plain, _ = L.clipped_policy_loss(
            logprobs=lp, old_logprobs=old, advantages=np.array([adv]), mask=mask,
            aggregation="fixed_length",
        )  # fmt: skip
        # tokens 2-3 have ratio 1: -A each; token 1: A < 0 -> min(9, 3) = 3; A > 0 -> -1.2
        rest = -2 * adv
        np.testing.assert_allclose(float(per) * 3, want_first + rest, atol=1e-6)
        if adv < 0:
            np.testing.assert_allclose(float(plain) * 3, 9.0 + rest, atol=1e-5)
    with pytest.raises(ValueError, match="dual_clip"):
        L.clipped_policy_loss(logprobs=lp, old_logprobs=old, advantages=np.ones(1), mask=mask,
                              dual_clip=0.5)  # fmt: skip


@pytest.mark.parametrize(
    "mode, want", [("threshold", [2.4, -1.15]), ("difference", [2.39, -1.1575])]
)
def test_ppo_c_rewards(mode, want):
    r, avg = L.ppo_c_rewards(
        rewards=np.array([2.0, -1.0]), confidence=np.array([0.9, 0.8]), reward_avg=0.0, mode=mode
    )
    assert float(avg) == pytest.approx(0.05)
    np.testing.assert_allclose(r, want)


def test_dpo_and_vpo():
    kw = dict(
        policy_chosen_logps=np.array([-1.0]),
        policy_rejected_logps=np.array([-3.0]),
        ref_chosen_logps=np.array([-2.0]),
        ref_rejected_logps=np.array([-2.0]),
    )
    base = -math.log(1 / (1 + math.exp(-1.0)))  # beta * h = 0.5 * 2
    assert float(L.dpo_loss(beta=0.5, **kw)[0]) == pytest.approx(base)
    smooth = 0.9 * base + 0.1 * -math.log(1 / (1 + math.exp(1.0)))
    assert float(L.dpo_loss(beta=0.5, label_smoothing=0.1, **kw)[0]) == pytest.approx(smooth)
    # Values: chosen 0.5 * 1, rejected 0.5 * -1.
    assert float(L.vpo_loss(beta=0.5, alpha=0.1, **kw)[0]) == pytest.approx(base)
    assert float(L.vpo_loss(beta=0.5, alpha=0.1, value_on="chosen", **kw)[0]) == pytest.approx(
        base + 0.05
    )
    assert float(
        L.vpo_loss(beta=0.5, alpha=0.1, sign=1, value_on="chosen", **kw)[0]
    ) == pytest.approx(base - 0.05)
    seq = L.sequence_logprob(
        token_logprobs=np.array([[-1.0, -2.0, -9.0]]), mask=np.array([[1, 1, 0]], bool)
    )
    np.testing.assert_allclose(seq, [-3.0])


def test_bad_input():
    with pytest.raises(ValueError, match=r"rewards: has shape \(4,\)"):
        L.grpo_advantages(rewards=np.zeros(4))
    with pytest.raises(ValueError, match="rewards: contains 1 NaN"):
        L.grpo_advantages(rewards=np.array([[1.0, np.nan]]))
    lp = np.zeros((2, 3))
    with pytest.raises(ValueError, match="advantages: has shape"):
        L.clipped_policy_loss(
            logprobs=lp, old_logprobs=lp, advantages=np.zeros(3), mask=np.ones((2, 3), bool)
        )
    with pytest.raises(ValueError, match="ref_logprobs: required when kl_coef > 0"):
        L.clipped_policy_loss(
            logprobs=lp,
            old_logprobs=lp,
            advantages=np.zeros(2),
            mask=np.ones((2, 3), bool),
            kl_coef=0.1,
        )
    with pytest.raises(ValueError, match="aggregation"):
        L.clipped_policy_loss(
            logprobs=lp,
            old_logprobs=lp,
            advantages=np.zeros(2),
            mask=np.ones((2, 3), bool),
            aggregation="max",
        )
    with pytest.raises(ValueError, match="mask: selects no entries"):
        L.clipped_policy_loss(
            logprobs=lp, old_logprobs=lp, advantages=np.zeros(2), mask=np.zeros((2, 3), bool)
        )
    with pytest.raises(ValueError, match="step_entropy: .*entropies >= 0"):
        L.empg_advantages(
            advantages=np.ones(1), step_entropy=-np.ones((1, 2)), step_mask=np.ones((1, 2), bool)
        )
    with pytest.raises(ValueError, match="beta"):
        L.riskpo_advantages(rewards=np.zeros((3, 1, 2)), alpha=0.5, beta=0.4)
    with pytest.raises(ValueError, match=r"confidence: .*outside \[0, 1\]"):
        L.ppo_c_rewards(rewards=np.zeros(2), confidence=np.array([0.5, 7.0]), reward_avg=0.0)
    with pytest.raises(ValueError, match="sign"):
        L.vpo_loss(
            policy_chosen_logps=[0.0],
            policy_rejected_logps=[0.0],
            ref_chosen_logps=[0.0],
            ref_rejected_logps=[0.0],
            sign=0,
        )
    with pytest.raises(ValueError, match="policy_chosen_logps and ref_rejected_logps: shapes"):
        L.dpo_loss(
            policy_chosen_logps=[0.0],
            policy_rejected_logps=[0.0],
            ref_chosen_logps=[0.0],
            ref_rejected_logps=[0.0, 1.0],
        )


@pytest.mark.parametrize("seed", range(10))
def test_negative_only_and_trust_grpo_against_numpy(seed):
    rng = np.random.default_rng(seed)
    g, s = 3, 5
    ro = (rng.random((g, s)) < 0.5).astype(float)
    rt = rng.random((g, s))
    mask = rng.random((g, s)) < 0.9
    a = np.asarray(L.negative_only_advantages(rewards=ro, mask=mask))
    full = np.asarray(L.grpo_advantages(rewards=ro, mask=mask))
    np.testing.assert_allclose(a, np.minimum(full, 0))
    assert np.all(a <= 0)
    step, alpha, t = int(rng.integers(0, 50)), 0.7, 20.0
    got = np.asarray(
        L.trust_grpo_rewards(
            outcome=ro, thinking=rt, step=step, alpha=alpha, anneal_steps=t, mask=mask
        )  # fmt: skip
    )
    for i in range(g):
        m = mask[i]
        ok, bad = m & (ro[i] >= 0.5), m & (ro[i] < 0.5)
        gamma = 1.0
        if ok.any() and bad.any():
            mu_c, mu_w = rt[i][ok].mean(), rt[i][bad].mean()
            gamma = 1.0 if mu_c >= mu_w else math.exp(mu_c - mu_w)
        want = ro[i] + gamma * alpha * math.exp(-step / t) * rt[i]
        np.testing.assert_allclose(got[i][m], want[m], rtol=1e-12)
        assert np.all(got[i][~m] == 0)
    # no annealing: the full thinking weight; a thinking reward favouring wrong answers shrinks
    same = L.trust_grpo_rewards(outcome=[[1.0, 0.0]], thinking=[[0.2, 0.9]], alpha=1.0)
    np.testing.assert_allclose(same, [[1 + math.exp(-0.7) * 0.2, math.exp(-0.7) * 0.9]])
    with pytest.raises(ValueError, match="thinking"):
        L.trust_grpo_rewards(outcome=ro, thinking=rt[:, :2])
    with pytest.raises(ValueError, match="anneal_steps"):
        L.trust_grpo_rewards(outcome=ro, thinking=rt, anneal_steps=0.0)
