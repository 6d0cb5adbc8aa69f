"""Feature positions, cue matching, extraction gather logic (fake LM) and the on-disk store."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from introspect import probes, train


class CharTokenizer:
    """One token per character (id = ord), enough for position and cue logic."""

    pad_token_id = 0

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)


def ids(text):
    return [ord(c) for c in text]


def test_positions():
    sel = probes.select_positions
    assert sel("last_prompt", prompt_len=5, total_len=9).tolist() == [4]
    assert sel("answer", prompt_len=5, total_len=9).tolist() == [5, 6, 7, 8]
    assert sel("every_k", prompt_len=5, total_len=12, every=3).tolist() == [5, 8, 11]
    seq = ids("Q: x?") + ids("Hmm, wait. WAIT")
    got = sel("cues", prompt_len=5, total_len=len(seq), cues=("hmm", "wait"),
              tokenizer=CharTokenizer(), ids=seq)  # fmt: skip
    # tokens completing "Hmm" (index 2 of the response), "wait" (8), "WAIT" (14)
    assert got.tolist() == [5 + 2, 5 + 8, 5 + 14]
    with pytest.raises(ValueError, match="position kind 'middle' is unknown"):
        sel("middle", prompt_len=1, total_len=2)
    with pytest.raises(ValueError, match="needs tokenizer"):
        sel("cues", prompt_len=1, total_len=2, cues=("a",))
    with pytest.raises(ValueError, match="every must be >= 1"):
        sel("every_k", prompt_len=1, total_len=2, every=0)


def test_cue_match_spanning_tokens():
    class PieceTokenizer:
        pieces = {1: "Alter", 2: "natively", 3: " we", 4: "\n", 5: "\n"}

        def decode(self, ids, skip_special_tokens=False):
            return "".join(self.pieces[i] for i in ids)

    tok = PieceTokenizer()
    assert probes.cue_positions(tok, [3, 1, 2, 3], ["alternatively"]).tolist() == [2]
    assert probes.cue_positions(tok, [3, 4, 5, 3], ["\n\n"]).tolist() == [2]
    assert probes.cue_positions(tok, [], ["x"]).tolist() == []


class FakeLM:
    """forward() returns hidden states encoding (layer, token id, position): value =
    1000 * layer + 10 * token + position in every hidden unit (position counts real tokens, as
    in the real model, so left padding does not change it)."""

    def __init__(self):
        from introspect import models

        self.tokenizer = CharTokenizer()
        self.config = types.SimpleNamespace(hidden_size=2)
        self.runner = models.Runner()
        self.calls = []

    def forward(self, tokens, *, mask=None, hidden_layers=None, return_logits=True):
        tokens = np.asarray(tokens)
        self.calls.append(tokens.shape)
        positions = np.maximum(np.cumsum(np.asarray(mask), axis=1) - 1, 0)
        layers = np.asarray(hidden_layers)[:, None, None]
        value = 1000 * layers + 10 * tokens[None] + positions[None]
        return types.SimpleNamespace(hidden_states=np.repeat(value[..., None], 2, axis=-1))


def test_extract_forward_gathers_layers_and_positions():
    lm = FakeLM()
    seqs = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    pos = [[2], [0, 4], []]
    feats = probes.extract_forward(lm, seqs, pos, layers=[3, 7], batch_size=2)
    assert [f.shape for f in feats] == [(1, 4), (2, 4), (0, 4)]
    np.testing.assert_array_equal(feats[0][0], [3032, 3032, 7032, 7032])
    np.testing.assert_array_equal(feats[1][1], [3084, 3084, 7084, 7084])
    # the runner: longest first, 2 rows then 1 (a power-of-two bucket), lengths bucketed
    assert [shape[0] for shape in lm.calls] == [2, 1]
    with pytest.raises(ValueError, match="out of range"):
        probes.extract_forward(lm, [[1, 2]], [[2]], layers=[0])


def test_generation_features():
    gen = types.SimpleNamespace(
        hidden_states=np.arange(2 * 3 * 2 * 4).reshape(2, 3, 2, 4), hidden_steps=(0, 5)
    )
    f = probes.generation_features(gen, step=5)
    assert f.shape == (3, 8)
    np.testing.assert_array_equal(f[1], np.concatenate([gen.hidden_states[0, 1, 1],
                                                        gen.hidden_states[1, 1, 1]]))  # fmt: skip
    with pytest.raises(ValueError, match="not captured"):
        probes.generation_features(gen, step=1)


def make_examples(n=10):
    return list(range(n))


def extract(chunk):
    k = np.asarray(chunk)
    rows = np.repeat(k, 2)  # two rows (positions) per example
    return {
        "features": np.stack([rows, -rows], 1).astype(np.float16),
        "label": (rows % 3 == 0).astype(np.int8),
        "example": rows.astype(np.int32),
    }


def test_store_roundtrip_resume_and_meta(tmp_path):
    d = str(tmp_path / "store")
    calls = []

    def flaky(chunk):
        calls.append(list(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt  # an interruption in the middle of the extraction
        return extract(chunk)

    with pytest.raises(KeyboardInterrupt):
        probes.build_store(d, make_examples(), flaky, meta={"layers": [1]}, chunk_size=3)
    with pytest.raises(ValueError, match="incomplete"):
        probes.FeatureStore(d)
    store = probes.build_store(d, make_examples(), flaky, meta={"layers": [1]}, chunk_size=3)
    assert calls == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [6, 7, 8], [9]]  # resumed at chunk 3
    assert len(store) == 20 and store.meta == {"layers": [1]}
    got = store[[19, 0, 7]]
    np.testing.assert_array_equal(got["example"], [9, 0, 3])
    assert got["features"].dtype == np.float16 and got["features"].shape == (3, 2)
    np.testing.assert_array_equal(store.column("example"), np.repeat(np.arange(10), 2))
    # finished store: reused without calling extract_fn
    again = probes.build_store(d, make_examples(), flaky, meta={"layers": [1]}, chunk_size=3)
    assert len(calls) == 5 and len(again) == 20
    with pytest.raises(ValueError, match="other settings"):
        probes.build_store(d, make_examples(), extract, meta={"layers": [2]}, chunk_size=3)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert index["complete"] and len(index["shards"]) == 4


def test_store_streams_into_the_batcher(tmp_path):
    store = probes.build_store(str(tmp_path), make_examples(), extract, meta={}, chunk_size=4)
    sub = probes.Subset(store, np.arange(0, 20, 2))
    batcher = train.Batcher(sub, 5, seed=0)
    seen = np.concatenate([next(batcher)["example"] for _ in range(2)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(10))
