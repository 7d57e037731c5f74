"""One registry dict per kind of thing (models, datasets, attacks, analyses), as in torchvision's
_api.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from cnnlab.errors import CnnlabError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> builder mapping that refuses duplicate names and explains unknown ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """A decorator: ``@MODELS.register("resnet20")``."""

        def decorator(fn: T) -> T:
            self.add(name, fn)
            return fn

        return decorator

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item

    def get(self, name: str) -> T:
        if name not in self._items:
            known = ", ".join(sorted(self._items))
            raise CnnlabError(f"unknown {self.kind} {name!r}; choose one of: {known}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
