"""The storage port: where the leader's work goes.

Guarantees asked of every implementation: a record is either fully written under its final name or
not there at all; retention deletes only files this service wrote, oldest first, never more than it
must; files that are not ours are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """The directory cannot be used or a write failed; the message names the path and the cause."""


class FencedError(StorageError):
    """A newer leadership term has written into the directory: this writer is stale and wrote nothing."""

    def __init__(self, ours: int, newer: int) -> None:
        super().__init__(f"epoch {newer} has written; ours is {ours}")
        self.ours = ours
        self.newer = newer


@dataclass(frozen=True)
class Record:
    """One unit of leader work: what a file says."""

    identity: str
    epoch: int
    sequence: int
    written_at: str


class Storage(Protocol):
    def prepare(self) -> int:
        """Make the directory usable: create it if missing, prove it writable with a probe, remove
        leftovers of interrupted writes. Return how many leftovers were removed."""
        ...

    def begin_term(self) -> None:
        """Re-read which of our files exist: called when a leadership term starts, because other
        replicas wrote while we were not leading. Later ticks rely on this index, not a rescan."""
        ...

    def write(self, record: Record) -> str:
        """Write ``record`` atomically; return the file's name. Raise :class:`FencedError` (and write
        nothing) if a newer epoch has written, :class:`StorageError` on any other failure."""
        ...

    def retain(self, capacity: int) -> list[str]:
        """Delete our oldest files until at most ``capacity`` remain; return the deleted names."""
        ...

    def progress(self) -> int | None:
        """The directory's publish counter as last recorded by any writer, read without the lock
        (a hint for standbys: has the cluster published anything lately?); None when unknown."""
        ...
