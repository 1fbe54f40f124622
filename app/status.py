"""``election status``: who leads and who is connected, read from ZooKeeper through the port; with
``--history``, the last terms too (from the history node each new leader appends to)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.durations import format_duration
from app.ports.coordination import Coordinator, TermRecord


@dataclass(frozen=True)
class ClusterView:
    """One reading of the election: the leader (or None) and the connected members.

    ``election_path`` is relative to ``chroot`` (None: no chroot), as the replicas are configured.
    ``history`` is None unless asked for: then the recorded terms, oldest first, each with
    ``lasted_seconds`` (None while it lasts, or when its end was never recorded).
    """

    election_path: str
    leader: dict[str, Any] | None
    members: list[dict[str, Any]]
    chroot: str | None = None
    history: list[dict[str, Any]] | None = None

    def to_json(self) -> str:
        view: dict[str, Any] = {
            "election_path": self.election_path,
            "chroot": self.chroot,
            "leader": self.leader,
            "members": self.members,
        }
        if self.history is not None:
            view["history"] = self.history
        return json.dumps(view, sort_keys=True)

    def same_as(self, other: ClusterView) -> bool:
        """Equal but for the growing length of the open term: what ``--watch`` prints again on."""
        return _settled(self) == _settled(other)

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
        names = [
            m["identity"] + (" (leader)" if m["leader"] else "") + (" (no-lead)" if m.get("no_lead") else "")
            for m in self.members
        ]
        lines.append(f"members: {len(names)}" + (f"  {', '.join(names)}" if names else ""))
        if self.history is not None:
            lines.extend(_history_table(self.history, self.leader))
        return "\n".join(lines)


def _settled(view: ClusterView) -> ClusterView:
    if view.history is None:
        return view
    rows = [dict(row, lasted_seconds=None) if row["ended"] is None else row for row in view.history]
    return ClusterView(view.election_path, view.leader, view.members, view.chroot, rows)


def _history_table(history: list[dict[str, Any]], leader: dict[str, Any] | None) -> list[str]:
    """The terms as an aligned table, newest first (what an operator looks for first)."""
    if not history:
        return ["history: none recorded"]
    rows = [("EPOCH", "LEADER", "BEGAN", "LASTED", "REASON")]
    for term in reversed(history):
        current = leader is not None and term["epoch"] == leader["epoch"] and term["ended"] is None
        lasted = term["lasted_seconds"]
        rows.append(
            (
                str(term["epoch"]),
                term["identity"] or "?",
                term["began"] or "?",
                "?" if lasted is None else format_duration(round(lasted, 3)),
                "leading" if current else (term["reason"] or "?"),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return ["history:", *("  " + line for line in table)]


def _seconds_between(began: str, ended: str | None) -> float | None:
    """Seconds from ``began`` to ``ended`` (ISO-8601); None when either is missing or unreadable."""
    if ended is None:
        return None
    try:
        start = datetime.fromisoformat(began.replace("Z", "+00:00"))
        end = datetime.fromisoformat(ended.replace("Z", "+00:00"))
        return max((end - start).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None  # a record written by hand, or by a replica with a broken clock


def history_rows(
    terms: list[TermRecord], *, now: datetime | None = None, leader_epoch: int | None = None
) -> list[dict[str, Any]]:
    """The terms as JSON-ready rows, oldest first. The current leader's open term lasts until
    ``now`` (when given); any other open term's length is unknown (None)."""
    rows = []
    for term in terms:
        ended = term.ended
        if ended is None and now is not None and term.epoch == leader_epoch:
            ended = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
        rows.append(
            {
                "epoch": term.epoch,
                "identity": term.identity,
                "began": term.began,
                "ended": term.ended,
                "reason": term.reason,
                "lasted_seconds": _seconds_between(term.began, ended),
            }
        )
    return rows


def read_view(
    coordinator: Coordinator,
    election_path: str,
    *,
    watch: bool = False,
    chroot: str | None = None,
    history_now: datetime | None = None,
) -> ClusterView:
    """Read the leader node and the member list once (with ``watch``: be told of leader changes);
    ``chroot`` is only reported (the coordinator is already connected under it). With
    ``history_now`` (the wall time now), read the history node too: the current term lasts until
    then."""
    leader = coordinator.leader(watch=watch)
    members = coordinator.members()
    history = None
    if history_now is not None:
        history = history_rows(
            coordinator.history(), now=history_now, leader_epoch=None if leader is None else leader.epoch
        )
    return ClusterView(
        election_path=election_path,
        chroot=chroot,
        history=history,
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
                "no_lead": m.data.get("no_lead") is True,
            }
            for m in members
        ],
    )
