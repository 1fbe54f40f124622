"""The leader held at the entry of the ``linkat`` that publishes its next file (after every check,
holding the fence lock), then frozen whole (SIGSTOP) past its session. Another replica takes over and
tries to write; then the old leader is thawed and its held write goes on. It must not land after
anything the new term wrote (without a fence it would): no stale write, no overlap, and the next
term's first file within the crash bound plus the fence lock's 2 s time-out.

Not in the exec share: under ``--exec`` no file is written.
"""

from __future__ import annotations

import os
import signal
import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import CRASH_BOUND, HOLD_MAX, WAIT, Before, Outcome, Promise
from tools.faults.syscalls import SyscallStall
from tools.waiting import wait_for


class LeaderFrozenMidWrite(Fault):
    name = "leader_frozen_mid_write"
    summary = "the leader is frozen past its session between its last check and publishing a file"
    needs = ("strace",)
    # The new term's first write waits for the fence lock the frozen leader holds, and fails after
    # the lock timeout (2 s); the next one succeeds once the old leader is thawed.
    promise = Promise("new-term", handover_bound=CRASH_BOUND + 2.0)

    def inject(self, ctx: Election, before: Before) -> Outcome:
        frozen = before.leader
        ctx.stall = SyscallStall(frozen.pid, HOLD_MAX, ctx.workdir / f"strace-{time.monotonic_ns()}.log")
        try:
            wait_for(ctx.stall.stalled, WAIT, f"{frozen.identity} to be held at publishing a file")
            held = sorted(n for n in os.listdir(ctx.file_dir) if n.startswith(".leader-"))
            t0 = frozen.send(signal.SIGSTOP)
            try:
                new_leader = wait_for(
                    lambda: ctx.leader_other_than(frozen, before.epoch),
                    WAIT,
                    "another replica to lead while the old leader is frozen",
                )
                replaced_s = time.time() - t0
                # The new term tries its first write: with a fence it waits for the lock the frozen
                # leader holds (and fails after the lock timeout); without one it writes at once.
                wait_for(
                    lambda: ctx.files_after(before.epoch) or ctx.count_events("write_error") > 0,
                    WAIT,
                    f"{new_leader.identity} to try its first write",
                )
            finally:
                t1 = frozen.send(signal.SIGCONT)
                ctx.release_stall()  # detach: the held linkat goes on
        finally:
            ctx.release_stall()
        ctx.wait_newer_files(before.epoch, 3, WAIT)
        finals = [n.removeprefix(".").removesuffix(".tmp") for n in held]
        published = [n for n in finals if (ctx.file_dir / n).exists()]
        return Outcome(
            t0,
            t0,
            details={
                "replaced_s": replaced_s,
                "frozen_s": t1 - t0,
                "held_write": finals,
                "held_write_published": published,
            },
        )

    def heal(self, ctx: Election) -> None:
        ctx.release_stall()
