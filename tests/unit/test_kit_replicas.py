"""tools.replicas: a child process's exit, signals and log, on real (tiny) processes."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tools.replicas import Process, read_log
from tools.waiting import WaitTimeoutError

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_process_that_does_not_exit_in_time_fails_the_wait_and_is_killed(tmp_path: Path) -> None:
    process = Process("sleeper", SLEEPER, tmp_path / "sleeper.log")
    process.start()
    with pytest.raises(WaitTimeoutError, match="sleeper to exit"):
        process.wait_exit(0.2)
    assert not process.alive
    assert process.returncode == -signal.SIGKILL


def test_the_exit_after_a_signal_is_timed_from_the_signal(tmp_path: Path) -> None:
    process = Process("sleeper", SLEEPER, tmp_path / "sleeper.log")
    process.start()
    sent_at = process.send(signal.SIGTERM)
    assert process.wait_exit(10) == -signal.SIGTERM
    assert process.signals == [("SIGTERM", sent_at)]
    assert process.exited_after is not None and 0 <= process.exited_after < 10
    process.start()  # a restart forgets the last run's exit
    assert process.exited_at is None and process.exited_after is None
    process.kill()


def test_log_records_keep_other_lines_unless_asked_not_to(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_text('{"event": "start"}\nTraceback (most recent call last):\n[1, 2]\n{"event": "stop"}\n')
    assert read_log(log) == [
        {"event": "start"},
        {"raw": "Traceback (most recent call last):"},
        {"raw": "[1, 2]"},
        {"event": "stop"},
    ]
    assert read_log(log, others=False) == [{"event": "start"}, {"event": "stop"}]
    assert read_log(tmp_path / "missing.log") == []
