"""Confidence-guided decoding: voting over samples, selective answering and cascades.

Implemented: `borda_vote`, `majority_vote`, `select_by_score`, `selective_answer`, `cascade`,
`best_of_n.sample` / `best_of_n.choose` (N samples per question in one batched call) and
`cntp.generate` (cautious next-token prediction, batched, one compiled loop) and
`early_stop.generate` (confidence-triggered early stop of a reasoning trace, ConCISE-style) and
`lynx.generate` (LYNX: a conformal exit probe stops reasoning inside the compiled loop) and
`ckplug.generate` = `ck_plug_generate` (CK-PLUG: knowledge-reliance control from the confidence
gain, two KV caches with and without the context in lockstep; `ckplug.score_gain` teacher-forced)
and `concise.inject_confidence` (ConCISE confidence injection at reflection cues) and
`dimple.parallel_decode` (Dimple's confident parallel unmasking, for any masked denoiser).
"""

from introspect.decoding import best_of_n, ckplug, cntp, concise, dimple, early_stop, lynx
from introspect.decoding.selective import cascade, selective_answer
from introspect.decoding.vote import borda_vote, majority_vote, select_by_score

ck_plug_generate = ckplug.generate

__all__ = [
    "best_of_n",
    "ck_plug_generate",
    "ckplug",
    "cntp",
    "concise",
    "dimple",
    "early_stop",
    "lynx",
    "borda_vote",
    "cascade",
    "majority_vote",
    "select_by_score",
    "selective_answer",
]
