"""`election switchover` and `election status --history` as real processes against a real ZooKeeper.

The replicas here are bare coordinators (no state machine): a test plays the leader's part of the
protocol itself when it needs a hand-over, so that what is tested is the command: its refusals, its
exit statuses and one-line messages, the request it writes and withdraws, and its wait.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from kazoo.client import KazooClient

from app.adapters.kazoo_coordinator import KazooCoordinator
from tests.app_cli import one_line, run_app
from tests.integration.conftest import NewReplica
from tests.zookeeper_fixture import ZooKeeperEndpoint
from tools.waiting import wait_for

pytestmark = pytest.mark.integration

AUTH = "election:s3cret"


def lead(coordinator: KazooCoordinator, name: str) -> int:
    node = coordinator.create_leader({"identity": name, "acquired_at": "2026-01-01T00:00:00.000000Z"})
    assert node is not None
    return node.epoch


def election(address: str, path: str, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_app(command, "--zk-servers", address, "--election-path", path, *extra, timeout=60)


def request_data(outsider: KazooClient, path: str) -> dict[str, object]:
    data, _stat = outsider.get(f"{path}/switchover")
    value = json.loads(data)
    assert isinstance(value, dict)
    return value


@pytest.fixture
def three(zk_server: ZooKeeperEndpoint, election_path: str, new_replica: NewReplica) -> int:
    """r1 leads, r2 may lead, r3 runs with --no-lead; returns r1's epoch."""
    r1 = new_replica("r1", no_lead=False)
    new_replica("r2", no_lead=False)
    new_replica("r3", no_lead=True)
    return lead(r1, "r1")


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("r9", "no connected member is named 'r9' (connected: r1, r2, r3)"),
        ("r1", "r1 already leads (epoch"),
        ("r3", "r3 runs with --no-lead: it never leads"),
    ],
)
def test_a_target_that_cannot_take_over_exits_2_with_one_line_and_writes_nothing(
    zk_server: ZooKeeperEndpoint,
    election_path: str,
    three: int,
    outsider: KazooClient,
    target: str,
    says: str,
) -> None:
    _data, before = outsider.get(f"{election_path}/switchover")
    result = election(zk_server.address, election_path, "switchover", f"--to={target}")
    one_line(result, 2, "election switchover: ", says)
    assert result.stdout == ""
    _data, after = outsider.get(f"{election_path}/switchover")
    assert after.version == before.version


def test_nobody_leading_exits_1(
    zk_server: ZooKeeperEndpoint, election_path: str, new_replica: NewReplica
) -> None:
    new_replica("r1")
    result = election(zk_server.address, election_path, "switchover", "--json")
    one_line(result, 1, "nobody leads")
    assert json.loads(result.stdout)["outcome"] == "no-leader"


def test_a_pending_request_exits_1_busy_and_is_left_alone(
    zk_server: ZooKeeperEndpoint, election_path: str, three: int, outsider: KazooClient
) -> None:
    pending = {
        "id": "someone-else",
        "from_epoch": three,
        "from_identity": "r1",
        "to": None,
        "requested_at": "2026-01-01T00:00:00.000000Z",
        "expires_in": 30.0,
    }
    outsider.set(f"{election_path}/switchover", json.dumps(pending).encode())
    result = election(zk_server.address, election_path, "switchover", "--to=r2", "--wait=20s")
    one_line(result, 1, "another switchover is pending")
    assert request_data(outsider, election_path) == pending


def test_no_hand_over_within_the_wait_exits_1_and_withdraws_the_request(
    zk_server: ZooKeeperEndpoint, election_path: str, three: int, outsider: KazooClient
) -> None:
    seen: list[dict[str, object]] = []

    def watch(data: bytes | None, _stat: object) -> None:
        if data:
            seen.append(json.loads(data))

    outsider.DataWatch(f"{election_path}/switchover", watch)
    began = time.monotonic()
    result = election(zk_server.address, election_path, "switchover", "--to=r2", "--wait=1s")
    elapsed = time.monotonic() - began
    one_line(result, 1, "no hand-over within 1s", f"r1 (epoch {three}) still leads", "withdrawn")
    assert 1.0 <= elapsed < 1.0 + 5.0  # the wait, plus starting Python and connecting
    wait_for(lambda: any(s.get("to") == "r2" for s in seen), 5, "the request to have been seen")
    [request] = [s for s in seen if s.get("to") == "r2"]
    assert request["from_epoch"] == three and request["from_identity"] == "r1"
    assert request["expires_in"] == 1.0
    assert request_data(outsider, election_path) == {}


def hand_over_on_request(
    outsider: KazooClient, path: str, old: KazooCoordinator, new: KazooCoordinator, name: str
) -> threading.Event:
    """Play the leader's part: when a request appears, ``old`` resigns and ``new`` takes over and
    clears it. Returns an event set once done."""
    done = threading.Event()

    def watch(data: bytes | None, _stat: object) -> bool:
        if data and json.loads(data) and not done.is_set():
            threading.Thread(target=act, daemon=True).start()
            return False
        return True

    def act() -> None:
        node = old.leader(watch=False)
        assert node is not None
        old.resign(node)
        lead(new, name)
        outsider.set(f"{path}/switchover", b"{}")
        done.set()

    outsider.DataWatch(f"{path}/switchover", watch)
    return done


def test_the_target_taking_over_exits_0_with_both_terms_and_the_time(
    zk_server: ZooKeeperEndpoint, election_path: str, new_replica: NewReplica, outsider: KazooClient
) -> None:
    r1 = new_replica("r1")
    r2 = new_replica("r2")
    epoch = lead(r1, "r1")
    done = hand_over_on_request(outsider, election_path, r1, r2, "r2")
    result = election(zk_server.address, election_path, "switchover", "--to=r2", "--json")
    assert result.returncode == 0, result
    assert result.stderr == ""
    assert done.is_set()
    reply = json.loads(result.stdout)
    new = r2.leader(watch=False)
    assert new is not None
    assert reply["from"] == {"identity": "r1", "epoch": epoch}
    assert reply["to"] == {"identity": "r2", "epoch": new.epoch}
    assert reply["message"] == f"r1 (epoch {epoch}) -> r2 (epoch {new.epoch}) in {reply['elapsed_ms']} ms"


def test_a_protected_path_without_zk_auth_exits_2_with_one_line_and_with_it_writes_the_request(
    zk_server: ZooKeeperEndpoint, election_path: str, new_replica: NewReplica, outsider: KazooClient
) -> None:
    r1 = new_replica("r1", auth=AUTH)
    new_replica("r2", auth=AUTH)
    lead(r1, "r1")
    denied = election(zk_server.address, election_path, "switchover", "--to=r2")
    one_line(denied, 2, "the election path is protected", "--zk-auth (ELECTION_ZK_AUTH)")
    assert request_data(outsider, election_path) == {}
    # with the credentials it gets as far as waiting (nobody here plays the leader's part)
    allowed = election(
        zk_server.address, election_path, "switchover", "--to=r2", "--wait=500ms", "--zk-auth", AUTH
    )
    one_line(allowed, 1, "no hand-over within 0.5s")


def test_status_history_shows_the_terms_newest_first_and_json_carries_them(
    zk_server: ZooKeeperEndpoint, election_path: str, new_replica: NewReplica, outsider: KazooClient
) -> None:
    r1 = new_replica("r1")
    epoch = lead(r1, "r1")
    terms = [
        {"epoch": 7, "identity": "r2", "began": "2026-01-01T10:00:00.000000Z",
         "ended": "2026-01-01T10:01:30.000000Z", "reason": "switchover"},
        {"epoch": epoch, "identity": "r1", "began": "2026-01-01T10:01:30.100000Z",
         "ended": None, "reason": None},
    ]  # fmt: skip
    outsider.set(f"{election_path}/history", json.dumps({"terms": terms}).encode())
    text = election(zk_server.address, election_path, "status", "--history")
    assert text.returncode == 0, text
    rows = [line.split() for line in text.stdout.split("history:\n", 1)[1].splitlines()]
    assert rows[0] == ["EPOCH", "LEADER", "BEGAN", "LASTED", "REASON"]
    assert rows[1][0:3] == [str(epoch), "r1", "2026-01-01T10:01:30.100000Z"] and rows[1][4] == "leading"
    assert rows[2] == ["7", "r2", "2026-01-01T10:00:00.000000Z", "1m30s", "switchover"]
    as_json = json.loads(election(zk_server.address, election_path, "status", "--history", "--json").stdout)
    assert [(t["epoch"], t["reason"]) for t in as_json["history"]] == [(7, "switchover"), (epoch, None)]
    assert "history" not in json.loads(election(zk_server.address, election_path, "status", "--json").stdout)
