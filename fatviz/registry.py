"""Name-to-entry registries: a centroid option, a dataset, a loss or a job kind is defined once.

Every other module (settings validation, the CLI's choices, the sidebar, figure colours,
the docs) reads a registry instead of keeping its own list of names, so adding a fifth
centroid option or a new dataset is one `register` call and a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any, Generic, TypeVar

from fatviz.errors import FatvizError

T = TypeVar("T")


class Registry(Generic[T]):
    """An ordered mapping of names to entries, with one clear message for an unknown name."""

    def __init__(self, what: str) -> None:
        self.what = what  # "centroid option", "dataset", ...: used in messages
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add an entry under `name` (a name may be registered once) and return it."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a fake entry clean up with this)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry for `name`; an unknown name raises a FatvizError listing the choices."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise FatvizError(f"Unknown {self.what} {name!r}: choose one of {', '.join(self._entries)}.") from None

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """(name, entry) pairs in registration order."""
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def lazy(module: str, name: str) -> Callable[..., Any]:
    """A function that imports `module` on its first call and calls its `name` (entries stay import-light)."""
    def call(*args: Any) -> Any:
        return getattr(import_module(module), name)(*args)
    call.__qualname__ = f"{module}.{name}"
    return call
