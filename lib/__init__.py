"""introspect: a JAX research codebase for LLM confidence.

Submodules are imported lazily so that `import introspect.metrics` does not pull in the model stack.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "models",
    "data",
    "metrics",
    "losses",
    "calibrators",
    "cleaning",
    "conformal",
    "signals",
    "decoding",
    "probes",
    "sae",
    "posttrain",
    "heads",
    "adapt",
    "train",
    "results",
    "registry",
    "resources",
    "sharding",
    "store",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"introspect.{name}")
    raise AttributeError(f"module 'introspect' has no attribute {name!r}")
