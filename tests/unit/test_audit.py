"""`election audit` finds every kind of violation, and passes a directory the service wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.adapters.fs_storage import DirectoryStorage, file_name
from app.audit import audit_directory
from app.ports.storage import Record
from tests.app_cli import run_app

LATER = float("inf")  # a lease that never runs out


def put(
    directory: Path,
    epoch: int,
    sequence: int,
    written_at: str,
    identity: str = "r1",
    order: int | None = None,
) -> str:
    """A leader file; without ``order``, as written before the publish counter existed."""
    name = file_name(epoch, sequence)
    body: dict[str, object] = {
        "identity": identity,
        "epoch": epoch,
        "sequence": sequence,
        "written_at": written_at,
    }
    if order is not None:
        body["order"] = order
    (directory / name).write_text(json.dumps(body))
    return name


def t(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


def rules(directory: Path, capacity: int | None = None) -> list[str]:
    return [v.rule for v in audit_directory(directory, capacity).violations]


def test_a_directory_written_by_the_service_passes(tmp_path: Path) -> None:
    store = DirectoryStorage(tmp_path)
    store.prepare()
    for epoch in (5, 9):
        store.begin_term()
        for sequence in range(4):
            store.write(Record("r", epoch, sequence, t(epoch + sequence)), valid_until=LATER)
            store.retain(5, epoch=epoch, valid_until=LATER)
    (tmp_path / "notes.txt").write_text("not ours")
    report = audit_directory(tmp_path, 5)
    assert report.ok, report.to_text()
    assert [(term.epoch, term.files) for term in report.terms] == [(5, 1), (9, 4)]
    assert report.fence == 9
    assert report.foreign == 1


def test_a_stale_leader_writing_after_a_newer_term_is_an_epoch_decrease(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1))
    put(tmp_path, 9, 0, t(2))
    put(tmp_path, 5, 1, t(3))  # the thawed old leader
    assert rules(tmp_path) == ["epoch_decreased"]


def test_interleaved_terms_are_found(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1))
    put(tmp_path, 9, 0, t(2))
    put(tmp_path, 5, 1, t(3))
    put(tmp_path, 9, 1, t(4))
    assert "epoch_decreased" in rules(tmp_path)


def test_sequences_must_increase_within_an_epoch(tmp_path: Path) -> None:
    put(tmp_path, 5, 1, t(1))
    put(tmp_path, 5, 0, t(2))
    assert rules(tmp_path) == ["sequence_not_increasing"]


def test_unparsable_and_mismatched_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / file_name(5, 0)).write_text("{half a file")
    (tmp_path / file_name(5, 1)).write_text(json.dumps({"identity": "r", "epoch": 5}))
    (tmp_path / file_name(5, 2)).write_text(
        json.dumps({"identity": "r", "epoch": 5, "sequence": 3, "written_at": t(1)})
    )
    (tmp_path / file_name(5, 4)).write_text(
        json.dumps({"identity": "r", "epoch": 5, "sequence": 4, "written_at": "yesterday"})
    )
    assert sorted(rules(tmp_path)) == ["name_mismatch", "unparsable", "unparsable", "unparsable"]


def test_leftovers_of_interrupted_writes_are_reported(tmp_path: Path) -> None:
    (tmp_path / f".{file_name(5, 0)}.tmp").write_text("{")
    assert rules(tmp_path) == ["leftover"]


def test_capacity_is_checked_only_when_given(tmp_path: Path) -> None:
    for sequence in range(4):
        put(tmp_path, 5, sequence, t(sequence))
    assert rules(tmp_path) == []
    assert rules(tmp_path, 3) == ["over_capacity"]
    assert rules(tmp_path, 4) == []


def test_a_fence_behind_the_files_is_reported(tmp_path: Path) -> None:
    put(tmp_path, 9, 0, t(1))
    (tmp_path / ".election-fence").write_text('{"epoch": 5}')
    assert rules(tmp_path) == ["fence_behind"]


def test_symlinks_and_foreign_files_are_not_audited_as_ours(tmp_path: Path) -> None:
    (tmp_path / file_name(5, 0)).symlink_to("/etc/hostname")
    (tmp_path / "leader-1.json").write_text("x")
    report = audit_directory(tmp_path)
    assert report.ok
    assert report.files == 0
    assert report.foreign == 2


@pytest.mark.parametrize(("broken", "status"), [(False, 0), (True, 1)])
def test_the_command_exits_non_zero_on_any_violation(tmp_path: Path, broken: bool, status: int) -> None:
    put(tmp_path, 5, 0, t(1))
    if broken:
        put(tmp_path, 3, 0, t(2))
    text = run_app("audit", "--file-dir", str(tmp_path))
    as_json = run_app("audit", "--file-dir", str(tmp_path), "--json")
    assert text.returncode == as_json.returncode == status
    assert ("FAILED" in text.stdout) is broken
    assert json.loads(as_json.stdout)["ok"] is not broken


def test_a_missing_directory_is_a_one_line_usage_error(tmp_path: Path) -> None:
    proc = run_app("audit", "--file-dir", str(tmp_path / "absent"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--file-dir" in proc.stderr


# -- publish order ---------------------------------------------------------------------------


def test_a_clean_hand_over_between_skewed_clocks_passes(tmp_path: Path) -> None:
    # The new leader's wall clock is 2 s behind the old one's: by written_at its first files look
    # older than the old term's last ones. The publish counter says what really happened.
    for sequence in range(3):
        put(tmp_path, 5, sequence, t(10 + sequence), "r1", order=1 + sequence)
    for sequence in range(3):
        put(tmp_path, 9, sequence, t(11 + sequence - 2), "r2", order=4 + sequence)
    (tmp_path / ".election-fence").write_text('{"epoch": 9, "published": 6}')
    report = audit_directory(tmp_path)
    assert report.ok, report.to_text()
    assert report.legacy_files == 0


def test_a_stale_file_published_after_a_newer_term_is_found_whatever_its_clock_says(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1), order=1)
    put(tmp_path, 9, 0, t(2), order=2)
    put(tmp_path, 5, 1, t(1), order=3)  # stamped before the newer term's file, published after it
    assert rules(tmp_path) == ["epoch_decreased"]


def test_interleaved_terms_are_found_in_publish_order(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1), order=1)
    put(tmp_path, 9, 0, t(4), order=2)
    put(tmp_path, 5, 1, t(2), order=3)
    put(tmp_path, 9, 1, t(3), order=4)
    assert rules(tmp_path) == ["epoch_decreased"]


def test_sequences_must_increase_in_publish_order(tmp_path: Path) -> None:
    put(tmp_path, 5, 1, t(1), order=1)
    put(tmp_path, 5, 0, t(2), order=2)
    assert rules(tmp_path) == ["sequence_not_increasing"]


def test_a_repeated_publish_counter_is_reported(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1), order=1)
    put(tmp_path, 5, 1, t(2), order=1)
    assert rules(tmp_path) == ["order_repeated"]


def test_a_fence_whose_counter_is_behind_the_files_is_reported(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1), order=3)
    (tmp_path / ".election-fence").write_text('{"epoch": 5, "published": 2}')
    assert rules(tmp_path) == ["fence_behind"]


def test_files_from_before_the_counter_are_noted_and_taken_to_precede_the_others(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1))  # written by the previous version: no order
    put(tmp_path, 5, 1, t(2))
    put(tmp_path, 9, 0, t(0), order=1)  # after the upgrade, whatever its clock says
    report = audit_directory(tmp_path)
    assert report.ok, report.to_text()
    assert report.legacy_files == 2
    assert "2 file(s) without a publish counter" in report.to_text()
    put(tmp_path, 3, 0, t(5), order=2)  # a stale term after the upgrade
    assert rules(tmp_path) == ["epoch_decreased"]


def test_a_mistyped_order_is_unparsable(tmp_path: Path) -> None:
    put(tmp_path, 5, 0, t(1), order=0)
    assert rules(tmp_path) == ["unparsable"]
