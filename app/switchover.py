"""``election switchover``: ask the current leader to hand over, and wait until the hand-over is done.

The command talks to ZooKeeper only, through the :class:`~app.ports.coordination.Coordinator` port,
so it works from any machine (or pod) that can reach the ensemble:

1. Read the leader (epoch E) and the members, and refuse, before writing anything, a target that
   could never take over: an identity no connected member has, the leader itself, or a member that
   runs with ``--no-lead``; without ``--to``, a cluster where no member but the leader may lead.
   Nobody leading is a failure too: there is nobody to ask.
2. Write one :class:`~app.ports.coordination.SwitchoverRequest` naming epoch E into the switchover
   node (a compare-and-set on an idle node: a pending request makes this one fail as "busy").
   The request is meant for the leader of epoch E only; any other leader ignores it and clears it.
3. Wait, watching the leader node, until a leader with an epoch above E exists. It succeeds when
   that leader is the target (without ``--to``: whoever it is); another replica taking over, or no
   new term within the wait, is a failure. A request that failed or timed out is cleared (only if it
   is still ours), so that no replica goes on deferring to a target that did not take over.

The outcome is a :class:`SwitchoverResult`, printed as one line or one JSON object; the command line
(``app.cli``) maps :attr:`SwitchoverResult.outcome` to its exit status. ZooKeeper failures are not
caught here: they reach the caller as :class:`~app.ports.coordination.CoordinationError`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.ports.clock import Clock
from app.ports.coordination import (
    CoordinationError,
    Coordinator,
    LeaderNode,
    Member,
    PermissionDeniedError,
    SwitchoverBusyError,
    SwitchoverRequest,
)

# Outcomes, and the exit status app.cli gives each (documented in its module docstring and README).
SWITCHED = "switched"  # 0: the target (or, without --to, anyone) leads in a new term
REFUSED = "refused"  # 2: --to names no connected member, the leader itself or a --no-lead member;
# without --to: no member but the leader may lead
DENIED = "denied"  # 2: ZooKeeper refused the write: the election path's ACL wants --zk-auth
NO_LEADER = "no-leader"  # 1: nobody leads, so nobody can be asked to hand over
BUSY = "busy"  # 1: another request is pending
OTHER_LEADER = "other-leader"  # 1: a replica other than the target took over
TIMED_OUT = "timed-out"  # 1: no new term within --wait


# The longest candidates defer to a named target: it takes over within milliseconds when it lives;
# if it died after the request, the others lead again this long after they saw the request.
DEFER_MAX = 10.0


@dataclass(frozen=True)
class SwitchoverResult:
    """What one ``election switchover`` did: the leader asked (``before``), the leader at the end
    (``after``, None if nobody led then), and how long the hand-over took (None unless it happened).

    ``message`` is the one line a human reads; ``outcome`` is one of this module's constants.
    """

    outcome: str
    message: str
    target: str | None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    elapsed_ms: int | None = None
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == SWITCHED

    def to_text(self) -> str:
        return self.message

    def to_json(self) -> str:
        return json.dumps(
            {
                "ok": self.ok,
                "outcome": self.outcome,
                "message": self.message,
                "target": self.target,
                "from": self.before,
                "to": self.after,
                "elapsed_ms": self.elapsed_ms,
                "request_id": self.request_id,
            },
            sort_keys=True,
        )


def _term(node: LeaderNode) -> dict[str, Any]:
    return {"identity": node.identity or "?", "epoch": node.epoch}


def _named(node: LeaderNode) -> str:
    return f"{node.identity or '?'} (epoch {node.epoch})"


def _refusal(target: str, leader: LeaderNode, members: list[Member]) -> str | None:
    """Why ``target`` cannot be handed the leadership, or None when it is a connected candidate."""
    named = [m for m in members if str(m.data.get("identity", "")) == target]
    if not named:
        known = ", ".join(sorted({str(m.data.get("identity", "?")) for m in members})) or "none"
        return f"no connected member is named {target!r} (connected: {known})"
    if target == leader.identity or any(m.session == leader.owner for m in named):
        return f"{target} already leads (epoch {leader.epoch})"
    if all(m.data.get("no_lead") is True for m in named):
        return f"{target} runs with --no-lead: it never leads"
    return None


def _nobody_else(leader: LeaderNode, members: list[Member]) -> str | None:
    """Why a switchover without a target cannot succeed, or None: it needs a connected member other
    than the leader that may lead. Without one the leader would let go and nobody could take over
    (the leader asked is barred while the request binds), leaving the cluster leaderless for the
    whole wait."""
    others = [m for m in members if m.session != leader.owner and m.data.get("identity") != leader.identity]
    if any(m.data.get("no_lead") is not True for m in others):
        return None
    standbys = ", ".join(sorted(str(m.data.get("identity", "?")) for m in others))
    return (
        f"no other connected member may lead (--no-lead: {standbys})"
        if others
        else (f"{_named(leader)} is the only connected member: nobody could take over")
    )


def switchover(
    coordinator: Coordinator,
    clock: Clock,
    *,
    to: str | None,
    wait: float,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> SwitchoverResult:
    """Ask the current leader to hand over (to ``to``, or to the next in the queue) and wait at most
    ``wait`` seconds for a new term. ``coordinator`` must be connected.

    Guarantees: nothing is written unless the target is a connected member that may lead and a
    leader exists; at most one request is written, and it names the epoch read just before; a
    request that did not lead to the target's term is cleared before returning (if still ours).
    Raises :class:`CoordinationError` when ZooKeeper fails (other than refusing a write for want of
    credentials, which is the ``denied`` outcome).
    """
    changed = threading.Event()
    coordinator.subscribe(changed.set)  # the leader watch (and connection changes) wake the wait
    leader = coordinator.leader(watch=True)
    if leader is None:
        return SwitchoverResult(NO_LEADER, "nobody leads: there is no leader to hand over", to)
    before = _term(leader)
    members = coordinator.members()
    why = _refusal(to, leader, members) if to is not None else _nobody_else(leader, members)
    if why is not None:
        return SwitchoverResult(REFUSED, why, to, before=before)
    request = SwitchoverRequest(
        id=new_id(),
        from_epoch=leader.epoch,
        from_identity=leader.identity,
        to=to,
        requested_at=clock.wall().isoformat(timespec="microseconds").replace("+00:00", "Z"),
        # Candidates defer to the target no longer than this command waits for it, and never long
        # enough to leave the cluster leaderless for long if the target dies meanwhile.
        expires_in=min(wait, DEFER_MAX),
    )
    began = clock.monotonic()
    try:
        coordinator.request_switchover(request)
    except SwitchoverBusyError:
        return SwitchoverResult(
            BUSY, "another switchover is pending; try again when it is done", to, before=before
        )
    except PermissionDeniedError:
        return SwitchoverResult(
            DENIED,
            "ZooKeeper refused the request: the election path is protected; give the replicas' "
            "--zk-auth (ELECTION_ZK_AUTH)",
            to,
            before=before,
        )
    try:
        return _await_new_term(coordinator, clock, leader, request, changed, began, wait)
    except BaseException:
        # Interrupted (Ctrl-C) or ZooKeeper failed: nobody should go on deferring to the target.
        _clear(coordinator, request.id)
        raise


def _await_new_term(
    coordinator: Coordinator,
    clock: Clock,
    leader: LeaderNode,
    request: SwitchoverRequest,
    changed: threading.Event,
    began: float,
    wait: float,
) -> SwitchoverResult:
    """Watch the leader node until a term above ``leader``'s begins, or ``wait`` seconds from
    ``began`` (on ``clock``) pass."""
    to, before, deadline = request.to, _term(leader), began + wait
    while True:
        changed.clear()  # before the look: a change after it sets the event again
        now_leader = coordinator.leader(watch=True)
        elapsed_ms = round((clock.monotonic() - began) * 1000)
        if now_leader is not None and now_leader.epoch > leader.epoch:
            after = _term(now_leader)
            if to is None or now_leader.identity == to:
                return SwitchoverResult(
                    SWITCHED,
                    f"{_named(leader)} -> {_named(now_leader)} in {elapsed_ms} ms",
                    to,
                    before=before,
                    after=after,
                    elapsed_ms=elapsed_ms,
                    request_id=request.id,
                )
            _clear(coordinator, request.id)
            return SwitchoverResult(
                OTHER_LEADER,
                f"{_named(now_leader)} took over from {_named(leader)}, not {to}",
                to,
                before=before,
                after=after,
                request_id=request.id,
            )
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            _clear(coordinator, request.id)
            still = "nobody leads" if now_leader is None else f"{_named(now_leader)} still leads"
            return SwitchoverResult(
                TIMED_OUT,
                f"no hand-over within {wait:g}s: {still}; the request was withdrawn",
                to,
                before=before,
                after=None if now_leader is None else _term(now_leader),
                request_id=request.id,
            )
        # The watch on the leader node wakes us at once; a free node sets no watch (see the port),
        # so while nobody leads we look again every 100 ms.
        clock.wait(changed, remaining if now_leader is not None else min(remaining, 0.1))


def _clear(coordinator: Coordinator, request_id: str) -> None:
    """Withdraw our request if it is still pending (best effort: a new leader clears it anyway)."""
    with contextlib.suppress(CoordinationError):
        coordinator.clear_switchover(request_id)
