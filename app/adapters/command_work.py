"""The command runner: the user's ``--exec`` command as the leader's work, one child per term.

What it guarantees (the arithmetic is in :mod:`app.leases`):

* **Only under a confirmation.** The child starts in the term's first ``step`` (under the create
  that made us leader, or a fresh confirmation), never elsewhere. Its environment is ours plus
  ``ELECTION_EPOCH`` (the leader node's czxid: the term's fencing token), ``ELECTION_IDENTITY``,
  ``ELECTION_ELECTION_PATH`` and ``ELECTION_LEASE_SECONDS``. stdin is /dev/null; stdout and stderr
  are ours (the same file descriptors: nothing buffered here, nothing lost if we die).
* **The whole group.** The child leads a process group of its own, so a shell's background
  children get every signal too. On Linux the child is a guardian shell (``GUARDIAN``) that runs the
  command; its ``PR_SET_PDEATHSIG`` (sent when the thread that started it dies: the state
  machine's, which lives as long as the process) makes it kill the whole group, so nothing of it
  outlives an ``election`` killed with SIGKILL. This process is a child subreaper, so orphaned
  grandchildren are reparented to us and reaped here.
* **Inside the lease.** Every ``step`` moves the deadline to its ``valid_until``. A dead-man thread
  sends SIGTERM to the group at ``deadline - G - K`` and SIGKILL at ``deadline - K`` if no step
  renewed it (the state machine may be stuck in a read); ``stop`` sends SIGTERM at once and SIGKILL
  at ``min(now + G, deadline - K)`` and returns only when no process of the group is left.
* **Ended, reported.** A child that exits by itself is logged (``work_exited``) and counted
  (``election_work_exits_total{code}``); ``ended()`` reports it and the Leader is woken.

Not covered: a process of the group that leaves it (``setsid``, ``setpgid``) is out of reach; a
guardian killed with SIGKILL by someone else leaves the group to our dead-man and stop() (it is
reported as the command's end); a machine frozen as a whole (a VM pause)
resumes with the child running for the moment the dead-man needs to see the deadline passed: the
child's own fence (``ELECTION_EPOCH``) is the second wall there.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.leases import KILL_MARGIN, exec_confirm_period, exec_grace_bound
from app.ports.metrics import Metrics
from app.ports.work import Ended, Outcome, Step

log = logging.getLogger("election.work")

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# How often stop() looks whether the group's last processes are gone (only while stopping).
_GONE_POLL = 0.005
# How often the dead-man looks at a group whose leader is gone (a shell's background children).
_GROUP_POLL = 0.05


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


_LIBC = _libc()


def become_subreaper() -> bool:
    """Make this process the reaper of its descendants' orphans (Linux); True if it worked."""
    return _LIBC is not None and _LIBC.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _describe_status(status: int) -> tuple[str, str | None]:
    """(code, signal name or None) of a wait status: "0", "1", ... or "SIGKILL"."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return str(code), None
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return name, name


class _DeferredLog:
    """Log lines written by a thread of their own, in order.

    The dead-man must never wait on a log sink: a full stderr pipe (a stalled log collector) blocks
    a handler's write while it holds the handler's lock, and a dead-man that logs before it signals
    would then let the command run on past the lease (two commands at once after a cut). So the
    dead-man only queues its lines; :meth:`drain` lets the machine thread write what is pending
    before its own next line (stop() does, so that nothing is lost at exit)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[int, str, tuple[Any, ...], dict[str, Any]]] = queue.SimpleQueue()
        self._emitting = threading.Lock()  # one writer at a time: lines stay in order
        threading.Thread(target=self._run, name="work-log", daemon=True).start()

    def __call__(self, level: int, message: str, *args: Any, extra: dict[str, Any]) -> None:
        self._queue.put((level, message, args, extra))

    def drain(self) -> None:
        """Write every pending line on the calling thread (which may block on the sink)."""
        with self._emitting:
            while True:
                try:
                    level, message, args, extra = self._queue.get_nowait()
                except queue.Empty:
                    return
                log.log(level, message, *args, extra=extra)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            with self._emitting:
                level, message, args, extra = item
                log.log(level, message, *args, extra=extra)
            self.drain()


# The group's leader: a shell that runs the command and waits for it. PR_SET_PDEATHSIG reaches only
# the process it is set on, so if election dies (SIGKILL, the OOM killer) a shell's background
# children would live on beside the successor's command. The guardian gets SIGUSR1 when election
# dies and kills the whole group; it ignores the group's stop signals (they are for the command) and
# leaves as the command does, with its status (dying of the same signal). `env --default-signal`
# undoes the shell's SIG_IGN of SIGINT and SIGQUIT for background commands.
GUARDIAN = """trap 'kill -KILL 0' USR1
trap : TERM INT HUP QUIT
env --default-signal=INT,QUIT -- "$@" &
child=$!
while :; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null || break
done
if [ "$status" -gt 128 ] && [ "$status" -lt 193 ]; then
  trap - TERM INT HUP QUIT USR1
  kill -"$((status - 128))" "$$"
fi
exit "$status"
"""
_SHELL = "/bin/sh"


def guarded(command: Sequence[str]) -> tuple[list[str], int]:
    """The argv that runs ``command`` under the guardian, and the parent-death signal to give it
    (the command itself, with SIGKILL, where there is no shell or GNU env to guard it)."""
    if os.access(_SHELL, os.X_OK) and shutil.which("env") is not None and _env_resets_signals():
        return [_SHELL, "-c", GUARDIAN, "election-work", *command], signal.SIGUSR1
    return list(command), signal.SIGKILL


def _env_resets_signals() -> bool:
    """Whether this ``env`` knows --default-signal (GNU coreutils 8.31+)."""
    try:
        done = subprocess.run(
            ["env", "--default-signal=INT", "true"],  # env from PATH, as the guardian runs it
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@dataclass
class _Child:
    """One running child and what is known about it; guarded by CommandWork's lock."""

    proc: subprocess.Popen[bytes]
    pid: int
    epoch: int
    started: float  # monotonic
    started_wall: str
    deadline: float  # the last valid_until: nothing of the group may run past deadline - K
    grace: float
    stop_at: float | None = None  # when stop() asked (monotonic), or None
    terminated: bool = False  # SIGTERM sent
    killed: bool = False  # SIGKILL sent
    by_dead_man: bool = False  # the dead-man signalled it (the lease ran out unconfirmed)
    status: tuple[str, str | None] | None = None  # set when reaped
    reaped: threading.Event = field(default_factory=threading.Event)


class CommandWork:
    """The work port over a child process group (see the module docstring)."""

    kind = "exec"
    shows_progress = False

    def __init__(
        self,
        command: Sequence[str],
        *,
        stop_timeout: float,
        identity: str,
        election_path: str,
        metrics: Metrics,
        monotonic: Callable[[], float],
        wall: Callable[[], datetime],
        wake: Callable[[], None],
    ) -> None:
        self._command = tuple(command)
        self._argv, self._death_signal = guarded(self._command)
        self._stop_timeout = stop_timeout
        self._identity = identity
        self._election_path = election_path
        self._metrics = metrics
        self._monotonic = monotonic
        self._wall = wall
        self._wake = wake
        self._lease: float | None = None
        self._warned_lease: float | None = None
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._ended: Ended | None = None
        self._later = _DeferredLog()  # the dead-man's log lines (it must not block on the sink)
        self._poke_r, self._poke_w = os.pipe()  # wakes the dead-man when a deadline moves
        os.set_blocking(self._poke_w, False)
        # Orphans of the command's shell are reparented to us, so that stop() can reap them: a
        # zombie still counts as a member of the group, and the group is gone only without any.
        self.subreaper = become_subreaper()

    # -- the port ---------------------------------------------------------------------------
    def prepare(self) -> int:
        return 0

    def period(self, lease: float) -> float:
        self._lease = lease
        return exec_confirm_period(lease)

    def grace(self, lease: float) -> float:
        """The stop grace under ``lease``: --exec-stop-timeout, clamped to what fits (app.leases)."""
        bound = max(0.0, exec_grace_bound(lease))
        if self._stop_timeout > bound and self._warned_lease != lease:
            self._warned_lease = lease
            log.warning(
                "--exec-stop-timeout %.3gs does not fit the lease of %.3gs: the command gets %.3gs between"
                " SIGTERM and SIGKILL",
                self._stop_timeout,
                lease,
                bound,
                extra={"event": "exec_grace_clamped", "grace_seconds": round(bound, 3)},
            )
        return min(self._stop_timeout, bound)

    def begin(self, epoch: int) -> None:
        self._ended = None

    def step(self, epoch: int, *, valid_until: float) -> Step:
        with self._lock:
            child = self._child
            if child is not None and child.epoch == epoch:
                if child.status is None:
                    child.deadline = max(child.deadline, valid_until)
                    self._poke()
                # Exited just now: the Leader handles ended() at its next look (resign, back off);
                # starting another child within the same term would skip that.
                return Step(Outcome.DONE)
        if child is not None:
            self.stop("a new term")  # leftovers of another term: never two at once
        return self._start(epoch, valid_until)

    def stop(self, reason: str) -> None:
        with self._lock:
            child = self._child
            if child is None:
                return
            now = self._monotonic()
            if child.stop_at is None:
                child.stop_at = now
        # A group already gone gets no signal: its number may already be another's.
        if not (child.reaped.is_set() and not self._group_alive(child.pid)):
            self._signal(child, signal.SIGTERM, reason)
        self._poke()
        kill_at = min(now + child.grace, child.deadline - KILL_MARGIN)
        # The direct child first (the dead-man reaps it and records its status), then any process
        # left in its group (a shell's background children: reparented to us, reaped here).
        while not child.reaped.wait(max(0.0, min(kill_at - self._monotonic(), 0.05))):
            if self._monotonic() >= kill_at:
                self._signal(child, signal.SIGKILL, reason)
        while self._group_alive(child.pid):
            if self._monotonic() >= kill_at:
                self._signal(child, signal.SIGKILL, reason)
            threading.Event().wait(_GONE_POLL)
        with self._lock:
            self._child = None
        self._later.drain()  # the dead-man's lines about this child first, and none lost at exit
        self._metrics.work_running(False)
        if child.terminated or child.killed:
            self._metrics.work_stopped("SIGKILL" if child.killed else "SIGTERM")
        log.info(
            "command stopped (pid %d, epoch %d)",
            child.pid,
            child.epoch,
            extra={"event": "work_stopped", "pid": child.pid, "epoch": child.epoch, "killed": child.killed},
        )

    def kill_now(self) -> None:
        # PR_SET_PDEATHSIG reaches only the direct child: without this, a shell's background
        # children outlive an election that leaves with os._exit, and the successor's command.
        child = self._child
        if child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)

    def ended(self) -> Ended | None:
        return self._ended

    def running(self) -> bool:
        child = self._child
        return child is not None and child.status is None

    def describe(self) -> dict[str, Any]:
        child = self._child
        alive = child is not None and child.status is None
        return {
            "kind": self.kind,
            "command": list(self._command),
            "running": alive,
            "pid": child.pid if child is not None and alive else None,
            "started_at": child.started_wall if child is not None and alive else None,
            "epoch": child.epoch if child is not None and alive else None,
        }

    # -- starting ---------------------------------------------------------------------------
    def _start(self, epoch: int, valid_until: float) -> Step:
        lease = self._lease if self._lease is not None else max(0.0, valid_until - self._monotonic())
        env = dict(os.environ)
        env.update(
            ELECTION_EPOCH=str(epoch),
            ELECTION_IDENTITY=self._identity,
            ELECTION_ELECTION_PATH=self._election_path,
            ELECTION_LEASE_SECONDS=f"{lease:.3f}",
        )
        parent = os.getpid()
        try:
            proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                env=env,
                process_group=0,
                preexec_fn=(lambda: _die_with_parent(parent, self._death_signal))  # noqa: PLW1509
                if _LIBC is not None
                else None,
                close_fds=True,
            )
        except OSError as exc:
            log.error(
                "cannot start %s: %s",
                self._command[0],
                exc.strerror or exc,
                extra={"event": "work_error", "epoch": epoch},
            )
            return Step(
                Outcome.FAILED, why=f"cannot start the command {self._command[0]!r}: {exc.strerror or exc}"
            )
        now = self._monotonic()
        child = _Child(
            proc=proc,
            pid=proc.pid,
            epoch=epoch,
            started=now,
            started_wall=self._wall().isoformat(timespec="microseconds").replace("+00:00", "Z"),
            deadline=valid_until,
            grace=self.grace(lease),
        )
        with self._lock:
            self._child = child
        self._metrics.work_running(True)
        log.info(
            "started command (pid %d, epoch %d)",
            child.pid,
            epoch,
            extra={"event": "work_started", "pid": child.pid, "epoch": epoch, "command": list(self._command)},
        )
        threading.Thread(target=self._dead_man, args=(child,), name=f"work-{child.pid}", daemon=True).start()
        return Step(Outcome.DONE)

    # -- the dead-man: one thread per child -------------------------------------------------
    def _dead_man(self, child: _Child) -> None:
        """The thread's body: :meth:`_watch`; if that fails (say ``pidfd_open`` out of file
        descriptors), nothing guards the lease any more: kill the group now and reap, so that
        stop() and the Leader learn that it ended."""
        try:
            self._watch(child)
        except Exception as exc:  # any failure here must end in a dead group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.killed = True
            self._later(
                logging.ERROR,
                "the command's dead-man failed (%s); killed its process group",
                exc,
                extra={"event": "work_stopping", "pid": child.pid, "epoch": child.epoch, "signal": "SIGKILL"},
            )
            if not child.reaped.is_set():
                child.by_dead_man = child.stop_at is None
                try:
                    status = os.waitpid(child.pid, 0)[1]
                except ChildProcessError:
                    status = 0
                self._reap(child, status)

    def _watch(self, child: _Child) -> None:
        """Reap the child (recording how it ended) and stop its group at the lease's end if no
        confirmation moved the deadline meanwhile."""
        pidfd = os.pidfd_open(child.pid) if hasattr(os, "pidfd_open") else None
        reaped = False
        try:
            while True:
                with self._lock:
                    deadline, stopping = child.deadline, child.stop_at is not None
                now = self._monotonic()
                term_at, kill_at = deadline - child.grace - KILL_MARGIN, deadline - KILL_MARGIN
                if now >= kill_at and not child.killed:
                    child.by_dead_man = child.by_dead_man or not stopping
                    self._signal(child, signal.SIGKILL, "the lease ran out unconfirmed")
                elif now >= term_at and not child.terminated:
                    child.by_dead_man = child.by_dead_man or not stopping
                    self._signal(child, signal.SIGTERM, "the lease is running out unconfirmed")
                reaped = reaped or self._reap(child)
                # The group outlives its leader when a shell's background children do (and they may
                # ignore the SIGTERM that ended the shell): they too must be dead by deadline - K,
                # even if the state machine is stuck and never calls stop().
                if reaped and not self._group_alive(child.pid):
                    return
                nxt = kill_at if child.terminated else term_at
                timeout: float | None
                if reaped:  # no pidfd for a group: look again soon
                    timeout = _GROUP_POLL if child.killed else min(_GROUP_POLL, max(0.0, nxt - now))
                else:
                    timeout = 0.05 if pidfd is None else (None if child.killed else max(0.0, nxt - now))
                waited = [pidfd, self._poke_r] if pidfd is not None and not reaped else [self._poke_r]
                ready, _, _ = select.select(waited, [], [], timeout)
                if self._poke_r in ready:
                    with contextlib.suppress(BlockingIOError, OSError):
                        os.read(self._poke_r, 512)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _reap(self, child: _Child, status: int | None = None) -> bool:
        """Reap the direct child if it exited (``status``: already reaped with it); record and
        report how. True once reaped."""
        if status is None:
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = child.pid, 0
            if pid == 0:
                return False
        child.proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen never waits for it itself
        code, signame = _describe_status(status)
        ran = self._monotonic() - child.started
        with self._lock:
            child.status = (code, signame)
            stopped = child.stop_at is not None
        if not stopped:
            self._metrics.work_running(False)
        if not stopped and not child.by_dead_man:
            self._metrics.work_exited(code)
        self._ended = None if stopped else Ended(code=code, ran_seconds=ran, stopped=child.by_dead_man)
        self._later(
            logging.INFO if stopped or code == "0" else logging.WARNING,
            "command exited with %s after %.3fs (pid %d, epoch %d)",
            code,
            ran,
            child.pid,
            child.epoch,
            extra={
                "event": "work_exited",
                "pid": child.pid,
                "epoch": child.epoch,
                "code": code,
                "signal": signame,
                "ran_seconds": round(ran, 6),
                "stopped": stopped or child.by_dead_man,
            },
        )
        child.reaped.set()
        if not stopped:
            self._wake()  # the Leader resigns (or, after the dead-man, looks again)
        return True

    # -- signals ----------------------------------------------------------------------------
    def _signal(self, child: _Child, signum: signal.Signals, reason: str) -> None:
        with self._lock:
            if (signum is signal.SIGKILL and child.killed) or (signum is signal.SIGTERM and child.terminated):
                return
            if signum is signal.SIGKILL:
                child.killed = True
            else:
                child.terminated = True
        # First the signal, then the line: a log sink that blocks must not hold the signal back.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signum)
        self._later(
            logging.WARNING if signum is signal.SIGKILL else logging.INFO,
            "sending %s to the command's process group %d: %s",
            signum.name,
            child.pid,
            reason,
            extra={
                "event": "work_stopping",
                "pid": child.pid,
                "epoch": child.epoch,
                "signal": signum.name,
                "reason": reason,
            },
        )

    def _group_alive(self, pgid: int) -> bool:
        """True while a live process of group ``pgid`` exists (reaping our own zombies of it first).

        A zombie is a member too for ``killpg(pgid, 0)``; one that is not ours (a process of the
        group that left it with ``setsid`` and never reaps its children) would keep the group
        "alive" forever, so members are then looked up in /proc and zombies do not count."""
        self._reap_group(pgid)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        if _live_member(pgid):
            return True
        # Only zombies left: those whose parent died meanwhile were reparented to us when it exited,
        # so reap them now rather than leave them behind.
        self._reap_group(pgid)
        return False

    @staticmethod
    def _reap_group(pgid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-pgid, os.WNOHANG)[0] > 0:
                pass

    def _poke(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._poke_w, b"x")


def _live_member(pgid: int) -> bool:
    """Whether /proc lists a process of group ``pgid`` that is not a zombie (True without /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _die_with_parent(parent: int, signum: int) -> None:
    """In the child, before exec: ``signum`` when the thread that started us dies; if the parent
    is already gone (it died between fork and here), exit at once."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(127)
