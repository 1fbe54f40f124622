"""SIGTERM against a real replica whose stderr nobody reads (issue 9, item 9).

A log line to a full pipe blocks the thread that writes it, holding the logging handler's lock. The
shutdown watchdog must still end the process within ``--shutdown-timeout``: it used to log its last
line through that same lock, so the process stayed alive for as long as the pipe stayed full.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.ports import free_port
from tools.replicas import REPO_ROOT
from tools.waiting import wait_for

pytestmark = pytest.mark.e2e

SHUTDOWN_TIMEOUT = 2.0
MARGIN = 3.0  # the watchdog's 0.2 s for its last line, process exit, and a loaded machine


def sigterm_caught(pid: int) -> bool:
    """True once the process has a handler for SIGTERM (``SigCgt`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.fixture
def full_pipe() -> Iterator[int]:
    """The write end of a pipe that is already full and that nobody will read (until teardown)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)  # the replica's writes block, as on a real unread pipe
    yield write_end
    os.close(read_end)
    os.close(write_end)


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_sigterm_exits_within_the_shutdown_timeout_when_stderr_is_a_full_pipe(
    full_pipe: int, closed_port: int, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELECTION_")}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "app", "run", f"--zk-servers=127.0.0.1:{closed_port}",
            f"--file-dir={tmp_path / 'files'}", f"--http-address=127.0.0.1:{free_port()}",
            f"--shutdown-timeout={SHUTDOWN_TIMEOUT:g}s", "--log-level=debug", "--identity=stuck",
        ],
        cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=full_pipe,
    )  # fmt: skip
    try:
        wait_for(
            lambda: proc.poll() is None and sigterm_caught(proc.pid), 30, "the replica to handle SIGTERM"
        )
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            code = proc.wait(SHUTDOWN_TIMEOUT + MARGIN)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"still alive {time.monotonic() - sent:.1f}s after SIGTERM with --shutdown-timeout="
                f"{SHUTDOWN_TIMEOUT:g}s (stderr full)"
            )
        assert code == 1  # the watchdog's status: shutdown exceeded --shutdown-timeout
        assert time.monotonic() - sent >= SHUTDOWN_TIMEOUT - 0.1  # the watchdog, not an early death
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
