"""``qt`` stand-in: only the pieces a scripted module's logic touches outside of its widget."""

from __future__ import annotations


class Qt:
    WaitCursor = 3
    ArrowCursor = 0


class QSettings:
    """In-memory settings shared by every instance (like one application's QSettings)."""

    _store: dict[str, object] = {}

    def value(self, key: str, default=None):
        return self._store.get(key, default)

    def setValue(self, key: str, value) -> None:
        self._store[key] = value

    def contains(self, key: str) -> bool:
        return key in self._store

    def remove(self, key: str) -> None:
        self._store.pop(key, None)


class QIcon:
    def __init__(self, path: str = "") -> None:
        self.path = path
