"""The exec share's judge: how heartbeat files are read and what counts as two children at once
(no election, no ZooKeeper; the files are written here as the child writes them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.heartbeat_child import BeatLog, overlap_seconds, overlaps, read_processes, terms

pytestmark = pytest.mark.chaos

CHILD = Path(__file__).resolve().parents[1] / "e2e" / "heartbeat_child.py"


def record(directory: Path, pid: int, epoch: int, beats: list[float], *, pgid: int | None = None,
           role: str = "child", who: str | None = None) -> Path:  # fmt: skip
    path = directory / f"hb-{int(beats[0] * 1e9):020d}-{pid}.jsonl"
    start = {"ev": "start", "pid": pid, "pgid": pgid or pid, "ppid": 1, "role": role, "epoch": str(epoch),
             "identity": who or f"replica-{epoch}", "election_path": "/e", "lease": "1.333",
             "boot": beats[0] - 0.001, "wall": 1000 + beats[0] - 0.001}  # fmt: skip
    lines = [start, *({"ev": "beat", "boot": t, "wall": 1000 + t} for t in beats)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_runs_one_after_another_do_not_overlap(tmp_path: Path) -> None:
    record(tmp_path, 10, 5, [1.00, 1.01, 1.02])
    record(tmp_path, 11, 5, [1.01, 1.015], pgid=10, role="grandchild")
    record(tmp_path, 20, 9, [1.03, 1.04])
    processes = read_processes(tmp_path)
    assert overlaps(processes) == []
    assert overlap_seconds(processes) == 0.0
    assert [(t.epoch, len(t.processes)) for t in terms(processes)] == [(5, 2), (9, 1)]


def test_a_grandchild_beating_after_the_next_run_began_is_an_overlap(tmp_path: Path) -> None:
    record(tmp_path, 10, 5, [1.00, 1.01])
    record(tmp_path, 11, 5, [1.01, 1.05], pgid=10, role="grandchild")
    record(tmp_path, 20, 9, [1.03, 1.04])
    problems = overlaps(read_processes(tmp_path))
    assert len(problems) == 1 and "grandchild 11" in problems[0], problems
    assert overlap_seconds(read_processes(tmp_path)) == pytest.approx(0.02)


def test_an_older_epoch_after_a_newer_one_and_an_epoch_under_two_identities_are_breaches(
    tmp_path: Path,
) -> None:
    record(tmp_path, 10, 9, [1.00, 1.01])
    record(tmp_path, 20, 5, [1.02, 1.03])
    record(tmp_path, 30, 5, [1.04, 1.05], who="replica-x")
    problems = overlaps(read_processes(tmp_path))
    assert any("began after epoch 9" in p for p in problems), problems
    assert any("ran under" in p for p in problems), problems


def test_the_incremental_reader_sees_appended_beats_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = record(tmp_path, 10, 5, [1.00])
    log = BeatLog(tmp_path)
    assert [len(p.beats) for p in log.processes()] == [1]
    with path.open("a") as file:
        file.write(json.dumps({"ev": "beat", "boot": 1.01, "wall": 1001.01}) + "\n" + '{"ev": "be')
    assert [len(p.beats) for p in log.processes()] == [2]
    with path.open("a") as file:
        file.write('at", "boot": 1.02, "wall": 1001.02}\n')
    assert [p.last for p in log.processes()] == [1.02]


def test_the_child_records_its_environment_and_its_exit(tmp_path: Path) -> None:
    env = {**os.environ, "ELECTION_EPOCH": "42", "ELECTION_IDENTITY": "me", "ELECTION_LEASE_SECONDS": "1.5",
           "ELECTION_ELECTION_PATH": "/e"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(CHILD), "--dir", str(tmp_path), "--exit", "3"], env=env, timeout=30, check=False
    )
    assert done.returncode == 3
    (process,) = read_processes(tmp_path)
    assert (process.epoch, process.identity, process.lease, process.election_path) == (42, "me", 1.5, "/e")
    assert (process.exit_code, process.beats) == (3, [])
