"""tools.leader_files reads leader files the way the app defines them (no processes, no ZooKeeper)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.adapters.fs_storage import file_content, file_name
from app.ports.storage import Record
from tools import leader_files


def write(directory: Path, name: str, content: object) -> Path:
    path = directory / name
    path.write_text(json.dumps(content))
    return path


def content(epoch: int, sequence: int, **changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "identity": "r1",
        "epoch": epoch,
        "sequence": sequence,
        "written_at": "2026-01-02T03:04:05.000006Z",
        "order": 1,
    }
    return {**base, **changes}


def test_a_file_the_app_writes_reads_back_with_its_fields_and_publish_time(tmp_path: Path) -> None:
    record = Record(identity="r1", epoch=7, sequence=3, written_at="2026-01-02T03:04:05.000006Z")
    path = tmp_path / file_name(7, 3)
    path.write_bytes(file_content(record, 12))
    found = leader_files.read(path)
    assert found is not None
    assert (found.name, found.epoch, found.sequence, found.identity, found.order) == (
        path.name,
        7,
        3,
        "r1",
        12,
    )
    assert found.written_at == pytest.approx(1767323045.000006)
    assert found.published_ns == path.stat().st_ctime_ns


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"written_at": "2026-01-02T03:04:05"}, "no time zone"),  # the app's audit refuses it too
        ({"epoch": True}, "mistyped"),
        ({"order": 0}, "order 0"),
        ({"order": None}, "order None"),  # absent is a file from before the counter; null is not absent
    ],
)
def test_content_the_app_would_not_accept_is_refused(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    path = write(tmp_path, file_name(1, 0), {**content(1, 0), **changes})
    with pytest.raises(ValueError, match=reason):
        leader_files.read(path)


def test_content_that_disagrees_with_the_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, file_name(1, 0), content(2, 0))
    with pytest.raises(ValueError, match="says epoch 2 sequence 0"):
        leader_files.read(path)


def test_a_vanished_file_reads_as_none_and_a_missing_directory_lists_empty(tmp_path: Path) -> None:
    assert leader_files.read(tmp_path / file_name(1, 0)) is None
    assert leader_files.files(tmp_path / "nowhere") == []


def test_terms_are_found_by_epoch(tmp_path: Path) -> None:
    for epoch, sequence in [(5, 0), (5, 1), (9, 0), (9, 1), (12, 0)]:
        write(tmp_path, file_name(epoch, sequence), content(epoch, sequence))
    (tmp_path / "notes.txt").write_text("not ours")
    assert [f.sequence for f in leader_files.of_term(tmp_path, 9)] == [0, 1]
    first = leader_files.first_of_term_after(tmp_path, 5)
    assert first is not None and (first.epoch, first.sequence) == (9, 0)
    newest = leader_files.newest(tmp_path)
    assert newest is not None and newest.epoch == 12
    assert leader_files.first_of_term_after(tmp_path, 12) is None
