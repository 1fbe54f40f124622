"""Replicas of one election, started for real: the group the e2e tests and the chaos suite run.

A :class:`Cluster` starts :class:`tools.replicas.Replica` processes (``python -m app run``) that
share one ZooKeeper, one election path and one ``--file-dir``; each gets its own identity, a free
HTTP port on 127.0.0.1 (``tools.ports``) and a log file (JSON lines) under ``<workdir>/logs``. It
guarantees:

- no ``ELECTION_*`` variable of the caller's environment reaches a replica: the flags say it all;
- :meth:`Cluster.sole_leader` is strict: one Leader, every other running replica an Attempter,
  all connected and all naming that leader; anything less (a hand-over in flight) is ``None``;
- :meth:`Cluster.wait_exits` and :meth:`Cluster.kill_all` leave nothing running when they fail;
- the leader files are read through ``tools.leader_files`` (the app's own parser).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tools import leader_files
from tools.leader_files import LeaderFile
from tools.ports import free_port
from tools.replicas import Replica, clean_env, run_app, run_command
from tools.waiting import WaitTimeoutError, wait_for


def flags(settings: dict[str, str]) -> dict[str, str]:
    """Python keywords to flag names: ``zk_session_timeout`` -> ``zk-session-timeout``."""
    return {key.replace("_", "-"): value for key, value in settings.items()}


#: What every replica of a test cluster runs with unless the cluster or the replica says otherwise:
#: quick ticks and a short session, so that hand-overs and expiries fit in a test.
DEFAULTS = {
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
}


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
            **DEFAULTS,
            **flags(settings),
        }
        self.replicas: list[Replica] = []
        self.env = clean_env()

    # -- processes -------------------------------------------------------------------------------
    def spawn(
        self, identity: str | None = None, *extra: str, env: dict[str, str] | None = None, **overrides: str
    ) -> Replica:
        """Start one replica without waiting for it. ``extra`` are flags passed as given (e.g.
        ``--no-lead``, which takes no value); ``env`` adds to (or overrides) the environment of this
        replica only (e.g. a skewed clock)."""
        return self._spawn(identity, extra, env, overrides)

    def _spawn(
        self,
        identity: str | None,
        extra: tuple[str, ...],
        env: dict[str, str] | None,
        overrides: dict[str, str],
    ) -> Replica:
        identity = identity or f"replica-{len(self.replicas) + 1}"
        port = free_port()
        settings = {
            **self.settings,
            **flags(overrides),
            "identity": identity,
            "http-address": f"127.0.0.1:{port}",
        }
        args = run_command(settings, *extra)
        replica = Replica(identity, port, args, self.log_dir / f"{identity}.log", settings)
        self.replicas.append(replica)
        replica.start({**self.env, **(env or {})})
        return replica

    def start(self, count: int, timeout: float = 30.0, **overrides: str) -> list[Replica]:
        """Start ``count`` replicas and wait until each answers /status."""
        started = [self._spawn(None, (), None, overrides) for _ in range(count)]
        for replica in started:
            replica.wait_serving(timeout)
        return started

    @property
    def running(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    def by_identity(self, identity: str) -> Replica:
        """The running replica called ``identity``."""
        return next(r for r in self.running if r.identity == identity)

    def wait_exits(self, replicas: list[Replica], timeout: float) -> dict[str, int]:
        """Wait for all of ``replicas`` to exit (watching them together, so that each one's
        ``exited_after`` is accurate); return their statuses by identity."""
        try:
            wait_for(lambda: all([r.exited() for r in replicas]), timeout, "all replicas to exit")
        except WaitTimeoutError:
            self.kill_all()
            raise
        return {r.identity: r.wait_exit(0) for r in replicas}

    def kill_all(self) -> None:
        for replica in self.replicas:
            replica.kill()

    # -- who leads -------------------------------------------------------------------------------
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
        return wait_for(self.sole_leader, timeout, "exactly one leader that every replica agrees on")

    def cli(self, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
        """Run ``election <args> --zk-servers=... --election-path=...`` once, in the cluster's clean
        environment; never raises for a non-zero exit."""
        zk = (f"--zk-servers={self.zk_servers}", f"--election-path={self.election_path}")
        return run_app(*args, *zk, env=self.env, timeout=timeout)

    def election_status(self, timeout: float = 30.0) -> tuple[int, dict[str, Any], str]:
        """Run ``election status --json`` once: (exit status, the JSON view, stderr)."""
        result = self.cli("status", "--json", timeout=timeout)
        lines = result.stdout.strip().splitlines()
        return result.returncode, json.loads(lines[0]) if lines else {}, result.stderr

    # -- the leader's work -----------------------------------------------------------------------
    def file_names(self) -> list[str]:
        """Every name in ``file-dir`` (leader files or not), sorted; empty before it exists."""
        try:
            return sorted(os.listdir(self.file_dir))
        except FileNotFoundError:
            return []

    def leader_files(self) -> list[LeaderFile]:
        """Leader files now in ``file-dir``, sorted by name (= write order)."""
        return leader_files.files(self.file_dir)

    def first_file_after(self, epoch: int) -> LeaderFile | None:
        """The first file of a term newer than ``epoch``, if one exists yet."""
        if not self.file_dir.is_dir():
            return None
        return leader_files.first_of_term_after(self.file_dir, epoch)

    def wait_for_next_term(self, epoch: int, timeout: float) -> LeaderFile:
        """Wait for the first file of a term newer than ``epoch``."""
        return wait_for(
            lambda: self.first_file_after(epoch), timeout, f"the first file of a term after {epoch}"
        )

    # -- diagnostics -----------------------------------------------------------------------------
    def report(self, lines: int = 60) -> str:
        """Each replica's command line, exit status and log tail (for failed tests)."""
        return "\n".join(replica.describe(lines) for replica in self.replicas) or "(no replicas)"
