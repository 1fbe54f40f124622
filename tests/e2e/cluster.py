"""Real ``election run`` processes for end-to-end tests, and the means to watch and break them.

A :class:`Cluster` starts replicas (``python -m app run``) that share one ZooKeeper, one election
path and one ``--file-dir``; each gets its own identity, a free HTTP port on 127.0.0.1 and a log
file (stdout and stderr, JSON lines). Tests find the leader through each replica's ``/status``,
read the leader files in ``file-dir``, send signals and wait for exits with deadlines.
:meth:`Cluster.kill_all` (called at teardown) SIGKILLs whatever is still running.

Standard library only; every wait polls a predicate against a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

LEADER_FILE = re.compile(r"leader-(\d{20})-(\d{12})\.json")
POLL = 0.01
HTTP_TIMEOUT = 1.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(predicate: Callable[[], T | None], timeout: float, message: str, interval: float = POLL) -> T:
    """Return the first truthy value of ``predicate``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {message} (last: {value!r})")
        time.sleep(interval)


def _flags(settings: dict[str, str]) -> dict[str, str]:
    """Python keywords to flag names: ``zk_session_timeout`` -> ``zk-session-timeout``."""
    return {key.replace("_", "-"): value for key, value in settings.items()}


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp (``...Z`` or ``+00:00``) as seconds since the epoch."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class LeaderFile:
    """One file a leader wrote, as found in ``file-dir``."""

    name: str
    identity: str
    epoch: int
    sequence: int
    written_at: float  # seconds since the epoch

    @classmethod
    def read(cls, path: Path) -> LeaderFile | None:
        """Parse ``path``; None if it vanished meanwhile (retention)."""
        try:
            content = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return cls(
            name=path.name,
            identity=content["identity"],
            epoch=int(content["epoch"]),
            sequence=int(content["sequence"]),
            written_at=parse_time(content["written_at"]),
        )


@dataclass
class Replica:
    """One ``election run`` process."""

    identity: str
    port: int
    args: list[str]
    log_path: Path
    settings: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    signals: list[tuple[str, float]] = field(default_factory=list)  # (name, wall time sent)
    exited_after: float | None = None  # seconds from the first signal to the exit
    _signalled: float | None = None  # monotonic time of the first signal

    # -- process ----------------------------------------------------------------------------
    def start(self, env: dict[str, str]) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest only
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
        assert self.proc is not None
        sent_at = time.time()
        if self._signalled is None:
            self._signalled = time.monotonic()
        self.proc.send_signal(sig)
        self.signals.append((sig.name, sent_at))
        return sent_at

    def exited(self) -> bool:
        """Whether the process has exited; the first time it is seen so after a signal, note when."""
        assert self.proc is not None
        if self.proc.poll() is None:
            return False
        if self._signalled is not None and self.exited_after is None:
            self.exited_after = time.monotonic() - self._signalled
        return True

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; return its status. Fails (and kills it) after ``timeout``."""
        try:
            poll(self.exited, timeout, f"{self.identity} to exit")
        except AssertionError:
            self.kill()
            raise
        assert self.proc is not None and self.proc.returncode is not None
        return self.proc.returncode

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()

    # -- HTTP -------------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, Any] | None:
        """GET ``path``: (status code, parsed JSON body), or None if nothing answers."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read() or b"null")
        except (OSError, ValueError):
            return None

    def wait_serving(self, timeout: float) -> None:
        """Wait until /status answers; fail at once if the process exits instead."""
        poll(
            lambda: self.status() is not None or not self.alive, timeout, f"{self.identity} to serve /status"
        )
        assert self.alive, f"{self.identity} exited with {self.returncode} at start"

    def status(self) -> dict[str, Any] | None:
        answer = self.get("/status")
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

    # -- logs -------------------------------------------------------------------------------
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_records(self) -> list[dict[str, Any]]:
        """The log's JSON lines (anything else, e.g. a traceback, is kept as {"raw": line})."""
        records = []
        for line in self.log_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = {"raw": line}
            records.append(record if isinstance(record, dict) else {"raw": line})
        return records

    def transitions(self) -> list[dict[str, Any]]:
        return [r for r in self.log_records() if r.get("event") == "transition"]

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"<Replica {self.identity} :{self.port} {state}>"


class Cluster:
    """Replicas of one election: same ZooKeeper, election path and ``file-dir``."""

    def __init__(self, workdir: Path, zk_servers: str, election_path: str, **settings: str) -> None:
        self.workdir = workdir
        self.file_dir = workdir / "files"
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.zk_servers = zk_servers
        self.election_path = election_path
        # Flag name (without dashes) -> value; tests override per cluster or per replica.
        self.settings: dict[str, str] = {
            "zk-servers": zk_servers,
            "election-path": election_path,
            "file-dir": str(self.file_dir),
            "leader-timeout": "200ms",
            "attempter-timeout": "10s",
            "storage-capacity": "1000",
            "zk-session-timeout": "2s",
            "zk-connect-timeout": "5s",
            "shutdown-timeout": "10s",
            "failover-timeout": "60s",
            "failover-backoff-max": "500ms",
            "log-level": "info",
            "log-format": "json",
            **_flags(settings),
        }
        self.replicas: list[Replica] = []
        # No ELECTION_* variable of the developer's shell may change what the flags say.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ELECTION_")}
        self.env["PYTHONUNBUFFERED"] = "1"

    # -- processes --------------------------------------------------------------------------
    def spawn(
        self, identity: str | None = None, env: dict[str, str] | None = None, **overrides: str
    ) -> Replica:
        """Start one replica without waiting for it; ``env`` adds to (or overrides) the environment
        of this replica only (e.g. a skewed clock)."""
        identity = identity or f"replica-{len(self.replicas) + 1}"
        port = free_port()
        settings = {
            **self.settings,
            **_flags(overrides),
            "identity": identity,
            "http-address": f"127.0.0.1:{port}",
        }
        args = [sys.executable, "-m", "app", "run", *(f"--{k}={v}" for k, v in settings.items())]
        replica = Replica(identity, port, args, self.log_dir / f"{identity}.log", settings)
        self.replicas.append(replica)
        replica.start({**self.env, **(env or {})})
        return replica

    def start(self, count: int, timeout: float = 30.0, **overrides: str) -> list[Replica]:
        """Start ``count`` replicas and wait until each answers /status."""
        started = [self.spawn(**overrides) for _ in range(count)]
        for replica in started:
            replica.wait_serving(timeout)
        return started

    @property
    def running(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def wait_exits(self, replicas: list[Replica], timeout: float) -> dict[str, int]:
        """Wait for all of ``replicas`` to exit (watching them together, so that each one's
        ``exited_after`` is accurate); return their statuses by identity."""
        try:
            poll(lambda: all([r.exited() for r in replicas]), timeout, "all replicas to exit")
        except AssertionError:
            self.kill_all()
            raise
        return {r.identity: r.wait_exit(0) for r in replicas}

    def kill_all(self) -> None:
        for replica in self.replicas:
            replica.kill()

    # -- who leads --------------------------------------------------------------------------
    def statuses(self, replicas: Iterable[Replica] | None = None) -> dict[str, dict[str, Any] | None]:
        return {r.identity: r.status() for r in (self.running if replicas is None else replicas)}

    def leaders(self) -> list[Replica]:
        """Running replicas whose /status says Leader."""
        return [r for r in self.running if r.state() == "Leader"]

    def sole_leader(self) -> Replica | None:
        """The leader if exactly one running replica leads, every other running one is an
        Attempter, all of them are connected to ZooKeeper and name it as leader; else None."""
        statuses = self.statuses()
        if any(s is None or s["zookeeper"]["state"] != "connected" for s in statuses.values()):
            return None
        leaders = [name for name, s in statuses.items() if s and s["state"] == "Leader"]
        if len(leaders) != 1:
            return None
        for name, status in statuses.items():
            assert status is not None
            if name != leaders[0] and status["state"] != "Attempter":
                return None
            seen = status["leader"]
            if seen is None or seen["identity"] != leaders[0] or seen["self"] != (name == leaders[0]):
                return None
        return next(r for r in self.running if r.identity == leaders[0])

    def wait_for_sole_leader(self, timeout: float) -> Replica:
        return poll(self.sole_leader, timeout, "exactly one leader that every replica agrees on")

    def election_status(self, timeout: float = 30.0) -> tuple[int, dict[str, Any], str]:
        """Run ``election status --json`` once: (exit status, the JSON view, stderr)."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "status",
                f"--zk-servers={self.zk_servers}",
                f"--election-path={self.election_path}",
                "--json",
            ],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        lines = result.stdout.strip().splitlines()
        return result.returncode, json.loads(lines[0]) if lines else {}, result.stderr

    # -- the leader's work ------------------------------------------------------------------
    def file_names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.file_dir))
        except FileNotFoundError:
            return []

    def leader_files(self) -> list[LeaderFile]:
        """Leader files now in ``file-dir``, sorted by name (= write order)."""
        found = []
        for name in self.file_names():
            if LEADER_FILE.fullmatch(name):
                record = LeaderFile.read(self.file_dir / name)
                if record is not None:
                    found.append(record)
        return found

    def wait_for_next_term(self, epoch: int, timeout: float) -> LeaderFile:
        """Wait for the first file of a term newer than ``epoch``."""
        return poll(lambda: self.first_file_after(epoch), timeout, f"the first file of a term after {epoch}")

    def first_file_after(self, epoch: int) -> LeaderFile | None:
        """The first file of a term newer than ``epoch``, if one exists yet."""
        for name in self.file_names():
            match = LEADER_FILE.fullmatch(name)
            if match and int(match.group(1)) > epoch:
                record = LeaderFile.read(self.file_dir / name)
                if record is not None:
                    return record
        return None

    # -- diagnostics ------------------------------------------------------------------------
    def report(self, lines: int = 60) -> str:
        """Each replica's command line, exit status and log tail (for failed tests)."""
        parts = []
        for replica in self.replicas:
            tail = "\n".join(replica.log_text().splitlines()[-lines:])
            parts.append(
                f"=== {replica!r} log {replica.log_path}\n$ {' '.join(replica.args)}\n"
                f"signals: {replica.signals}\n{tail}"
            )
        return "\n".join(parts) or "(no replicas)"


def check_terms_do_not_interleave(files: list[LeaderFile]) -> dict[int, list[LeaderFile]]:
    """Assert that the terms in ``files`` (sorted by name) follow one another; return them by epoch.

    Epochs never decrease in name order; each term has one writer, numbers its files 0, 1, 2...
    in order, and every file of an older term was written before any file of a newer one.
    """
    assert [f.name for f in files] == sorted(f.name for f in files)
    terms: dict[int, list[LeaderFile]] = {}
    for record in files:
        assert record.name == f"leader-{record.epoch:020d}-{record.sequence:012d}.json", record
        terms.setdefault(record.epoch, []).append(record)
    epochs = [f.epoch for f in files]
    assert epochs == sorted(epochs), f"epochs decrease in write order: {epochs}"
    previous: list[LeaderFile] | None = None
    for epoch, term in terms.items():
        writers = {f.identity for f in term}
        assert len(writers) == 1, f"epoch {epoch} written by {sorted(writers)}"
        times = [f.written_at for f in term]
        assert times == sorted(times), f"epoch {epoch}: files not written in name order"
        if previous is not None:
            assert max(f.written_at for f in previous) < min(times), (
                f"epoch {previous[0].epoch} ({previous[0].identity}) wrote after epoch {epoch} "
                f"({term[0].identity}) began"
            )
        previous = term
    return terms
