"""ConfTuner's tokenized Brier score and the confidence-token helper."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from introspect import losses as L


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


class DigitTokenizer:
    """Splits every number into single digits (like Llama-3 / Qwen tokenizers do)."""

    def encode(self, text, add_special_tokens=False):
        assert add_special_tokens is False
        return [ord(ch) for ch in text]


class WholeNumberTokenizer:
    """Whole numbers are single tokens; a leading space is its own token."""

    def encode(self, text, add_special_tokens=False):
        ids = []
        for piece in re.findall(r"\d+|\s|[^\d\s]+", text):
            ids.append(1000 + int(piece) if piece.isdigit() else 10 + len(piece))
        return ids


class SpaceNumberTokenizer:
    """' 85' is one token (SentencePiece style), '85' is another."""

    def encode(self, text, add_special_tokens=False):
        if text.startswith(" ") and text[1:].isdigit():
            return [5000 + int(text[1:])]
        if text.isdigit():
            return [1000 + int(text)]
        return [7]


def test_values():
    fine = np.asarray(L.confidence_values(mode="fine"))
    coarse = np.asarray(L.confidence_values(mode="coarse"))
    assert fine.shape == (101,) and fine[0] == 0 and fine[-1] == 1 and fine[37] == 0.37
    assert coarse.shape == (10,) and coarse[9] == 1 and coarse[3] == pytest.approx(1 / 3)
    assert L.confidence_strings(mode="coarse") == [str(k) for k in range(10)]


def test_token_ids_whole_numbers():
    ids = np.asarray(L.confidence_token_ids(WholeNumberTokenizer(), mode="fine"))
    np.testing.assert_array_equal(ids, 1000 + np.arange(101))
    # With a prefix the prefix's own tokens are stripped.
    ids = np.asarray(L.confidence_token_ids(WholeNumberTokenizer(), mode="fine", prefix=" "))
    np.testing.assert_array_equal(ids, 1000 + np.arange(101))
    ids = np.asarray(L.confidence_token_ids(SpaceNumberTokenizer(), mode="coarse", prefix=" "))
    np.testing.assert_array_equal(ids, 5000 + np.arange(10))


def test_token_ids_split_digits():
    tok = DigitTokenizer()
    with pytest.raises(ValueError) as err:
        L.confidence_token_ids(tok, mode="fine")
    msg = str(err.value)
    assert "tokenizer: 91 of the 101 confidence values do not encode to exactly one token" in msg
    assert "'10' -> [49, 48]" in msg and "mode='coarse'" in msg
    ids = np.asarray(L.confidence_token_ids(tok, mode="coarse"))
    np.testing.assert_array_equal(ids, [ord(str(k)) for k in range(10)])


def test_token_ids_bad_tokenizer():
    with pytest.raises(ValueError, match="tokenizer: has no encode method"):
        L.confidence_token_ids(object())

    class Same:
        def encode(self, text, add_special_tokens=False):
            return [1]

    with pytest.raises(ValueError, match="same token id"):
        L.confidence_token_ids(Same(), mode="coarse")


def test_formula_and_expected_confidence():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 10))
    v = np.asarray(L.confidence_values(mode="coarse"))
    y = np.array([1.0, 0.0, 1.0, 0.0])
    q = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    want = (q * (y[:, None] - v[None]) ** 2).sum(1)
    np.testing.assert_allclose(L.tokenized_brier(conf_logits=z, correct=y, values=v), want)
    np.testing.assert_allclose(L.expected_confidence(conf_logits=z, values=v), q @ v)


@pytest.mark.parametrize("mode", ["fine", "coarse"])
def test_tokenized_brier_is_proper(mode):
    v = np.asarray(L.confidence_values(mode=mode))
    k = len(v)
    big = 60.0
    onehots = jnp.asarray(np.eye(k) * big)  # each row: (almost) all mass on one token
    ones, zeros = jnp.ones(k), jnp.zeros(k)
    loss1 = np.asarray(L.tokenized_brier(conf_logits=onehots, correct=ones, values=v))
    loss0 = np.asarray(L.tokenized_brier(conf_logits=onehots, correct=zeros, values=v))
    for j, p in enumerate(v):
        expected = p * loss1 + (1 - p) * loss0
        assert np.argmin(expected) == j  # reporting the true probability is optimal
    # And no softmax mixture beats the point mass at the true value.
    rng = np.random.default_rng(1)
    mix = jnp.asarray(rng.normal(size=(300, k)) * 3)
    m1 = np.asarray(L.tokenized_brier(conf_logits=mix, correct=jnp.ones(300), values=v))
    m0 = np.asarray(L.tokenized_brier(conf_logits=mix, correct=jnp.zeros(300), values=v))
    for j in range(0, k, max(1, k // 7)):
        p = v[j]
        best = p * loss1[j] + (1 - p) * loss0[j]
        assert np.all(p * m1 + (1 - p) * m0 >= best - 1e-12)


def test_gradient_and_jit():
    v = L.confidence_values(mode="fine")
    z = jnp.zeros((3, 101))
    g = jax.grad(
        lambda a: jnp.sum(L.tokenized_brier(conf_logits=a, correct=jnp.ones(3), values=v))
    )(z)
    # Pushes mass towards high-confidence tokens when the answer is right.
    assert float(g[0, 100]) < 0 < float(g[0, 0])
    out = jax.jit(lambda a: L.tokenized_brier(conf_logits=a, correct=jnp.zeros(3), values=v))(z)
    assert out.shape == (3,)


def test_bad_input():
    v = L.confidence_values(mode="coarse")
    with pytest.raises(ValueError, match="conf_logits and values: conf_logits has 5 logits"):
        L.tokenized_brier(conf_logits=np.zeros((2, 5)), correct=np.ones(2), values=v)
    with pytest.raises(ValueError, match=r"correct: has shape \(3,\); expected \(2,\)"):
        L.tokenized_brier(conf_logits=np.zeros((2, 10)), correct=np.ones(3), values=v)
    with pytest.raises(ValueError, match=r"correct: .*outside \[0, 1\]"):
        L.tokenized_brier(conf_logits=np.zeros((2, 10)), correct=np.array([1, 2]), values=v)
    with pytest.raises(ValueError, match=r"values: .*outside \[0, 1\]"):
        L.tokenized_brier(conf_logits=np.zeros((1, 2)), correct=np.ones(1), values=[0, 2])
    with pytest.raises(ValueError, match="conf_logits: contains 1 NaN"):
        L.tokenized_brier(
            conf_logits=np.array([[np.nan] + [0.0] * 9]), correct=np.ones(1), values=v
        )
    with pytest.raises(ValueError, match="mode: expected one of 'fine', 'coarse'"):
        L.confidence_values(mode="medium")
