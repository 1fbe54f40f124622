"""The switchover scenario's view of an app group's election, as its observer session reads it:
the leader, the queue of candidates behind it, and the request node ``<path>/switchover``.

:func:`read_queue` maps every candidate node to its replica's identity through the member node its
session owns; :func:`wait_settled` is a round's starting line (all N queued behind a live leader,
no request pending); :func:`request_payload` is a request as ``election switchover`` writes it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from bench.fleet import Group
from tools.waiting import wait_for

# Seconds, as the command writes it: min(--wait, app.switchover.DEFER_MAX), i.e. 10 s by default.
EXPIRES_IN = 10.0


def _sequence(name: str) -> int:
    return int(name[-10:])


@dataclass(frozen=True)
class Queue:
    leader: str
    epoch: int  # the leader node's czxid
    order: list[str]  # identities of the queued candidates, head first, the leader included

    @property
    def next(self) -> str:
        """The candidate a graceful hand-over would make leader: the first in the queue but the leader."""
        return next(i for i in self.order if i != self.leader)


def read_queue(client: KazooClient, path: str) -> Queue | None:
    """The leader and the queue of candidates (``candidates/c-<session>-N`` by sequence, each mapped
    to its identity through the member node its session owns); None while there is no leader."""
    try:
        data, stat = client.get(f"{path}/leader")
    except NoNodeError:
        return None
    identity_of: dict[int, str] = {}
    for child in client.get_children(f"{path}/members"):
        with contextlib.suppress(NoNodeError):
            member, mstat = client.get(f"{path}/members/{child}")
            identity_of[mstat.ephemeralOwner] = str(json.loads(member or b"{}").get("identity", ""))
    order = []
    for child in sorted(client.get_children(f"{path}/candidates"), key=_sequence):
        session = int(child.split("-")[1], 16)
        if session in identity_of:
            order.append(identity_of[session])
    leader = str(json.loads(data or b"{}").get("identity", ""))
    return Queue(leader=leader, epoch=int(stat.czxid), order=order)


def idle(client: KazooClient, path: str) -> bool:
    data, _stat = client.get(f"{path}/switchover")
    return bool(json.loads(data or b"{}") == {})


def wait_settled(group: Group, timeout: float = 60.0) -> Queue:
    """All N registered and queued behind a live leader, and no switchover pending."""
    group.wait_ready(timeout)
    client = group.connect_observer()

    def settled() -> Queue | None:
        queue = read_queue(client, group.path)
        if queue is None or len(queue.order) < group.size or not idle(client, group.path):
            return None
        holder = group.contenders.get(queue.leader)
        return queue if holder is not None and holder.alive else None

    queue: Queue = wait_for(
        settled, timeout, f"{group.size} replicas queued and no switchover pending", interval=0.02
    )
    return queue


def request_payload(queue: Queue, to: str) -> bytes:
    """A request as ``election switchover`` writes it (the adapter's ``SwitchoverRequest`` fields)."""
    return json.dumps(
        {
            "id": uuid.uuid4().hex,
            "from_epoch": queue.epoch,
            "from_identity": queue.leader,
            "to": to,
            "requested_at": datetime.now(UTC).isoformat(),
            "expires_in": EXPIRES_IN,
        }
    ).encode()
