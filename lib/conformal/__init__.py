"""Conformal wrappers and high-confidence guarantees (work in progress)."""
