"""``election status``: who leads and who is connected, read from ZooKeeper through the port."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.ports.coordination import Coordinator


@dataclass(frozen=True)
class ClusterView:
    """One reading of the election: the leader (or None) and the connected members.

    ``election_path`` is relative to ``chroot`` (None: no chroot), as the replicas are configured.
    """

    election_path: str
    leader: dict[str, Any] | None
    members: list[dict[str, Any]]
    chroot: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "election_path": self.election_path,
                "chroot": self.chroot,
                "leader": self.leader,
                "members": self.members,
            },
            sort_keys=True,
        )

    def to_text(self) -> str:
        lines = []
        if self.chroot is not None:
            lines.append(f"chroot:  {self.chroot} (leader node {self.chroot}{self.election_path}/leader)")
        if self.leader is None:
            lines.append(f"leader:  none ({self.election_path})")
        else:
            lines.append(
                f"leader:  {self.leader['identity'] or '?'}  epoch {self.leader['epoch']}  "
                f"since {self.leader['since'] or '?'}"
            )
        names = [m["identity"] + (" (leader)" if m["leader"] else "") for m in self.members]
        lines.append(f"members: {len(names)}" + (f"  {', '.join(names)}" if names else ""))
        return "\n".join(lines)


def read_view(
    coordinator: Coordinator, election_path: str, *, watch: bool = False, chroot: str | None = None
) -> ClusterView:
    """Read the leader node and the member list once (with ``watch``: be told of leader changes);
    ``chroot`` is only reported (the coordinator is already connected under it)."""
    leader = coordinator.leader(watch=watch)
    members = coordinator.members()
    return ClusterView(
        election_path=election_path,
        chroot=chroot,
        leader=None
        if leader is None
        else {
            "identity": leader.identity,
            "epoch": leader.epoch,
            "since": leader.acquired_at,
            "session": f"0x{leader.owner:x}",
        },
        members=[
            {
                "identity": str(m.data.get("identity", "?")),
                "session": f"0x{m.session:x}",
                "http_address": m.data.get("http_address"),
                "started_at": m.data.get("started_at"),
                "leader": leader is not None and m.session == leader.owner,
            }
            for m in members
        ],
    )
