"""The switchover benchmark's arithmetic (bench/scenarios/switchover.py) on synthetic rounds: the
comparison with the graceful hand-over in docs/BENCHMARKS.md comes from it, so it is checked like
code, not trusted."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.adapters.kazoo_coordinator import _decode, _parse_request
from app.switchover import DEFER_MAX
from bench.scenarios._handover import net_requests
from bench.scenarios._queue import Queue, read_queue, request_payload
from bench.scenarios.switchover import reported_ms, round_figures, summarise
from bench.zk import BenchZooKeeper

T0 = 1000.0


def test_a_command_round_splits_its_start_up_from_the_protocol() -> None:
    row = round_figures(
        requested_at=T0,
        target="r2",
        new_leader="r2",
        first_written_at=T0 + 0.206,
        request_committed_at=T0 + 0.200,
        node_gone_at=T0 + 0.203,
        exited_at=T0 + 0.250,
    )
    assert row["handover_s"] == pytest.approx(0.206)
    assert row["startup_s"] == pytest.approx(0.200)
    assert row["after_request_s"] == pytest.approx(0.006)
    assert row["node_deleted_s"] == pytest.approx(0.203)
    assert row["takeover_s"] == pytest.approx(0.003)
    assert row["exit_s"] == pytest.approx(0.250)
    assert row["target_led"] is True


def test_moments_nobody_saw_are_none_and_another_leader_is_a_miss() -> None:
    row = round_figures(requested_at=T0, target="r2", new_leader="r3", first_written_at=T0 + 0.01)
    assert row["handover_s"] == pytest.approx(0.01)
    assert row["target_led"] is False
    for key in ("startup_s", "after_request_s", "node_deleted_s", "takeover_s", "exit_s"):
        assert row[key] is None


def _row(method: str, r: int, handover: float, n: int = 3, **extra: Any) -> dict[str, Any]:
    return {"method": method, "round": r, "n": n, "handover_s": handover, "target_led": True, **extra}


def test_the_verdict_compares_medians_and_pairs_rounds_back_to_back() -> None:
    rows = [
        # graceful 10, 12, 30 ms: median 12; protocol 5, 6, 60 ms: median 6, the outlier in round 2.
        _row("graceful", 0, 0.010),
        _row("graceful", 1, 0.012),
        _row("graceful", 2, 0.030),
        _row("protocol", 0, 0.005),
        _row("protocol", 1, 0.006),
        _row("protocol", 2, 0.060),
        # the command: 300 ms in all, of which 290 ms its start-up: 10 ms of protocol.
        _row("cli", 0, 0.300, startup_s=0.290, after_request_s=0.010, exit_s=0.320, exit_code=0),
        _row("cli", 1, 0.310, startup_s=0.296, after_request_s=0.014, exit_s=0.330, exit_code=0),
    ]
    s = summarise(rows)["3"]
    assert s["rounds"] == {"graceful": 3, "protocol": 3, "cli": 2}
    assert s["handover_s"]["protocol"]["p50"] == pytest.approx(0.006)
    assert s["ratio_p50_protocol_to_graceful"] == pytest.approx(0.5)
    assert s["paired_protocol_to_graceful"]["max"] == pytest.approx(2.0)  # round 2: 60 / 30
    assert s["paired_protocol_to_graceful"]["p50"] == pytest.approx(0.5)
    assert s["protocol_no_slower"] is True
    assert s["cli_after_request_s"]["p50"] == pytest.approx(0.012)
    assert s["ratio_p50_cli_net_to_graceful"] == pytest.approx(1.0)
    assert s["cli_net_no_slower"] is True
    assert s["cli_no_slower"] is False
    assert s["cli_startup_s"]["p50"] == pytest.approx(0.293)
    assert s["cli_exit_s"]["max"] == pytest.approx(0.330)
    assert s["cli_exit_codes"] == [0]
    assert s["target_missed"] == 0


def test_a_slower_switchover_is_missed_and_misses_and_exits_are_counted_per_n() -> None:
    rows = [
        _row("graceful", 0, 0.010, n=50),
        _row("protocol", 0, 0.015, n=50) | {"target_led": False},
        _row("graceful", 0, 0.010, n=3),
        _row("protocol", 0, 0.009, n=3) | {"old_alive": False},
    ]
    by_n = summarise(rows)
    assert by_n["50"]["protocol_no_slower"] is False
    assert by_n["50"]["ratio_p50_protocol_to_graceful"] == pytest.approx(1.5)
    assert by_n["50"]["target_missed"] == 1
    assert by_n["50"]["old_leader_exited"] == 0
    assert by_n["3"]["protocol_no_slower"] is True
    assert by_n["3"]["target_missed"] == 0
    assert by_n["3"]["old_leader_exited"] == 1


def test_without_command_rounds_there_is_no_verdict_on_the_command() -> None:
    s = summarise([_row("graceful", 0, 0.010), _row("protocol", 0, 0.008)])["3"]
    assert s["rounds"]["cli"] == 0
    assert s["cli_no_slower"] is None
    assert s["cli_net_no_slower"] is None
    assert s["ratio_p50_cli_to_graceful"] is None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("r1 (epoch 4294967306) -> r2 (epoch 4294967320) in 12 ms", 12.0),
        ("r1 (epoch 5) -> r2 (epoch 9) in 7.5 ms", 7.5),
        ("election switchover: r9 is not a connected candidate", None),
    ],
)
def test_the_commands_own_report_is_read_from_its_line(output: str, expected: float | None) -> None:
    assert reported_ms(output) == expected


class _Client:
    """What read_queue asks of kazoo: ``get`` (data, stat) and ``get_children``."""

    def __init__(self, nodes: dict[str, tuple[dict[str, Any], int, int]]) -> None:
        self.nodes = nodes  # path -> (data, ephemeralOwner, czxid)

    def get(self, path: str) -> tuple[bytes, SimpleNamespace]:
        data, owner, czxid = self.nodes[path]
        return json.dumps(data).encode(), SimpleNamespace(ephemeralOwner=owner, czxid=czxid)

    def get_children(self, path: str) -> list[str]:
        prefix = path + "/"
        return [p[len(prefix) :] for p in self.nodes if p.startswith(prefix)]


def test_the_queue_is_in_sequence_order_and_next_skips_the_leader() -> None:
    # Sessions chosen so that the names sort differently from the sequences.
    client = _Client(
        {
            "/e/leader": ({"identity": "r1"}, 0xA, 77),
            "/e/members/m-r1-0000000001": ({"identity": "r1"}, 0xA, 1),
            "/e/members/m-r2-0000000002": ({"identity": "r2"}, 0xF, 2),
            "/e/members/m-r3-0000000003": ({"identity": "r3"}, 0x1, 3),
            "/e/candidates/c-000000000000000a-0000000004": ({}, 0xA, 4),
            "/e/candidates/c-000000000000000f-0000000009": ({}, 0xF, 9),
            "/e/candidates/c-0000000000000001-0000000006": ({}, 0x1, 6),
        }
    )
    queue = read_queue(client, "/e")  # type: ignore[arg-type]
    assert queue is not None
    assert queue.leader == "r1"
    assert queue.epoch == 77
    assert queue.order == ["r1", "r3", "r2"]
    assert queue.next == "r3"


def test_zookeepers_work_per_round_takes_the_idle_replicas_looks_out() -> None:
    # 40 requests in a 2 s window while idle replicas look 5 times a second: 30 are the round's.
    row = _row(
        "protocol",
        0,
        0.008,
        zk_requests=40,
        zk_seconds=2.0,
        zk_transactions=8,
        zk_notifications=53,
        zk_failed_writes=0,
        zk_requests_by_type={"getData": 52, "setData": 4},
    )
    assert net_requests(row, {"non_ping_requests_per_s": 5.0}) == pytest.approx(30.0)
    assert net_requests(row, None) == pytest.approx(40.0)
    assert net_requests(_row("graceful", 0, 0.01), {"non_ping_requests_per_s": 5.0}) is None
    rows = [row, _row("graceful", 0, 0.010, zk_requests=10, zk_seconds=1.0, zk_transactions=4)]
    zk = summarise(rows, {"3": {"non_ping_requests_per_s": 5.0}})["3"]["zk"]
    assert zk["protocol"]["net_requests"]["p50"] == pytest.approx(30.0)
    assert zk["protocol"]["notifications"]["p50"] == 53
    assert zk["protocol"]["requests_by_type_p50"] == {"getData": 52, "setData": 4}
    assert zk["graceful"]["net_requests"]["p50"] == pytest.approx(5.0)
    assert zk["graceful"]["transactions"]["p50"] == 4
    assert zk["cli"]["transactions"]["n"] == 0


def test_the_request_the_benchmark_writes_is_one_the_replicas_read() -> None:
    # The protocol rounds write the node themselves: a payload the adapter cannot parse would make
    # every replica ignore it, and the rounds would time out instead of measuring a switchover.
    queue = Queue(leader="r1", epoch=4294967306, order=["r1", "r3", "r2"])
    request = _parse_request(_decode(request_payload(queue, "r3")))
    assert request is not None
    assert request.from_epoch == 4294967306
    assert request.from_identity == "r1"
    assert request.to == "r3"
    assert request.expires_in == DEFER_MAX  # what the command writes with its default --wait (30 s)
    assert len(request.id) == 32


def test_the_servers_log_says_when_it_committed_each_write(tmp_path: Path) -> None:
    zk = BenchZooKeeper(tmp_path, request_log=True)
    processor = "[SyncThread:0] DEBUG org.apache.zookeeper.server.FinalRequestProcessor - "
    zk.log_path.parent.mkdir(parents=True, exist_ok=True)
    zk.log_path.write_text(
        f"23:46:56.700 {processor}Processing request:: sessionid:0x1 type:getData cxid:0x5"
        " zxid:0xfffffffffffffffe txntype:unknown reqpath:n/a\n"
        f"23:46:56.733 {processor}Processing request:: sessionid:0x1 type:setData cxid:0x6 zxid:0x4"
        " txntype:5 reqpath:n/a\n"
        # The second line of the same request, without "Processing": not counted again.
        f"23:46:56.735 {processor}sessionid:0x1 type:setData cxid:0x6 zxid:0x4 txntype:5 reqpath:n/a\n"
        f"23:46:56.790 {processor}Processing request:: sessionid:0x2 type:setData cxid:0x9 zxid:0x7"
        " txntype:5 reqpath:n/a\n"
    )
    near = datetime(2026, 12, 1, 23, 46, 50).timestamp()
    times = zk.processed_at(0, "setData", near=near)
    expected = datetime(2026, 12, 1, 23, 46, 56, 733000).timestamp()
    assert times == [pytest.approx(expected), pytest.approx(expected + 0.057)]
    # Shortly after midnight, a time of day just before it is yesterday's.
    after_midnight = datetime(2026, 12, 2, 0, 0, 5).timestamp()
    assert zk.processed_at(0, "setData", near=after_midnight)[0] == pytest.approx(expected)
