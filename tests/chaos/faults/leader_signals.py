"""The leader killed (SIGKILL) or stopped gracefully (SIGTERM): the next term begins within the
crash bound (the session must expire first) or the graceful bound (the leader lets go of its node)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from tests.chaos.evidence import parse_time
from tests.chaos.faults.base import Fault
from tests.chaos.model import CRASH_BOUND, GRACEFUL_BOUND, WAIT, Before, Outcome, Promise

if TYPE_CHECKING:
    from tests.chaos.runner import Chaos


class LeaderSigkill(Fault):
    name = "leader_sigkill"
    summary = "the leader is killed (SIGKILL)"
    promise = Promise("new-term", handover_bound=CRASH_BOUND)
    exec_share = True

    def inject(self, ctx: Chaos, before: Before) -> Outcome:
        t0 = before.leader.send(signal.SIGKILL)
        before.leader.wait_exit(WAIT)
        ctx.wait_newer_files(before.epoch, 1, WAIT)
        return Outcome(t0, t0, expected_exits={before.leader.identity: -signal.SIGKILL})


class LeaderSigterm(Fault):
    name = "leader_sigterm"
    summary = "the leader is stopped gracefully (SIGTERM)"
    promise = Promise("new-term", handover_bound=GRACEFUL_BOUND)
    exec_share = True

    def inject(self, ctx: Chaos, before: Before) -> Outcome:
        t0 = before.leader.send(signal.SIGTERM)
        ctx.wait_newer_files(before.epoch, 1, WAIT)
        before.leader.wait_exit(WAIT)
        stopped = [
            parse_time(r["time"])
            for r in before.leader.log_records()
            if r.get("event") == "stopped" and parse_time(r["time"]) >= t0
        ]
        return Outcome(
            t0,
            t0,
            expected_exits={before.leader.identity: 0},
            details={"stopped_after_s": stopped[0] - t0 if stopped else None},
        )
