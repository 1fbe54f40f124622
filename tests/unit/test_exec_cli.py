"""``election run --exec`` given something it cannot run: exit 2 and one line, before any ZooKeeper.

Each case runs a real ``python -m app run`` against a port where nothing listens: a command that
got past the checks would try to connect (and fail otherwise, later), so exit 2 with one line that
names the problem is the check itself. "No such option" would also be exit 2 and one line: it is
refused explicitly, so that these tests fail on an app that does not know ``--exec``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.app_cli import REPO, app_command, app_env, one_line, run_app

EXIT_CONFIG = 2
ACCEPT_WAIT = 5.0  # seconds: the checks come before anything waits for ZooKeeper


def run_args(port: int, tmp_path: Path, *args: str) -> list[str]:
    """``run`` and its arguments, towards ZooKeeper on ``port`` (where nothing answers)."""
    files = f"--file-dir={tmp_path / 'files'}"
    return ["run", f"--zk-servers=127.0.0.1:{port}", files, "--http-address=127.0.0.1:0", *args]


def run(
    port: int, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a replica that must be refused at once (it would otherwise wait for ZooKeeper forever)."""
    return run_app(*run_args(port, tmp_path, *args), env=env, timeout=30)


def accepted(port: int, tmp_path: Path, *args: str) -> tuple[bool, str]:
    """Whether a replica with ``args`` gets past the checks: it is still running (waiting for the
    ZooKeeper that does not answer) after ACCEPT_WAIT seconds, or it exited with a status other than
    2. Returns that and its stderr so far."""
    proc = subprocess.Popen(
        app_command(*run_args(port, tmp_path, *args)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=app_env(),
        cwd=REPO,
    )
    try:
        code = proc.wait(ACCEPT_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    _out, err = proc.communicate(timeout=30)
    return code != EXIT_CONFIG, err


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *names: str) -> str:
    line = one_line(result, EXIT_CONFIG)
    assert "no such option" not in line.lower(), line
    for name in names:
        assert name in line, f"{name!r} not in {line!r}"
    return line


def test_an_empty_exec_exits_2_with_one_line(closed_port: int, tmp_path: Path) -> None:
    assert_one_line_exit_2(run(closed_port, tmp_path, "--exec="), "--exec")


def test_an_empty_exec_variable_exits_2_with_one_line_naming_it(closed_port: int, tmp_path: Path) -> None:
    result = run(closed_port, tmp_path, env={"ELECTION_EXEC": "  "})
    assert_one_line_exit_2(result, "ELECTION_EXEC")


def test_exec_and_a_command_after_the_double_dash_together_exit_2_with_one_line(
    closed_port: int, tmp_path: Path
) -> None:
    result = run(closed_port, tmp_path, "--exec=true", "--", "true")
    assert_one_line_exit_2(result, "--exec", "--")


def test_a_command_not_on_path_exits_2_naming_it(closed_port: int, tmp_path: Path) -> None:
    missing = "election-no-such-command-4a1f"
    assert_one_line_exit_2(run(closed_port, tmp_path, f"--exec={missing} --flag"), missing)
    assert_one_line_exit_2(run(closed_port, tmp_path, "--", missing), missing)


def test_a_stop_timeout_that_cannot_fit_the_lease_exits_2_naming_it(closed_port: int, tmp_path: Path) -> None:
    """G <= 4/9 S - 0.25 s: with a 2 s session at most 0.64 s; 1 s is refused, 0.5 s is not."""
    too_long = run(closed_port, tmp_path, "--exec=true", "--zk-session-timeout=2s", "--exec-stop-timeout=1s")
    assert_one_line_exit_2(too_long, "--exec-stop-timeout")
    fits, stderr = accepted(
        closed_port, tmp_path, "--exec=true", "--zk-session-timeout=2s", "--exec-stop-timeout=500ms"
    )
    assert fits, f"a grace that fits was refused: {stderr}"


def test_the_default_stop_timeout_does_not_fit_a_short_session(closed_port: int, tmp_path: Path) -> None:
    """The default grace (3 s) needs a session of at least 9/4 x 3.25 s = 7.3 s."""
    result = run(closed_port, tmp_path, "--exec=true", "--zk-session-timeout=4s")
    assert_one_line_exit_2(result, "--exec-stop-timeout")
