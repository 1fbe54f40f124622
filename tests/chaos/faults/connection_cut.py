"""The leader's TCP paths to ZooKeeper cut (iptables on its own relay ports): it stops leading
before its session can have expired on the server, writes nothing past the lease of its last
confirmed read, and the next term begins within the crash bound."""

from __future__ import annotations

import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import CRASH_BOUND, LEASE, SESSION, WAIT, Before, Outcome, Promise
from tools.faults.network import LoopbackCut


class ConnectionCut(Fault):
    name = "connection_cut"
    summary = "the leader's TCP paths to ZooKeeper are cut (iptables)"
    needs = ("relays",)
    promise = Promise("new-term", handover_bound=CRASH_BOUND)
    exec_share = True

    def inject(self, ctx: Election, before: Before) -> Outcome:
        cut_off = before.leader
        ctx.cut = LoopbackCut([relay.port for relay in ctx.relays[cut_off.identity]])
        t0 = time.time()
        ctx.cut.apply()
        try:
            ctx.wait_newer_files(before.epoch, 3, WAIT)
        finally:
            ctx.remove_cut()
        t1 = time.time()
        ctx.wait_rejoined(cut_off)
        # The cut-off leader must stop before its session can have expired on the server, and may
        # write only within the lease of its last confirmed read (which came before the cut).
        left = ctx.left_leader_at(cut_off, t0)
        last = ctx.last_written(before.epoch)
        violations = []
        if left is None or left - t0 >= SESSION:
            violations.append(f"{cut_off.identity} did not stop leading within the session timeout")
        if last is not None and last - t0 >= LEASE:
            violations.append(f"{cut_off.identity} wrote {last - t0:.3f}s after it was cut off")
        return Outcome(
            t0,
            t0,
            violations=violations,
            details={
                "left_leader_s": None if left is None else left - t0,
                "last_write_after_cut_s": None if last is None else last - t0,
                "cut_s": t1 - t0,
            },
        )

    def heal(self, ctx: Election) -> None:
        ctx.remove_cut()
