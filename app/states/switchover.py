"""Who may take the leader node while an operator's switchover is pending (``election switchover``).

A pending request (:class:`app.ports.coordination.SwitchoverRequest`) names the leader's epoch it is
meant for and, usually, a target. While it is pending and unexpired:

* only the target may create the leader node (without a target: anyone but the leader that was
  asked to hand over); every other candidate stays where it is in the queue;
* the target treats itself as the head of the queue: it watches the leader node and creates it the
  moment the old leader deletes it;
* nobody creates while the request is *unsettled* (a watch said it changed and the re-read is in
  flight): ZooKeeper delivers watch events in the order of the changes, so a request written before
  the old leader's node went is at least unsettled by the time its deletion is seen.

A candidate stops deferring ``expires_in`` seconds after it first saw the request (a target that
died meanwhile must not leave the cluster leaderless for longer); the new leader clears it.
"""

from __future__ import annotations

from app.machine import Context
from app.ports.coordination import SwitchoverRequest


def pending(ctx: Context) -> SwitchoverRequest | None:
    """The request this replica must respect now: known, and not expired on its own clock."""
    request = ctx.coordinator.switchover_request()
    if request is None:
        ctx.switchover_seen = None
        return None
    seen_leader = ctx.observed_leader
    if seen_leader is not None and seen_leader.epoch > request.from_epoch:
        return None  # meant for a term before one we have seen: void, whoever has not cleared it yet
    seen = ctx.switchover_seen
    if seen is None or seen[0] != request.id:
        seen = ctx.switchover_seen = (request.id, ctx.now())
    return request if ctx.now() < seen[1] + request.expires_in else None


def expires_at(ctx: Context) -> float | None:
    """When the pending request stops binding this replica (monotonic), or None."""
    request = pending(ctx)
    seen = ctx.switchover_seen
    return None if request is None or seen is None else seen[1] + request.expires_in


def may_create(ctx: Context) -> bool:
    """Whether this replica may create the leader node now."""
    if ctx.settings.no_lead or not ctx.coordinator.switchover_settled():
        return False
    request = pending(ctx)
    if request is None:
        return True
    if request.to is None:
        return request.from_identity != ctx.settings.identity
    return request.to == ctx.settings.identity


def targeted(ctx: Context) -> bool:
    """Whether a pending request names this replica as the next leader."""
    request = pending(ctx)
    return request is not None and request.to == ctx.settings.identity and not ctx.settings.no_lead
