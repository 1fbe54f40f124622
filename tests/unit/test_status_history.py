"""``election status --history`` (app.status): the terms read through the port, as a table and JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from app.ports.coordination import TermRecord
from app.status import ClusterView, history_rows, read_view
from tests.fakes import FakeCoordinator, FakeZooKeeper

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
TERMS = [
    TermRecord(101, "r1", "2026-01-01T10:00:00.000000Z", "2026-01-01T10:30:00.000000Z", "graceful"),
    TermRecord(105, "r2", "2026-01-01T10:30:00.250000Z", "2026-01-01T11:00:00.250000Z", "switchover"),
    TermRecord(109, "r3", "2026-01-01T11:00:01.000000Z", None, None),
]


def cluster_with_history(leader: str | None = "r3") -> FakeCoordinator:
    server = FakeZooKeeper()
    server.history = list(TERMS)
    replica = FakeCoordinator(server)
    replica.start()
    replica.prepare("r3", {"identity": "r3"})
    if leader is not None:
        server.zxid = 108  # so that the node's epoch is the open term's, 109
        assert replica.create_leader({"identity": leader}) is not None
    tool = FakeCoordinator(server)
    tool.start()
    return tool


def test_each_term_lasts_from_its_beginning_to_its_end_and_the_current_one_until_now() -> None:
    rows = history_rows(TERMS, now=NOW, leader_epoch=109)
    assert [row["lasted_seconds"] for row in rows] == [1800.0, 1800.0, 3599.0]
    assert rows[2]["ended"] is None and rows[2]["reason"] is None


def test_an_open_term_that_is_not_the_current_leaders_has_no_known_length() -> None:
    rows = history_rows(TERMS, now=NOW, leader_epoch=None)
    assert rows[2]["lasted_seconds"] is None


def test_a_record_with_an_unreadable_time_has_no_known_length_rather_than_an_error() -> None:
    [row] = history_rows([TermRecord(1, "x", "yesterday", "2026-01-01T00:00:00Z", "fenced")])
    assert row["lasted_seconds"] is None


def test_the_text_table_lists_the_newest_term_first_with_the_current_one_as_leading() -> None:
    view = read_view(cluster_with_history(), "/election", history_now=NOW)
    lines = view.to_text().splitlines()
    start = lines.index("history:")
    table = [line.split() for line in lines[start + 1 :]]
    assert table == [
        ["EPOCH", "LEADER", "BEGAN", "LASTED", "REASON"],
        ["109", "r3", "2026-01-01T11:00:01.000000Z", "59m59s", "leading"],
        ["105", "r2", "2026-01-01T10:30:00.250000Z", "30m0s", "switchover"],
        ["101", "r1", "2026-01-01T10:00:00.000000Z", "30m0s", "graceful"],
    ]


def test_an_open_term_of_a_leader_that_is_gone_shows_unknown_length_and_reason() -> None:
    view = read_view(cluster_with_history(leader=None), "/election", history_now=NOW)
    newest = view.to_text().splitlines()[view.to_text().splitlines().index("history:") + 2].split()
    assert newest == ["109", "r3", "2026-01-01T11:00:01.000000Z", "?", "?"]


def test_json_adds_the_history_only_when_asked_for() -> None:
    tool = cluster_with_history()
    plain = json.loads(read_view(tool, "/election").to_json())
    assert "history" not in plain
    assert "history" not in tool.calls  # not even read
    with_history = json.loads(read_view(tool, "/election", history_now=NOW).to_json())
    assert [term["epoch"] for term in with_history["history"]] == [101, 105, 109]
    assert with_history["history"][1] == {
        "epoch": 105,
        "identity": "r2",
        "began": "2026-01-01T10:30:00.250000Z",
        "ended": "2026-01-01T11:00:00.250000Z",
        "reason": "switchover",
        "lasted_seconds": 1800.0,
    }


def test_an_empty_history_says_so() -> None:
    view = ClusterView("/election", None, [], history=[])
    assert view.to_text().splitlines()[-1] == "history: none recorded"


def test_watch_does_not_print_again_only_because_the_current_term_grew_older() -> None:
    tool = cluster_with_history()
    earlier = read_view(tool, "/election", history_now=NOW)
    later = read_view(tool, "/election", history_now=NOW.replace(minute=5))
    assert earlier != later and earlier.same_as(later)
    tool.server.history.append(TermRecord(120, "r1", "2026-01-01T12:01:00Z"))
    assert not read_view(tool, "/election", history_now=NOW).same_as(earlier)


def test_members_running_with_no_lead_are_shown_so() -> None:
    server = FakeZooKeeper()
    for name, no_lead in (("r1", False), ("r2", True)):
        replica = FakeCoordinator(server)
        replica.start()
        replica.prepare(name, {"identity": name, "no_lead": no_lead})
    tool = FakeCoordinator(server)
    tool.start()
    view = read_view(tool, "/election")
    assert view.to_text().splitlines()[-1] == "members: 2  r1, r2 (no-lead)"
    assert [m["no_lead"] for m in json.loads(view.to_json())["members"]] == [False, True]
