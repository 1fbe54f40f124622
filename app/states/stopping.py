"""Stopping: release everything, so that another replica can lead at once.

Guarantees: leader work has already stopped (every state checks for a stop request before any work,
and a write in progress completes or vanishes atomically before we get here). Closing the ZooKeeper
session makes the server delete our ephemeral nodes, the leader node if it is ours and our member
node, in one transaction, which fires the watches of waiting replicas: hand-over takes one
round-trip. (A leader asked to stop has closed the session already, on its way out of Leader, so that
the successor's take-over does not wait for log lines; the close here then does nothing.) The
process's exit status is the context's ``exit_code`` (0 after a signal, 1 when
Failover gave up). The HTTP server and logs are shut down by the wiring after this state returns.
"""

from __future__ import annotations

import logging

from app.machine import Context, StateName

log = logging.getLogger("election.states.stopping")


class Stopping:
    name = StateName.STOPPING

    def run(self, ctx: Context) -> None:
        ctx.term = None
        ctx.coordinator.close()
        log.info(
            "released ZooKeeper session; exiting with status %d",
            ctx.exit_code,
            extra={"event": "stopped", "exit_code": ctx.exit_code},
        )
