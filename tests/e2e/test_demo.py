"""The README's `make demo` really runs: ZooKeeper, three replicas, one leader, clean stop."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def demo(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run ``make demo``'s program for 6 s in ``workdir`` (plain output, no screen control), assert
    that it exited 0, and return it with the replicas' rows of the last view it printed."""
    proc = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--duration", "6", "--plain", "--workdir", str(workdir), *args],
        check=False, capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    views = [v for v in proc.stdout.split("\n\n") if "replica-1" in v and "state" in v]
    assert views, proc.stdout
    return proc, [line for line in views[-1].splitlines() if line.startswith("replica-")]


@pytest.mark.e2e
def test_demo_runs_three_replicas_with_one_leader_and_stops_cleanly(tmp_path: Path) -> None:
    proc, rows = demo(tmp_path / "demo", "--leader-timeout", "500ms")
    assert len(rows) == 3
    assert sum(" Leader " in row for row in rows) == 1
    assert sum(" Attempter " in row for row in rows) == 2
    assert "replicas exited with [0, 0, 0]" in proc.stdout
    assert list((tmp_path / "demo" / "files").glob("leader-*.json"))


@pytest.mark.e2e
def test_demo_with_exec_runs_the_fenced_example_on_the_leader_only(tmp_path: Path) -> None:
    proc, rows = demo(tmp_path / "demo", "--exec", "examples/exec/fenced-writer.sh")
    assert [" Leader " in row for row in rows].count(True) == 1
    running = [row for row in rows if "command pid" in row]
    assert len(running) == 1 and " Leader " in running[0], rows
    assert "replicas exited with [0, 0, 0]" in proc.stdout
    journal = (tmp_path / "demo" / "files" / "journal.txt").read_text().splitlines()
    assert journal, "the leader's command wrote nothing"
    epoch = running[0].split("epoch ")[1].split()[0]
    assert all(line.startswith(f"epoch {epoch} write ") for line in journal), journal
    assert not list((tmp_path / "demo" / "files").glob("leader-*.json")), "with --exec no file is written"
