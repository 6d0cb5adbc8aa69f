"""Cue matching over a token stream, one automaton for the post-hoc scan and the decode loop.

A cue ("hmm", "wait", "alternatively", "\\n\\n", ...) is matched case-insensitively on the text the
tokens decode to, and belongs to the token that completes the match (LYNX). Matches do not
overlap: the scan restarts after each match, and of several cues ending at one character the
longest is taken. A match may span tokens ("Alter" + "natively").

`CueMatcher` is an Aho-Corasick automaton over characters. `scan(pieces)` runs it over per-token
decoded pieces on the host; `token_tables(pieces)` folds it over every vocabulary entry into two
[states, vocab] tables (next state, "a match completed inside this token"), so the compiled
decode loop follows the same machine with one gather per token (`introspect.models.generate`).
Both therefore find exactly the same cue tokens.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence

import numpy as np


def token_pieces(tokenizer, ids: Sequence[int]) -> list[str]:
    """Per-token decoded text (a character split across tokens decodes as U+FFFD, which never
    matches an ASCII cue)."""
    return [tokenizer.decode([int(t)]) for t in ids]


class CueMatcher:
    """Case-insensitive, non-overlapping matcher of a set of cue strings.

    Attributes:
      cues: the cue strings as given.
      num_states: automaton states (0 = nothing matched yet).
    """

    def __init__(self, cues: Sequence[str]):
        if isinstance(cues, str) or not cues or any(not isinstance(c, str) or not c for c in cues):
            raise ValueError(f"cues must be a non-empty list of non-empty strings, got {cues!r}")
        self.cues = tuple(cues)
        words = sorted({c.lower() for c in self.cues})
        goto: list[dict[str, int]] = [{}]
        length = [0]  # the longest cue ending at each state (0 = none)
        for w in words:
            s = 0
            for ch in w:
                if ch not in goto[s]:
                    goto.append({})
                    length.append(0)
                    goto[s][ch] = len(goto) - 1
                s = goto[s][ch]
            length[s] = max(length[s], len(w))
        # Failure links (breadth first); a state's output includes its failure chain's.
        fail = [0] * len(goto)
        queue = collections.deque(goto[0].values())
        while queue:
            s = queue.popleft()
            for ch, t in goto[s].items():
                f = fail[s]
                while f and ch not in goto[f]:
                    f = fail[f]
                fail[t] = goto[f][ch] if ch in goto[f] and goto[f][ch] != t else 0
                length[t] = max(length[t], length[fail[t]])
                queue.append(t)
        self.alphabet = frozenset(ch for w in words for ch in w)
        self.num_states = len(goto)
        # Dense transitions over the alphabet; any other character leads to state 0.
        self._next = {}
        for s in range(self.num_states):
            for ch in self.alphabet:
                f = s
                while f and ch not in goto[f]:
                    f = fail[f]
                self._next[s, ch] = goto[f].get(ch, 0)
        self._length = length

    def __repr__(self) -> str:
        return f"CueMatcher({list(self.cues)!r})"

    def step(self, state: int, piece: str) -> tuple[int, list[tuple[int, int]]]:
        """Run one token's text from `state`: (new state, [(start, end) of each match, char
        offsets into `piece`; start < 0 when the match began in an earlier token])."""
        matches = []
        for i, ch in enumerate(piece):
            low = ch.lower()
            state = self._next.get((state, low), 0) if len(low) == 1 else 0
            n = self._length[state]
            if n:
                matches.append((i + 1 - n, i + 1))
                state = 0  # non-overlapping: start afresh after a match
        return state, matches

    def scan(self, pieces: Sequence[str]) -> list[tuple[int, int, int]]:
        """Every match in a token stream: [(token completing it, token where it starts, char
        offset of its start inside that token)]."""
        ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
        state, out = 0, []
        for t, piece in enumerate(pieces):
            state, matches = self.step(state, piece)
            for start, _ in matches:
                g = int(ends[t] - len(piece) + start)  # global char offset of the start
                s = int(np.searchsorted(ends, g, side="right"))
                out.append((t, s, g - int(ends[s] - len(pieces[s]))))
        return out

    def positions(self, pieces: Sequence[str]) -> np.ndarray:
        """Sorted unique indices of the tokens that complete a match."""
        return np.array(sorted({t for t, _, _ in self.scan(pieces)}), np.int64)

    def token_tables(self, pieces: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(next_state [states, vocab] int32, hit [states, vocab] bool) for the vocabulary
        whose entry i decodes to pieces[i]: the state after reading token i from each state,
        and whether a match completed inside it."""
        vocab = len(pieces)
        nxt = np.zeros((self.num_states, vocab), np.int32)
        hit = np.zeros((self.num_states, vocab), bool)
        for i, piece in enumerate(pieces):
            if not piece:  # decodes to nothing (e.g. a special token): the state is kept
                nxt[:, i] = np.arange(self.num_states)
                continue
            if not self.alphabet.intersection(piece.lower()):
                continue  # every state falls back to 0, nothing matches
            for s in range(self.num_states):
                nxt[s, i], m = self.step(s, piece)
                hit[s, i] = bool(m)
        return nxt, hit


@functools.lru_cache(maxsize=8)
def _vocab_pieces(tokenizer, vocab_size: int) -> tuple[str, ...]:
    out = []
    for i in range(vocab_size):
        try:
            out.append(tokenizer.decode([i]))
        except Exception:  # ids past the tokenizer's vocabulary (padded embedding rows)
            out.append("")
    return tuple(out)


def vocab_tables(tokenizer, vocab_size: int, cues: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """`CueMatcher(cues).token_tables` over ids [0, vocab_size) of `tokenizer` (cached)."""
    return _vocab_tables(tokenizer, int(vocab_size), tuple(cues))


@functools.lru_cache(maxsize=8)
def _vocab_tables(tokenizer, vocab_size, cues):
    return CueMatcher(cues).token_tables(_vocab_pieces(tokenizer, vocab_size))
