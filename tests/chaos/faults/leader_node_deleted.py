"""An operator deletes the leader node (the suite's own kazoo client): the leader sees the deletion
and steps down, and the next term begins within the graceful bound."""

from __future__ import annotations

import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import GRACEFUL_BOUND, WAIT, Before, Outcome, Promise
from tools.waiting import wait_for


class LeaderNodeDeleted(Fault):
    name = "leader_node_deleted"
    summary = "an operator deletes the leader node (kazoo delete)"
    promise = Promise("new-term", handover_bound=GRACEFUL_BOUND)
    exec_share = True

    def inject(self, ctx: Election, before: Before) -> Outcome:
        client = ctx.kazoo()
        wait_for(lambda: client.connected, WAIT, "the suite's own ZooKeeper client to be connected")
        t0 = time.time()
        client.retry(client.delete, ctx.leader_path)
        deleted = time.time()
        ctx.wait_newer_files(before.epoch, 1, WAIT)
        return Outcome(t0, t0, details={"delete_s": deleted - t0})
