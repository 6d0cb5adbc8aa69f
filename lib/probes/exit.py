"""LYNX exit rules: a probe on hidden states at reasoning cues, with conformal thresholds.

    rule = probes.ExitRule.calibrate(model, variables, layers=(10, 20, 30), cues=("\\n\\n",),
                                     cal_probs=p, cal_labels=y, delta=0.1)
    gen = lm.generate(prompts, exit_rule=rule)          # online: rows end at the exit cue
    scan = probes.scan_exits(lm, prompts, gen.tokens, rule)   # post-hoc: the same decisions

At a cue token (a token completing a cue, `introspect.probes.cues`) the probe reads the hidden
states of `layers` (concatenated in that order) and gives p = P(the answer forced at this cue is
right). Mondrian split conformal on calibration cues (`conformal.exit_thresholds`) gives (q0, q1);
the prediction set is S = {1 if 1 - p <= q1} U {0 if p <= q0} and the trace exits at the first
cue where S == {1}. Guarantee: a cue whose forced answer is wrong triggers an exit with
probability <= delta (exchangeable cues).

A cue on the last token of a trace (its stop token, or the token that exhausted the budget) is
never evaluated: there is nothing left to save, and the compiled loop never feeds that token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from introspect.probes.cues import CueMatcher, token_pieces, vocab_tables


@dataclasses.dataclass(frozen=True)
class ExitRule:
    """An exit probe with its conformal thresholds.

    Attributes:
      probe: the Flax probe module (logit = probe.apply(variables, features [n, input_dim])).
      variables: its {"params", "stats"}.
      layers: hidden_states indices whose states, concatenated, are the features.
      cues: cue strings (case-insensitive).
      q0, q1: conformal thresholds (`conformal.exit_thresholds`); +inf / -inf allowed.
      delta: the level they were calibrated at (None when set by hand).
    """

    probe: Any
    variables: Any
    layers: tuple[int, ...]
    cues: tuple[str, ...]
    q0: float
    q1: float
    delta: float | None = None

    def __post_init__(self):
        CueMatcher(self.cues)  # validates the cue list
        if not self.layers:
            raise ValueError("an exit rule needs at least one hidden-state layer")
        for name in ("q0", "q1"):
            v = getattr(self, name)
            if not isinstance(v, int | float | np.floating) or np.isnan(v):
                raise ValueError(f"{name} must be a number (+-inf allowed), got {v!r}")

    @classmethod
    def calibrate(
        cls,
        probe,
        variables,
        *,
        layers: Sequence[int],
        cues: Sequence[str],
        cal_probs,
        cal_labels,
        delta: float,
    ) -> ExitRule:
        """The rule at level `delta` from the probe's probabilities on calibration cues and the
        0/1 correctness of the answers forced there."""
        from introspect import conformal

        if not (isinstance(delta, int | float) and 0.0 < delta < 1.0):
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        q0, q1 = conformal.exit_thresholds(
            np.asarray(cal_probs, np.float32),
            np.asarray(cal_labels, np.int32),
            delta=float(delta),
            on_infinite="ignore",
        )
        return cls(
            probe=probe,
            variables=variables,
            layers=tuple(int(i) for i in layers),
            cues=tuple(cues),
            q0=float(q0),
            q1=float(q1),
            delta=float(delta),
        )

    @property
    def input_dim(self) -> int:
        """Features the probe takes (from its first kernel)."""
        params = self.variables["params"]
        first = params["hidden_0"] if "hidden_0" in params else params["out"]
        return int(np.shape(first["kernel"])[0])

    def tables(self, tokenizer, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The cue automaton over the vocabulary (for the compiled loop)."""
        return vocab_tables(tokenizer, vocab_size, self.cues)

    def decide(self, p) -> np.ndarray:
        """[...] bool: exit at cues with probe probabilities p (S == {1})."""
        from introspect import conformal

        # the rule the compiled loop applies, in float32 as there
        p = np.asarray(p, np.float32)
        return np.asarray(conformal.exit_decision(p, np.float32(self.q0), np.float32(self.q1)).exit)

    def probabilities(self, features) -> np.ndarray:
        """[n] the probe's probability at cues with features [n, input_dim]."""
        from introspect.probes.training import predict

        return predict(self.probe, self.variables, np.asarray(features, np.float32))


@dataclasses.dataclass
class ExitScan:
    """Per trace: cue token indices (into the trace), the probe's probability there, the index
    into `cues` of the first exit (-1 = none) and the exit token (-1 = none)."""

    cues: list[np.ndarray]
    probs: list[np.ndarray]
    first_exit: np.ndarray
    exit_steps: np.ndarray


def evaluable_cues(tokenizer, trace: Sequence[int], cues: Sequence[str]) -> np.ndarray:
    """Cue token indices into `trace` at which an exit rule is evaluated (all but a cue on the
    last token)."""
    pos = CueMatcher(cues).positions(token_pieces(tokenizer, trace))
    return pos[pos < len(trace) - 1]


def first_exits(probs: Sequence[np.ndarray], rule: ExitRule) -> np.ndarray:
    """[n] index of the first cue where `rule` exits, -1 where it never does."""
    out = np.full((len(probs),), -1, np.int64)
    for i, p in enumerate(probs):
        hits = np.flatnonzero(rule.decide(p))
        if hits.size:
            out[i] = hits[0]
    return out


def scan_exits(
    lm, prompts, traces, rule: ExitRule, *, batch_size: int = 8, features=None
) -> ExitScan:
    """The post-hoc scan (as the LYNX authors run it): teacher-forced hidden states at every
    evaluable cue of finished traces, the probe, and the first cue where the rule exits.

    Args:
      lm: an `introspect.models.LM`.
      prompts: token-id lists; traces: the generated token ids after each prompt.
      rule: the exit rule.
      batch_size: rows per forward call.
      features: optional precomputed [cues, input_dim] per trace (skips the forward pass).
    """
    from introspect.probes.features import extract_forward

    if len(prompts) != len(traces):
        raise ValueError(f"got {len(prompts)} prompts but {len(traces)} traces")
    cues = [evaluable_cues(lm.tokenizer, t, rule.cues) for t in traces]
    if features is None:
        features = extract_forward(
            lm,
            [list(p) + list(t) for p, t in zip(prompts, traces, strict=True)],
            [len(p) + c for p, c in zip(prompts, cues, strict=True)],
            layers=rule.layers,
            batch_size=batch_size,
        )
    flat = np.concatenate([np.asarray(f, np.float32) for f in features], axis=0)
    if flat.shape[0] and flat.shape[1] != rule.input_dim:
        raise ValueError(
            f"the probe takes {rule.input_dim} features, the cue features have {flat.shape[1]}"
        )
    p_flat = rule.probabilities(flat) if flat.shape[0] else np.zeros((0,), np.float32)
    probs = np.split(p_flat, np.cumsum([len(c) for c in cues])[:-1])
    first = first_exits(probs, rule)
    steps = np.array([c[k] if k >= 0 else -1 for c, k in zip(cues, first, strict=True)], np.int64)
    return ExitScan(cues=cues, probs=probs, first_exit=first, exit_steps=steps)
