"""The cue automaton: matches on text across tokens, and its per-token tables (the compiled
loop's view) find exactly the tokens the host scan finds, over many random token streams."""

import numpy as np
import pytest

from introspect import probes
from introspect.decoding import lynx


class PieceTokenizer:
    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.pieces[i] for i in ids)

    def encode(self, text):
        # greedy longest-piece encoding, enough for the cut tests
        out, i = [], 0
        while i < len(text):
            best = max(
                (k for k, p in enumerate(self.pieces) if p and text.startswith(p, i)),
                key=lambda k: len(self.pieces[k]),
            )
            out.append(best)
            i += len(self.pieces[best])
        return out


PIECES = ["", "W", "ait", "wa", "it", "H", "mm", "hmm", ".\n\n", "\n", " ", "alter", "Natively",
          "x", "WAIT", "i", "t", "a", "m", "\n\n", "é"]  # fmt: skip


def test_matches_span_tokens_and_do_not_overlap():
    m = probes.CueMatcher(["wait", "hmm", "\n\n"])
    pieces = ["Hm", "m", "m", " wa", "it", "\n", "\n", "\n", "\n"]
    # "Hmm" ends in token 1; the extra "m" starts nothing; "wait" ends in 4; "\n\n" twice
    assert m.positions(pieces).tolist() == [1, 4, 6, 8]
    assert m.scan(pieces)[1] == (4, 3, 1)  # completed in token 4, starts at char 1 of token 3
    assert probes.CueMatcher(["aa"]).positions(["aaa", "a"]).tolist() == [0, 1]


def test_longest_cue_wins_at_one_end():
    m = probes.CueMatcher(["it", "wait"])
    assert m.scan(["wait"]) == [(0, 0, 0)]  # "wait" (start 0), not "it" (start 2)


@pytest.mark.parametrize("cues", [("wait", "hmm", "alternatively"), ("\n\n",), ("a", "ta")])
def test_token_tables_agree_with_the_scan(cues):
    m = probes.CueMatcher(cues)
    nxt, hit = m.token_tables(PIECES)
    assert nxt.shape == hit.shape == (m.num_states, len(PIECES))
    rng = np.random.default_rng(0)
    for _ in range(300):
        ids = rng.integers(0, len(PIECES), size=rng.integers(1, 30))
        state, online = 0, []
        for t, i in enumerate(ids):
            if hit[state, i]:
                online.append(t)
            state = nxt[state, i]
        assert online == m.positions([PIECES[i] for i in ids]).tolist()


def test_cue_errors():
    for bad in ([], "wait", [""], [None]):
        with pytest.raises(ValueError, match="non-empty list of non-empty strings"):
            probes.CueMatcher(bad)


def test_forced_exit_cut_is_before_the_cue():
    tok = PieceTokenizer(["", "x", " wa", "it", ".\n\n", "\nA:", ".", "A", "\n", ":", " "])
    # trace "x wait" -> cut before " wa"'s "wa": keeps "x", re-encodes " " + exit text
    assert tok.decode(lynx.forced_exit_ids(tok, [1, 2, 3], 2, ["wait"], "\nA:")) == "x \nA:"
    # ".\n\n" completes "\n\n" mid-token: "." is kept
    cut = lynx.forced_exit_ids(tok, [1, 4, 1], 1, ["\n\n"], "\nA:")
    assert tok.decode(cut) == "x.\nA:"
    assert lynx.forced_exit_ids(tok, [1, 1], None, (), "\nA:") == [1, 1, 5]
    with pytest.raises(ValueError, match="completes none of the cues"):
        lynx.forced_exit_ids(tok, [1, 1], 1, ["wait"], "\nA:")
