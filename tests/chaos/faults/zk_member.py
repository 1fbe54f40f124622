"""One ensemble member dies: the one serving the leader's session, or the ensemble's own leader (a
member election follows). The replicas it served reconnect to another member within their sessions:
the leader keeps its node and epoch (the same term), and one agreed leader writes within the
recovery bound, measured while the member is still down."""

from __future__ import annotations

import time

from tests.chaos.election import Election
from tests.chaos.faults.base import Fault
from tests.chaos.model import WAIT, Before, Outcome, Promise
from tools.waiting import wait_for
from tools.zookeeper import LocalZooKeeper


class _MemberKill(Fault):
    needs = ("ensemble",)
    promise = Promise("same-term")
    exec_share = True

    def member(self, ctx: Election, before: Before) -> LocalZooKeeper:
        """The member to kill."""
        raise NotImplementedError

    def inject(self, ctx: Election, before: Before) -> Outcome:
        """Kill the member until the election has settled without it, then start it again."""
        member = self.member(ctx, before)
        was_zk_leader = member.mode() == "leader"
        served_the_leader = before.session in ctx.zk.sessions(member)
        t0 = time.time()
        member.stop()
        try:
            _leader, _epoch, settled = ctx.settle(t0)
        finally:
            relaunched = time.monotonic()
            member.launch()
            member.wait_until_serving(WAIT)
            relaunch_s = time.monotonic() - relaunched
        return Outcome(
            t0,
            t0,
            recovered_s=settled,  # measured while the member was down, before its relaunch
            details={
                "member": member.address,
                "member_was_zk_leader": was_zk_leader,
                "member_served_the_leader": served_the_leader,
                "settled_s": settled,
                # the relaunch after the election settled (a JVM start: 1-3.5 s loaded)
                "relaunch_s": relaunch_s,
            },
        )


class ZkMemberKill(_MemberKill):
    name = "zk_member_kill"
    summary = "the ensemble member the leader is connected to dies"

    def member(self, ctx: Election, before: Before) -> LocalZooKeeper:
        return wait_for(
            lambda: ctx.zk.server_of_session(before.session),
            WAIT,
            f"the member serving session 0x{before.session:x}",
        )


class ZkLeaderKill(_MemberKill):
    name = "zk_leader_kill"
    summary = "the ensemble's leader member dies (a member election)"

    def member(self, ctx: Election, before: Before) -> LocalZooKeeper:
        return ctx.zk.leader_member()
