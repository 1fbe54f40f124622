"""Leader files in a directory on a (possibly shared) filesystem.

File names: ``leader-<epoch:020d>-<sequence:012d>.json``. The epoch (the leader node's czxid) grows
with every term and the sequence within a term, so names sort in write order. Only names that match
this pattern exactly are ours; retention and clean-up never touch anything else, never follow a
symlink and never leave the directory.

Content: the :class:`Record`'s fields plus ``order``, the directory's publish counter given to the
file (see Publish order below).

Atomic write: the record goes to ``.leader-<...>.json.tmp`` (created exclusively, not following
symlinks), is fsynced, hard-linked to its final name (which fails rather than replace an existing
file) and unlinked, and the directory is fsynced. A crash leaves either the complete file or a
temporary one, which :meth:`prepare` removes at the next start. Once the link has succeeded the file
is written: a failure of the directory fsync after it is reported as ``Written(synced=False)``.

Fencing and the lease: every publish holds the directory's fence lock (``app.adapters.fs_fence``)
and, under it, refuses with :class:`FencedError` if a newer epoch has written there and with
:class:`LeaseExpiredError` if the caller's lease (``valid_until`` on our monotonic clock) has run
out, checked before the fence record is written and again just before the file is linked (a
counter recorded for a file that is not published is given back); either way nothing is
published. Retention deletes under the same lock and the same two checks.

The fence's floor: the highest epoch that has written is the higher of the fence record and the
highest epoch among the leader files present, so deleting or corrupting ``.election-fence`` by hand
does not reopen the hole. The directory is not listed on every write for that (it may hold 100k
files and a tick stays O(1)): it is listed when the record is missing, corrupt or predates the
publish counter, and the record is otherwise taken together (the max) with what this writer's own
index and writes know. A corrupt or missing record is rebuilt at once under the lock from the files
(highest epoch; highest ``order`` among the newest files), with one warning; that is not a failed
write. A record lowered by hand while files of a higher epoch exist but this writer has not seen
them is not detected (nothing short of a listing per write could).

Publish order: the fence record also counts the files published in the directory (``"published":
K``); every publish advances it under the lock, before the link (a link that fails gives it back),
and the file carries its value as ``order``. So ``order`` is the order in which files became
visible, with no clock involved (``election audit`` relies on it). The content is written and
fsynced *before* the lock with a predicted counter (the last one this writer recorded + 1; at a
term's first write, the record read without the lock + 1), so the lock is held only for the checks,
one record write and the link; if the record says otherwise under the lock (another writer published
meanwhile: rare), the temporary file is rewritten under the lock.

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
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.adapters.fs_fence import FENCE_TEMP_NAME, FILE_MODE, CorruptFenceError, FenceState, FileFence
from app.ports.storage import FencedError, LeaseExpiredError, Record, StorageError, Written

log = logging.getLogger("election.adapters.fs_storage")

FILE_RE = re.compile(r"leader-(\d{20})-(\d{12})\.json")
TEMP_RE = re.compile(r"\.leader-(\d{20})-(\d{12})\.json\.tmp")
PROBE_NAME = ".election-probe"
PROBE_RE = re.compile(r"\.election-probe(-\d+-[0-9a-f]+)?")
DIR_MODE = 0o750
# How many of the newest files a rebuilt fence reads for the highest ``order``: names sort in publish
# order while the fence works, so the newest holds the highest; the rest is a margin for gaps.
RECOVER_FILES = 64


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


def file_content(record: Record, order: int) -> bytes:
    """What a leader file holds: the record's fields and its publish counter, as one JSON line."""
    return (json.dumps({**asdict(record), "order": order}, sort_keys=True) + "\n").encode()


def parse_file_name(name: str) -> tuple[int, int] | None:
    """``(epoch, sequence)`` of a leader file's name; None for any other name (not ours)."""
    match = FILE_RE.fullmatch(name)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class FileContent:
    """What a leader file says, checked field by field (see :func:`parse_file_content`)."""

    identity: str
    epoch: int
    sequence: int
    written_at: str  # as written (RFC 3339)
    when: datetime  # ``written_at`` parsed; always time-zone aware
    order: int | None  # the publish counter; None in files written before it existed


def parse_file_content(data: bytes) -> FileContent:
    """Parse a leader file's bytes: the one definition of the format's reading side.

    Guarantees a JSON object with ``identity`` (text), ``epoch`` and ``sequence`` (integers, not
    booleans), ``written_at`` (RFC 3339 with a time zone) and, if present, ``order`` (a positive
    integer). Raises ``ValueError`` with a one-line reason otherwise. Does not compare the content
    with the file's name (:func:`parse_file_name`): the caller decides what a mismatch means.
    """
    content: Any = json.loads(data)
    fields = {"identity": str, "epoch": int, "sequence": int, "written_at": str}
    if not isinstance(content, dict) or any(
        not isinstance(content.get(key), kind) or isinstance(content.get(key), bool)
        for key, kind in fields.items()
    ):
        raise ValueError(f"missing or mistyped fields: {content!r:.120}")
    try:
        when = datetime.fromisoformat(content["written_at"].replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"written_at {content['written_at']!r}") from None
    if when.tzinfo is None:
        raise ValueError("written_at has no time zone")
    # Absent in files written before the publish counter existed; present, it must be a count (a
    # null is not "absent": it would make a whole directory fall back to written_at order).
    order = content.get("order")
    if "order" in content and (not isinstance(order, int) or isinstance(order, bool) or order < 1):
        raise ValueError(f"order {order!r}")
    return FileContent(
        content["identity"], content["epoch"], content["sequence"], content["written_at"], when, order
    )


def _epoch_of(name: str) -> int:
    match = FILE_RE.fullmatch(name)
    assert match is not None  # only called for our names
    return int(match.group(1))


class DirectoryStorage:
    """Implements :class:`app.ports.storage.Storage` on one directory."""

    def __init__(
        self,
        directory: Path,
        *,
        fence: FileFence | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.fence = fence or FileFence(directory)
        self._monotonic = monotonic
        self._ours: collections.deque[str] = collections.deque()
        self._needs_scan = True
        self._epoch_seen = 0  # highest epoch this writer has seen written (its index, its own writes)
        self._recorded: int | None = None  # the publish counter this writer last recorded

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

    def progress(self) -> int | None:
        state = self.fence.peek()
        return None if state is None else state.published

    def _list(self) -> list[str]:
        """Our names in the directory, sorted (= publish order while the fence works)."""
        try:
            return sorted(
                entry.name
                for entry in os.scandir(self.directory)
                if FILE_RE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
            )
        except OSError as exc:
            raise StorageError(f"cannot list {self.directory}: {exc.strerror or exc}") from exc

    def _index(self, names: list[str]) -> None:
        self._ours = collections.deque(names)
        self._needs_scan = False
        if names:
            self._epoch_seen = max(self._epoch_seen, _epoch_of(names[-1]))

    def _highest_order(self, names: Iterable[str]) -> int:
        highest = 0
        for name in names:
            try:
                with (self.directory / name).open("rb") as handle:
                    value = json.loads(handle.read(4096)).get("order")
            except (OSError, ValueError, AttributeError):
                continue  # gone meanwhile, or not readable: it cannot raise the floor
            if isinstance(value, int) and not isinstance(value, bool):
                highest = max(highest, value)
        return highest

    def _floor(self, fence: FileFence) -> FenceState:
        """The fence as it stands, under the lock: the highest epoch that has written and the last
        publish counter, each the max of the record and what this writer knows. Lists the directory
        (and rebuilds the record) only when the record is missing, corrupt or has no counter."""
        corrupt: CorruptFenceError | None = None
        try:
            state = fence.read()
        except CorruptFenceError as exc:
            state, corrupt = None, exc
        if state is not None and state.published is not None:
            return FenceState(max(state.epoch, self._epoch_seen), max(state.published, self._recorded or 0))
        names = self._list()
        if self._needs_scan:
            self._index(names)  # the term's one listing: do not list twice
        files_epoch = _epoch_of(names[-1]) if names else 0
        rebuilt = FenceState(
            max(state.epoch if state is not None else 0, files_epoch, self._epoch_seen),
            max(self._highest_order(names[-RECOVER_FILES:]), self._recorded or 0),
        )
        if state is None and not names and corrupt is None:
            return rebuilt  # a new directory: nothing to rebuild
        if corrupt is not None:
            log.warning(
                "%s; rebuilt it from the leader files: epoch %d, published %d",
                corrupt,
                rebuilt.epoch,
                rebuilt.published,
                extra={"event": "fence_rebuilt", "epoch": rebuilt.epoch},
            )
        elif state is None:
            log.warning(
                "the fence record %s is missing; rebuilt it from the leader files: epoch %d, published %d",
                fence.directory / ".election-fence",
                rebuilt.epoch,
                rebuilt.published,
                extra={"event": "fence_rebuilt", "epoch": rebuilt.epoch},
            )
        # Now, not with the next publish: a refused write must not leave it to warn again.
        fence.store(rebuilt)
        return rebuilt

    def _predict(self) -> int:
        """The counter this write will most likely get, to write the content before the lock."""
        if self._recorded is not None and not self._needs_scan:
            return self._recorded + 1
        hint = self.fence.peek()  # a term's first write: others published since our last one
        known = hint.published if hint is not None and hint.published is not None else 0
        return max(known, self._recorded or 0) + 1

    def write(self, record: Record, *, valid_until: float) -> Written:
        name = file_name(record.epoch, record.sequence)
        temp = self.directory / f".{name}.tmp"
        predicted = self._predict()
        fd: int | None = None
        try:
            # The slow part (write, fsync) happens outside the fence lock, under a lock on the
            # temporary file itself, which tells Init's clean-up that the file is in use. The fence
            # lock is held only to check, record and publish, so that a writer frozen right there
            # (SIGSTOP) is very unlikely to be holding it.
            fd = self._write_locked(temp, file_content(record, predicted))
            with self.fence.locked() as fence:
                floor = self._floor(fence)
                if self._needs_scan:
                    self._index(self._list())  # the term's listing, unless _floor just did it
                newest = max(floor.epoch, self._epoch_seen)
                if newest > record.epoch:
                    raise FencedError(record.epoch, newest)
                assert floor.published is not None  # _floor always knows the counter
                order = floor.published + 1
                if order != predicted:
                    self._fill(fd, file_content(record, order))  # somebody published meanwhile
                if self._monotonic() >= valid_until:
                    raise LeaseExpiredError(
                        f"lease ran out before {name} could be published; nothing was written"
                    )
                # Before the file, not after: a crash in between must not let an older term write,
                # and a counter given twice would make two files claim the same place.
                fence.store(FenceState(record.epoch, order))
                self._recorded = order
                self._epoch_seen = max(self._epoch_seen, record.epoch)
                try:
                    # Again: the record's fsync may have outlasted the lease (a stalled disk).
                    if self._monotonic() >= valid_until:
                        raise LeaseExpiredError(
                            f"lease ran out while the fence was recorded for {name}; nothing was published"
                        )
                    self._publish(temp, self.directory / name)
                except (OSError, LeaseExpiredError):
                    # Nothing was published: give the counter back (the epoch stays recorded), or
                    # the standbys, which judge by it, would take every failed link for progress.
                    with contextlib.suppress(OSError, StorageError):
                        fence.store(FenceState(record.epoch, floor.published))
                        self._recorded = floor.published
                    raise
        except OSError as exc:
            raise StorageError(f"cannot write {self.directory / name}: {exc.strerror or exc}") from exc
        finally:
            if fd is not None:
                os.close(fd)  # releases the temporary file's lock
            with contextlib.suppress(OSError):  # refused, failed or linked: leave nothing behind
                temp.unlink(missing_ok=True)
        self._ours.append(name)
        try:
            self._fsync_directory()
        except OSError as exc:
            # Published: others can read it now, and a retry would only hit EEXIST. Only its
            # durability across a crash of the file server is in doubt; the caller counts that.
            log.warning(
                "published %s but could not fsync %s: %s",
                name,
                self.directory,
                exc.strerror or exc,
                extra={"event": "directory_fsync_failed", "file": name},
            )
            return Written(name, order, synced=False)
        return Written(name, order, synced=True)

    def retain(self, capacity: int, *, epoch: int, valid_until: float) -> list[str]:
        """Delete our oldest files beyond ``capacity``, under the fence lock and only while this
        writer's term is the newest and its lease holds: a stale leader deletes nothing. If the lease
        runs out midway the rest waits for the next tick. Takes no lock when nothing is to go."""
        if len(self._ours) <= capacity:
            return []
        deleted: list[str] = []
        with self.fence.locked() as fence:
            floor = self._floor(fence)
            if floor.epoch > epoch:
                raise FencedError(epoch, floor.epoch)
            if self._monotonic() >= valid_until:
                raise LeaseExpiredError("lease ran out before retention; nothing was deleted")
            while len(self._ours) > capacity and self._monotonic() < valid_until:
                name = self._ours[0]
                try:
                    os.unlink(self.directory / name)
                except FileNotFoundError:
                    pass  # somebody removed it already: nothing to do, and not counted as ours deleted
                except OSError as exc:
                    raise StorageError(
                        f"cannot delete {self.directory / name}: {exc.strerror or exc}"
                    ) from exc
                else:
                    deleted.append(name)
                self._ours.popleft()
        return deleted

    @staticmethod
    def _publish(temp: Path, final: Path) -> None:
        """Give the complete temporary file its final name, never replacing an existing file.

        ``link`` fails with EEXIST instead of overwriting (``rename`` would silently replace a file
        another term wrote); filesystems without hard links fall back to a checked rename. The
        temporary name is left for the caller to remove: once the link exists, the file is
        published whatever happens to the temporary.
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

    @staticmethod
    def _fill(fd: int, data: bytes) -> None:
        """Make ``data`` the whole content of the open file ``fd``, durably."""
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)

    @classmethod
    def _write_locked(cls, path: Path, data: bytes) -> int:
        """Create ``path`` exclusively (no symlink followed), lock it, write and fsync ``data``;
        return the still-open, still-locked descriptor (closing it releases the lock)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, FILE_MODE)
        except FileExistsError:
            # A leftover of a crash with the same name: ours by name, so safe to replace.
            os.unlink(path)
            fd = os.open(path, flags, FILE_MODE)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            cls._fill(fd, data)
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
