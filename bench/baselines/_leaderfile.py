"""The leader-file format the app writes, for the baseline contenders (standard library only).

A baseline writes one ``leader-<epoch:020d>-<sequence:012d>.json`` when its leader function starts,
with ``written_at`` taken first thing, so that the benchmark reads every implementation's
hand-over the same way: from the signal to the old leader until the new leader's first file is
*visible* in the directory (the bench's inotify observer), and until its ``written_at`` (stamped).

The write is the app's (``app/adapters/fs_storage.py``: ``write``, ``_write_locked``, ``_publish``,
``_fsync_directory``), so that the visible times compare like with like: the record goes to
``.<name>.tmp`` (created exclusively), is fsynced, hard-linked to its final name (``os.link`` fails
rather than replace an existing file), the temporary name is unlinked and the directory fsynced.
What the app does besides (the fence lock and record, the lease checks, retention) has no
counterpart here: a baseline has no fencing to pay for.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def write_leader_file(directory: Path, epoch: int, sequence: int, identity: str, written_at: float) -> None:
    """Publish one leader file durably, as the app does: temporary file, fsync, link, unlink, directory
    fsync. ``written_at`` is the caller's time, taken before any of it."""
    name = f"leader-{epoch:020d}-{sequence:012d}.json"
    record = {"epoch": epoch, "identity": identity, "sequence": sequence, "written_at": stamp(written_at)}
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    temp = directory / f".{name}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o640)
    except FileExistsError:
        os.unlink(temp)  # a leftover of a killed contender with the same name
        fd = os.open(temp, flags, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temp, directory / name, follow_symlinks=False)  # EEXIST rather than replace
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
