"""file-dir's file system fills up, or turns read-only (a tmpfs mounted under it): the errors are
counted in the metrics, a leader that cannot write resigns after ``--max-write-failures``, nobody
exits while the disk is bad, and one agreed leader writes within the recovery bound once it is mended.

Not in the exec share: the command runner does not use file-dir.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from tests.chaos.election import Election
from tests.chaos.evidence import app_has
from tests.chaos.faults.base import Fault
from tests.chaos.model import MAX_WRITE_FAILURES, STORAGE_HOLD, WAIT, Before, Outcome, Promise
from tools.faults.disk import Filler
from tools.waiting import wait_for


class _StorageFault(Fault):
    needs = ("tmpfs",)
    promise = Promise("any")

    def break_and_mend(self, ctx: Election) -> tuple[Callable[[], Any], Callable[[], None]]:
        """How to break file-dir, and how to mend it."""
        raise NotImplementedError

    def inject(self, ctx: Election, before: Before) -> Outcome:
        assert ctx.tmpfs is not None, "storage faults need Chaos(tmpfs=True)"
        break_it, mend = self.break_and_mend(ctx)
        replicas = ctx.current()
        errors0 = ctx.metric("election_write_errors_total", replicas)
        resigns = app_has("run", "--max-write-failures")
        t0 = time.time()
        break_it()
        try:
            wait_for(
                lambda: ctx.metric("election_write_errors_total", replicas) >= errors0 + MAX_WRITE_FAILURES,
                WAIT,
                f"{MAX_WRITE_FAILURES} write errors in the metrics",
            )
            errors_s = time.time() - t0
            resigned_s = None
            if resigns:
                wait_for(
                    lambda: before.leader.state() not in (None, "Leader"),
                    WAIT,
                    f"{before.leader.identity} to resign after {MAX_WRITE_FAILURES} failed writes",
                )
                resigned_s = time.time() - t0
            ctx.endure(STORAGE_HOLD, replicas, "while file-dir was broken", "the storage fault to last")
            errors = ctx.metric("election_write_errors_total", replicas) - errors0
        finally:
            mend()
        cleared = time.time()
        leftovers = [n for n in os.listdir(ctx.file_dir) if n.endswith(".tmp")]
        return Outcome(
            t0,
            cleared,
            details={
                "write_errors": errors,
                "errors_seen_s": errors_s,
                "resigned_s": resigned_s,
                "tmp_at_clear": leftovers,
                "broken_s": cleared - t0,
            },
        )


class DiskFull(_StorageFault):
    name = "disk_full"
    summary = "file-dir's file system fills up"

    def break_and_mend(self, ctx: Election) -> tuple[Callable[[], Any], Callable[[], None]]:
        ctx.filler = Filler(ctx.file_dir / "chaos-filler.bin")
        return ctx.filler.start, ctx.stop_filler

    def heal(self, ctx: Election) -> None:
        ctx.stop_filler()


class DiskReadOnly(_StorageFault):
    name = "disk_read_only"
    summary = "file-dir's file system turns read-only"

    def break_and_mend(self, ctx: Election) -> tuple[Callable[[], Any], Callable[[], None]]:
        tmpfs = ctx.tmpfs
        assert tmpfs is not None
        return lambda: tmpfs.remount("ro"), lambda: tmpfs.remount("rw")

    def heal(self, ctx: Election) -> None:
        ctx.remount_rw()
