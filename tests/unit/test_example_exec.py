"""examples/exec/fenced-writer.sh, run directly as ``election run --exec`` would run it (ELECTION_EPOCH
in its environment): a writer of an older epoch is refused once a newer one has written, even while
it is still running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "exec" / "fenced-writer.sh"
ELECTION = Path(sys.executable).parent / "election"
EXIT_FENCED = 3


def _env(directory: Path, epoch: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELECTION_", "FENCED_"))}
    env.update(
        FENCED_DIR=str(directory),
        ELECTION_EPOCH=str(epoch),
        ELECTION_IDENTITY=f"replica-{epoch}",
        ELECTION_BIN=str(ELECTION),
        FENCED_INTERVAL="0.05",
        **extra,
    )
    return env


def writer(directory: Path, epoch: int, count: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT)],
        env=_env(directory, epoch, FENCED_COUNT=str(count)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def journal(directory: Path) -> list[str]:
    path = directory / "journal.txt"
    return path.read_text().splitlines() if path.exists() else []


def epochs(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines]


def test_the_older_epoch_is_refused_once_a_newer_one_has_written(tmp_path: Path) -> None:
    assert writer(tmp_path, epoch=10, count=2).returncode == 0
    assert writer(tmp_path, epoch=20, count=1).returncode == 0
    refused = writer(tmp_path, epoch=10, count=1)
    assert refused.returncode == EXIT_FENCED, refused
    assert "epoch 10 is fenced out" in refused.stderr
    assert epochs(journal(tmp_path)) == [10, 10, 20]


def test_a_writer_still_running_stops_writing_when_a_newer_epoch_writes(tmp_path: Path) -> None:
    # The old leader's command keeps running (say its replica was frozen past its session and woke
    # up): its next write after the new leader's first is refused, and it exits 3.
    old = subprocess.Popen(
        [str(SCRIPT)], env=_env(tmp_path, 10), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: len(journal(tmp_path)) >= 2, 30.0, "the old writer's first writes")
        assert writer(tmp_path, epoch=20, count=1).returncode == 0
        assert old.wait(timeout=30) == EXIT_FENCED
        assert old.stderr is not None and "epoch 10 is fenced out" in old.stderr.read()
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()
    seen = epochs(journal(tmp_path))
    assert seen == sorted(seen), f"an older epoch wrote after a newer one: {seen}"
    assert seen[-1] == 20 and seen.count(20) == 1


def test_without_election_epoch_the_example_refuses_to_start(tmp_path: Path) -> None:
    env = _env(tmp_path, 1)
    del env["ELECTION_EPOCH"]
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0
    assert "ELECTION_EPOCH" in result.stderr
    assert journal(tmp_path) == []
