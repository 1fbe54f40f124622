"""An ``election run --exec`` that leaves without its orderly stop (a second SIGTERM) must not leave
any process of the command's group behind: PR_SET_PDEATHSIG reaches only the direct child, so a
shell's background child would otherwise run on beside the successor's command."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.ports import free_port
from tools.replicas import REPO_ROOT
from tools.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux")]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_second_sigterm_leaves_no_process_of_the_commands_group(
    zk_server: ZooKeeperEndpoint, election_path: str, tmp_path: Path
) -> None:
    pidfile = tmp_path / "background.pid"
    # The shell dies of the first SIGTERM; its background child ignores it (and would get the
    # SIGKILL only at the end of the 1.5 s grace, which the second SIGTERM cuts short).
    script = f"(trap '' TERM; exec sleep 1000) & echo $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; wait"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELECTION_")}
    args = [
        sys.executable, "-m", "app", "run",
        f"--zk-servers={zk_server.address}", f"--election-path={election_path}",
        f"--file-dir={tmp_path / 'files'}", "--identity=r1", f"--http-address=127.0.0.1:{free_port()}",
        "--zk-session-timeout=4s", "--exec-stop-timeout=1.5s", "--shutdown-timeout=5s",
        "--", "sh", "-c", script,
    ]  # fmt: skip
    (tmp_path / "files").mkdir()
    with open(tmp_path / "r1.log", "wb") as out:
        proc = subprocess.Popen(
            args, cwd=REPO_ROOT, env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )
    background = 0
    try:
        background = int(
            wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "the command")
        )
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # inside the command's grace: the operator insists
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 128 + signal.SIGTERM
        wait_for(lambda: not _alive(background), 3, "the command's background child to be gone")
    finally:
        if proc.poll() is None:
            proc.kill()
        if background and _alive(background):
            with contextlib.suppress(ProcessLookupError):
                os.kill(background, signal.SIGKILL)
