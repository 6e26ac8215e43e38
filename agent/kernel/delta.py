"""Desired vs. dataplane state of one kernel table, and the difference between them.

Felix's `deltatracker` in a few lines: the table records what it wants (`desired`) and what it
last saw or wrote (`dataplane`); the pending updates and deletions are derived and kept
incrementally, so an apply touches only what differs and a no-op apply costs nothing. After a
dump, `replace_dataplane` recomputes the pending sets from scratch; that is how drift (someone
else changing the kernel) turns into pending work.

Keys are whatever identifies an entry in the kernel (a route's prefix, a neighbour's IP and
device); values are frozen dataclasses compared with `==`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["DeltaTracker"]

K = TypeVar("K")
V = TypeVar("V")


class DeltaTracker(Generic[K, V]):
    """Tracks desired and dataplane views and the pending changes between them.

    Invariants (checked by the unit tests):
    - `pending_updates` = {k: desired[k] for k in desired if dataplane.get(k) != desired[k]}
    - `pending_deletions` = {k: dataplane[k] for k in dataplane if k not in desired}
    """

    def __init__(self) -> None:
        self._desired: dict[K, V] = {}
        self._dataplane: dict[K, V] = {}
        self._updates: dict[K, V] = {}
        self._deletions: dict[K, V] = {}

    # -- desired side -------------------------------------------------------------------------

    def set_desired(self, key: K, value: V) -> None:
        self._desired[key] = value
        self._deletions.pop(key, None)
        if key in self._dataplane and self._dataplane[key] == value:
            self._updates.pop(key, None)
        else:
            self._updates[key] = value

    def delete_desired(self, key: K) -> None:
        self._desired.pop(key, None)
        self._updates.pop(key, None)
        if key in self._dataplane:
            self._deletions[key] = self._dataplane[key]

    def replace_all_desired(self, desired: Mapping[K, V]) -> None:
        """Swap in a whole new desired set (start-up, or a manager that recomputes everything)."""
        for key in [k for k in self._desired if k not in desired]:
            self.delete_desired(key)
        for key, value in desired.items():
            if key not in self._desired or self._desired[key] != value:
                self.set_desired(key, value)

    def get_desired(self, key: K) -> V | None:
        return self._desired.get(key)

    def desired_items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._desired.items()))

    @property
    def desired_count(self) -> int:
        return len(self._desired)

    # -- dataplane side -----------------------------------------------------------------------

    def replace_dataplane(self, dataplane: Mapping[K, V]) -> None:
        """Take a fresh dump as the truth and recompute what is pending."""
        self._dataplane = dict(dataplane)
        self._updates = {k: v for k, v in self._desired.items()
                         if k not in self._dataplane or self._dataplane[k] != v}
        self._deletions = {k: v for k, v in self._dataplane.items() if k not in self._desired}

    def set_dataplane(self, key: K, value: V) -> None:
        """Record one entry seen in (or written to) the kernel."""
        self._dataplane[key] = value
        if key in self._desired:
            desired = self._desired[key]
            self._deletions.pop(key, None)
            if desired == value:
                self._updates.pop(key, None)
            else:
                self._updates[key] = desired
        else:
            self._deletions[key] = value

    def delete_dataplane(self, key: K) -> None:
        """Record that an entry is gone from the kernel."""
        self._dataplane.pop(key, None)
        self._deletions.pop(key, None)
        if key in self._desired:
            self._updates[key] = self._desired[key]

    def get_dataplane(self, key: K) -> V | None:
        return self._dataplane.get(key)

    def dataplane_items(self) -> Iterator[tuple[K, V]]:
        return iter(list(self._dataplane.items()))

    @property
    def dataplane_count(self) -> int:
        return len(self._dataplane)

    # -- pending work -------------------------------------------------------------------------

    def pending_updates(self) -> list[tuple[K, V]]:
        """A snapshot, so the caller may record results while iterating."""
        return list(self._updates.items())

    def pending_deletions(self) -> list[tuple[K, V]]:
        return list(self._deletions.items())

    @property
    def in_sync(self) -> bool:
        return not self._updates and not self._deletions

    def apply_success(self, updated: Iterable[K] = (), deleted: Iterable[K] = ()) -> None:
        """The kernel accepted these updates/deletions: the dataplane view now matches."""
        for key in updated:
            if key in self._desired:
                self._dataplane[key] = self._desired[key]
                self._updates.pop(key, None)
        for key in deleted:
            self._dataplane.pop(key, None)
            self._deletions.pop(key, None)
            if key in self._desired:
                self._updates[key] = self._desired[key]
