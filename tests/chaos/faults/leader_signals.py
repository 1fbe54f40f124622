"""The leader signalled: killed (SIGKILL), so that the next term begins once ZooKeeper expires its
session (within the crash bound), or stopped gracefully (SIGTERM), so that it lets go of its node and
the next term begins within the graceful bound, and it exits 0."""

from __future__ import annotations

import signal

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import CRASH_BOUND, GRACEFUL_BOUND, WAIT, Before, Outcome, Promise
from tools.leader_files import parse_time

_SUMMARIES = {
    signal.SIGKILL: "the leader is killed (SIGKILL)",
    signal.SIGTERM: "the leader is stopped gracefully (SIGTERM)",
}


class LeaderSignal(Fault):
    """``leader_sigkill`` or ``leader_sigterm``: one mechanism, the signal its parameter."""

    exec_share = True

    def __init__(self, signum: signal.Signals) -> None:
        self.signum = signum
        self.graceful = signum == signal.SIGTERM
        self.name = f"leader_{signum.name.lower()}"
        self.summary = _SUMMARIES[signum]
        self.promise = Promise("new-term", handover_bound=GRACEFUL_BOUND if self.graceful else CRASH_BOUND)

    def inject(self, ctx: Election, before: Before) -> Outcome:
        leader = before.leader
        t0 = leader.send(self.signum)
        if not self.graceful:
            leader.wait_exit(WAIT)
            ctx.wait_newer_files(before.epoch, 1, WAIT)
            return Outcome(t0, t0, expected_exits={leader.identity: -signal.SIGKILL})
        ctx.wait_newer_files(before.epoch, 1, WAIT)
        leader.wait_exit(WAIT)
        stopped = [
            parse_time(r["time"])
            for r in leader.log_records()
            if r.get("event") == "stopped" and parse_time(r["time"]) >= t0
        ]
        return Outcome(
            t0,
            t0,
            expected_exits={leader.identity: 0},
            details={"stopped_after_s": stopped[0] - t0 if stopped else None},
        )
