"""One election under test: real replicas on a real ZooKeeper, what they leave behind, and the moves
an orchestrator makes on them.

An :class:`Election` owns 3-5 ``election run`` processes (a :class:`tools.cluster.Cluster`) on a
:class:`tools.zookeeper_target.ZkTarget`, their shared ``file-dir`` and, when asked, a TCP relay per
replica and server (so that one replica's path can be cut) and a tmpfs under ``file-dir`` (so that it
can fill up or turn read-only). It is what a fault gets as its ``ctx`` (through
:class:`tests.chaos.runner.Chaos`, which adds running and checking faults):

* the election's state: ``zk``, ``cluster``, ``relays``, ``file_dir``, ``tmpfs``, ``rng``;
* the evidence so far: :meth:`Election.before` (a steady election), :meth:`Election.settle` (one
  agreed leader writing again), :meth:`Election.wait_newer_files`, :meth:`Election.last_written`,
  :meth:`Election.metric`, the replicas' log events since the fault began;
* the mechanisms in flight (``cut``, ``stall``, ``filler``), each with an undo that is safe to repeat;
* the moves: :meth:`Election.restart` (a rolling update), :meth:`Election.hand_over` (a graceful
  one), :meth:`Election.endure` (let a fault last while nobody may exit).

With ``work="exec"`` the replicas run ``tests/e2e/heartbeat_child.py`` under ``--exec`` (issue 10)
instead of writing files, with a 0.5 s ``--exec-stop-timeout`` (at most 4/9 x 2 s - 0.25 s). The
evidence is then the children's heartbeats (every 10 ms, one clock for all processes): a term
"writes" while its child beats, and every "file" above is a tick's worth of beats.
"""

from __future__ import annotations

import contextlib
import random
import shlex
import signal
import sys
import time
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.retry import KazooRetry

from tests.chaos.model import (
    BEATS_PER_TICK,
    EXEC_STOP_TIMEOUT,
    HEARTBEAT_CHILD,
    REPLICA_SETTINGS,
    WAIT,
    Before,
)
from tests.e2e.heartbeat_child import BeatLog, Process
from tools.cluster import Cluster
from tools.faults.disk import Filler, Tmpfs
from tools.faults.network import LoopbackCut
from tools.faults.syscalls import SyscallStall
from tools.leader_files import epoch_of, names, observe, parse_time, read
from tools.relay import Relay
from tools.replicas import Replica
from tools.waiting import wait_for
from tools.zookeeper_target import ZkTarget


class Election:
    """One election under test: replicas, their ZooKeeper, their file-dir."""

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

    # The mechanisms a fault leaves in flight, each undone at most once (safe to call again).
    def release_stall(self) -> None:
        if self.stall is not None:
            self.stall.stop()
            self.stall = None

    def remove_cut(self) -> None:
        if self.cut is not None:
            self.cut.remove()
            self.cut = None

    def stop_filler(self) -> None:
        if self.filler is not None:
            self.filler.stop()
            self.filler = None

    def remount_rw(self) -> None:
        if self.tmpfs is not None and self.tmpfs.mounted:
            with contextlib.suppress(RuntimeError):
                self.tmpfs.remount("rw", timeout=2.0)

    # -- looking ----------------------------------------------------------------------------------
    def kazoo(self) -> KazooClient:
        if self._kazoo is None:
            # The suite's own client, for faults an operator would cause. Reconnecting quickly after
            # a ZooKeeper outage keeps those faults on time.
            retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=0.5)
            self._kazoo = KazooClient(hosts=self.zk.connect_string, timeout=4.0, connection_retry=retry)
            self._kazoo.start(timeout=WAIT)
        return self._kazoo

    @staticmethod
    def scrape(replica: Replica) -> dict[str, float] | None:
        """The replica's /metrics as {"name{labels}": value}; None if it does not answer."""
        return replica.metrics(timeout=2.0)

    def _epochs(self) -> list[int]:
        if self.beat_dir is not None:
            return sorted({p.epoch for p in self._beats() if p.epoch is not None})
        return sorted({epoch_of(name) for name in names(self.file_dir)})

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
        return [name for name in names(self.file_dir) if epoch_of(name) == epoch]

    def files_after(self, epoch: int) -> list[str]:
        return [n for n in names(self.file_dir) if epoch_of(n) > epoch]

    def wait_newer_files(self, epoch: int, count: int, timeout: float) -> list[str]:
        """Wait until ``count`` files of terms newer than ``epoch`` exist; return their names. (Exec
        work: ``count`` ticks' worth of beats; returns the newer epochs, as text.)"""
        if self.beat_dir is not None:

            def newer_work() -> list[str] | None:
                later = [e for e in self._epochs() if e > epoch]
                return [str(e) for e in later] if sum(self.work_done(e) for e in later) >= count else None

            return wait_for(newer_work, timeout, f"{count} tick(s) of beats of a term after epoch {epoch}")
        return wait_for(
            lambda: (names := self.files_after(epoch))[count - 1 :] and names,
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
                record = read(self.file_dir / name)
                if record is not None:
                    return record.written_at
        return None

    def last_work(self, default: float) -> float:
        """Wall time of the newest work of any term: a file's ``written_at``, or a child's beat."""
        if self.beat_dir is not None:
            return max((p.last_wall for p in self._beats()), default=default)
        return max((f.written_at for f in observe(self.file_dir)[0]), default=default)

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

        return wait_for(steady, WAIT, "one agreed leader that has written two files")

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

        leader, epoch = wait_for(settled, timeout, f"one agreed leader writing after {since:.3f}")
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
            samples = self.scrape(replica)
            if samples is not None:
                total += sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))
        return total

    def leader_other_than(self, replica: Replica, epoch: int) -> Replica | None:
        """A replica other than ``replica`` that says it leads a term newer than ``epoch``."""
        for other in self.current():
            if other is replica:
                continue
            status = other.status()
            seen = status and status["state"] == "Leader" and status["leader"]
            if seen and seen["epoch"] > epoch:
                return other
        return None

    @staticmethod
    def left_leader_at(replica: Replica, since: float) -> float | None:
        """Wall time of the replica's first ``leadership_lost`` log line after ``since``."""
        for record in replica.log_records():
            if record.get("event") == "leadership_lost" and parse_time(record["time"]) >= since:
                return parse_time(record["time"])
        return None

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

    def count_events(self, event: str) -> int:
        """Log lines with ``"event": event`` since the fault began."""
        needle = f'"event": "{event}"'
        return sum(text.count(needle) for text in self._log_text().values())

    # -- what faults do to replicas ---------------------------------------------------------------
    def endure(self, seconds: float, replicas: list[Replica], during: str, what: str) -> None:
        """Let a fault last ``seconds``, failing at once if one of ``replicas`` exits meanwhile
        ("[...] exited ``during``")."""
        end = time.monotonic() + seconds

        def lasted() -> bool:
            dead = [r.identity for r in replicas if not r.alive]
            assert not dead, f"{dead} exited {during}"
            return time.monotonic() >= end

        wait_for(lasted, WAIT, what, interval=0.05)

    def wait_rejoined(self, replica: Replica) -> None:
        """Wait until a replica that was cut off is a connected attempter again."""

        def rejoined() -> bool:
            status = replica.status()
            return bool(
                status and status["state"] == "Attempter" and status["zookeeper"]["state"] == "connected"
            )

        wait_for(rejoined, WAIT, f"{replica.identity} to rejoin as an attempter")

    def restart(
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
        wait_for(lambda: started.state() in ("Attempter", "Leader"), WAIT, f"{identity} to pass Init")
        return started

    def hand_over(self, violations: list[str]) -> tuple[Replica, int]:
        """SIGTERM the leader; wait until the next term has written 3 files; return the old leader
        (exited) and the new epoch."""
        old = self.before()
        old.leader.send(signal.SIGTERM)
        newer = self.wait_newer_files(old.epoch, 3, WAIT)
        code = old.leader.wait_exit(WAIT)
        if code != 0:
            violations.append(f"{old.leader.identity} exited {code} after SIGTERM")
        return old.leader, epoch_of(newer[0])
