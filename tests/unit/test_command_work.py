"""The command runner against real child processes: its own group, the environment, stopping the
whole group inside the lease, the dead-man when no confirmation renews it, and exits reported."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from app.adapters import command_work
from app.adapters.command_work import CommandWork
from app.adapters.prometheus_metrics import PrometheusMetrics
from app.adapters.system_clock import SystemClock
from app.leases import KILL_MARGIN
from app.ports.work import Ended, Outcome
from tools.waiting import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups as on Linux")

CLOCK = SystemClock()


class Runner:
    def __init__(self, command: list[str], stop_timeout: float = 1.0) -> None:
        self.registry = CollectorRegistry()
        self.woken = threading.Event()
        self.work = CommandWork(
            command,
            stop_timeout=stop_timeout,
            identity="me",
            election_path="/e",
            metrics=PrometheusMetrics(self.registry, CLOCK.monotonic, ["Leader"]),
            monotonic=CLOCK.monotonic,
            wall=CLOCK.wall,
            wake=self.woken.set,
        )

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def start(self, epoch: int = 7, lease: float = 6.0) -> int:
        self.work.period(lease)
        self.work.begin(epoch)
        assert self.work.step(epoch, valid_until=CLOCK.monotonic() + lease).outcome is Outcome.DONE
        child = self.work._child  # even one that already exited (describe() shows only running ones)
        assert child is not None
        return child.pid

    def start_leased(self, valid_for: float) -> tuple[int, float]:
        """Start under a 60 s lease whose one confirmation is valid ``valid_for`` s only: the pid, and
        the instant that confirmation runs out (what the dead-man must beat)."""
        self.work.period(60.0)
        self.work.begin(1)
        deadline = CLOCK.monotonic() + valid_for
        self.work.step(1, valid_until=deadline)
        return self.work.describe()["pid"], deadline

    def exited(self) -> Ended:
        """How the child ended, once it woke the leader by ending (within 10 s)."""
        assert self.woken.wait(10)
        ended = self.work.ended()
        assert ended is not None
        return ended


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _sh(script: str) -> list[str]:
    return ["sh", "-c", script]


@pytest.fixture
def runner() -> Iterator[Callable[..., Runner]]:
    """Makes runners (the arguments of :class:`Runner`), each stopped when the test is over."""
    made: list[Runner] = []

    def make(command: list[str], stop_timeout: float = 1.0) -> Runner:
        made.append(Runner(command, stop_timeout))
        return made[-1]

    yield make
    for r in made:
        r.work.stop("test over")


def test_the_child_leads_its_own_group_and_gets_the_terms_environment(
    tmp_path: Path, runner: Callable[..., Runner]
) -> None:
    out = tmp_path / "env"
    r = runner(
        _sh(
            'echo "$ELECTION_EPOCH $ELECTION_IDENTITY $ELECTION_ELECTION_PATH $ELECTION_LEASE_SECONDS"'
            f" > {out}; sleep 60"
        )
    )
    pid = r.start(epoch=4711)
    assert os.getpgid(pid) == pid
    wait_for(lambda: out.exists() and out.read_text().strip() != "", 10, "the child wrote its environment")
    assert out.read_text().split() == ["4711", "me", "/e", "6.000"]
    assert r.metric("election_work_running") == 1
    assert r.work.running()


def test_stop_kills_the_whole_group_including_a_shells_background_child(
    runner: Callable[..., Runner],
) -> None:
    r = runner(_sh("sleep 1000 & sleep 1000 & wait"))
    pid = r.start()
    wait_for(lambda: len(_members(pid)) >= 3, 10, "the shell started its background children")
    r.work.stop("test")
    assert not _alive(pid)
    assert r.metric("election_work_running") == 0
    assert r.metric("election_work_stops_total", signal="SIGTERM") == 1
    assert r.work.ended() is None  # stopped by us: not an exit of its own


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(runner: Callable[..., Runner]) -> None:
    r = runner(_sh("trap '' TERM; while :; do sleep 0.05; done"), stop_timeout=0.3)
    pid = r.start()
    # guardian, the shell and its sleep: the shell has set its trap once it runs a sleep
    wait_for(lambda: len(_members(pid)) >= 3, 10, "the shell runs its loop")
    asked = CLOCK.monotonic()
    r.work.stop("test")
    took = CLOCK.monotonic() - asked
    assert not _alive(pid)
    assert r.metric("election_work_stops_total", signal="SIGKILL") == 1
    assert took >= 0.3  # it had its grace, no less


def test_the_sigkill_lands_before_the_lease_ends_even_with_a_long_grace(
    runner: Callable[..., Runner],
) -> None:
    r = runner(_sh("trap '' TERM; while :; do sleep 0.05; done"), stop_timeout=30.0)
    r.work.period(60.0)  # a grace of 30 s fits a 60 s lease...
    r.work.begin(1)
    deadline = CLOCK.monotonic() + 1.0  # ...but this confirmation is valid for one second only
    assert r.work.step(1, valid_until=deadline).outcome is Outcome.DONE
    assert r.work._child is not None
    pid = r.work._child.pid
    r.work.stop("test")
    assert CLOCK.monotonic() <= deadline  # dead before the lease ran out
    assert not _alive(pid)


def test_the_dead_man_stops_a_child_whose_lease_is_not_renewed(runner: Callable[..., Runner]) -> None:
    r = runner(_sh("sleep 1000"), stop_timeout=0.2)
    pid, deadline = r.start_leased(valid_for=1.0)
    assert wait_for(lambda: r.work.ended() is not None, 10, "the dead-man stopped the child")
    ended = r.work.ended()
    assert ended is not None and ended.stopped
    assert ended.code == "SIGTERM"
    assert CLOCK.monotonic() <= deadline  # noticed (woken) before the lease ran out
    assert r.woken.is_set()
    r.work.stop("lease ran out")
    assert not _alive(pid)


def test_renewals_keep_the_child_running_past_its_first_lease(runner: Callable[..., Runner]) -> None:
    r = runner(_sh("sleep 1000"), stop_timeout=0.1)
    r.work.period(1.0)
    r.work.begin(1)
    r.work.step(1, valid_until=CLOCK.monotonic() + 1.0)
    until = CLOCK.monotonic() + 2.5
    while CLOCK.monotonic() < until:
        threading.Event().wait(0.15)
        r.work.step(1, valid_until=CLOCK.monotonic() + 1.0)
    assert r.work.running()
    assert r.work.ended() is None


def test_an_exit_of_its_own_is_reported_counted_and_wakes_the_leader(runner: Callable[..., Runner]) -> None:
    r = runner(_sh("exit 3"))
    r.start()
    ended = r.exited()
    assert (ended.code, ended.stopped, ended.succeeded) == ("3", False, False)
    assert r.metric("election_work_exits_total", code="3") == 1
    assert r.metric("election_work_running") == 0


def test_a_command_that_cannot_start_is_a_failed_step_without_the_guardian(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command_work, "guarded", lambda command: (list(command), 9))
    r = Runner([str(tmp_path / "missing")])
    r.work.period(6.0)
    r.work.begin(1)
    step = r.work.step(1, valid_until=CLOCK.monotonic() + 6.0)
    assert step.outcome is Outcome.FAILED
    assert "cannot start the command" in step.why
    assert not r.work.running()


def test_a_command_gone_since_the_start_exits_127_under_the_guardian(
    tmp_path: Path, runner: Callable[..., Runner]
) -> None:
    r = runner([str(tmp_path / "missing")])
    r.start()
    assert r.exited().code == "127"


def test_the_guardian_kills_the_whole_group_when_election_dies(runner: Callable[..., Runner]) -> None:
    # Its parent-death signal, sent by hand: the guardian must take the shell's background child
    # (which ignores SIGTERM) with it, not only itself.
    r = runner(_sh("(trap '' TERM; exec sleep 1000) & sleep 1000"))
    pid = r.start()
    wait_for(lambda: len(_members(pid)) >= 4, 10, "guardian, env/sh and both sleeps run")
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: _members(pid) == [], 10, "nothing of the group is left")


def test_the_commands_own_exit_status_and_signal_come_through_the_guardian(
    runner: Callable[..., Runner],
) -> None:
    r = runner(_sh("kill -TERM $$"))
    r.start()
    assert r.exited().code == "SIGTERM"


def test_the_command_does_not_inherit_ignored_sigint(tmp_path: Path, runner: Callable[..., Runner]) -> None:
    out = tmp_path / "sigign"
    r = runner(_sh(f"grep SigIgn /proc/$$/status > {out}; sleep 60"))
    r.start()
    wait_for(lambda: out.exists() and out.read_text() != "", 10, "the command wrote its mask")
    ignored = int(out.read_text().split()[1], 16)
    assert ignored & (1 << (signal.SIGINT - 1)) == 0
    assert ignored & (1 << (signal.SIGQUIT - 1)) == 0


def test_the_grace_is_clamped_to_what_fits_the_lease() -> None:
    r = Runner(["true"], stop_timeout=3.0)
    assert r.work.grace(6.0) == 3.0  # fits: 6 x 2/3 - 0.25 = 3.75
    assert round(r.work.grace(2.0), 6) == round((2.0 * 2.0 / 3.0) - KILL_MARGIN, 6)


def _group(pgid: int) -> dict[int, str]:
    """The processes of group ``pgid`` (from /proc): pid -> state letter (``Z`` for a zombie)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since the listing
        if int(fields[2]) == pgid:
            found[int(entry)] = fields[0]
    return found


def _members(pgid: int) -> list[int]:
    """Pids of group ``pgid`` that still run (zombies left out)."""
    return [pid for pid, state in _group(pgid).items() if state != "Z"]


def _zombies(pgid: int) -> int:
    return list(_group(pgid).values()).count("Z")


def test_signal_names_for_deaths_by_signal(runner: Callable[..., Runner]) -> None:
    r = runner(_sh("kill -SEGV $$"))
    r.start()
    assert r.exited().code == "SIGSEGV"


def test_the_dead_man_kills_what_outlives_the_groups_leader(runner: Callable[..., Runner]) -> None:
    # The shell dies of the dead-man's SIGTERM, its background child ignores it: that one too must be
    # dead by the lease's end although nobody calls stop() (the state machine is stuck).
    r = runner(_sh("(trap '' TERM; while :; do sleep 0.05; done) & sleep 1000"), stop_timeout=0.2)
    pid, deadline = r.start_leased(valid_for=1.5)
    wait_for(lambda: len(_members(pid)) >= 3, 10, "the shell started its background child")
    wait_for(lambda: not _alive(pid), 5, "the whole group dead")
    assert CLOCK.monotonic() <= deadline


def test_a_blocked_log_sink_does_not_hold_back_the_dead_man(runner: Callable[..., Runner]) -> None:
    # A full stderr pipe blocks a handler's write (holding its lock): the dead-man must signal anyway.
    gate = threading.Event()

    class Blocked(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            gate.wait(30)

    r = runner(_sh("sleep 1000"), stop_timeout=0.2)
    pid, deadline = r.start_leased(valid_for=1.5)
    logger = logging.getLogger("election.work")
    handler = Blocked()
    logger.addHandler(handler)  # from now on every line of the command runner blocks
    try:
        wait_for(lambda: not _alive(pid), 5, "the dead-man stopped the group")
        assert CLOCK.monotonic() <= deadline
    finally:
        gate.set()
        logger.removeHandler(handler)


DETACHED_WITH_A_ZOMBIE = """
import os, time
if os.fork() == 0:            # in the group
    if os.fork() == 0:        # in the group too: exits at once, never reaped by its parent
        os._exit(0)
    os.setsid()               # its parent leaves the group (a daemon's detach)
    time.sleep(30)
    os._exit(0)
time.sleep(1000)              # the direct child
"""


def test_stop_returns_though_the_group_keeps_a_zombie_that_is_not_ours(runner: Callable[..., Runner]) -> None:
    r = runner([sys.executable, "-c", DETACHED_WITH_A_ZOMBIE], stop_timeout=0.3)
    pid = r.start()
    wait_for(lambda: _zombies(pid) >= 1, 10, "the group holds a zombie that is not ours")
    done = threading.Event()
    threading.Thread(target=lambda: (r.work.stop("test"), done.set()), daemon=True).start()
    assert done.wait(10), "stop() still waits for a group that has only a zombie left"
    assert _members(pid) == []


def test_a_dead_man_that_cannot_watch_kills_the_group_and_reports_it(
    runner: Callable[..., Runner], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fds(_pid: int) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "pidfd_open", no_fds)
    r = runner(_sh("sleep 1000"))
    pid = r.start()
    ended = r.exited()
    assert ended.stopped and ended.code == "SIGKILL"
    wait_for(lambda: _members(pid) == [], 10, "the group is dead")


def test_a_step_after_the_child_exited_starts_no_other_in_the_same_term(
    runner: Callable[..., Runner],
) -> None:
    # The exit may land between the Leader's look at ended() and its step: that step must leave the
    # end for the Leader to handle (resign, back off) rather than start the command again.
    r = runner(_sh("exit 3"))
    first = r.start(epoch=5)
    assert r.woken.wait(10)
    assert r.work.step(5, valid_until=CLOCK.monotonic() + 6.0).outcome is Outcome.DONE
    assert r.work._child is not None and r.work._child.pid == first
    assert r.work.ended() is not None
