"""A fence on a shared directory: the highest epoch that has written there, under an exclusive lock.

Ephemeral nodes alone do not make a single writer: a leader frozen past its session (a long GC
pause, a stalled VM) can wake up and write after another replica took over. The fence closes that
hole for our own writes. Every write takes the lock, reads the fence, refuses if a newer epoch has
written, advances the fence to its own epoch *before* publishing its file, and releases the lock.
So, ordered by write time, the epochs of the files never decrease and two terms never interleave.

Files, both in the data directory (hidden, so they are never mistaken for leader files):

* ``.election-fence``: ``{"epoch": N}``, replaced atomically (temporary file, fsync, rename);
* ``.election-fence.lock``: empty; holds the POSIX record lock (``fcntl.lockf``).

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
from pathlib import Path

from app.ports.storage import StorageError

FENCE_NAME = ".election-fence"
LOCK_NAME = ".election-fence.lock"
FENCE_TEMP_NAME = ".election-fence.tmp"
# Every file the service creates in file-dir (leader files, temporaries, the fence): owner and group.
FILE_MODE = 0o640


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

    def epoch(self) -> int:
        """The highest epoch that has written here (0 if none); call while holding the lock."""
        try:
            fd = os.open(self.directory / FENCE_NAME, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(f"cannot read the fence: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(4096)
        try:
            value = json.loads(raw)["epoch"]
        except (ValueError, KeyError, TypeError):
            value = None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise StorageError(f"{self.directory / FENCE_NAME} is corrupt: {raw[:80]!r}")
        return value

    def advance(self, epoch: int) -> None:
        """Record ``epoch`` as the highest; call while holding the lock, before the write it covers."""
        temp = self.directory / FENCE_TEMP_NAME
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(temp, flags, FILE_MODE)
            try:
                os.write(fd, json.dumps({"epoch": epoch}).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, self.directory / FENCE_NAME)
        except OSError as exc:
            with contextlib.suppress(OSError):  # else Init's prepare() removes it
                temp.unlink(missing_ok=True)
            raise StorageError(f"cannot advance the fence: {exc.strerror or exc}") from exc
