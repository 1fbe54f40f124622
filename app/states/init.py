"""Init: make sure every resource is usable before competing for leadership.

Guarantees on leaving for Attempter: a live ZooKeeper session, the election path exists, this
replica is registered as a member, and the work's resources are usable (files: ``file-dir``
exists, is writable (a probe file was written and removed) and holds no leftovers of interrupted
writes). Any failure leads to Failover with the cause;
a stop request leads to Stopping at once, even while connecting.
"""

from __future__ import annotations

import logging

from app import __version__
from app.machine import Context, StateName, Transition
from app.ports.coordination import ConnectionState, CoordinationError
from app.ports.storage import StorageError

log = logging.getLogger("election.states.init")


class Init:
    name = StateName.INIT

    def run(self, ctx: Context) -> Transition:
        settings = ctx.settings
        coordinator = ctx.coordinator
        if coordinator.state() is ConnectionState.CLOSED:
            coordinator.start()
        deadline = ctx.now() + settings.zk_connect_timeout
        while coordinator.state() is not ConnectionState.CONNECTED:
            if ctx.stop_reason is not None:
                return Transition(StateName.STOPPING, ctx.stop_reason)
            if not ctx.wait_until(deadline) and coordinator.state() is not ConnectionState.CONNECTED:
                return Transition(
                    StateName.FAILOVER,
                    f"ZooKeeper {settings.zk_connect_string} unreachable for "
                    f"{settings.zk_connect_timeout:g}s",
                )
        if ctx.stop_reason is not None:
            return Transition(StateName.STOPPING, ctx.stop_reason)
        try:
            coordinator.prepare(
                settings.identity,
                {
                    "identity": settings.identity,
                    "version": __version__,
                    "http_address": str(settings.http_address),
                    "no_lead": settings.no_lead,
                    "started_at": ctx.clock.wall().isoformat(timespec="microseconds"),
                },
            )
        except CoordinationError as exc:
            return Transition(StateName.FAILOVER, f"cannot prepare {settings.election_path}: {exc}")
        try:
            removed = ctx.work.prepare()
        except StorageError as exc:
            return Transition(StateName.FAILOVER, f"file-dir unusable: {exc}")
        if removed:
            log.warning(
                "removed %d leftover(s) of interrupted writes",
                removed,
                extra={"event": "leftovers_removed", "count": removed},
            )
        session = coordinator.session_id()
        ready = settings.file_dir if ctx.work.kind == "files" else "the command"
        return Transition(
            StateName.ATTEMPTER,
            f"ZooKeeper session 0x{session or 0:x} and {ready} ready",
        )
