"""One `Registry` class: name -> object + metadata, for every part a config picks by name.

Losses, signals, optimisers, schedules, probes, models and tasks each keep one `Registry`
instance; a config string (`config.loss.name = "focal"`) is looked up there, so a new part needs
no edit anywhere else.

    from introspect.registry import Registry
    LOSSES = Registry("loss")

    @LOSSES.register("focal", needs=("label",))     # metadata: any keyword fields
    def focal(*, outputs, batch, gamma=2.0): ...

    LOSSES.get("focal")            # the function
    LOSSES.info("focal").meta      # {"needs": ("label",)}
    LOSSES.names()                 # ("focal", ...)

A miss raises a `KeyError`-compatible `ValueError` that lists the known names; registering a name
twice raises (pass `overwrite=True` to replace an entry on purpose, e.g. in a notebook).

`import_modules("my_pkg.losses,other")` imports user modules so that their `@register`
decorators run; experiments call it on `config.imports` before they look anything up.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
from collections.abc import Iterator, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Entry", "Registry", "UnknownNameError", "import_modules"]


class UnknownNameError(ValueError, KeyError):
    """A name that is not registered (a ValueError and a KeyError, so either `except` works)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclasses.dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object: its name, the object, and read-only metadata."""

    name: str
    obj: T
    meta: types.MappingProxyType

    def __getitem__(self, key: str) -> Any:
        return self.meta[key]


class Registry(Generic[T]):
    """Name -> object + metadata. Names are case-sensitive, non-empty strings.

    Args:
      kind: what the entries are ("loss", "signal", ...), used in error messages.
      defaults: metadata every entry has unless its registration says otherwise.
    """

    def __init__(self, kind: str, *, defaults: dict[str, Any] | None = None):
        self.kind = kind
        self._defaults = dict(defaults or {})
        self._entries: dict[str, Entry[T]] = {}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries: {', '.join(self.names())})"

    # -- registering ---------------------------------------------------------------------------

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False, **meta):
        """Registers `obj` as `name` with metadata `meta`; without `obj`, returns a decorator.

        Raises:
          ValueError: `name` is not a non-empty string, or is taken (and not `overwrite`).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name: expected a non-empty string, got {name!r}")

        def add(o: T) -> T:
            if name in self._entries and not overwrite:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered "
                    f"(by {_where(self._entries[name].obj)}); pick another name, or pass "
                    "overwrite=True to replace it"
                )
            info = {**self._defaults, **meta}
            self._entries[name] = Entry(name, o, types.MappingProxyType(info))
            return o

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Removes `name` (tests and notebooks); unknown names raise like `get`."""
        self.info(name)
        del self._entries[name]

    # -- looking up ----------------------------------------------------------------------------

    def info(self, name: str) -> Entry[T]:
        """The `Entry` of `name`; UnknownNameError listing the known names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}"
            ) from None

    def get(self, name: str) -> T:
        """The object registered as `name`."""
        return self.info(name).obj

    def meta(self, name: str, key: str, default: Any = None) -> Any:
        """One metadata field of `name` (`default` when the entry has none)."""
        return self.info(name).meta.get(key, default)

    def names(self, **where) -> tuple[str, ...]:
        """Sorted names, optionally only those whose metadata equals `where` (e.g. prob=True)."""
        return tuple(
            sorted(
                n
                for n, e in self._entries.items()
                if all(e.meta.get(k) == v for k, v in where.items())
            )
        )

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n].obj) for n in self.names()]

    def check(self, name: str, *, field: str) -> str:
        """`name` if registered, else a ValueError naming the config `field` and the known names."""
        if name not in self._entries:
            raise UnknownNameError(
                f"{field}: unknown {self.kind} {name!r}; known: "
                f"{', '.join(self.names()) or '(none)'}"
            )
        return name


def _where(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    qual = getattr(obj, "__qualname__", None) or type(obj).__name__
    return f"{module}.{qual}"


def import_modules(modules: str | Sequence[str] | None) -> list[types.ModuleType]:
    """Imports user modules (a comma-separated string or a list) so their registrations run.

    `config.imports = "my_losses"` plus `--config.loss.name=my_loss` is how a run uses a loss
    defined outside introspect. Raises ValueError naming the module that failed to import.
    """
    if not modules:
        return []
    if isinstance(modules, str):
        modules = [m.strip() for m in modules.split(",")]
    out = []
    for m in modules:
        if not m:
            continue
        try:
            out.append(importlib.import_module(m))
        except ImportError as e:
            raise ValueError(
                f"config.imports: cannot import module {m!r} ({e}); it must be importable from "
                "the working directory or PYTHONPATH"
            ) from e
    return out
