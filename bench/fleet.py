"""Process processes: the app (``election run``) and the baselines, in groups on one ZooKeeper path.

A :class:`Group` is N processes of one :class:`Flavour` competing under one election path and
writing leader files into one directory. Every flavour writes the app's file format
(``leader-<epoch>-<sequence>.json`` with ``written_at``), so one reader serves them all:

* the current leader is the identity in the newest file (highest epoch);
* a hand-over ends at ``written_at`` of the first file with a higher epoch.

Who is up is counted in ZooKeeper: the app's and the poller's member nodes, kazoo's lock nodes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from bench.common import REPO_ROOT
from bench.visibility import DirectoryWatch, watch
from tools import leader_files
from tools.leader_files import LeaderFile
from tools.replicas import Process, read_log, run_command
from tools.waiting import WaitTimeoutError, wait_for

BASELINES = Path(__file__).resolve().parent / "baselines"

# --------------------------------------------------------------------------
# flavours
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Flavour:
    """One implementation under test: how to start a contender and where it registers."""

    name: str
    label: str
    build: Callable[[Group, str], list[str]]
    registry: Callable[[str], str]  # election path -> the path whose children count contenders
    registered: Callable[[list[str]], int] = len

    def command(self, group: Group, identity: str) -> list[str]:
        return self.build(group, identity)


def _app_command(group: Group, identity: str) -> list[str]:
    settings = {
        "zk-servers": group.zk_for.get(identity, group.zk_address),
        "election-path": group.path,
        "identity": identity,
        "file-dir": str(group.file_dir),
        "http-address": "127.0.0.1:0",
        "attempter-timeout": "10s",
        "leader-timeout": "1s",
        "zk-session-timeout": f"{group.session_timeout:g}s",
        "storage-capacity": "100000",
        "log-format": "json",
        "log-level": "info",
        **group.extra,
    }
    return run_command(settings)


def _baseline_command(group: Group, identity: str, script: str, *extra: str) -> list[str]:
    """A baseline contender (bench/baselines/_contender.py): the options they all take, then its own."""
    return [
        sys.executable,
        str(BASELINES / script),
        "--zk",
        group.zk_address,
        "--path",
        group.path,
        "--identity",
        identity,
        "--file-dir",
        str(group.file_dir),
        "--session-timeout",
        f"{group.session_timeout:g}",
        *extra,
    ]


def _kazoo_command(group: Group, identity: str) -> list[str]:
    return _baseline_command(group, identity, "kazoo_election.py")


def _poller_command(group: Group, identity: str) -> list[str]:
    return _baseline_command(group, identity, "naive_poller.py", "--period", group.extra.get("period", "1.0"))


def _traced_app_command(group: Group, identity: str) -> list[str]:
    """The app under ``baselines/traced_replica.py``: the same CLI, every call timed to a file."""
    command = _app_command(group, identity)
    at = command.index("-m")
    return [
        sys.executable,
        str(BASELINES / "traced_replica.py"),
        "--trace-file",
        str(trace_path(group, identity)),
        *command[at + 2 :],
    ]


def trace_path(group: Group, identity: str) -> Path:
    path = group.workdir / "traces" / f"{identity}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def read_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


APP = Flavour("app", "election (app)", _app_command, lambda path: f"{path}/members")
TRACED_APP = Flavour("app", "election (traced)", _traced_app_command, lambda path: f"{path}/members")
KAZOO = Flavour(
    "kazoo",
    "kazoo Election",
    _kazoo_command,
    lambda path: path,
    registered=lambda children: sum(1 for c in children if "__lock__" in c),
)
POLLER = Flavour("poller", "naive 1 s poller", _poller_command, lambda path: f"{path}/members")
#: The app again, as committed at ``--compare-app-ref`` (its group is given that exported source).
APP_COMPARE = Flavour("app_compare", "election (compare)", _app_command, lambda path: f"{path}/members")
FLAVOURS = {f.name: f for f in (APP, KAZOO, POLLER, APP_COMPARE)}
#: The flavours that run the app's own ``election run`` (its logs say where a hand-over's time went).
APP_FLAVOURS = (APP, APP_COMPARE)


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------


def child_env(app_src: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The app under test comes from app_src (the repo, or a snapshot of it); bench/ from the repo.
    env["PYTHONPATH"] = os.pathsep.join([str(app_src), str(REPO_ROOT)])
    env.pop("ELECTION_ZK_SERVERS", None)
    return env


@dataclass
class Group:
    """N contenders of one flavour on one election path, one file dir, one ZooKeeper."""

    flavour: Flavour
    size: int
    zk_address: str
    path: str
    workdir: Path
    app_src: Path
    session_timeout: float = 4.0
    extra: dict[str, str] = field(default_factory=dict)
    zk_for: dict[str, str] = field(default_factory=dict)  # identity -> its own zk address (a relay)
    contenders: dict[str, Process] = field(default_factory=dict)
    observer: KazooClient | None = None
    visible: DirectoryWatch | None = None  # see watch_files

    def __post_init__(self) -> None:
        self.file_dir = self.workdir / "files"
        self.log_dir = self.workdir / "logs"
        self.file_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._env = child_env(self.app_src)
        self._serial = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def identities(self) -> list[str]:
        return [f"{self.flavour.name}-{i:03d}" for i in range(1, self.size + 1)]

    def spawn(self, identity: str) -> Process:
        self._serial += 1
        command = self.flavour.command(self, identity)
        contender = Process(
            identity, command, self.log_dir / f"{identity}.log", cwd=self.app_src, env=self._env
        )
        contender.start()
        self.contenders[identity] = contender
        return contender

    def connect_observer(self) -> KazooClient:
        if self.observer is None:
            self.observer = KazooClient(hosts=self.zk_address, timeout=10.0)
            self.observer.start(timeout=30)
        return self.observer

    def watch_files(self) -> DirectoryWatch:
        """Time the group's leader files as they appear (:mod:`bench.visibility`), from now until
        :meth:`stop`; ``WatchUnavailableError`` where inotify cannot be had."""
        if self.visible is None:
            self.visible = watch(self.file_dir)
        return self.visible

    def registered(self) -> int:
        client = self.connect_observer()
        try:
            children = client.get_children(self.flavour.registry(self.path))
        except NoNodeError:
            return 0
        return self.flavour.registered(children)

    def start(self, batch: int = 8, timeout: float = 120.0, first_alone: bool = True) -> None:
        """Start every contender (``batch`` at a time, each batch registered before the next)."""
        names = self.identities()
        if first_alone and names:
            # The first one leads: the others start as followers, as they would in a rolling start.
            self.spawn(names[0])
            self.wait_registered(1, timeout)
            wait_for(lambda: leader_files.newest(self.file_dir), timeout, f"{self.flavour.name} first leader")
            names = names[1:]
        for i in range(0, len(names), batch):
            for name in names[i : i + batch]:
                self.spawn(name)
            self.wait_registered(len(self.contenders), timeout)

    def wait_registered(self, count: int, timeout: float = 60.0) -> None:
        def check() -> bool:
            dead = [c.identity for c in self.contenders.values() if not c.alive]
            if dead:
                raise RuntimeError(f"{self.flavour.name} contenders exited: {dead}; see {self.log_dir}")
            return self.registered() >= count

        wait_for(check, timeout, f"{count} {self.flavour.name} contenders registered", interval=0.05)

    def wait_ready(self, timeout: float = 60.0) -> LeaderFile:
        """All N registered and the newest leader file belongs to a live contender."""
        self.wait_registered(self.size, timeout)

        def leader() -> LeaderFile | None:
            newest = leader_files.newest(self.file_dir)
            if newest is None:
                return None
            holder = self.contenders.get(newest.identity)
            return newest if holder is not None and holder.alive else None

        return wait_for(leader, timeout, f"a live {self.flavour.name} leader", interval=0.02)

    def leader(self) -> tuple[Process, LeaderFile]:
        newest = leader_files.newest(self.file_dir)
        if newest is None:
            raise RuntimeError(f"no {self.flavour.name} leader file in {self.file_dir}")
        return self.contenders[newest.identity], newest

    def wait_next_leader(self, epoch: int, timeout: float, poll: float = 0.002) -> LeaderFile:
        return wait_for(
            lambda: leader_files.first_of_term_after(self.file_dir, epoch),
            timeout,
            f"a new {self.flavour.name} leader after epoch {epoch}",
            interval=poll,
        )

    def wait_exit(self, contender: Process, timeout: float = 30.0) -> int:
        """``contender``'s exit status; SIGKILLed (status -9) if it has not exited within ``timeout``."""
        try:
            return contender.wait_exit(timeout)
        except WaitTimeoutError:
            return contender.returncode if contender.returncode is not None else -signal.SIGKILL

    def replace(self, contender: Process) -> Process:
        """Wait for ``contender`` to exit (killing it if it must) and start it again."""
        if contender.alive:
            self.wait_exit(contender)
        return self.spawn(contender.identity)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM everyone (sessions are closed, not left to expire), then SIGKILL stragglers."""
        for contender in self.contenders.values():
            if contender.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(contender.pid, signal.SIGCONT)
                    contender.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        for contender in self.contenders.values():
            if contender.proc is None:
                continue
            try:
                contender.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                contender.proc.kill()
                contender.proc.wait()
        if self.observer is not None:
            with contextlib.suppress(Exception):
                self.observer.stop()
                self.observer.close()
            self.observer = None
        if self.visible is not None:
            self.visible.close()
            self.visible = None

    def kill_all(self) -> None:
        for contender in self.contenders.values():
            contender.kill()

    def pids(self) -> list[int]:
        return [c.pid for c in self.contenders.values() if c.alive]


def app_log_events(log_path: Path) -> list[dict[str, Any]]:
    """The JSON lines of an app log (other lines skipped)."""
    return read_log(log_path, others=False)
