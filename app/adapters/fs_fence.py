"""A fence on a shared directory: the highest epoch that has written there, under an exclusive lock.

Ephemeral nodes alone do not make a single writer: a leader frozen past its session (a long GC
pause, a stalled VM) can wake up and write after another replica took over. The fence closes that
hole for our own writes. Every write takes the lock, reads the fence, refuses if a newer epoch has
written, records its own epoch and the next publish counter *before* publishing its file, and
releases the lock. So, in publish order, the epochs of the files never decrease and two terms never
interleave; and the publish counter numbers the files in the order they became visible, whatever
the writers' clocks say.

Files, both in the data directory (hidden, so they are never mistaken for leader files):

* ``.election-fence``: ``{"epoch": N, "published": K}`` (K: how many files have been published
  here, the last one carrying ``"order": K``), replaced atomically (temporary file, fsync, rename).
  A record written before the counter existed is ``{"epoch": N}``: its counter is unknown;
* ``.election-fence.lock``: empty; holds the POSIX record lock (``fcntl.lockf``).

This module only reads and writes the record; what a missing or corrupt record means (the floor
comes from the leader files then) is decided by ``app.adapters.fs_storage``.

On NFS: ``lockf`` locks go through the NFS lock manager (NLM on v3, built into v4), and the Linux
client revalidates its cache when it takes a lock (close-to-open consistency), so a reader under the
lock sees the last fence written under it. Mounts with ``nolock`` (or ``local_lock=all``), or
servers without a lock daemon, give each client a private lock and break the guarantee.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.ports.storage import StorageError

FENCE_NAME = ".election-fence"
LOCK_NAME = ".election-fence.lock"
FENCE_TEMP_NAME = ".election-fence.tmp"
# Every file the service creates in file-dir (leader files, temporaries, the fence): owner and group.
FILE_MODE = 0o640


@dataclass(frozen=True)
class FenceState:
    """What the record says: the highest epoch that has written, and the publish counter (None when
    the record predates the counter)."""

    epoch: int
    published: int | None


class CorruptFenceError(StorageError):
    """The record exists but does not parse; ``raw`` is the start of its content."""

    def __init__(self, path: Path, raw: bytes) -> None:
        super().__init__(f"{path} is corrupt: {raw[:80]!r}")
        self.raw = raw


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_record(raw: bytes) -> FenceState | None:
    """The record's content as a FenceState; None if it does not parse."""
    try:
        content = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(content, dict):
        return None
    epoch = _count(content.get("epoch"))
    published = _count(content.get("published"))
    if epoch is None or ("published" in content and published is None):
        return None
    return FenceState(epoch, published)


class FileFence:
    def __init__(
        self,
        directory: Path,
        *,
        lock_timeout: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout
        self._sleep = sleep
        self._monotonic = monotonic

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[FileFence]:
        """Hold the directory's fence lock; raise StorageError if it stays busy past the timeout.

        The lock is polled rather than waited on, so that a holder frozen forever (SIGSTOP in the
        middle of a write) costs us a failed write, not a hung state machine.
        """
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.directory / LOCK_NAME, flags, FILE_MODE)
        except OSError as exc:
            raise StorageError(f"cannot open fence lock in {self.directory}: {exc.strerror or exc}") from exc
        try:
            wait = self.lock_timeout if timeout is None else timeout
            deadline = self._monotonic() + wait
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise StorageError(f"cannot lock the fence: {exc.strerror or exc}") from exc
                    if self._monotonic() >= deadline:
                        held = f"held by another writer for {wait:g}s"
                        raise StorageError(f"fence lock in {self.directory} {held}") from exc
                    self._sleep(0.005)
            yield self
        finally:
            os.close(fd)  # closing releases the lock

    def _raw(self) -> bytes | None:
        try:
            fd = os.open(self.directory / FENCE_NAME, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(4096)

    def read(self) -> FenceState | None:
        """The record (None if there is none); call while holding the lock.

        Raises :class:`CorruptFenceError` if it does not parse, StorageError if it cannot be read
        (a symlink in its place is not followed: that is an error too, not a record).
        """
        try:
            raw = self._raw()
        except OSError as exc:
            raise StorageError(f"cannot read the fence: {exc.strerror or exc}") from exc
        if raw is None:
            return None
        state = parse_record(raw)
        if state is None:
            raise CorruptFenceError(self.directory / FENCE_NAME, raw)
        return state

    def peek(self) -> FenceState | None:
        """The record read *without* the lock, as a hint; None if missing, unreadable or corrupt."""
        try:
            raw = self._raw()
        except OSError:
            return None
        return None if raw is None else parse_record(raw)

    def store(self, state: FenceState) -> None:
        """Replace the record atomically (temporary file, fsync, rename); call while holding the
        lock, before the publish it covers."""
        content: dict[str, int] = {"epoch": state.epoch}
        if state.published is not None:
            content["published"] = state.published
        temp = self.directory / FENCE_TEMP_NAME
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(temp, flags, FILE_MODE)
            try:
                os.write(fd, json.dumps(content).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, self.directory / FENCE_NAME)
        except OSError as exc:
            with contextlib.suppress(OSError):  # else Init's prepare() removes it
                temp.unlink(missing_ok=True)
            raise StorageError(f"cannot record the fence: {exc.strerror or exc}") from exc
