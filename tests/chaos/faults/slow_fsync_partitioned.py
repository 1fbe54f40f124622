"""The leader held inside the ``fsync`` of its next file's temporary (strace) for longer than its
session, and its paths to ZooKeeper cut at the same moment. Another replica takes over within the
crash bound; the held leader's write must not be published after the new term's leader node was
created (its lease ran out: issue 9), and of course not among the new term's files.

Not in the exec share: under ``--exec`` no file is written.
"""

from __future__ import annotations

import os
import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import CRASH_BOUND, FSYNC_HOLD, WAIT, Before, Outcome, Promise
from tools.faults.network import LoopbackCut
from tools.faults.syscalls import SyscallStall
from tools.leader_files import observe
from tools.waiting import wait_for


class SlowFsyncPartitioned(Fault):
    name = "slow_fsync_partitioned"
    summary = "the leader is held in a file's fsync past its session and cut off from ZooKeeper meanwhile"
    needs = ("strace", "relays")
    promise = Promise("new-term", handover_bound=CRASH_BOUND)

    def inject(self, ctx: Election, before: Before) -> Outcome:
        held = before.leader
        violations: list[str] = []
        stall: SyscallStall | None = None
        for attempt in range(5):  # catch the fsync of a temporary, not the directory's after a link
            stall = SyscallStall(
                held.pid, FSYNC_HOLD, ctx.workdir / f"strace-fsync-{time.monotonic_ns()}.log", "fsync"
            )
            ctx.stall = stall
            wait_for(stall.stalled, WAIT, f"{held.identity} to be held in fsync (attempt {attempt + 1})")
            if any(n.endswith(".tmp") for n in os.listdir(ctx.file_dir)):
                break
            ctx.release_stall()
            stall = None
        if stall is None:
            raise RuntimeError(f"could not catch {held.identity} in the fsync of a temporary file")
        caught = stall
        ctx.cut = LoopbackCut([relay.port for relay in ctx.relays[held.identity]])
        t0 = time.time()
        ctx.cut.apply()
        try:
            newer = ctx.wait_newer_files(before.epoch, 1, WAIT)
            _data, stat = ctx.kazoo().retry(ctx.kazoo().get, ctx.leader_path)
            created = stat.ctime / 1000.0
            wait_for(lambda: not caught.stalled(), FSYNC_HOLD + WAIT, "the held fsync to return")
            released = time.time()
            wait_for(lambda: held.state() != "Leader", WAIT, f"{held.identity} to stop leading")
        finally:
            caught.stop()
            ctx.stall = None
            ctx.remove_cut()
        cleared = time.time()
        ctx.wait_rejoined(held)
        late = [
            f.name for f in observe(ctx.file_dir)[0] if f.epoch == before.epoch and f.published >= created
        ]
        if late:
            violations.append(f"{held.identity} published {late} after the new term's node was created")
        return Outcome(
            t0,
            cleared,
            violations=violations,
            details={
                "node_created_s": created - t0,
                "fsync_released_s": released - t0,
                "first_new_file": newer[0],
            },
        )

    def heal(self, ctx: Election) -> None:
        ctx.release_stall()
        ctx.remove_cut()
