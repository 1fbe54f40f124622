"""Chaos runs: real replicas on a real ZooKeeper, one fault at a time, each measured and checked.

A :class:`Chaos` owns one election: 3-5 ``election run`` processes (a :class:`tests.e2e.cluster.Cluster`)
on a :class:`tests.chaos.infra.ZkTarget`, their shared ``file-dir`` and, when asked, a TCP relay per
replica and server (so that one replica's path can be cut) and a tmpfs under ``file-dir`` (so that it
can fill up or turn read-only). :meth:`Chaos.run` injects one fault from :data:`FAULTS` and returns a
:class:`FaultResult`: the figures measured and every invariant that did not hold. The pytest tests and
the soak (``python -m tests.chaos.soak``) both go through it.

Invariants checked after every fault:

* ``election audit`` passes on ``file-dir`` (and the suite's own reading agrees: files parse, one
  writer per epoch, and an older term never wrote after a newer one began, judged by ``written_at``
  and by the time each file was published);
* exactly one leader, agreed by every replica's ``/status``, writing again within the fault's bound;
* no replica exited unless the fault was to kill or stop it (then with the expected status), and no
  replica logged a traceback;
* what the fault promises (a new term for a dead leader, the same term when the leader's session
  survives, writes stopping when ZooKeeper cannot confirm the leader, errors counted for a bad disk).

Replicas: leader-timeout 100 ms (so that an overlap would show), session timeout 2 s, attempter-timeout
10 s (so that only the watch makes a hand-over fast), failover-timeout 60 s.

With ``Chaos(work="exec")`` the replicas run ``tests/e2e/heartbeat_child.py`` under ``--exec``
(issue 10) instead of writing files, with a 0.5 s ``--exec-stop-timeout`` (at most 4/9 x 2 s - 0.25 s).
The evidence is then the children's heartbeats (every 10 ms, one clock for all processes) in place of
the files: a term "writes" while its child beats, and the invariant replacing the audit is the
no-overlap rule (each run's last beat before the next run's first; :func:`overlaps`). Only the
faults in :data:`EXEC_FAULTS` run so.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import shlex
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from tests.chaos.evidence import (
    analyse,
    app_has,
    audit,
    epoch_of,
    leader_names,
    longest_gap,
    observe,
    parse_time,
    read_file,
)
from tests.chaos.infra import (
    TICK_MS,
    Filler,
    ForeignLockHolder,
    LoopbackCut,
    Relay,
    SyscallStall,
    Tmpfs,
    ZkTarget,
    faketime_unavailable,
    iptables_unavailable,
    skewed_clock_env,
    strace_unavailable,
    tmpfs_unavailable,
)
from tests.e2e.cluster import Cluster, Replica, poll
from tests.e2e.heartbeat_child import BeatLog, Process, overlap_seconds, overlaps, terms
from tools.localzk import LocalZooKeeper

TICK = 0.1  # --leader-timeout
SESSION = 2.0  # --zk-session-timeout
LEASE = SESSION * 2 / 3  # a leader writes only within this of a confirming read
MAX_WRITE_FAILURES = 3  # the app's default --max-write-failures

REPLICA_SETTINGS = {
    "leader_timeout": "100ms",
    "attempter_timeout": "10s",
    "zk_session_timeout": "2s",
    "zk_connect_timeout": "5s",
    "failover_timeout": "60s",
    "failover_backoff_max": "500ms",
    "shutdown_timeout": "10s",
    "log_level": "info",
}

# Deadlines of waits: generous, so that a loaded 2-core machine does not make a run flaky. What the
# service promises is checked separately, as a bound on the measured figure.
WAIT = 30.0
# Bounds on measured figures (seconds).
GRACEFUL_BOUND = 2.0  # a leader that leaves (SIGTERM, node deleted) -> the next term's first file
CRASH_BOUND = SESSION + 3.0  # a leader that dies or is cut off -> the next term's first file
RECOVER_BOUND = 5.0  # a ZooKeeper or disk fault cleared -> one agreed leader writing again
STOP_WRITING_BOUND = LEASE + 1.0 + 0.5  # quorum lost -> the leader's last write (lease + follower
# detection of the lost ZooKeeper leader, syncLimit 5 x tick 200 ms, + slack)
# Fault durations.
FREEZE_ZK = SESSION / 2  # ZooKeeper frozen for less than the session timeout
QUORUM_HOLD = SESSION + 1.5  # quorum lost for longer than the session timeout
STORAGE_HOLD = 1.0  # a bad disk, after the errors (and resignation) were seen
HOLD_MAX = 120.0  # longest a leader is held inside its write (it is released before)
# Issue 9's faults.
LONG_REQUEST = "10s"  # a --zk-session-timeout above what the servers grant
GRANTED_MAX = 20 * TICK_MS / 1000  # the most a server with this tickTime grants (4 s)
FSYNC_HOLD = SESSION + 1.5  # a leader held in its fsync past its session
LOCK_HOLD = 4.0  # a foreign process holds the fence lock this long, then lets go
BACKOFF_MAX = 0.5  # --failover-backoff-max (REPLICA_SETTINGS): the "failover-backoff window"
# Terms a replica may begin per failover-backoff window while nothing can be published (a leader
# that cannot publish resigns; Failover's backoff keeps it from taking the node straight back).
# Adjust to the bound the documentation gives.
MAX_TERMS_PER_REPLICA_PER_BACKOFF_WINDOW = 2
SKEW = "-2s"  # the wall clock of the skewed replicas (libfaketime)

_TRACEBACK = "Traceback (most recent call last)"

HEARTBEAT_CHILD = Path(__file__).resolve().parents[1] / "e2e" / "heartbeat_child.py"
EXEC_STOP_TIMEOUT = "500ms"  # --exec-stop-timeout of the exec share: G <= 4/9 x SESSION - 0.25 s
BEATS_PER_TICK = 10  # a child beats every 10 ms: 10 beats stand for one 100 ms file
# The faults the exec share runs. Left out, and why:
# * leader_sigstop freezes the election process and not its child. No lease can survive that: the
#   dead-man timer that would stop the child is a thread of the frozen process. With files the
#   epoch fence is the second wall (a thawed leader's write is refused); a user's command must fence
#   its own resource with ELECTION_EPOCH for the same protection (examples/), so the overlap this
#   fault causes is by design, not a bug to detect.
# * leader_frozen_mid_write and slow_fsync_partitioned hold a leader inside a file write, which
#   never happens under --exec; disk_full, disk_read_only, fence_corrupt and foreign_lock_holder
#   break file-dir and the fence, which the command runner does not use; clock_skew and
#   granted_session_short check the files' order and the file writer's lease.
EXEC_FAULTS = (
    "leader_sigkill",
    "leader_sigterm",
    "zk_restart",
    "zk_member_kill",
    "zk_leader_kill",
    "zk_quorum_loss",
    "connection_cut",
    "zk_freeze",
    "leader_node_deleted",
)


def holds_posix_lock(pid: int) -> bool:
    """Whether process ``pid`` holds a POSIX (fcntl) lock, from /proc/locks (the fence's lock is the
    only one an election process takes)."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if "->" in fields:
            continue  # a waiter, not a holder
        if len(fields) > 4 and fields[1] == "POSIX" and fields[4] == str(pid):
            return True
    return False


@dataclass
class FaultResult:
    fault: str
    zk: str
    replicas: int
    work: str = "files"  # the replicas' work: "files" (the default writer) or "exec" (issue 10)
    violations: list[str] = field(default_factory=list)
    leader_before: str | None = None
    epoch_before: int | None = None
    leader_after: str | None = None
    epoch_after: int | None = None
    new_terms: int = 0  # newer terms (epochs) that wrote files, from the fault until settled
    no_leader_s: float | None = None  # longest gap between consecutive files across the fault
    handover_s: float | None = None  # fault -> first file of the next term (None: the term went on)
    recovered_s: float | None = None  # fault cleared -> one agreed leader that has written since
    overlap_s: float = 0.0  # longest time an older term wrote after a newer one began (must be 0)
    stale_writes: int = 0  # files of an older term published after a newer term's first
    audit: str = "not run"
    audit_violations: int = 0
    exits: dict[str, int | None] = field(default_factory=dict)
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 4)
        data["ok"] = self.ok
        return data

    def line(self) -> str:
        def s(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}s"

        term = (
            f"{self.leader_before}@{self.epoch_before} -> {self.leader_after}@{self.epoch_after}"
            if self.epoch_after != self.epoch_before
            else f"{self.leader_after}@{self.epoch_after} kept"
        )
        verdict = "ok" if self.ok else f"VIOLATED: {'; '.join(self.violations)}"
        work = "" if self.work == "files" else f" +{self.work}"
        return (
            f"{self.fault}{work} [{self.zk}] {term}; no leader {s(self.no_leader_s)}, hand-over "
            f"{s(self.handover_s)}, recovered {s(self.recovered_s)}, overlap {self.overlap_s:.3f}s, "
            f"audit {self.audit}; {verdict}"
        )


@dataclass
class Before:
    leader: Replica
    epoch: int
    session: int


@dataclass
class Outcome:
    """What a fault did, and what the generic checks should expect of its aftermath."""

    t0: float  # wall time the fault began
    cleared_at: float  # wall time the fault was cleared (t0 for an instant fault)
    expect: str  # "new-term", "same-term" or "any"
    handover_bound: float | None = None  # t0 -> the next term's first file, when one is expected
    recover_bound: float = RECOVER_BOUND  # cleared_at -> one agreed leader writing again
    # Measured by the fault itself, when the generic settle comes too late to measure it (a killed
    # member is relaunched, a JVM start of 1-3.5 s, before the generic checks run).
    recovered_s: float | None = None
    expected_exits: dict[str, int] = field(default_factory=dict)  # identity -> exit status
    violations: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    name: str
    needs: tuple[str, ...]  # "ensemble", "relays" (iptables), "tmpfs", "strace"
    summary: str


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("leader_sigkill", (), "the leader is killed (SIGKILL)"),
        Fault("leader_sigstop", (), "the leader is frozen (SIGSTOP) past its session, then thawed"),
        Fault("leader_sigterm", (), "the leader is stopped gracefully (SIGTERM)"),
        Fault("zk_restart", (), "every ZooKeeper server is killed and started again"),
        Fault("zk_member_kill", ("ensemble",), "the ensemble member the leader is connected to dies"),
        Fault("zk_leader_kill", ("ensemble",), "the ensemble's leader member dies (a member election)"),
        Fault("zk_quorum_loss", ("ensemble",), "2 of 3 members stop for longer than the session"),
        Fault("connection_cut", ("relays",), "the leader's TCP paths to ZooKeeper are cut (iptables)"),
        Fault("zk_freeze", (), "ZooKeeper is frozen (SIGSTOP) for half the session timeout"),
        Fault("disk_full", ("tmpfs",), "file-dir's file system fills up"),
        Fault("disk_read_only", ("tmpfs",), "file-dir's file system turns read-only"),
        Fault("leader_node_deleted", (), "an operator deletes the leader node (kazoo delete)"),
        Fault(
            "leader_frozen_mid_write",
            ("strace",),
            "the leader is frozen past its session between its last check and publishing a file",
        ),
        Fault(
            "granted_session_short",
            (),
            f"every replica asks for a {LONG_REQUEST} session (granted {GRANTED_MAX:g} s); the leader dies",
        ),
        Fault(
            "slow_fsync_partitioned",
            ("strace", "relays"),
            "the leader is held in a file's fsync past its session and cut off from ZooKeeper meanwhile",
        ),
        Fault("fence_corrupt", (), "`.election-fence` is overwritten with garbage"),
        Fault("foreign_lock_holder", (), f"a foreign process holds the fence lock for {LOCK_HOLD:g} s"),
        Fault(
            "clock_skew",
            ("faketime",),
            f"leadership passes to replicas whose wall clocks are {SKEW.lstrip('-')} behind, and back",
        ),
    )
}


def unavailable(need: str, zk_kind: str) -> str | None:
    """Why a fault's need cannot be met here, or None."""
    if need == "ensemble":
        return None if zk_kind == "ensemble" else "needs a ZooKeeper ensemble"
    if need == "relays":
        return iptables_unavailable()
    if need == "tmpfs":
        return tmpfs_unavailable()
    if need == "strace":
        return strace_unavailable()
    if need == "faketime":
        return faketime_unavailable()
    raise ValueError(need)


def scrape(replica: Replica) -> dict[str, float] | None:
    """The replica's /metrics as {"name{labels}": value}; None if it does not answer."""
    return replica.metrics(timeout=2.0)


class Chaos:
    """One election under test: replicas, their ZooKeeper, their file-dir, and the faults."""

    def __init__(
        self,
        workdir: Path,
        zk: ZkTarget,
        *,
        replicas: int = 3,
        election_path: str = "/chaos",
        relays: bool = False,
        tmpfs: bool = False,
        capacity: int = 1000,
        rng: random.Random | None = None,
        work: str = "files",
        **settings: str,
    ) -> None:
        if work not in ("files", "exec"):
            raise ValueError(f"unknown work {work!r}")
        self.work = work
        # Where the heartbeat children record (exec work only).
        self.beat_dir: Path | None = workdir / "beats" if work == "exec" else None
        self._beat_log = BeatLog(self.beat_dir) if self.beat_dir is not None else None
        if self.beat_dir is not None:
            command = [sys.executable, str(HEARTBEAT_CHILD), "--dir", str(self.beat_dir)]
            settings = {"exec": shlex.join(command), "exec_stop_timeout": EXEC_STOP_TIMEOUT, **settings}
        self.workdir = workdir
        self.zk = zk
        self.count = replicas
        self.capacity = capacity
        self.rng = rng or random.Random(0)
        self.cluster = Cluster(
            workdir / "cluster",
            zk.connect_string,
            election_path,
            **{**REPLICA_SETTINGS, "storage_capacity": str(capacity), **settings},
        )
        self.file_dir = self.cluster.file_dir
        self.leader_path = f"{election_path}/leader"
        self.use_relays = relays
        self.relays: dict[str, list[Relay]] = {}
        self.cut: LoopbackCut | None = None
        self.tmpfs = Tmpfs(self.file_dir) if tmpfs else None
        self.filler: Filler | None = None
        self.stall: SyscallStall | None = None
        self._kazoo: KazooClient | None = None
        self._log_offsets: dict[Path, int] = {}
        self.views: list[tuple[float, dict[str, str]]] = []
        self.identities = [f"replica-{i + 1}" for i in range(replicas)]
        # Flags and environment a fault gives some replicas for a while (identity -> ...).
        self.spawn_overrides: dict[str, dict[str, str]] = {}
        self.spawn_env: dict[str, dict[str, str]] = {}

    # -- set-up and tear-down ---------------------------------------------------------------------
    def start(self) -> None:
        if self.tmpfs is not None:
            self.tmpfs.mount()
        else:
            self.file_dir.mkdir(parents=True, exist_ok=True)
        if self.use_relays:
            # Every relay first: a relay's port, taken from the kernel after a replica's HTTP port was
            # picked but before it listens, made that replica exit 2 (address in use) at start.
            for identity in self.identities:
                self.relays[identity] = [Relay(s.address) for s in self.zk.servers]
        for identity in self.identities:
            self._spawn(identity)
        for replica in self.cluster.running:
            replica.wait_serving(WAIT)
        self.cluster.wait_for_sole_leader(WAIT)

    def _spawn(self, identity: str) -> Replica:
        overrides: dict[str, str] = {}
        if self.use_relays:
            relays = self.relays.get(identity)
            if relays is None:
                relays = self.relays[identity] = [Relay(s.address) for s in self.zk.servers]
            overrides["zk_servers"] = ",".join(r.address for r in relays)
        overrides.update(self.spawn_overrides.get(identity, {}))
        return self.cluster.spawn(identity, env=self.spawn_env.get(identity), **overrides)

    def replica(self, identity: str) -> Replica:
        return [r for r in self.cluster.replicas if r.identity == identity][-1]

    def current(self) -> list[Replica]:
        return [self.replica(identity) for identity in self.identities]

    def close(self) -> None:
        """Undo everything, whatever state it is in (replicas are SIGKILLed)."""
        for replica in self.cluster.replicas:
            if replica.alive:
                with contextlib.suppress(OSError):
                    os.kill(replica.pid, signal.SIGCONT)
        self._clear_faults()
        self.cluster.kill_all()
        for relays in self.relays.values():
            for relay in relays:
                relay.close()
        if self._kazoo is not None:
            with contextlib.suppress(Exception):
                self._kazoo.stop()
                self._kazoo.close()
        if self.tmpfs is not None:
            self.tmpfs.unmount()

    def _clear_faults(self) -> None:
        if self.stall is not None:
            self.stall.stop()
            self.stall = None
        if self.cut is not None:
            self.cut.remove()
            self.cut = None
        if self.filler is not None:
            self.filler.stop()
            self.filler = None
        if self.tmpfs is not None and self.tmpfs.mounted:
            with contextlib.suppress(RuntimeError):
                self.tmpfs.remount("rw", timeout=2.0)

    def recover(self) -> None:
        """After a failed run: clear every fault, heal ZooKeeper, restart dead or stuck replicas (and
        those a fault left with other flags or environment)."""
        self._clear_faults()
        self.zk.heal()
        odd = set(self.spawn_overrides) | set(self.spawn_env)
        self.spawn_overrides, self.spawn_env = {}, {}
        for replica in self.current():
            if replica.identity in odd:
                replica.kill()
            if replica.alive:
                with contextlib.suppress(OSError):
                    os.kill(replica.pid, signal.SIGCONT)
                if replica.status() is not None:
                    continue
                replica.kill()
            self._spawn(replica.identity).wait_serving(WAIT)
        self.cluster.wait_for_sole_leader(WAIT)

    def finish(self) -> list[str]:
        """SIGTERM every replica; return what went wrong (an exit status not 0, a dirty audit)."""
        problems = []
        replicas = [r for r in self.current() if r.alive]
        for replica in replicas:
            replica.send(signal.SIGTERM)
        codes = self.cluster.wait_exits(replicas, WAIT)
        problems += [f"{name} exited {code} after SIGTERM" for name, code in codes.items() if code != 0]
        if self.beat_dir is not None:
            problems += [f"overlap: {p}" for p in overlaps(self._beats())]
            problems += self._tracebacks(since_mark=False)
            return problems
        result = audit(self.file_dir, self.capacity, live=False)
        problems += [f"final audit: {v}" for v in result.violations]
        files, unreadable = observe(self.file_dir)
        problems += unreadable + analyse(files).problems
        problems += self._tracebacks(since_mark=False)
        return problems

    # -- looking ----------------------------------------------------------------------------------
    def kazoo(self) -> KazooClient:
        if self._kazoo is None:
            # The suite's own client, for faults an operator would cause. Reconnecting quickly after
            # a ZooKeeper outage keeps those faults on time.
            retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=0.5)
            self._kazoo = KazooClient(hosts=self.zk.connect_string, timeout=4.0, connection_retry=retry)
            self._kazoo.start(timeout=WAIT)
        return self._kazoo

    def _epochs(self) -> list[int]:
        if self.beat_dir is not None:
            return sorted({p.epoch for p in self._beats() if p.epoch is not None})
        return sorted({epoch_of(name) for name in leader_names(self.file_dir)})

    def _beats(self) -> list[Process]:
        assert self._beat_log is not None
        return self._beat_log.processes()

    def work_done(self, epoch: int) -> int:
        """How much work the term ``epoch`` has done: its files, or its children's beats divided
        by :data:`BEATS_PER_TICK` (so that one unit is a 100 ms tick either way)."""
        if self.beat_dir is not None:
            beats = sum(len(p.beats) for p in self._beats() if p.epoch == epoch)
            return beats // BEATS_PER_TICK
        return len(self.files_of(epoch))

    def files_of(self, epoch: int) -> list[str]:
        return [name for name in leader_names(self.file_dir) if epoch_of(name) == epoch]

    def wait_newer_files(self, epoch: int, count: int, timeout: float) -> list[str]:
        """Wait until ``count`` files of terms newer than ``epoch`` exist; return their names. (Exec
        work: ``count`` ticks' worth of beats; returns the newer epochs, as text.)"""
        if self.beat_dir is not None:

            def newer_work() -> list[str] | None:
                later = [e for e in self._epochs() if e > epoch]
                return [str(e) for e in later] if sum(self.work_done(e) for e in later) >= count else None

            return poll(newer_work, timeout, f"{count} tick(s) of beats of a term after epoch {epoch}")
        return poll(
            lambda: (
                (names := [n for n in leader_names(self.file_dir) if epoch_of(n) > epoch])[count - 1 :]
                and names
            ),
            timeout,
            f"{count} file(s) of a term after epoch {epoch}",
        )

    def last_written(self, epoch: int) -> float | None:
        """``written_at`` of the newest file of ``epoch`` (exec work: the wall time of its children's
        last beat); None if there is none."""
        if self.beat_dir is not None:
            return max((p.last_wall for p in self._beats() if p.epoch == epoch), default=None)
        for name in reversed(self.files_of(epoch)):
            with contextlib.suppress(ValueError):
                record = read_file(self.file_dir / name)
                if record is not None:
                    return record.written_at
        return None

    def before(self) -> Before:
        """Wait for a steady election: one agreed leader that has written at least two files."""

        def steady() -> Before | None:
            leader = self.cluster.sole_leader()
            status = leader.status() if leader is not None else None
            if leader is None or status is None or status["leader"] is None:
                return None
            epoch = int(status["leader"]["epoch"])
            # The newest term on disk must be the one /status names (which may be 250 ms old).
            if self._epochs()[-1:] != [epoch] or self.work_done(epoch) < 2:
                return None
            return Before(leader, epoch, int(status["zookeeper"]["session_id"], 16))

        return poll(steady, WAIT, "one agreed leader that has written two files")

    def settle(self, since: float, timeout: float = WAIT) -> tuple[Replica, int, float]:
        """Wait for one leader, agreed by every replica, that has written a file after ``since``;
        return it, its epoch and how long after ``since`` that was seen."""

        self.views = []

        def settled() -> tuple[Replica, int] | None:
            view = self.view()
            if not self.views or self.views[-1][1] != view:
                self.views.append((round(time.time() - since, 3), view))
            leader = self.cluster.sole_leader()
            if leader is None:
                return None
            status = leader.status()
            if status is None or status["leader"] is None:
                return None
            epoch = int(status["leader"]["epoch"])
            if any(e > epoch for e in self._epochs()):
                return None  # /status may show the leader node as read up to 250 ms ago
            last = self.last_written(epoch)
            return (leader, epoch) if last is not None and last > since else None

        leader, epoch = poll(settled, timeout, f"one agreed leader writing after {since:.3f}")
        return leader, epoch, time.time() - since

    def view(self) -> dict[str, str]:
        """What each running replica says, in a line each (for diagnostics)."""
        view = {}
        for replica in self.cluster.running:
            status = replica.status()
            if status is None:
                view[replica.identity] = "no answer"
                continue
            leader = status["leader"]
            seen = "nobody" if leader is None else f"{leader['identity'] or '?'}@{leader['epoch']}"
            view[replica.identity] = f"{status['state']} zk={status['zookeeper']['state']} sees {seen}"
        return view

    def metric(self, name: str, replicas: list[Replica] | None = None) -> float:
        """Sum of one metric over the running replicas (those that answer)."""
        total = 0.0
        for replica in replicas if replicas is not None else self.cluster.running:
            samples = scrape(replica)
            if samples is not None:
                total += sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))
        return total

    def _mark_logs(self) -> None:
        """Remember where each replica's log ends: what comes after belongs to the current fault."""
        self._log_offsets = {path: path.stat().st_size for path in self.cluster.log_dir.glob("*.log")}

    def _log_text(self, since_mark: bool = True) -> dict[str, str]:
        texts = {}
        for path in sorted(self.cluster.log_dir.glob("*.log")):
            with path.open("rb") as log:
                log.seek(self._log_offsets.get(path, 0) if since_mark else 0)
                texts[path.stem] = log.read().decode(errors="replace")
        return texts

    def _tracebacks(self, since_mark: bool = True) -> list[str]:
        return [
            f"{name} logged a traceback"
            for name, text in self._log_text(since_mark).items()
            if _TRACEBACK in text
        ]

    def _count_events(self, event: str) -> int:
        """Log lines with ``"event": event`` since the fault began."""
        needle = f'"event": "{event}"'
        return sum(text.count(needle) for text in self._log_text().values())

    # -- one fault --------------------------------------------------------------------------------
    def run(self, name: str) -> FaultResult:
        fault = FAULTS[name]
        result = FaultResult(name, self.zk.kind, self.count)
        began = time.monotonic()
        try:
            self._run(fault, result)
        except Exception as exc:
            result.violations.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:400])
            result.details["error"] = f"{type(exc).__name__}: {exc}"[:4000]
            with contextlib.suppress(Exception):
                self._clear_faults()
        result.duration_s = time.monotonic() - began
        return result

    def _run(self, fault: Fault, result: FaultResult) -> None:
        self._mark_logs()  # what was logged before this fault is not this fault's
        before = self.before()
        result.leader_before, result.epoch_before = before.leader.identity, before.epoch
        inject: Callable[[Before], Outcome] = getattr(self, f"_{fault.name}")
        outcome = inject(before)
        result.violations += outcome.violations
        result.details.update(outcome.details)

        leader, epoch, recovered = self.settle(outcome.cleared_at)
        if outcome.recovered_s is not None:
            recovered = outcome.recovered_s
        result.leader_after, result.epoch_after, result.recovered_s = leader.identity, epoch, recovered
        if recovered > outcome.recover_bound:
            result.details["views_while_settling"] = self.views[-12:]
            result.violations.append(
                f"one agreed leader writing only {recovered:.3f}s after the fault cleared "
                f"(bound {outcome.recover_bound:g}s)"
            )
        self._hold(leader, epoch, result)
        if self.beat_dir is not None:
            self._check_beats(before, outcome, result, epoch)
            return

        files, unreadable = observe(self.file_dir)
        analysis = analyse(files)
        result.violations += unreadable + analysis.problems
        result.overlap_s, result.stale_writes = analysis.overlap_s, analysis.stale_writes
        newer = sorted({f.epoch for f in files if f.epoch > before.epoch})
        result.new_terms = len(newer)
        result.no_leader_s = longest_gap(files, outcome.t0, outcome.cleared_at, epoch)
        if newer:
            first = min((f for f in files if f.epoch == newer[0]), key=lambda f: f.written_at)
            result.handover_s = first.written_at - outcome.t0
        self._expectations(outcome, result)
        # Exits first: a replica killed inside its write leaves a temporary file that only the next
        # start removes (as in Kubernetes), so the audit runs once the killed ones are back.
        self._check_exits(outcome, result)

        checked = audit(self.file_dir, self.capacity, live=True)
        result.audit, result.audit_violations = checked.summary, len(checked.violations)
        result.violations += [f"audit: {v}" for v in checked.violations]
        result.details["audit_output"] = checked.output[-2000:] if not checked.ok else ""
        result.violations += self._tracebacks()
        result.details.update(
            {
                "leader_entries": self._count_events("leadership_acquired"),
                "write_errors_logged": self._count_events("write_error"),
                "fenced_writes": self._count_events("fenced"),
            }
        )

    def _check_beats(self, before: Before, outcome: Outcome, result: FaultResult, epoch: int) -> None:
        """The exec share's evidence, from the children's heartbeats: the no-overlap rule (it takes
        the audit's place), new terms, the hand-over and the longest time no child beat."""
        processes = self._beats()
        problems = overlaps(processes)
        result.violations += [f"overlap: {p}" for p in problems]
        result.overlap_s = overlap_seconds(processes)
        result.stale_writes = sum(1 for p in problems if " beat " in p)  # runs that beat too long
        runs = terms(processes)
        newer = sorted({r.epoch for r in runs if r.epoch is not None and r.epoch > before.epoch})
        result.new_terms = len(newer)
        if newer:
            result.handover_s = min(r.first_wall for r in runs if r.epoch == newer[0]) - outcome.t0
        beats = sorted(t for p in processes for t in p.beats_wall)
        end = min(
            (t for p in processes if p.epoch == epoch for t in p.beats_wall if t > outcome.cleared_at),
            default=None,
        )
        if end is not None:
            window = [max([t for t in beats if t <= outcome.t0], default=outcome.t0)]
            window += [t for t in beats if window[0] < t <= end]
            result.no_leader_s = max((b - a for a, b in itertools.pairwise(window)), default=0.0)
        if outcome.expect == "same-term":
            # Under --exec a suspended connection stops the child at once (issue 10); whether the
            # leader then starts it again in the same term is not promised, so only safety is.
            result.details["same_term"] = not newer
            outcome.expect = "any"
        self._expectations(outcome, result)
        self._check_exits(outcome, result)
        result.audit = "n/a (exec)"
        result.violations += self._tracebacks()
        result.details.update(
            {
                "leader_entries": self._count_events("leadership_acquired"),
                "children": len(
                    {r.child.pid for r in runs if r.epoch is not None and r.epoch >= before.epoch}
                ),
                "work_stops_logged": self._count_events("work_stopping"),
            }
        )

    def _expectations(self, outcome: Outcome, result: FaultResult) -> None:
        if outcome.expect == "new-term" and result.new_terms == 0:
            result.violations.append("no new term began although the leader was gone")
        if outcome.expect == "same-term" and result.new_terms:
            result.violations.append(
                f"needless leadership change: {result.leader_before}@{result.epoch_before} -> "
                f"{result.leader_after}@{result.epoch_after} ({result.new_terms} new term(s))"
            )
        bound = outcome.handover_bound
        if bound is not None and result.handover_s is not None and result.handover_s > bound:
            result.violations.append(f"hand-over took {result.handover_s:.3f}s (bound {bound:g}s)")

    def _hold(self, leader: Replica, epoch: int, result: FaultResult, ticks: int = 5) -> None:
        """Once settled, the same leader leads, and only its term writes, for a few ticks."""
        count = self.work_done(epoch)
        poll(lambda: self.work_done(epoch) >= count + ticks, WAIT, f"{ticks} more ticks of work of {epoch}")
        if self.cluster.sole_leader() is not leader:
            result.violations.append(f"leadership did not hold after settling on {leader.identity}@{epoch}")
        later = [e for e in self._epochs() if e > epoch]
        if later:
            result.violations.append(f"terms {later} began after settling on {leader.identity}@{epoch}")

    def _check_exits(self, outcome: Outcome, result: FaultResult) -> None:
        for replica in self.current():
            if replica.alive:
                continue
            code = replica.returncode
            result.exits[replica.identity] = code
            expected = outcome.expected_exits.get(replica.identity)
            if expected is None:
                result.violations.append(f"{replica.identity} exited with status {code}")
            elif code != expected:
                result.violations.append(f"{replica.identity} exited with {code}, expected {expected}")
        # As its orchestrator would, start again what was meant to go, and let it pass Init (which
        # removes the leftovers of a write it was killed in).
        for identity in result.exits:
            again = self._spawn(identity)
            again.wait_serving(WAIT)
            poll(
                lambda again=again: (again.status() or {}).get("state") not in (None, "Init"),
                WAIT,
                f"{identity} to pass Init after its restart",
            )

    # -- the faults -------------------------------------------------------------------------------
    def _leader_sigkill(self, before: Before) -> Outcome:
        t0 = before.leader.send(signal.SIGKILL)
        before.leader.wait_exit(WAIT)
        self.wait_newer_files(before.epoch, 1, WAIT)
        return Outcome(
            t0,
            t0,
            "new-term",
            handover_bound=CRASH_BOUND,
            expected_exits={before.leader.identity: -signal.SIGKILL},
        )

    def _leader_sigterm(self, before: Before) -> Outcome:
        t0 = before.leader.send(signal.SIGTERM)
        self.wait_newer_files(before.epoch, 1, WAIT)
        before.leader.wait_exit(WAIT)
        stopped = [
            parse_time(r["time"])
            for r in before.leader.log_records()
            if r.get("event") == "stopped" and parse_time(r["time"]) >= t0
        ]
        return Outcome(
            t0,
            t0,
            "new-term",
            handover_bound=GRACEFUL_BOUND,
            expected_exits={before.leader.identity: 0},
            details={"stopped_after_s": stopped[0] - t0 if stopped else None},
        )

    def _leader_sigstop(self, before: Before) -> Outcome:
        frozen = before.leader
        # Frozen outside the fence's critical section: a process frozen while it holds the lock
        # stops everyone's writes until it thaws (that liveness limit is the fault
        # leader_frozen_mid_write's and foreign_lock_holder's business, not this one's, which is
        # about a stale leader past its session). On a loaded disk the section lasts long enough
        # (its record's fsync) for a random freeze to land in it: thaw and freeze again.
        t0 = frozen.send(signal.SIGSTOP)
        retries = 0
        while holds_posix_lock(frozen.pid) and retries < 50:
            frozen.send(signal.SIGCONT)
            time.sleep(0.002)
            t0 = frozen.send(signal.SIGSTOP)
            retries += 1
        try:
            # The others take over once ZooKeeper expires the frozen leader's session; let the new
            # term write a few files, so that anything the thawed leader wrote would land among them.
            self.wait_newer_files(before.epoch, 3, WAIT)
        finally:
            t1 = frozen.send(signal.SIGCONT)
        violations = []

        def rejoined() -> bool:
            status = frozen.status()
            return bool(
                status
                and status["state"] == "Attempter"
                and status["zookeeper"]["session_id"] not in (None, f"0x{before.session:x}")
            )

        poll(rejoined, WAIT, f"{frozen.identity} to rejoin as an attempter with a new session")
        old_term = [f for f in observe(self.file_dir)[0] if f.epoch == before.epoch]
        late = [f.name for f in old_term if f.written_at >= t1 or f.published >= t1]
        if late:
            violations.append(f"the thawed leader wrote {late} after SIGCONT")
        return Outcome(
            t0,
            t0,
            "new-term",
            handover_bound=CRASH_BOUND,
            violations=violations,
            details={"frozen_s": t1 - t0, "refrozen_outside_the_lock": retries},
        )

    def _zk_restart(self, before: Before) -> Outcome:
        t0 = time.time()
        self.zk.restart()
        cleared = time.time()
        return Outcome(t0, cleared, "any", details={"zk_down_s": cleared - t0})

    def _zk_member_kill(self, before: Before) -> Outcome:
        member = poll(
            lambda: self.zk.server_of_session(before.session),
            WAIT,
            f"the member serving session 0x{before.session:x}",
        )
        return self._kill_member(member, before)

    def _zk_leader_kill(self, before: Before) -> Outcome:
        return self._kill_member(self.zk.leader_member(), before)

    def _kill_member(self, member: LocalZooKeeper, before: Before) -> Outcome:
        """Kill one ensemble member until the election has settled without it, then start it again.
        The replicas it served reconnect to another member within their sessions (after an election
        among the members, if it was ZooKeeper's leader): the leader keeps its node and epoch."""
        was_zk_leader = member.mode() == "leader"
        served_the_leader = before.session in self.zk.sessions(member)
        t0 = time.time()
        member.stop()
        try:
            _leader, _epoch, settled = self.settle(t0)
        finally:
            relaunched = time.monotonic()
            member.launch()
            member.wait_until_serving(WAIT)
            relaunch_s = time.monotonic() - relaunched
        return Outcome(
            t0,
            t0,
            "same-term",
            recovered_s=settled,  # measured while the member was down, before its relaunch
            details={
                "member": member.address,
                "member_was_zk_leader": was_zk_leader,
                "member_served_the_leader": served_the_leader,
                "settled_s": settled,
                # the relaunch after the election settled (a JVM start: 1-3.5 s loaded)
                "relaunch_s": relaunch_s,
            },
        )

    def _zk_quorum_loss(self, before: Before) -> Outcome:
        own = self.zk.server_of_session(before.session)
        others = [s for s in self.zk.servers if s is not own]
        stopped = [own, self.rng.choice(others)] if own is not None else self.rng.sample(others, 2)
        t0 = time.time()
        for member in stopped:
            member.stop()
        violations = []
        try:
            end = time.monotonic() + QUORUM_HOLD

            def outage_held() -> bool:
                dead = [r.identity for r in self.current() if not r.alive]
                assert not dead, f"{dead} exited during the quorum loss"
                return time.monotonic() >= end

            poll(outage_held, WAIT, "the quorum loss to last", interval=0.05)
            last = self.last_work(default=t0)
            if last - t0 > STOP_WRITING_BOUND:
                violations.append(f"a file was written {last - t0:.3f}s into the quorum loss")
            leading = [r.identity for r in self.cluster.leaders()]
            if leading:
                violations.append(f"{leading} still Leader {QUORUM_HOLD:g}s into the quorum loss")
        finally:
            self.zk.heal()
        cleared = time.time()
        return Outcome(
            t0,
            cleared,
            "any",
            violations=violations,
            details={"last_write_after_fault_s": last - t0, "zk_down_s": cleared - t0},
        )

    def _connection_cut(self, before: Before) -> Outcome:
        cut_off = before.leader
        self.cut = LoopbackCut([relay.port for relay in self.relays[cut_off.identity]])
        t0 = time.time()
        self.cut.apply()
        try:
            self.wait_newer_files(before.epoch, 3, WAIT)
        finally:
            self.cut.remove()
            self.cut = None
        t1 = time.time()

        def rejoined() -> bool:
            status = cut_off.status()
            return bool(
                status and status["state"] == "Attempter" and status["zookeeper"]["state"] == "connected"
            )

        poll(rejoined, WAIT, f"{cut_off.identity} to rejoin as an attempter")
        # The cut-off leader must stop before its session can have expired on the server, and may
        # write only within the lease of its last confirmed read (which came before the cut).
        left = self._left_leader_at(cut_off, t0)
        last = self.last_written(before.epoch)
        violations = []
        if left is None or left - t0 >= SESSION:
            violations.append(f"{cut_off.identity} did not stop leading within the session timeout")
        if last is not None and last - t0 >= LEASE:
            violations.append(f"{cut_off.identity} wrote {last - t0:.3f}s after it was cut off")
        return Outcome(
            t0,
            t0,
            "new-term",
            handover_bound=CRASH_BOUND,
            violations=violations,
            details={
                "left_leader_s": None if left is None else left - t0,
                "last_write_after_cut_s": None if last is None else last - t0,
                "cut_s": t1 - t0,
            },
        )

    @staticmethod
    def _left_leader_at(replica: Replica, since: float) -> float | None:
        """Wall time of the replica's first ``leadership_lost`` log line after ``since``."""
        for record in replica.log_records():
            if record.get("event") == "leadership_lost" and parse_time(record["time"]) >= since:
                return parse_time(record["time"])
        return None

    def _zk_freeze(self, before: Before) -> Outcome:
        t0 = time.time()
        for server in self.zk.servers:
            server.freeze()
        try:
            time.sleep(FREEZE_ZK)  # the fault's duration, not a wait for a condition
        finally:
            for server in self.zk.servers:
                server.thaw()
        cleared = time.time()
        return Outcome(t0, cleared, "any", details={"frozen_s": cleared - t0})

    def _storage_fault(
        self, before: Before, break_it: Callable[[], None], mend: Callable[[], None]
    ) -> Outcome:
        assert self.tmpfs is not None, "storage faults need Chaos(tmpfs=True)"
        replicas = self.current()
        errors0 = self.metric("election_write_errors_total", replicas)
        resigns = app_has("run", "--max-write-failures")
        violations = []
        t0 = time.time()
        break_it()
        try:
            poll(
                lambda: self.metric("election_write_errors_total", replicas) >= errors0 + MAX_WRITE_FAILURES,
                WAIT,
                f"{MAX_WRITE_FAILURES} write errors in the metrics",
            )
            errors_s = time.time() - t0
            resigned_s = None
            if resigns:
                poll(
                    lambda: before.leader.state() not in (None, "Leader"),
                    WAIT,
                    f"{before.leader.identity} to resign after {MAX_WRITE_FAILURES} failed writes",
                )
                resigned_s = time.time() - t0
            end = time.monotonic() + STORAGE_HOLD

            def fault_held() -> bool:
                dead = [r.identity for r in replicas if not r.alive]
                assert not dead, f"{dead} exited while file-dir was broken"
                return time.monotonic() >= end

            poll(fault_held, WAIT, "the storage fault to last", interval=0.05)
            errors = self.metric("election_write_errors_total", replicas) - errors0
        finally:
            mend()
        cleared = time.time()
        leftovers = [n for n in os.listdir(self.file_dir) if n.endswith(".tmp")]
        return Outcome(
            t0,
            cleared,
            "any",
            violations=violations,
            details={
                "write_errors": errors,
                "errors_seen_s": errors_s,
                "resigned_s": resigned_s,
                "tmp_at_clear": leftovers,
                "broken_s": cleared - t0,
            },
        )

    def _disk_full(self, before: Before) -> Outcome:
        self.filler = Filler(self.file_dir / "chaos-filler.bin")

        def mend() -> None:
            assert self.filler is not None
            self.filler.stop()
            self.filler = None

        return self._storage_fault(before, self.filler.start, mend)

    def _disk_read_only(self, before: Before) -> Outcome:
        tmpfs = self.tmpfs
        assert tmpfs is not None
        return self._storage_fault(before, lambda: tmpfs.remount("ro"), lambda: tmpfs.remount("rw"))

    def _leader_node_deleted(self, before: Before) -> Outcome:
        client = self.kazoo()
        poll(lambda: client.connected, WAIT, "the suite's own ZooKeeper client to be connected")
        t0 = time.time()
        client.retry(client.delete, self.leader_path)
        deleted = time.time()
        self.wait_newer_files(before.epoch, 1, WAIT)
        return Outcome(t0, t0, "new-term", handover_bound=GRACEFUL_BOUND, details={"delete_s": deleted - t0})

    def _leader_frozen_mid_write(self, before: Before) -> Outcome:
        """The leader is held at the entry of the ``linkat`` that publishes its next file (after every
        check, holding the fence lock), then frozen whole (SIGSTOP) past its session. Another replica
        takes over and tries to write; then the old leader is thawed and its held write goes on. It
        must not land after anything the new term wrote: without a fence it would."""
        frozen = before.leader
        self.stall = SyscallStall(frozen.pid, HOLD_MAX, self.workdir / f"strace-{time.monotonic_ns()}.log")
        try:
            poll(self.stall.stalled, WAIT, f"{frozen.identity} to be held at publishing a file")
            held = sorted(n for n in os.listdir(self.file_dir) if n.startswith(".leader-"))
            t0 = frozen.send(signal.SIGSTOP)
            try:
                new_leader = poll(
                    lambda: self._leader_other_than(frozen, before.epoch),
                    WAIT,
                    "another replica to lead while the old leader is frozen",
                )
                replaced_s = time.time() - t0
                # The new term tries its first write: with a fence it waits for the lock the frozen
                # leader holds (and fails after the lock timeout); without one it writes at once.
                poll(
                    lambda: self.files_after(before.epoch) or self._count_events("write_error") > 0,
                    WAIT,
                    f"{new_leader.identity} to try its first write",
                )
            finally:
                t1 = frozen.send(signal.SIGCONT)
                self.stall.stop()  # detach: the held linkat goes on
                self.stall = None
        finally:
            if self.stall is not None:
                self.stall.stop()
                self.stall = None
        self.wait_newer_files(before.epoch, 3, WAIT)
        finals = [n.removeprefix(".").removesuffix(".tmp") for n in held]
        published = [n for n in finals if (self.file_dir / n).exists()]
        return Outcome(
            t0,
            t0,
            "new-term",
            # The new term's first write waits for the fence lock the frozen leader holds, and
            # fails after the lock timeout (2 s); the next one succeeds once the old leader is thawed.
            handover_bound=CRASH_BOUND + 2.0,
            details={
                "replaced_s": replaced_s,
                "frozen_s": t1 - t0,
                "held_write": finals,
                "held_write_published": published,
            },
        )

    # -- issue 9's faults -------------------------------------------------------------------------
    def _restart(
        self,
        identity: str,
        violations: list[str],
        overrides: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Replica:
        """Stop a replica gracefully (it must exit 0) and start it again with ``overrides`` and
        ``env`` (none: the suite's defaults), as a rolling update would; wait until it serves."""
        replica = self.replica(identity)
        if replica.alive:
            replica.send(signal.SIGTERM)
            code = replica.wait_exit(WAIT)
            if code != 0:
                violations.append(f"{identity} exited {code} after SIGTERM")
        self.spawn_overrides.pop(identity, None)
        self.spawn_env.pop(identity, None)
        if overrides:
            self.spawn_overrides[identity] = overrides
        if env:
            self.spawn_env[identity] = env
        started = self._spawn(identity)
        started.wait_serving(WAIT)
        poll(lambda: started.state() in ("Attempter", "Leader"), WAIT, f"{identity} to pass Init")
        return started

    def _hand_over(self, violations: list[str]) -> tuple[Replica, int]:
        """SIGTERM the leader; wait until the next term has written 3 files; return the old leader
        (exited) and the new epoch."""
        old = self.before()
        old.leader.send(signal.SIGTERM)
        newer = self.wait_newer_files(old.epoch, 3, WAIT)
        code = old.leader.wait_exit(WAIT)
        if code != 0:
            violations.append(f"{old.leader.identity} exited {code} after SIGTERM")
        return old.leader, epoch_of(newer[0])

    def _granted_session_short(self, before: Before) -> Outcome:
        """Every replica is restarted asking for a 10 s session, which the servers clamp to 4 s; each
        must report the 4 s it was granted (``/status``, the gauge), and when the leader dies the
        next term begins within the *granted* session (+ slack), not the asked 10 s. Then the
        replicas are rolled back to the suite's settings."""
        violations: list[str] = []
        long = {"zk_session_timeout": LONG_REQUEST}
        for replica in self.current():
            if replica is not before.leader:
                self._restart(replica.identity, violations, long)
        old, _epoch = self._hand_over(violations)
        self._restart(old.identity, violations, long)
        for replica in self.current():
            status = replica.status() or {}
            granted = status.get("zookeeper", {}).get("session_timeout_seconds")
            gauge = (scrape(replica) or {}).get("election_zk_session_timeout_seconds")
            if granted != GRANTED_MAX or gauge != GRANTED_MAX:
                violations.append(
                    f"{replica.identity} asked for {LONG_REQUEST}: /status session_timeout_seconds "
                    f"{granted}, gauge {gauge} (granted {GRANTED_MAX:g})"
                )
        leading = self.before()
        t0 = leading.leader.send(signal.SIGKILL)
        leading.leader.wait_exit(WAIT)
        self.wait_newer_files(leading.epoch, 1, WAIT)
        first = min(
            (f.written_at for f in observe(self.file_dir)[0] if f.epoch > leading.epoch), default=None
        )
        handover = None if first is None else first - t0
        if handover is not None and handover > GRANTED_MAX + 3.0:
            violations.append(
                f"the crash hand-over took {handover:.3f}s with {GRANTED_MAX:g} s granted "
                f"(bound {GRANTED_MAX + 3.0:g}s)"
            )
        self._restart(leading.leader.identity, violations)
        # Roll the others back (restarting the leader among them is one more graceful hand-over).
        for identity in self.identities:
            if identity in self.spawn_overrides:
                self._restart(identity, violations)
        cleared = time.time()
        return Outcome(t0, cleared, "new-term", violations=violations, details={"crash_handover_s": handover})

    def _slow_fsync_partitioned(self, before: Before) -> Outcome:
        """The leader is held inside the ``fsync`` of its next file's temporary (strace) for longer
        than its session, and its paths to ZooKeeper are cut at the same moment. Another replica
        takes over; the held leader's write must not be published after the new term's leader node
        was created (its lease ran out: issue 9), and of course not among the new term's files."""
        held = before.leader
        violations: list[str] = []
        stall: SyscallStall | None = None
        for attempt in range(5):  # catch the fsync of a temporary, not the directory's after a link
            stall = SyscallStall(
                held.pid, FSYNC_HOLD, self.workdir / f"strace-fsync-{time.monotonic_ns()}.log", "fsync"
            )
            self.stall = stall
            poll(stall.stalled, WAIT, f"{held.identity} to be held in fsync (attempt {attempt + 1})")
            if any(n.endswith(".tmp") for n in os.listdir(self.file_dir)):
                break
            stall.stop()
            self.stall = stall = None
        if stall is None:
            raise RuntimeError(f"could not catch {held.identity} in the fsync of a temporary file")
        self.cut = LoopbackCut([relay.port for relay in self.relays[held.identity]])
        t0 = time.time()
        self.cut.apply()
        try:
            newer = self.wait_newer_files(before.epoch, 1, WAIT)
            _data, stat = self.kazoo().retry(self.kazoo().get, self.leader_path)
            created = stat.ctime / 1000.0
            poll(lambda: not stall.stalled(), FSYNC_HOLD + WAIT, "the held fsync to return")
            released = time.time()
            poll(lambda: held.state() != "Leader", WAIT, f"{held.identity} to stop leading")
        finally:
            stall.stop()
            self.stall = None
            self.cut.remove()
            self.cut = None
        cleared = time.time()

        def rejoined() -> bool:
            status = held.status()
            return bool(
                status and status["state"] == "Attempter" and status["zookeeper"]["state"] == "connected"
            )

        poll(rejoined, WAIT, f"{held.identity} to rejoin as an attempter")
        late = [
            f.name for f in observe(self.file_dir)[0] if f.epoch == before.epoch and f.published >= created
        ]
        if late:
            violations.append(f"{held.identity} published {late} after the new term's node was created")
        return Outcome(
            t0,
            cleared,
            "new-term",
            handover_bound=CRASH_BOUND,
            violations=violations,
            details={
                "node_created_s": created - t0,
                "fsync_released_s": released - t0,
                "first_new_file": newer[0],
            },
        )

    def _fence_corrupt(self, before: Before) -> Outcome:
        """``.election-fence`` is overwritten with garbage under the running replicas: it is rebuilt
        under the lock from the files' highest epoch, and the cluster writes on (within the recovery
        bound; the audit, which reads the fence, must be clean afterwards)."""
        t0 = time.time()
        (self.file_dir / ".election-fence").write_text("garbage")
        return Outcome(t0, t0, "any")

    def _foreign_lock_holder(self, before: Before) -> Outcome:
        """A process that is not a replica holds the fence lock for a while, then lets go: nothing
        is published meanwhile, the replicas do not spin through leadership terms (a bound per
        failover-backoff window), nobody exits (the hold is far shorter than failover-timeout), and
        the cluster writes again once the lock is free."""
        replicas = self.current()
        acquired0 = self.metric("election_leadership_acquired_total", replicas)
        holder = ForeignLockHolder(self.file_dir / ".election-fence.lock")
        t0 = holder.locked_at
        try:
            end = time.monotonic() + LOCK_HOLD

            def held_long_enough() -> bool:
                dead = [r.identity for r in replicas if not r.alive]
                assert not dead, f"{dead} exited while the fence lock was held"
                return time.monotonic() >= end

            poll(held_long_enough, WAIT, "the foreign lock hold to last", interval=0.05)
            terms = self.metric("election_leadership_acquired_total", replicas) - acquired0
        finally:
            holder.release()
        cleared = time.time()
        published_meanwhile = [
            f.name for f in observe(self.file_dir)[0] if t0 + 0.01 < f.published < cleared - 0.01
        ]
        limit = MAX_TERMS_PER_REPLICA_PER_BACKOFF_WINDOW * math.ceil(LOCK_HOLD / BACKOFF_MAX) * len(replicas)
        violations = []
        if terms > limit:
            violations.append(
                f"{terms:g} leadership terms in {LOCK_HOLD:g} s of a held fence lock (limit {limit})"
            )
        if published_meanwhile:
            violations.append(f"published {published_meanwhile[:3]} while a foreign process held the lock")
        return Outcome(
            t0,
            cleared,
            "any",
            violations=violations,
            details={"terms_while_held": terms, "held_s": cleared - t0},
        )

    def _clock_skew(self, before: Before) -> Outcome:
        """Leadership passes (gracefully) to replicas whose wall clocks are 2 s behind, then back to
        a replica on the right clock; every replica is finally restarted on the right clock. The
        audit must be clean: write order comes from the files' ``order``, not from ``written_at``
        (before issue 9: ``epoch_decreased``)."""
        violations: list[str] = []
        skewed = skewed_clock_env(SKEW)
        t0 = time.time()
        for replica in self.current():
            if replica is not before.leader:
                self._restart(replica.identity, violations, env=skewed)
        old, _epoch = self._hand_over(violations)  # to a skewed replica
        self._restart(old.identity, violations)
        for replica in self.current():  # all but the (skewed) leader back on the right clock
            if replica.identity in self.spawn_env and replica.state() != "Leader":
                self._restart(replica.identity, violations)
        old, _epoch = self._hand_over(violations)  # back to the right clock
        self._restart(old.identity, violations)
        cleared = time.time()
        return Outcome(t0, cleared, "new-term", violations=violations, details={"skew": SKEW})

    def last_work(self, default: float) -> float:
        """Wall time of the newest work of any term: a file's ``written_at``, or a child's beat."""
        if self.beat_dir is not None:
            return max((p.last_wall for p in self._beats()), default=default)
        return max((f.written_at for f in observe(self.file_dir)[0]), default=default)

    def files_after(self, epoch: int) -> list[str]:
        return [n for n in leader_names(self.file_dir) if epoch_of(n) > epoch]

    def _leader_other_than(self, replica: Replica, epoch: int) -> Replica | None:
        for other in self.current():
            if other is replica:
                continue
            status = other.status()
            seen = status and status["state"] == "Leader" and status["leader"]
            if seen and seen["epoch"] > epoch:
                return other
        return None


def plan(
    zk_kind: str, names: list[str] | None = None, work: str = "files"
) -> tuple[list[str], dict[str, str]]:
    """The faults that can run here (with ``work``), and why the others cannot."""
    runnable, skipped = [], {}
    for name in names or list(FAULTS):
        if work == "exec" and name not in EXEC_FAULTS:
            skipped[name] = "not in the exec share (see EXEC_FAULTS)"
            continue
        reasons = [r for need in FAULTS[name].needs if (r := unavailable(need, zk_kind))]
        if reasons:
            skipped[name] = "; ".join(reasons)
        else:
            runnable.append(name)
    return runnable, skipped
