"""The leader frozen (SIGSTOP) past its session, then thawed: a new term within the crash bound, and
the thawed leader writes nothing after SIGCONT (it must find its session gone and rejoin).

Not in the exec share: SIGSTOP freezes the election process and not its child. No lease can survive
that: the dead-man timer that would stop the child is a thread of the frozen process. With files the
epoch fence is the second wall (a thawed leader's write is refused); a user's command must fence its
own resource with ELECTION_EPOCH for the same protection (examples/), so the overlap this fault
causes is by design, not a bug to detect.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import CRASH_BOUND, WAIT, Before, Outcome, Promise
from tools.leader_files import observe
from tools.waiting import wait_for


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


class LeaderSigstop(Fault):
    name = "leader_sigstop"
    summary = "the leader is frozen (SIGSTOP) past its session, then thawed"
    promise = Promise("new-term", handover_bound=CRASH_BOUND)

    def inject(self, ctx: Election, before: Before) -> Outcome:
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
            ctx.wait_newer_files(before.epoch, 3, WAIT)
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

        wait_for(rejoined, WAIT, f"{frozen.identity} to rejoin as an attempter with a new session")
        old_term = [f for f in observe(ctx.file_dir)[0] if f.epoch == before.epoch]
        late = [f.name for f in old_term if f.written_at >= t1 or f.published >= t1]
        if late:
            violations.append(f"the thawed leader wrote {late} after SIGCONT")
        return Outcome(
            t0,
            t0,
            violations=violations,
            details={"frozen_s": t1 - t0, "refrozen_outside_the_lock": retries},
        )
