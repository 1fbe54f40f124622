"""Leader files in a directory on a (possibly shared) filesystem.

File names: ``leader-<epoch:020d>-<sequence:012d>.json``. The epoch (the leader node's czxid) grows
with every term and the sequence within a term, so names sort in write order. Only names that match
this pattern exactly are ours; retention and clean-up never touch anything else, never follow a
symlink and never leave the directory.

Atomic write: the record goes to ``.leader-<...>.json.tmp`` (created exclusively, not following
symlinks), is fsynced, hard-linked to its final name (which fails rather than replace an existing
file) and unlinked, and the directory is fsynced. A crash leaves
either the complete file or a temporary one, which :meth:`prepare` removes at the next start.

Fencing: every write holds the directory's fence lock (``app.adapters.fs_fence``) and refuses with
:class:`FencedError` if a newer epoch has written there, so a stale leader cannot write once a newer
one has.

Retention cost: the directory is listed once per leadership term (at its first write, under the
fence lock); each tick then only appends the new name to an in-memory index and deletes from its
head, so a tick does not rescan the directory however many files it holds.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
from dataclasses import asdict
from pathlib import Path

from app.adapters.fs_fence import FENCE_TEMP_NAME, FILE_MODE, FileFence
from app.ports.storage import FencedError, Record, StorageError

FILE_RE = re.compile(r"leader-(\d{20})-(\d{12})\.json")
TEMP_RE = re.compile(r"\.leader-(\d{20})-(\d{12})\.json\.tmp")
PROBE_NAME = ".election-probe"
PROBE_RE = re.compile(r"\.election-probe(-\d+-[0-9a-f]+)?")
DIR_MODE = 0o750


def _in_use(path: str) -> bool:
    """Whether a live process holds the lock on a temporary file (its write is in progress)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return True  # gone already, or not ours to judge: leave it
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def file_name(epoch: int, sequence: int) -> str:
    return f"leader-{epoch:020d}-{sequence:012d}.json"


class DirectoryStorage:
    """Implements :class:`app.ports.storage.Storage` on one directory."""

    def __init__(self, directory: Path, *, fence: FileFence | None = None) -> None:
        self.directory = directory
        self.fence = fence or FileFence(directory)
        self._ours: collections.deque[str] = collections.deque()
        self._needs_scan = True

    def prepare(self) -> int:
        try:
            self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            if self.directory.is_symlink() or not self.directory.is_dir():
                raise StorageError(f"{self.directory} is not a directory")
            # A name of our own: replicas in Init at the same time must not break each other's probe.
            probe = self.directory / f"{PROBE_NAME}-{os.getpid()}-{secrets.token_hex(4)}"
            os.close(self._write_locked(probe, b"probe\n"))
            probe.unlink()
            removed = 0
            for entry in os.scandir(self.directory):
                leftover = TEMP_RE.fullmatch(entry.name) or PROBE_RE.fullmatch(entry.name)
                if leftover and entry.is_file(follow_symlinks=False) and not _in_use(entry.path):
                    os.unlink(entry.path)
                    removed += 1
            # The fence's own temporary file is only ever written under the fence lock.
            if os.path.lexists(self.directory / FENCE_TEMP_NAME):
                with contextlib.suppress(StorageError), self.fence.locked(timeout=0.0):
                    (self.directory / FENCE_TEMP_NAME).unlink(missing_ok=True)
                    removed += 1
            return removed
        except OSError as exc:
            raise StorageError(f"{self.directory}: {exc.strerror or exc}") from exc

    def begin_term(self) -> None:
        # The index is built under the fence lock at the term's first write: a stale leader may
        # still publish a file between now and then, and the index must include it.
        self._needs_scan = True

    def _scan(self) -> None:
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(self.directory)
                if FILE_RE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
            )
        except OSError as exc:
            raise StorageError(f"cannot list {self.directory}: {exc.strerror or exc}") from exc
        self._ours = collections.deque(names)
        self._needs_scan = False

    def write(self, record: Record) -> str:
        name = file_name(record.epoch, record.sequence)
        temp = self.directory / f".{name}.tmp"
        data = (json.dumps(asdict(record), sort_keys=True) + "\n").encode()
        fd: int | None = None
        try:
            # The slow part (write, fsync) happens outside the fence lock, under a lock on the
            # temporary file itself, which tells Init's clean-up that the file is in use. The fence
            # lock is held only to check the fence and publish: microseconds, so that a writer
            # frozen right there (SIGSTOP) is very unlikely to be holding it.
            fd = self._write_locked(temp, data)
            with self.fence.locked() as fence:
                newest = fence.epoch()
                if newest > record.epoch:
                    raise FencedError(record.epoch, newest)
                if self._needs_scan:
                    self._scan()
                if newest < record.epoch:
                    # Before the file, not after: a crash in between must not let an older term write.
                    fence.advance(record.epoch)
                self._publish(temp, self.directory / name)
            self._fsync_directory()
        except OSError as exc:
            raise StorageError(f"cannot write {self.directory / name}: {exc.strerror or exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)  # releases the temporary file's lock
            with contextlib.suppress(OSError):  # refused or failed: leave nothing behind
                temp.unlink(missing_ok=True)
        self._ours.append(name)
        return name

    def retain(self, capacity: int) -> list[str]:
        deleted: list[str] = []
        while len(self._ours) > capacity:
            name = self._ours[0]
            try:
                os.unlink(self.directory / name)
            except FileNotFoundError:
                pass  # somebody removed it already: nothing to do, and not counted as ours deleted
            except OSError as exc:
                raise StorageError(f"cannot delete {self.directory / name}: {exc.strerror or exc}") from exc
            else:
                deleted.append(name)
            self._ours.popleft()
        return deleted

    @staticmethod
    def _publish(temp: Path, final: Path) -> None:
        """Give the complete temporary file its final name, never replacing an existing file.

        ``link`` fails with EEXIST instead of overwriting (``rename`` would silently replace a file
        another term wrote); filesystems without hard links fall back to a checked rename.
        """
        try:
            os.link(temp, final, follow_symlinks=False)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, "File exists", str(final)) from exc
            os.rename(temp, final)
            return
        os.unlink(temp)

    @staticmethod
    def _write_locked(path: Path, data: bytes) -> int:
        """Create ``path`` exclusively (no symlink followed), lock it, write and fsync ``data``;
        return the still-open, still-locked descriptor (closing it releases the lock)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, FILE_MODE)
        except FileExistsError:
            # A leftover of a crash with the same name: ours by name, so safe to replace.
            os.unlink(path)
            fd = os.open(path, flags, FILE_MODE)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
