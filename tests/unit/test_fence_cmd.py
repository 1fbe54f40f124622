"""``election fence``: a script's writes are refused once a newer epoch has written, on the same fence
as our file writer; the command form holds the lock until its command is gone.

The command line is run as real ``python -m app fence`` processes: exit statuses, one-line errors and
the lock held across a child are properties of processes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.adapters.fs_fence import FENCE_NAME, FenceState, FileFence
from app.adapters.fs_storage import DirectoryStorage, file_name
from app.ports.storage import FencedError, Record, StorageError
from tests.app_cli import REPO, app_command, app_env, run_app
from tools.waiting import wait_for

EXIT_FENCED = 3
EXIT_CONFIG = 2


def fence(
    *args: str, env: dict[str, str] | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """``python -m app fence ARGS`` with no ELECTION_* variables but those in ``env``."""
    return run_app("fence", *args, env=env, timeout=timeout)


@contextmanager
def fence_running(directory: Path, script: str) -> Iterator[subprocess.Popen[bytes]]:
    """``election fence --dir DIRECTORY --epoch 5 -- sh -c SCRIPT`` running; killed if still there
    when the block is left."""
    proc = subprocess.Popen(
        app_command("fence", "--dir", str(directory), "--epoch", "5", "--", "sh", "-c", script),
        cwd=REPO,
        env=app_env(),
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def recorded(directory: Path) -> dict[str, int]:
    return dict(json.loads((directory / FENCE_NAME).read_text()))


def lock_is_held(directory: Path) -> bool:
    try:
        with FileFence(directory).locked(timeout=0.0):
            return False
    except StorageError:
        return True


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


# -- the check form --------------------------------------------------------------------------


def test_the_first_check_passes_and_records_its_epoch(tmp_path: Path) -> None:
    result = fence("--dir", str(tmp_path), "--epoch", "7")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert recorded(tmp_path) == {"epoch": 7}


def test_an_older_epoch_is_refused_with_status_3_once_a_newer_one_has_checked(tmp_path: Path) -> None:
    assert fence("--dir", str(tmp_path), "--epoch", "9").returncode == 0
    result = fence("--dir", str(tmp_path), "--epoch", "5")
    assert result.returncode == EXIT_FENCED
    assert "epoch 5 is fenced out" in one_line(result.stderr)
    assert "epoch 9 has written" in result.stderr
    assert recorded(tmp_path) == {"epoch": 9}


def test_the_same_epoch_passes_again_and_a_newer_one_raises_the_record(tmp_path: Path) -> None:
    assert fence("--dir", str(tmp_path), "--epoch", "5").returncode == 0
    assert fence("--dir", str(tmp_path), "--epoch", "5").returncode == 0
    assert fence("--dir", str(tmp_path), "--epoch", "6").returncode == 0
    assert recorded(tmp_path) == {"epoch": 6}


def test_the_epoch_defaults_to_election_epoch(tmp_path: Path) -> None:
    assert fence("--dir", str(tmp_path), env={"ELECTION_EPOCH": "12"}).returncode == 0
    assert recorded(tmp_path) == {"epoch": 12}
    assert fence("--dir", str(tmp_path), env={"ELECTION_EPOCH": "11"}).returncode == EXIT_FENCED


def test_a_term_of_our_file_writer_fences_a_script_out_and_the_other_way_round(tmp_path: Path) -> None:
    writer = DirectoryStorage(tmp_path, fence=FileFence(tmp_path, lock_timeout=0.2))
    writer.prepare()
    writer.begin_term()
    writer.write(Record("me", 8, 0, "2026-01-01T00:00:00.000000Z"), valid_until=float("inf"))
    assert fence("--dir", str(tmp_path), "--epoch", "7").returncode == EXIT_FENCED

    assert fence("--dir", str(tmp_path), "--epoch", "20").returncode == 0
    assert recorded(tmp_path) == {"epoch": 20, "published": 1}  # the writer's counter is kept
    with pytest.raises(FencedError):
        writer.write(Record("me", 8, 1, "2026-01-01T00:00:01.000000Z"), valid_until=float("inf"))
    assert not (tmp_path / file_name(8, 1)).exists()


def test_a_corrupt_record_fails_closed_with_status_1(tmp_path: Path) -> None:
    (tmp_path / FENCE_NAME).write_text("{not json")
    result = fence("--dir", str(tmp_path), "--epoch", "5")
    assert result.returncode == 1
    assert "corrupt" in one_line(result.stderr)


def test_a_lock_held_elsewhere_gives_status_1_after_the_lock_timeout(tmp_path: Path) -> None:
    with FileFence(tmp_path).locked():
        result = fence("--dir", str(tmp_path), "--epoch", "5", "--lock-timeout", "200ms")
    assert result.returncode == 1
    assert "held by another writer" in one_line(result.stderr)
    assert not (tmp_path / FENCE_NAME).exists()


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["--epoch", "5"], {}, "--dir"),
        (["--dir", "{dir}"], {}, "ELECTION_EPOCH"),
        (["--dir", "{dir}", "--epoch", "-1"], {}, "--epoch"),
        (["--dir", "{dir}", "--epoch", "five"], {}, "--epoch"),
        (["--dir", "{dir}", "--epoch", str(2**63)], {}, "--epoch"),
        (["--dir", "{dir}"], {"ELECTION_EPOCH": "x"}, "ELECTION_EPOCH"),
        (["--dir", "{dir}"], {"ELECTION_EPOCH": ""}, "ELECTION_EPOCH"),
        (["--dir", "{dir}/missing", "--epoch", "5"], {}, "--dir"),
        (["--dir", "{dir}", "--epoch", "5", "--", "no-such-command-here"], {}, "no-such-command-here"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_it(
    tmp_path: Path, args: list[str], env: dict[str, str], names: str
) -> None:
    result = fence(*(a.replace("{dir}", str(tmp_path)) for a in args), env=env)
    assert result.returncode == EXIT_CONFIG, result
    assert names in one_line(result.stderr)
    assert not (tmp_path / FENCE_NAME).exists()


# -- the command form ------------------------------------------------------------------------


def test_the_command_runs_while_the_lock_is_held_and_gives_its_status(tmp_path: Path) -> None:
    probe = (
        "import pathlib, sys\n"
        "from app.adapters.fs_fence import FileFence\n"
        "from app.ports.storage import StorageError\n"
        "try:\n"
        "    with FileFence(pathlib.Path(sys.argv[1])).locked(timeout=0.0): sys.exit(10)\n"
        "except StorageError: sys.exit(42)"
    )
    result = fence("--dir", str(tmp_path), "--epoch", "5", "--", sys.executable, "-c", probe, str(tmp_path))
    assert result.returncode == 42, result  # 10 would mean the command ran without the lock
    assert recorded(tmp_path) == {"epoch": 5}
    assert not lock_is_held(tmp_path)


def test_a_refused_epoch_does_not_run_the_command(tmp_path: Path) -> None:
    FileFence(tmp_path).store(FenceState(9, None))
    marker = tmp_path / "ran"
    result = fence("--dir", str(tmp_path), "--epoch", "5", "--", "touch", str(marker))
    assert result.returncode == EXIT_FENCED
    assert "epoch 9 has written" in one_line(result.stderr)
    assert not marker.exists()


def test_the_command_passes_its_arguments_and_output_through(tmp_path: Path) -> None:
    result = fence(
        "--dir", str(tmp_path), "--epoch", "5", "--", "sh", "-c", 'echo "$1"; exit 4', "sh", "a -b"
    )
    assert (result.returncode, result.stdout) == (4, "a -b\n")


def test_a_command_killed_by_a_signal_gives_128_plus_the_signal(tmp_path: Path) -> None:
    result = fence("--dir", str(tmp_path), "--epoch", "5", "--", "sh", "-c", "kill -KILL $$")
    assert result.returncode == 128 + signal.SIGKILL


def test_sigterm_to_fence_alone_does_not_release_the_lock_before_its_command_exits(tmp_path: Path) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    script = f"touch {started}; while [ ! -e {go} ]; do sleep 0.01; done; exit 5"
    with fence_running(tmp_path, script) as proc:
        wait_for(started.exists, 10.0, "the command to start")
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        # The command is still running: the signals must not have ended fence nor released the lock.
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
        assert lock_is_held(tmp_path)
        go.touch()
        assert proc.wait(timeout=10.0) == 5
        assert not lock_is_held(tmp_path)


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (this container's pid 1 may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_command_dies_with_a_killed_fence(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}.tmp; mv {pid_file}.tmp {pid_file}; exec sleep 60"
    with fence_running(tmp_path, script) as proc:
        wait_for(pid_file.exists, 10.0, "the command to start")
        child = int(pid_file.read_text())
        proc.kill()
        proc.wait()
        wait_for(lambda: _gone(child), 5.0, "the command to die with its parent")
