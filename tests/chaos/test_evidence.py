"""The chaos suite's own judge: how it reads a directory and what it calls an overlap (no processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos.evidence import analyse, longest_gap
from tests.chaos.model import FaultResult
from tests.chaos.soak import render, table
from tools.leader_files import LeaderFile, observe

pytestmark = pytest.mark.chaos


def written(
    epoch: int, sequence: int, at: float, published: float | None = None, who: str = ""
) -> LeaderFile:
    return LeaderFile(
        name=f"leader-{epoch:020d}-{sequence:012d}.json",
        epoch=epoch,
        sequence=sequence,
        identity=who or f"replica-{epoch}",
        written_at=at,
        published_ns=int((at if published is None else published) * 1e9),
    )


def test_successive_terms_do_not_overlap() -> None:
    files = [written(5, 0, 10.0), written(5, 1, 10.1), written(9, 0, 12.2), written(9, 1, 12.3)]
    analysis = analyse(files)
    assert analysis.problems == []
    assert (analysis.overlap_s, analysis.stale_writes) == (0.0, 0)
    assert longest_gap(files, since=10.15, until=10.15, epoch=9) == pytest.approx(2.1)


def test_a_file_stamped_early_but_published_late_is_stale() -> None:
    # The old leader stamped its file before the new term began, but published it after: only the
    # publish time gives it away (written_at alone, as `election audit` orders, looks clean).
    files = [written(5, 0, 10.0), written(5, 1, 10.1, published=12.5), written(9, 0, 12.2)]
    analysis = analyse(files)
    assert analysis.stale_writes == 1
    assert analysis.overlap_s == pytest.approx(0.3)
    assert "epoch 5 (replica-5) wrote 1 file(s) after a newer term began" in analysis.problems[0]


def test_two_writers_of_one_epoch_and_out_of_order_sequences_are_problems() -> None:
    files = [written(5, 0, 10.2, who="a"), written(5, 1, 10.1, who="b")]
    problems = analyse(files).problems
    assert any("written by ['a', 'b']" in p for p in problems)
    assert any("not in written_at order" in p for p in problems)


def test_observe_reads_only_leader_files_and_reports_bad_ones(tmp_path: Path) -> None:
    good = {"epoch": 7, "sequence": 0, "identity": "r", "written_at": "2026-11-26T07:15:11.158130Z"}
    (tmp_path / "leader-00000000000000000007-000000000000.json").write_text(json.dumps(good))
    (tmp_path / "leader-00000000000000000007-000000000001.json").write_text("{half")
    (tmp_path / "leader-00000000000000000008-000000000000.json").write_text(json.dumps(good))
    (tmp_path / "notes.txt").write_text("not ours")
    files, problems = observe(tmp_path)
    assert [f.name for f in files] == ["leader-00000000000000000007-000000000000.json"]
    assert len(problems) == 2
    assert "does not parse" in problems[0]
    assert "says epoch 7 sequence 0" in problems[1]


def test_the_soak_table_has_a_row_per_fault_and_a_total() -> None:
    results = [
        FaultResult("leader_sigkill", "ensemble", 3, no_leader_s=2.1, handover_s=2.0),
        FaultResult("leader_sigkill", "ensemble", 3, no_leader_s=2.4, handover_s=2.3, violations=["x"]),
        FaultResult("zk_freeze", "ensemble", 3, no_leader_s=1.1),
    ]
    rows = table(results)
    assert [(r["fault"], r["rounds"], r["violated"]) for r in rows] == [
        ("leader_sigkill", 2, 1),
        ("zk_freeze", 1, 0),
        ("all", 3, 1),
    ]
    assert rows[0]["no_leader_max_s"] == 2.4 and rows[1]["handover_max_s"] is None
    assert "leader_sigkill" in render(rows)
