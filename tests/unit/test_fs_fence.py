"""The fence: a stale term cannot write once a newer one has; the lock serialises writers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from app.adapters.fs_fence import FENCE_NAME, LOCK_NAME, FileFence
from app.adapters.fs_storage import DirectoryStorage, file_name
from app.ports.storage import FencedError, Record, StorageError

LATER = float("inf")  # a lease that never runs out


def record(epoch: int, sequence: int = 0) -> Record:
    return Record("me", epoch, sequence, "2026-01-01T00:00:00.000000Z")


def store(directory: Path) -> DirectoryStorage:
    s = DirectoryStorage(directory, fence=FileFence(directory, lock_timeout=0.2))
    s.prepare()
    s.begin_term()
    return s


def test_a_stale_term_writes_nothing_once_a_newer_term_has_written(tmp_path: Path) -> None:
    old, new = store(tmp_path), store(tmp_path)
    old.write(record(epoch=5, sequence=0), valid_until=LATER)
    new.write(record(epoch=9, sequence=0), valid_until=LATER)
    with pytest.raises(FencedError) as refused:
        old.write(record(epoch=5, sequence=1), valid_until=LATER)
    assert (refused.value.ours, refused.value.newer) == (5, 9)
    assert not (tmp_path / file_name(5, 1)).exists()
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == []


def test_a_fenced_error_is_a_storage_error(tmp_path: Path) -> None:
    assert issubclass(FencedError, StorageError)


def test_the_fence_holds_the_newest_epoch_and_is_advanced_before_the_file(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.write(record(epoch=5), valid_until=LATER)
    assert json.loads((tmp_path / FENCE_NAME).read_text()) == {"epoch": 5, "published": 1}
    s.write(record(epoch=5, sequence=1), valid_until=LATER)
    s.write(record(epoch=12), valid_until=LATER)
    assert json.loads((tmp_path / FENCE_NAME).read_text()) == {"epoch": 12, "published": 3}


def test_the_same_term_keeps_writing(tmp_path: Path) -> None:
    s = store(tmp_path)
    for sequence in range(5):
        s.write(record(epoch=7, sequence=sequence), valid_until=LATER)
    assert len(list(tmp_path.glob("leader-*.json"))) == 5


def test_a_corrupt_fence_is_rebuilt_by_the_next_write_and_still_refuses_a_stale_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old, new = store(tmp_path), store(tmp_path)
    old.write(record(epoch=5, sequence=0), valid_until=LATER)
    new.write(record(epoch=9, sequence=0), valid_until=LATER)
    new.write(record(epoch=9, sequence=1), valid_until=LATER)
    (tmp_path / FENCE_NAME).write_text("garbage")
    with caplog.at_level(logging.WARNING, logger="election.adapters.fs_storage"):
        healed = new.write(record(epoch=9, sequence=2), valid_until=LATER)
        new.write(record(epoch=9, sequence=3), valid_until=LATER)
    assert healed.order == 4  # the counter goes on from the highest order among the files
    assert json.loads((tmp_path / FENCE_NAME).read_text()) == {"epoch": 9, "published": 5}
    assert [r.message for r in caplog.records if "corrupt" in r.message] != []
    assert len(caplog.records) == 1  # warned once, at the heal
    (tmp_path / FENCE_NAME).write_text("garbage")
    with pytest.raises(FencedError) as refused:
        old.write(record(epoch=5, sequence=1), valid_until=LATER)
    assert refused.value.newer == 9
    assert not (tmp_path / file_name(5, 1)).exists()


def test_a_deleted_fence_does_not_let_a_stale_term_write(tmp_path: Path) -> None:
    old, new = store(tmp_path), store(tmp_path)
    old.write(record(epoch=5, sequence=0), valid_until=LATER)
    new.write(record(epoch=9, sequence=0), valid_until=LATER)
    (tmp_path / FENCE_NAME).unlink()
    with pytest.raises(FencedError) as refused:
        old.write(record(epoch=5, sequence=1), valid_until=LATER)
    assert (refused.value.ours, refused.value.newer) == (5, 9)
    assert not (tmp_path / file_name(5, 1)).exists()
    assert json.loads((tmp_path / FENCE_NAME).read_text())["epoch"] == 9  # rebuilt from the files


def test_a_fence_lowered_by_hand_is_raised_by_what_the_writer_itself_knows(tmp_path: Path) -> None:
    s = store(tmp_path)
    for sequence in range(3):
        s.write(record(epoch=9, sequence=sequence), valid_until=LATER)
    (tmp_path / FENCE_NAME).write_text('{"epoch": 1, "published": 0}')
    written = s.write(record(epoch=9, sequence=3), valid_until=LATER)
    assert written.order == 4  # not 1: the counter never goes back
    with pytest.raises(FencedError):
        s.write(record(epoch=5, sequence=0), valid_until=LATER)


def test_a_fence_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text('{"epoch": 1}')
    data = tmp_path / "data"
    data.mkdir()
    (data / FENCE_NAME).symlink_to(outside)
    s = store(data)
    with pytest.raises(StorageError):
        s.write(record(epoch=7), valid_until=LATER)
    assert outside.read_text() == '{"epoch": 1}'


def test_a_lock_held_by_another_process_makes_the_write_fail_not_hang(tmp_path: Path) -> None:
    s = store(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(tmp_path / LOCK_NAME)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StorageError, match="held by another writer"):
            s.write(record(epoch=7), valid_until=LATER)
        assert list(tmp_path.glob("leader-*.json")) == []
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    s.write(record(epoch=7), valid_until=LATER)  # released: writes again
    assert len(list(tmp_path.glob("leader-*.json"))) == 1


def test_init_leaves_alone_a_temporary_file_whose_write_is_in_progress(tmp_path: Path) -> None:
    # Another process (the live leader) holds the lock on its temporary file while writing it.
    in_progress = tmp_path / f".{file_name(7, 3)}.tmp"
    crashed = tmp_path / f".{file_name(5, 0)}.tmp"
    crashed.write_text("{")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(in_progress)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert DirectoryStorage(tmp_path).prepare() == 1  # the crashed one only
        assert in_progress.exists()
        assert not crashed.exists()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
    assert DirectoryStorage(tmp_path).prepare() == 1  # its writer is gone: now a leftover
    assert not in_progress.exists()
