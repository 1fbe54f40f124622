"""DirectoryStorage on real temporary directories: preparation, atomic writes, retention of our own files."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.adapters.fs_storage import DirectoryStorage, file_name
from app.ports.storage import FencedError, LeaseExpiredError, Record, StorageError

WHEN = "2026-01-01T00:00:00.000000Z"
LATER = float("inf")  # a lease that never runs out


def record(epoch: int = 7, sequence: int = 0, identity: str = "me") -> Record:
    return Record(identity=identity, epoch=epoch, sequence=sequence, written_at=WHEN)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "files"
    path.mkdir()
    return path


@pytest.fixture
def storage(directory: Path) -> DirectoryStorage:
    store = DirectoryStorage(directory)
    store.prepare()
    store.begin_term()
    return store


FENCE_FILES = {".election-fence", ".election-fence.lock"}


def names(directory: Path) -> list[str]:
    """What the directory holds besides the fence's own two files."""
    return sorted(set(os.listdir(directory)) - FENCE_FILES)


def plant(directory: Path, epoch: int, sequence: int, text: str = "theirs\n") -> str:
    """A file written by another replica (or an earlier run), straight into the directory."""
    name = file_name(epoch, sequence)
    (directory / name).write_text(text)
    return name


# -- prepare ---------------------------------------------------------------------------------


def test_prepare_creates_a_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    DirectoryStorage(target).prepare()
    assert target.is_dir()


def test_prepare_leaves_no_probe_behind(directory: Path) -> None:
    DirectoryStorage(directory).prepare()
    assert names(directory) == []


def test_prepare_replaces_a_probe_left_by_a_crash(directory: Path) -> None:
    (directory / ".election-probe").write_text("stale")
    DirectoryStorage(directory).prepare()
    assert names(directory) == []


def test_prepare_removes_leftovers_of_interrupted_writes_and_counts_them(directory: Path) -> None:
    (directory / f".{file_name(3, 1)}.tmp").write_text('{"identity": "me", "ep')  # a crash mid-write
    (directory / f".{file_name(3, 2)}.tmp").write_text("")
    assert DirectoryStorage(directory).prepare() == 2
    assert names(directory) == []


def test_prepare_keeps_other_hidden_files(directory: Path) -> None:
    others = [".keep", ".leader-notes.tmp", ".leader-1.json.tmp", f".{file_name(3, 1)}.tmp.bak", ".nfs0001"]
    for name in others:
        (directory / name).write_text("x")
    assert DirectoryStorage(directory).prepare() == 0
    assert names(directory) == sorted(others)


def test_prepare_keeps_complete_files(directory: Path) -> None:
    ours = plant(directory, 3, 1)
    DirectoryStorage(directory).prepare()
    assert names(directory) == [ours]


def test_prepare_does_not_remove_a_directory_named_like_a_leftover(directory: Path) -> None:
    (directory / f".{file_name(3, 1)}.tmp").mkdir()
    assert DirectoryStorage(directory).prepare() == 0
    assert (directory / f".{file_name(3, 1)}.tmp").is_dir()


def test_prepare_under_a_regular_file_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match=str(blocker)):
        DirectoryStorage(blocker / "dir").prepare()


def test_prepare_on_a_path_that_is_a_file_raises_storage_error(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StorageError):
        DirectoryStorage(a_file).prepare()


def test_prepare_raises_storage_error_when_the_probe_cannot_be_written(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def read_only_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", read_only_open)
    with pytest.raises(StorageError, match="Read-only file system"):
        DirectoryStorage(directory).prepare()


# -- write -----------------------------------------------------------------------------------


def test_write_uses_the_epoch_and_sequence_in_the_name(storage: DirectoryStorage, directory: Path) -> None:
    name = storage.write(record(epoch=4294967311, sequence=12), valid_until=LATER).name
    assert name == "leader-00000000004294967311-000000000012.json"
    assert names(directory) == [name]


def test_written_file_holds_the_record_as_json(storage: DirectoryStorage, directory: Path) -> None:
    name = storage.write(record(epoch=9, sequence=3, identity="replica-2"), valid_until=LATER).name
    content = json.loads((directory / name).read_text())
    assert content == {"identity": "replica-2", "epoch": 9, "sequence": 3, "written_at": WHEN, "order": 1}


def test_write_leaves_no_temporary_file(storage: DirectoryStorage, directory: Path) -> None:
    storage.write(record(), valid_until=LATER)
    assert [n for n in names(directory) if n.startswith(".")] == []


def test_write_never_overwrites_an_existing_file(storage: DirectoryStorage, directory: Path) -> None:
    name = storage.write(record(identity="first"), valid_until=LATER).name
    with pytest.raises(StorageError, match=name):
        storage.write(record(identity="second"), valid_until=LATER)
    assert json.loads((directory / name).read_text())["identity"] == "first"


def test_a_refused_write_leaves_no_temporary_file(storage: DirectoryStorage, directory: Path) -> None:
    name = storage.write(record(), valid_until=LATER).name
    with pytest.raises(StorageError):
        storage.write(record(), valid_until=LATER)
    assert names(directory) == [name]


def test_write_replaces_a_stale_temporary_file_of_the_same_name(
    storage: DirectoryStorage, directory: Path
) -> None:
    (directory / f".{file_name(7, 0)}.tmp").write_text("half")
    name = storage.write(record(), valid_until=LATER).name
    assert names(directory) == [name]
    assert json.loads((directory / name).read_text())["epoch"] == 7


def test_write_does_not_follow_a_symlink_at_its_temporary_name(
    storage: DirectoryStorage, directory: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (directory / f".{file_name(7, 0)}.tmp").symlink_to(outside)
    storage.write(record(), valid_until=LATER)
    assert outside.read_text() == "precious"


def test_write_refuses_a_symlink_at_its_final_name_and_leaves_its_target_alone(
    storage: DirectoryStorage, directory: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (directory / file_name(7, 0)).symlink_to(outside)
    with pytest.raises(StorageError):
        storage.write(record(), valid_until=LATER)
    assert outside.read_text() == "precious"


def test_a_failing_disk_raises_storage_error_and_leaves_nothing(
    storage: DirectoryStorage, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(_fd: int, _data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StorageError, match="No space left on device"):
        storage.write(record(), valid_until=LATER)
    assert names(directory) == []


def test_writing_into_a_removed_directory_raises_storage_error(
    storage: DirectoryStorage, directory: Path
) -> None:
    shutil.rmtree(directory)  # with the fence lock file that prepare() made
    with pytest.raises(StorageError):
        storage.write(record(), valid_until=LATER)


def test_names_sort_in_write_order_across_epochs(storage: DirectoryStorage, directory: Path) -> None:
    order = [(5, 9), (5, 10), (5, 11), (12, 0), (12, 1), (100, 0), (4294967311, 0)]
    written = [storage.write(record(epoch=e, sequence=s), valid_until=LATER).name for e, s in order]
    assert names(directory) == written


# -- retention -------------------------------------------------------------------------------


def test_retention_deletes_the_oldest_beyond_capacity(storage: DirectoryStorage, directory: Path) -> None:
    written = [storage.write(record(sequence=s), valid_until=LATER).name for s in range(5)]
    assert storage.retain(3, epoch=7, valid_until=LATER) == written[:2]
    assert names(directory) == written[2:]


def test_retention_at_capacity_deletes_nothing(storage: DirectoryStorage, directory: Path) -> None:
    written = [storage.write(record(sequence=s), valid_until=LATER).name for s in range(3)]
    assert storage.retain(3, epoch=7, valid_until=LATER) == []
    assert names(directory) == written


def test_retention_after_each_write_keeps_exactly_capacity(
    storage: DirectoryStorage, directory: Path
) -> None:
    deleted: list[str] = []
    for sequence in range(6):
        storage.write(record(sequence=sequence), valid_until=LATER)
        deleted += storage.retain(2, epoch=7, valid_until=LATER)
    assert names(directory) == [file_name(7, 4), file_name(7, 5)]
    assert deleted == [file_name(7, s) for s in range(4)]


FOREIGN = [
    "notes.txt",
    "leader-1.json",
    "leader-x.json",
    "LEADER-00000000000000000001-000000000000.json",
    "leader-00000000000000000001-000000000000.json.bak",
    "leader-0000000000000000001-000000000000.json",  # 19 digits
    "aleader-00000000000000000001-000000000000.json",
]


def test_retention_never_touches_foreign_files(directory: Path) -> None:
    for name in FOREIGN:
        (directory / name).write_text("not ours")
    store = DirectoryStorage(directory)
    store.prepare()
    store.begin_term()
    written = [store.write(record(sequence=s), valid_until=LATER).name for s in range(3)]
    store.retain(1, epoch=7, valid_until=LATER)
    assert names(directory) == sorted([*FOREIGN, written[-1]])


def test_foreign_files_do_not_count_toward_capacity(directory: Path) -> None:
    for name in FOREIGN:
        (directory / name).write_text("not ours")
    store = DirectoryStorage(directory)
    store.begin_term()
    store.write(record(sequence=0), valid_until=LATER)
    assert store.retain(1, epoch=7, valid_until=LATER) == []


def test_retention_does_not_delete_through_a_symlink_named_like_ours(directory: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    link = directory / file_name(1, 0)  # the oldest name: first in line if it were counted as ours
    link.symlink_to(outside)
    store = DirectoryStorage(directory)
    store.begin_term()
    store.write(record(epoch=7, sequence=0), valid_until=LATER)
    store.write(record(epoch=7, sequence=1), valid_until=LATER)
    assert store.retain(1, epoch=7, valid_until=LATER) == [file_name(7, 0)]
    assert link.is_symlink()
    assert outside.read_text() == "precious"


def test_retention_skips_a_directory_named_like_ours(directory: Path) -> None:
    (directory / file_name(1, 0)).mkdir()
    store = DirectoryStorage(directory)
    store.begin_term()
    store.write(record(epoch=7, sequence=0), valid_until=LATER)
    assert store.retain(1, epoch=7, valid_until=LATER) == []
    assert (directory / file_name(1, 0)).is_dir()


def test_begin_term_counts_files_another_replica_wrote(directory: Path) -> None:
    theirs = [plant(directory, 3, s) for s in range(3)]
    store = DirectoryStorage(directory)
    store.begin_term()
    mine = store.write(record(epoch=7, sequence=0), valid_until=LATER).name
    assert store.retain(2, epoch=7, valid_until=LATER) == theirs[:2]
    assert names(directory) == [theirs[2], mine]


def test_files_published_between_begin_term_and_the_first_write_are_indexed(directory: Path) -> None:
    # A stale leader may publish one last file after the new term began but before its first
    # write; the index is built under the fence lock at that first write, so it counts.
    store = DirectoryStorage(directory)
    store.begin_term()
    late = plant(directory, 3, 0)
    store.write(record(epoch=7, sequence=0), valid_until=LATER)
    assert store.retain(1, epoch=7, valid_until=LATER) == [late]


def test_files_written_by_others_after_the_first_write_are_left_to_the_next_term(directory: Path) -> None:
    store = DirectoryStorage(directory)
    store.begin_term()
    store.write(record(epoch=7, sequence=0), valid_until=LATER)
    later = plant(directory, 3, 0)
    store.write(record(epoch=7, sequence=1), valid_until=LATER)
    assert store.retain(2, epoch=7, valid_until=LATER) == []
    store.begin_term()
    store.write(record(epoch=7, sequence=2), valid_until=LATER)
    assert store.retain(2, epoch=7, valid_until=LATER) == [later, file_name(7, 0)]


def test_retention_does_not_count_a_file_somebody_else_removed(
    storage: DirectoryStorage, directory: Path
) -> None:
    first = storage.write(record(sequence=0), valid_until=LATER).name
    second = storage.write(record(sequence=1), valid_until=LATER).name
    third = storage.write(record(sequence=2), valid_until=LATER).name
    (directory / first).unlink()
    assert storage.retain(1, epoch=7, valid_until=LATER) == [second]
    assert names(directory) == [third]


def test_retention_raises_storage_error_when_a_delete_fails(
    storage: DirectoryStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.write(record(sequence=0), valid_until=LATER)
    storage.write(record(sequence=1), valid_until=LATER)

    def refuse(path: Any, *args: Any, **kw: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(StorageError, match="Permission denied"):
        storage.retain(1, epoch=7, valid_until=LATER)


def test_a_tick_does_not_rescan_the_directory(
    storage: DirectoryStorage, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for sequence in range(3):
        plant(directory, 3, sequence)
    storage.begin_term()
    first = storage.write(
        record(epoch=7, sequence=0), valid_until=LATER
    ).name  # the term's one listing happens here

    def no_scan(*_args: Any) -> Any:
        raise AssertionError("the directory was listed during a tick")

    monkeypatch.setattr(os, "scandir", no_scan)
    monkeypatch.setattr(os, "listdir", no_scan)
    second = storage.write(record(epoch=7, sequence=1), valid_until=LATER).name
    assert storage.retain(2, epoch=7, valid_until=LATER) == [
        file_name(3, 0),
        file_name(3, 1),
        file_name(3, 2),
    ]
    monkeypatch.undo()
    assert names(directory) == [first, second]


# -- a crash mid-write -----------------------------------------------------------------------


def test_a_crash_mid_write_is_cleaned_at_next_prepare_and_the_write_can_be_redone(directory: Path) -> None:
    crashed = directory / f".{file_name(7, 0)}.tmp"
    crashed.write_text('{"identity": "me", "epo')
    store = DirectoryStorage(directory)
    assert store.prepare() == 1
    store.begin_term()
    name = store.write(record(epoch=7, sequence=0), valid_until=LATER).name
    assert names(directory) == [name]
    assert json.loads((directory / name).read_text())["sequence"] == 0


# -- the lease -------------------------------------------------------------------------------


class Jumps:
    """An injected monotonic clock that jumps forward when asked (a slow fsync, a long lock wait)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def leading_with_one_file(directory: Path) -> tuple[DirectoryStorage, Jumps]:
    """A store on a :class:`Jumps` clock, in a term that has written ``file_name(7, 0)`` in time."""
    clock = Jumps()
    store = DirectoryStorage(directory, monotonic=clock)
    store.prepare()
    store.begin_term()
    store.write(record(sequence=0), valid_until=clock.now + 6.0)
    return store, clock


def test_a_write_whose_fsync_outlasts_the_lease_publishes_nothing(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, clock = leading_with_one_file(directory)
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:
        clock.now += 7.0  # the temporary file's fsync takes longer than the whole lease
        real_fsync(fd)

    valid_until = clock.now + 6.0
    monkeypatch.setattr(os, "fsync", slow_fsync)
    with pytest.raises(LeaseExpiredError):
        store.write(record(sequence=1), valid_until=valid_until)
    monkeypatch.undo()
    assert names(directory) == [file_name(7, 0)]  # not published, no temporary left
    assert json.loads((directory / ".election-fence").read_text()) == {"epoch": 7, "published": 1}
    assert store.write(record(sequence=1), valid_until=clock.now + 6.0).order == 2  # retried: fine


def test_retention_past_the_lease_deletes_nothing(directory: Path) -> None:
    clock = Jumps()
    store = DirectoryStorage(directory, monotonic=clock)
    store.begin_term()
    written = [store.write(record(sequence=s), valid_until=LATER).name for s in range(3)]
    with pytest.raises(LeaseExpiredError):
        store.retain(1, epoch=7, valid_until=clock.now)
    assert names(directory) == written
    assert store.retain(1, epoch=7, valid_until=clock.now + 1) == written[:2]  # next tick


def test_retention_by_a_stale_term_deletes_nothing(directory: Path) -> None:
    old, new = DirectoryStorage(directory), DirectoryStorage(directory)
    old.begin_term()
    mine = [old.write(record(epoch=5, sequence=s), valid_until=LATER).name for s in range(3)]
    new.begin_term()
    theirs = new.write(record(epoch=9, sequence=0), valid_until=LATER).name
    with pytest.raises(FencedError) as refused:
        old.retain(1, epoch=5, valid_until=LATER)
    assert refused.value.newer == 9
    assert names(directory) == [*mine, theirs]


# -- published, then a failure ---------------------------------------------------------------


def test_a_failed_directory_fsync_after_the_link_is_a_written_file(
    storage: DirectoryStorage, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_self: DirectoryStorage) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(DirectoryStorage, "_fsync_directory", broken)
    written = storage.write(record(sequence=0), valid_until=LATER)
    assert (written.name, written.synced) == (file_name(7, 0), False)
    assert names(directory) == [written.name]
    monkeypatch.undo()
    again = storage.write(record(sequence=1), valid_until=LATER)  # the next sequence: no EEXIST
    assert again.synced
    assert storage.retain(1, epoch=7, valid_until=LATER) == [written.name]  # indexed as ours


# -- publish order ---------------------------------------------------------------------------


def test_every_publish_advances_the_directory_counter_and_the_file_carries_it(directory: Path) -> None:
    a, b = DirectoryStorage(directory), DirectoryStorage(directory)
    assert a.progress() is None
    a.begin_term()
    orders = [a.write(record(epoch=5, sequence=s), valid_until=LATER).order for s in range(2)]
    b.begin_term()
    orders += [b.write(record(epoch=9, sequence=s), valid_until=LATER).order for s in range(2)]
    assert orders == [1, 2, 3, 4]
    contents = [json.loads((directory / n).read_text()) for n in names(directory)]
    assert [c["order"] for c in contents] == [1, 2, 3, 4]
    assert a.progress() == b.progress() == 4


def test_a_wrong_prediction_of_the_counter_is_rewritten_under_the_lock(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = DirectoryStorage(directory), DirectoryStorage(directory)
    b.begin_term()
    b.write(record(epoch=5, sequence=0), valid_until=LATER)
    a.begin_term()
    a.write(record(epoch=9, sequence=0), valid_until=LATER)
    # b publishes again in a's term (a hand-made interleaving) ... then a predicts "mine + 1"
    (directory / ".election-fence").write_text('{"epoch": 9, "published": 7}')
    written = a.write(record(epoch=9, sequence=1), valid_until=LATER)
    assert written.order == 8
    assert json.loads((directory / written.name).read_text())["order"] == 8
    assert [n for n in os.listdir(directory) if n.endswith(".tmp")] == []


@pytest.mark.parametrize("failure", ["name_taken", "link_io_error"])
def test_a_publish_that_fails_at_the_link_does_not_advance_the_counter(
    storage: DirectoryStorage, directory: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    # Standbys judge the cluster's health by this counter (app.states.progress): a write that
    # published nothing must not move it, or a cluster whose every link fails looks healthy forever.
    storage.write(record(sequence=0), valid_until=LATER)
    if failure == "name_taken":
        plant(directory, 7, 1)
    else:

        def broken_link(*_args: Any, **_kwargs: Any) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "link", broken_link)
    for _attempt in range(3):
        with pytest.raises(StorageError):
            storage.write(record(sequence=1), valid_until=LATER)
    assert storage.progress() == 1
    monkeypatch.undo()
    if failure == "name_taken":
        (directory / file_name(7, 1)).unlink()
    assert storage.write(record(sequence=1), valid_until=LATER).order == 2


def test_a_fence_record_slower_than_the_rest_of_the_lease_publishes_nothing(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The record is fsynced under the lock between the lease check and the link: a slow disk
    # there (an NFS server's stall) must not publish a file past the lease.
    store, clock = leading_with_one_file(directory)
    real_store = store.fence.store

    def slow_store(state: Any) -> None:
        real_store(state)
        clock.now += 7.0  # its fsync outlasts the lease

    valid_until = clock.now + 6.0
    monkeypatch.setattr(store.fence, "store", slow_store)
    with pytest.raises(LeaseExpiredError):
        store.write(record(sequence=1), valid_until=valid_until)
    monkeypatch.undo()
    assert names(directory) == [file_name(7, 0)]
    assert store.progress() == 1
    assert store.write(record(sequence=1), valid_until=clock.now + 6.0).order == 2
