"""Confidence-guided decoding: voting over samples, selective answering and cascades.

Implemented: `borda_vote`, `majority_vote`, `select_by_score`, `selective_answer`, `cascade`.
Not yet: batched CNTP, ConCISE early stop, the Best-of-N driver over a model (issue 6).
"""

from introspect.decoding.selective import cascade, selective_answer
from introspect.decoding.vote import borda_vote, majority_vote, select_by_score

__all__ = ["borda_vote", "cascade", "majority_vote", "select_by_score", "selective_answer"]
