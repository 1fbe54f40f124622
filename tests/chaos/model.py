"""What a chaos run is made of: the replicas' settings, the bounds the service is held to, and the
records a fault leaves (:class:`Before`, :class:`Outcome`, :class:`Promise`, :class:`FaultResult`).

Nothing here runs anything: the faults (:mod:`tests.chaos.faults`), the invariants
(:mod:`tests.chaos.invariants`) and the runner (:mod:`tests.chaos.runner`) share these names, so that a
bound is written once and every fault is measured into the same record.

Replicas: leader-timeout 100 ms (so that an overlap would show), session timeout 2 s, attempter-timeout
10 s (so that only the watch makes a hand-over fast), failover-timeout 60 s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tools.replicas import Replica
from tools.zookeeper_target import TICK_MS

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

TRACEBACK = "Traceback (most recent call last)"

HEARTBEAT_CHILD = Path(__file__).resolve().parents[1] / "e2e" / "heartbeat_child.py"
EXEC_STOP_TIMEOUT = "500ms"  # --exec-stop-timeout of the exec share: G <= 4/9 x SESSION - 0.25 s
BEATS_PER_TICK = 10  # a child beats every 10 ms: 10 beats stand for one 100 ms file


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
    """The steady election a fault is injected into."""

    leader: Replica
    epoch: int
    session: int


@dataclass(frozen=True)
class Promise:
    """What the service promises after a fault, beyond what always holds (one agreed leader writing,
    a clean audit, no overlap, no unexpected exit), as the runner checks it.

    ``expect``: "new-term" (the leader was gone: a newer term must write), "same-term" (only
    ZooKeeper was disturbed and the session survived: no newer term may write) or "any".
    ``handover_bound``: the fault -> the next term's first file, when one is expected.
    ``recover_bound``: the fault cleared -> one agreed leader that has written since.
    """

    expect: str
    handover_bound: float | None = None
    recover_bound: float = RECOVER_BOUND

    def __post_init__(self) -> None:
        if self.expect not in ("new-term", "same-term", "any"):
            raise ValueError(f"unknown expectation {self.expect!r}")


@dataclass
class Outcome:
    """What one injection did: when it began and was cleared, and what it saw itself."""

    t0: float  # wall time the fault began
    cleared_at: float  # wall time the fault was cleared (t0 for an instant fault)
    # Measured by the fault itself, when the generic settle comes too late to measure it (a killed
    # member is relaunched, a JVM start of 1-3.5 s, before the generic checks run).
    recovered_s: float | None = None
    expected_exits: dict[str, int] = field(default_factory=dict)  # identity -> exit status
    violations: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
