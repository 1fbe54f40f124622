"""Child processes of the kit: any contender (:class:`Process`), and ``election run`` (:class:`Replica`).

A :class:`Process` runs one command in its own session (a Ctrl-C in the terminal reaches the test
runner or the demo, not the children), stdin closed, stdout and stderr appended to one log file,
so that a restarted process keeps adding to the same log. It guarantees:

- :meth:`Process.send` returns the wall-clock time just *before* the signal went out (what a
  hand-over is measured from) and keeps every signal sent, by name, for reports;
- :meth:`Process.exited` notes, the first time it sees the exit, when that was (``exited_at``,
  monotonic) and how long after the first signal (``exited_after``); watching several processes
  together (``tools.cluster.Cluster.wait_exits``) keeps those figures accurate for each;
- :meth:`Process.wait_exit` fails with :class:`tools.waiting.WaitTimeoutError` after its timeout
  and kills the process first, so that a failing test never leaves it running;
- log records are the log's JSON lines (the app logs one object per line); anything else (a
  traceback) is kept as ``{"raw": line}``, never dropped.

A :class:`Replica` is a :class:`Process` of ``election run`` with its HTTP port on 127.0.0.1 and
the flags it was given; its HTTP readers return ``None`` (never raise) when nothing answers, so
that they can be polled while the replica starts, stops or is frozen.

Standard library only; every wait is :func:`tools.waiting.wait_for`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tools.waiting import WaitTimeoutError, wait_for

REPO_ROOT = Path(__file__).resolve().parents[1]
#: How long an HTTP reader waits for an answer: a replica that takes longer is treated as silent.
HTTP_TIMEOUT = 1.0


def clean_env() -> dict[str, str]:
    """The caller's environment without ``ELECTION_*`` variables (the flags alone say how a child
    runs, whatever the developer's shell exports), with unbuffered Python output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELECTION_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def app_command(*args: str) -> list[str]:
    """The argv of ``python -m app ARGS`` with this interpreter."""
    return [sys.executable, "-m", "app", *args]


def run_app(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m app <args>`` once from the repository, output captured as text; never raises
    for a non-zero exit (the caller judges it). ``env`` defaults to :func:`clean_env`."""
    return subprocess.run(
        app_command(*args),
        cwd=REPO_ROOT,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_command(settings: dict[str, str], *flags: str) -> list[str]:
    """``python -m app run`` with ``--name=value`` for each setting, then ``flags`` as given (for
    flags that take no value, such as ``--no-lead``)."""
    return app_command("run", *(f"--{k}={v}" for k, v in settings.items()), *flags)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def read_log(path: Path, *, others: bool = True) -> list[dict[str, Any]]:
    """The JSON-object lines of a log file (the app logs one object per line), in order; a missing
    file reads as empty. Any other line (a traceback) is kept as ``{"raw": line}``, or skipped with
    ``others=False``."""
    records = []
    for line in _read_text(path).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif others:
            records.append({"raw": line})
    return records


class Process:
    """One child process: its command, log, signals and exit."""

    def __init__(
        self,
        identity: str,
        args: list[str],
        log_path: Path,
        *,
        cwd: Path = REPO_ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        self.identity = identity
        self.args = args
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0  # wall time just before the (latest) start
        self.signals: list[tuple[str, float]] = []  # (name, wall time sent)
        self.exited_at: float | None = None  # monotonic time the exit was first seen
        self.exited_after: float | None = None  # seconds from the first signal to the exit
        self._signalled: float | None = None  # monotonic time of the first signal

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, env: dict[str, str] | None = None) -> None:
        """Start (or restart) the command; ``env`` replaces the environment given at construction."""
        if env is not None:
            self.env = env
        self.exited_at = self.exited_after = self._signalled = None
        with self.log_path.open("ab") as log:
            self.spawned_at = time.time()
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.identity} was never started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send(self, sig: signal.Signals) -> float:
        """Send ``sig``; return the wall-clock time (seconds since the epoch) just before sending."""
        assert self.proc is not None, f"{self.identity} was never started"
        sent_at = time.time()
        if self._signalled is None:
            self._signalled = time.monotonic()
        self.proc.send_signal(sig)
        self.signals.append((sig.name, sent_at))
        return sent_at

    def exited(self) -> bool:
        """Whether the process has exited; the first time it is seen so, note when."""
        assert self.proc is not None, f"{self.identity} was never started"
        if self.proc.poll() is None:
            return False
        if self.exited_at is None:
            self.exited_at = time.monotonic()
            if self._signalled is not None:
                self.exited_after = self.exited_at - self._signalled
        return True

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; return its status. Fails (and kills it) after ``timeout``."""
        try:
            wait_for(self.exited, timeout, f"{self.identity} to exit")
        except WaitTimeoutError:
            self.kill()
            raise
        assert self.proc is not None and self.proc.returncode is not None
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the process if it runs, and reap it."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()

    # -- logs ------------------------------------------------------------------------------------
    def log_text(self) -> str:
        return _read_text(self.log_path)

    def log_records(self) -> list[dict[str, Any]]:
        """The log's JSON lines (anything else, e.g. a traceback, is kept as {"raw": line})."""
        return read_log(self.log_path)

    def transitions(self) -> list[dict[str, Any]]:
        """The log's state transitions (``{"event": "transition", "from": ..., "to": ...}``)."""
        return [r for r in self.log_records() if r.get("event") == "transition"]

    def describe(self, lines: int = 60) -> str:
        """Command line, signals and log tail: what a failed test or benchmark shows of it."""
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"=== {self!r} log {self.log_path}\n$ {' '.join(self.args)}\nsignals: {self.signals}\n{tail}"

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"<{type(self).__name__} {self.identity} {state}>"


class Replica(Process):
    """One ``election run`` process, its HTTP endpoint on ``127.0.0.1:port`` and its flags."""

    def __init__(
        self,
        identity: str,
        port: int,
        args: list[str],
        log_path: Path,
        settings: dict[str, str],
        *,
        cwd: Path = REPO_ROOT,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(identity, args, log_path, cwd=cwd, env=env)
        self.port = port
        self.settings = settings

    def get(self, path: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, Any] | None:
        """GET ``path``: (status code, parsed JSON body), or None if nothing answers."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"null")
        except (OSError, ValueError):
            return None

    def wait_serving(self, timeout: float) -> None:
        """Wait until /status answers; fail at once if the process exits instead."""
        wait_for(
            lambda: self.status() is not None or not self.alive, timeout, f"{self.identity} to serve /status"
        )
        assert self.alive, f"{self.identity} exited with {self.returncode} at start"

    def status(self, timeout: float = HTTP_TIMEOUT) -> dict[str, Any] | None:
        """/status as a dict; None unless it answers 200."""
        answer = self.get("/status", timeout)
        return None if answer is None or answer[0] != 200 else answer[1]

    def state(self) -> str | None:
        status = self.status()
        return None if status is None else str(status["state"])

    def metrics(self, timeout: float = HTTP_TIMEOUT) -> dict[str, float] | None:
        """/metrics as {"name{labels}": value}; None if nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=timeout) as response:
                text = response.read().decode()
        except OSError:
            return None
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    samples[name] = float(value)
                except ValueError:
                    continue
        return samples

    def ready(self) -> bool | None:
        """True/False from /readyz (200/503); None if nothing answers."""
        answer = self.get("/readyz")
        return None if answer is None else answer[0] == 200

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"<Replica {self.identity} :{self.port} {state}>"
