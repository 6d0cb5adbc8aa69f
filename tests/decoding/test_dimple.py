"""Dimple's confident parallel decoding: the unmasking rule, the compiled loop against a
row-at-a-time NumPy transcription over seeds and thresholds, invariants, errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from introspect.decoding import dimple

MASK = 0


def reference_decode(denoise_np, tokens, threshold):
    toks = np.array(tokens, np.int64)
    steps = np.zeros(len(toks), np.int64)
    for b in range(len(toks)):
        while (toks[b] == MASK).any():
            logits = np.asarray(denoise_np(toks[None, b]), np.float64)[0]
            p = np.exp(logits - logits.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            conf, pred = p.max(-1), p.argmax(-1)
            masked = toks[b] == MASK
            reveal = masked & (conf >= threshold)
            if not reveal.any():
                reveal = np.zeros_like(masked)
                reveal[np.flatnonzero(masked)[np.argmax(conf[masked])]] = True
            toks[b] = np.where(reveal, pred, toks[b])
            steps[b] += 1
    return toks, steps


def toy_denoiser(seed, length, vocab):
    """Logits that depend on how many positions of the row are revealed (so the order
    matters), never predicting the mask id."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(length, vocab)) * 3
    shift = rng.normal(size=(length, vocab))
    base[:, MASK] = shift[:, MASK] = -1e4

    def make(xp):
        b, s = xp.asarray(base, xp.float32), xp.asarray(shift, xp.float32)

        def denoise(tokens):
            revealed = (tokens != MASK).sum(-1).astype(xp.float32)[:, None, None]
            return b[None] + revealed * s[None] * 0.5

        return denoise

    return make(jnp), make(np)


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    batch, length, vocab = 3, 10, 7
    den_j, den_n = toy_denoiser(seed, length, vocab)
    tokens = rng.integers(1, vocab, (batch, length))
    tokens[rng.random((batch, length)) < 0.7] = MASK
    for threshold in (0.3, 0.6, 0.95, 2.0):
        got, steps = dimple.parallel_decode(den_j, tokens, mask_id=MASK, threshold=threshold)
        want, want_steps = reference_decode(den_n, tokens, threshold)
        np.testing.assert_array_equal(np.asarray(got), want)
        np.testing.assert_array_equal(np.asarray(steps), want_steps)
        kept = tokens != MASK
        np.testing.assert_array_equal(np.asarray(got)[kept], tokens[kept])
        assert not (np.asarray(got) == MASK).any()
        if threshold > 1:  # one position per step
            np.testing.assert_array_equal(np.asarray(steps), (tokens == MASK).sum(1))


def test_lower_threshold_fewer_steps():
    den_j, _ = toy_denoiser(0, 16, 5)
    tokens = np.zeros((4, 16), np.int64)
    counts = [int(dimple.parallel_decode(den_j, tokens, mask_id=MASK, threshold=t)[1].sum())
              for t in (0.2, 0.5, 0.8, 1.5)]  # fmt: skip
    assert counts == sorted(counts) and counts[0] < counts[-1] == 4 * 16


def test_confident_unmask_rule():
    conf = np.array([[0.95, 0.5, 0.99, 0.2], [0.3, 0.6, 0.1, 0.2], [0.9, 0.9, 0.9, 0.9]])
    masked = np.array([[1, 1, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(
        dimple.confident_unmask(conf, masked, 0.9),
        [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]],
    )


def test_max_steps_and_errors():
    den_j, _ = toy_denoiser(1, 8, 5)
    out, steps = dimple.parallel_decode(den_j, np.zeros((2, 8), int), mask_id=MASK,
                                        threshold=2.0, max_steps=3)  # fmt: skip
    assert (np.asarray(steps) == 3).all() and ((np.asarray(out) == MASK).sum(1) == 5).all()
    with pytest.raises(ValueError, match="integers"):
        dimple.parallel_decode(den_j, np.zeros((2, 8), np.float32), mask_id=MASK)
    with pytest.raises(ValueError, match="threshold"):
        dimple.parallel_decode(den_j, np.zeros((2, 8), int), mask_id=MASK, threshold=0)
    with pytest.raises(ValueError, match="max_steps"):
        dimple.parallel_decode(den_j, np.zeros((2, 8), int), mask_id=MASK, max_steps=0)
