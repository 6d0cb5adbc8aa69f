"""The signal registry: metadata replaces side tables (needs_vocab, is-a-probability)."""

import jax.numpy as jnp
import numpy as np
import pytest

from introspect import signals


def test_metadata_of_builtin_signals():
    S = signals.SIGNALS
    assert set(S.names(prob=True)) >= {
        "mean_token_prob", "min_token_prob", "max_token_prob", "answer_confidence",
        "p_true", "consistency", "hedge", "verbalized",
    }  # fmt: skip
    assert not S.meta("self_certainty", "prob") and S.meta("self_certainty", "needs_vocab")
    assert set(S.names(needs_vocab=True)) == {"self_certainty", "renyi", "fisher_rao"}
    assert "consistency" not in signals.stats_signals()
    assert set(signals.stats_signals()) == set(S.names(kind="stats"))
    assert S.get("p_true") is signals.p_true


def test_compute_refuses_a_signal_that_is_not_statistics_based():
    mask = np.ones((1, 3), bool)
    with pytest.raises(ValueError, match="'consistency' is a 'samples' signal"):
        signals.compute("consistency", {"logprob": np.zeros((1, 3))}, mask)


def test_user_signal_by_decorator_runs_in_compute_all():
    @signals.register("user_neg_length_test", prob=False)
    def neg_length(stats, mask):
        return -jnp.sum(mask, axis=-1).astype(jnp.float32)

    try:
        stats = {k: np.zeros((2, 4), np.float32) for k in signals.STAT_NAMES}
        stats["logprob"] = np.zeros((2, 4), np.float32)
        mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool)
        out = signals.compute_all(stats, mask, vocab_size=10)
        np.testing.assert_array_equal(out["user_neg_length_test"], [-2.0, -4.0])
        with pytest.raises(ValueError, match="kind: expected"):
            signals.register("bad_kind_test", neg_length, kind="logits")
    finally:
        signals.SIGNALS.unregister("user_neg_length_test")
