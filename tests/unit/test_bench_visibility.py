"""The hand-over's "visible" time (bench/visibility.py, issue 13) and the baselines' durable write
(bench/baselines/_leaderfile.py): what the graceful and scale scenarios' headline stands on."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

import pytest

from bench.visibility import DirectoryWatch, WatchUnavailableError, watch
from tools import leader_files

BASELINES = Path(__file__).resolve().parents[2] / "bench" / "baselines"


def _leaderfile() -> ModuleType:
    # The baselines run as scripts (their directory on sys.path), not as a package.
    spec = importlib.util.spec_from_file_location("_leaderfile", BASELINES / "_leaderfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _watch(directory: Path) -> DirectoryWatch:
    try:
        return watch(directory)
    except WatchUnavailableError as exc:
        pytest.skip(str(exc))


def test_the_baseline_file_reads_like_the_apps_and_leaves_no_temporary(tmp_path: Path) -> None:
    _leaderfile().write_leader_file(tmp_path, 42, 0, "kazoo-001", 1_700_000_000.25)
    record = leader_files.read(tmp_path / leader_files.names(tmp_path)[0])
    assert record is not None
    assert (record.epoch, record.sequence, record.identity) == (42, 0, "kazoo-001")
    assert record.written_at == pytest.approx(1_700_000_000.25)
    assert sorted(os.listdir(tmp_path)) == ["leader-00000000000000000042-000000000000.json"]


def test_the_baseline_write_links_rather_than_replaces(tmp_path: Path) -> None:
    # os.replace (the old write) would have overwritten the first file silently.
    write = _leaderfile().write_leader_file
    write(tmp_path, 7, 0, "first", 1.0)
    with pytest.raises(FileExistsError):
        write(tmp_path, 7, 0, "second", 2.0)
    record = leader_files.read(tmp_path / leader_files.names(tmp_path)[0])
    assert record is not None and record.identity == "first"
    assert len(os.listdir(tmp_path)) == 1  # the refused temporary is gone too


def test_the_baseline_write_fsyncs_the_file_and_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _leaderfile()
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    linked: list[str] = []
    real_link = os.link

    def link(src: str, dst: str, **kwargs: object) -> None:
        linked.append(f"link after {synced}")
        real_link(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module.os, "fsync", fsync)
    monkeypatch.setattr(module.os, "link", link)
    module.write_leader_file(tmp_path, 1, 0, "c1", 1.0)
    # The content is durable before the name exists, and the name after the directory's fsync.
    assert linked == ["link after ['file']"]
    assert synced == ["file", "dir"]


def test_the_watch_times_leader_files_as_they_appear_and_ignores_other_names(tmp_path: Path) -> None:
    seen = _watch(tmp_path)
    try:
        before = time.time()
        _leaderfile().write_leader_file(tmp_path, 5, 0, "c1", before)
        (tmp_path / "notes.txt").write_text("not ours")
        (tmp_path / "leader-00000000000000000009-000000000000.json.part").write_text("not ours")
        first = seen.wait_first_after(4, timeout=5.0)
        assert (first.name, first.epoch, first.sequence) == (
            "leader-00000000000000000005-000000000000.json",
            5,
            0,
        )
        assert before <= first.at <= time.time()
        # A rename onto the final name counts too (IN_MOVED_TO), as a writer with os.replace does.
        (tmp_path / "x.tmp").write_text("{}")
        os.rename(tmp_path / "x.tmp", tmp_path / "leader-00000000000000000006-000000000000.json")
        assert seen.wait_first_after(5, timeout=5.0).epoch == 6
        # The temporary name and the other files were never taken for leader files.
        assert [s.epoch for s in seen.seen()] == [5, 6]
    finally:
        seen.close()


def test_the_first_after_an_epoch_is_the_first_seen_of_a_higher_one(tmp_path: Path) -> None:
    seen = _watch(tmp_path)
    try:
        write = _leaderfile().write_leader_file
        for epoch, sequence in ((3, 0), (3, 1), (8, 0), (8, 1)):
            write(tmp_path, epoch, sequence, "c", 1.0)
        assert seen.wait_first_after(3, timeout=5.0).name == "leader-00000000000000000008-000000000000.json"
        assert seen.wait_first_after(2, timeout=5.0).sequence == 0
    finally:
        seen.close()


def test_waiting_for_a_term_that_never_comes_times_out(tmp_path: Path) -> None:
    seen = _watch(tmp_path)
    try:
        _leaderfile().write_leader_file(tmp_path, 3, 0, "c", 1.0)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            seen.wait_first_after(3, timeout=0.3)
        assert time.monotonic() - started >= 0.3
    finally:
        seen.close()


def test_close_stops_the_thread_without_a_single_event(tmp_path: Path) -> None:
    seen = _watch(tmp_path)
    seen.close()
    assert not seen._thread.is_alive()


def test_a_directory_that_does_not_exist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WatchUnavailableError, match="cannot watch"):
        watch(tmp_path / "missing")
