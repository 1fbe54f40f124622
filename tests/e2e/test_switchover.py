"""Issue 11's operator controls, proved on real replicas and a real ZooKeeper.

``election switchover`` moves leadership to a named replica (or the next in the queue) without
anyone else taking over in between, the old leader staying on as a candidate; a request aimed at a
leader that is gone does nothing; ``--no-lead`` replicas never lead, whatever happens to the
candidates; and the history (``<election-path>/history``, ``election status --history``,
``/status``) tells why each term ended. Under ``--exec`` the old leader's command is gone before the
new leader's starts (the heartbeat child of :mod:`tests.e2e.heartbeat_child` and its overlap rule).

What "nobody else led" is checked against, in each test: the epochs (leader files, the ``history``
node) show exactly the terms the switchovers printed, and the other replicas' logs show no
transition to Leader. The ZooKeeper nodes are read with a kazoo client of the test's own.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from tests.e2e.cluster import (
    POLL,
    REPO_ROOT,
    Cluster,
    Replica,
    check_terms_do_not_interleave,
    free_port,
    parse_time,
    poll,
)
from tests.e2e.conftest import Handovers, MakeCluster
from tests.e2e.test_exec import Reaper, alive, assert_no_overlap, exec_cluster, refreshed, wait_term

pytestmark = pytest.mark.e2e

WAIT = 30.0
SESSION = 2.0  # --zk-session-timeout (the shared server, tickTime 200, grants it as asked)
HANDOVER_LINE = re.compile(
    r"(?P<old>\S+) \(epoch (?P<old_epoch>\d+)\) -> (?P<new>\S+) \(epoch (?P<new_epoch>\d+)\) "
    r"in (?P<ms>\d+(?:\.\d+)?) ms"
)
STOP_SECONDS = 0.3  # the heartbeat child beats on this long after SIGTERM
REASONS = {"graceful", "switchover", "resigned", "fenced", "expired", "work_exited"}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Handover:
    """What ``election switchover`` printed on success."""

    old: str
    old_epoch: int
    new: str
    new_epoch: int
    seconds: float


def cli(cluster: Cluster, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    """Run ``election <args> --zk-servers=... --election-path=...`` once, in the cluster's clean
    environment (no ``ELECTION_*`` of the developer's shell)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            *args,
            f"--zk-servers={cluster.zk_servers}",
            f"--election-path={cluster.election_path}",
        ],
        cwd=REPO_ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def switchover(cluster: Cluster, *args: str) -> Handover:
    """``election switchover <args>``: it must exit 0 and print ``old (epoch E) -> new (epoch E2) in
    N ms``; returns what it printed."""
    done = cli(cluster, "switchover", *args)
    assert done.returncode == 0, (
        f"election switchover {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    lines = done.stdout.strip().splitlines()
    match = HANDOVER_LINE.fullmatch(lines[-1].strip()) if lines else None
    assert match, f"election switchover {' '.join(args)} printed {done.stdout!r} (stderr {done.stderr!r})"
    handover = Handover(
        old=match["old"],
        old_epoch=int(match["old_epoch"]),
        new=match["new"],
        new_epoch=int(match["new_epoch"]),
        seconds=float(match["ms"]) / 1000.0,
    )
    assert handover.new_epoch > handover.old_epoch, handover
    return handover


def spawn_with(
    cluster: Cluster, identity: str, *flags: str, env: dict[str, str] | None = None, **overrides: str
) -> Replica:
    """:meth:`Cluster.spawn` with extra command-line ``flags`` (e.g. ``--no-lead``, which takes no
    value and so cannot be given as ``--name=value``); waits until it serves."""
    port = free_port()
    settings = {
        **cluster.settings,
        **{k.replace("_", "-"): v for k, v in overrides.items()},
        "identity": identity,
        "http-address": f"127.0.0.1:{port}",
    }
    args = [sys.executable, "-m", "app", "run", *(f"--{k}={v}" for k, v in settings.items()), *flags]
    replica = Replica(identity, port, args, cluster.log_dir / f"{identity}.log", settings)
    cluster.replicas.append(replica)
    replica.start({**cluster.env, **(env or {})})
    replica.wait_serving(WAIT)
    return replica


def spawn_attempter(cluster: Cluster, identity: str, *flags: str, **overrides: str) -> Replica:
    """Start a replica and wait until it waits as a connected Attempter: started one after another,
    replicas join the queue in the order they were started."""
    replica = spawn_with(cluster, identity, *flags, **overrides)
    poll(lambda: attempting(replica), WAIT, f"{identity} to wait as a connected attempter")
    return replica


def attempting(replica: Replica) -> bool:
    status = replica.status()
    return bool(
        status
        and status["state"] == "Attempter"
        and status["zookeeper"]["state"] == "connected"
        and status["leader"] is not None
    )


def leading_epoch(replica: Replica) -> int | None:
    """The epoch ``replica`` leads in, by its own /status; None if it does not lead."""
    status = replica.status()
    if status is None or status["state"] != "Leader" or status["leader"] is None:
        return None
    return int(status["leader"]["epoch"])


def start_leading_first(cluster: Cluster, first: str, *others: str, **overrides: str) -> int:
    """Start ``first``, wait until it leads, then the ``others`` one after another (so that the
    queue is in this order); returns the first term's epoch."""
    leader = spawn_with(cluster, first, **overrides)
    epoch = poll(lambda: leading_epoch(leader), WAIT, f"{first} to lead")
    for identity in others:
        spawn_attempter(cluster, identity, **overrides)
    return epoch


def by_identity(cluster: Cluster, identity: str) -> Replica:
    """The running replica called ``identity``."""
    return next(r for r in cluster.running if r.identity == identity)


def became_leader(replica: Replica) -> int:
    """How many times ``replica``'s log shows it entering Leader."""
    return sum(1 for t in replica.transitions() if t.get("to") == "Leader")


def file_epochs(cluster: Cluster) -> list[int]:
    """The epochs of the leader files in ``file-dir``, in write order, each once."""
    return list(dict.fromkeys(f.epoch for f in cluster.leader_files()))


def fence_epoch(cluster: Cluster) -> int:
    """The epoch the fence record (``.election-fence``) holds: the highest that has written."""
    return int(json.loads((cluster.file_dir / ".election-fence").read_text())["epoch"])


def run_audit(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "audit",
            f"--file-dir={cluster.file_dir}",
            f"--storage-capacity={cluster.settings['storage-capacity']}",
        ],
        cwd=REPO_ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def metric(replica: Replica, name: str) -> float | None:
    return (replica.metrics() or {}).get(name)


def holds(predicate: Callable[[], bool], seconds: float, message: str) -> None:
    """Assert that ``predicate`` stays true, checked every few ms, for ``seconds``: for claims that
    something does *not* happen, where there is no event to wait for."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(POLL)


class Nodes:
    """The election's ZooKeeper nodes, read with a client of the test's own."""

    def __init__(self, client: KazooClient, election_path: str) -> None:
        self.client = client
        self.path = election_path

    def leader_epoch(self) -> int | None:
        stat = self.client.exists(f"{self.path}/leader")
        return None if stat is None else int(stat.czxid)

    def leader(self) -> tuple[int, str] | None:
        """(epoch, identity) of the leader node; None if there is none."""
        try:
            data, stat = self.client.get(f"{self.path}/leader")
        except NoNodeError:
            return None
        return int(stat.czxid), str(json.loads(data or b"{}").get("identity", ""))

    def epochs(self) -> list[int]:
        """The epochs of the history's terms, oldest first."""
        return [int(t["epoch"]) for t in self.history()]

    def history(self) -> list[dict[str, Any]]:
        """The ``history`` node's terms, oldest first ([] if the node is missing or empty)."""
        if self.client.exists(f"{self.path}/history") is None:
            return []
        data, _stat = self.client.get(f"{self.path}/history")
        terms = json.loads(data or b"{}").get("terms", [])
        assert isinstance(terms, list), terms
        return terms

    def term(self, epoch: int) -> dict[str, Any] | None:
        return next((t for t in self.history() if int(t["epoch"]) == epoch), None)

    def switchover(self) -> dict[str, Any]:
        """The ``switchover`` node's data: ``{}`` when idle."""
        data, _stat = self.client.get(f"{self.path}/switchover")
        value = json.loads(data or b"{}")
        assert isinstance(value, dict), value
        return value

    def request(self, **fields: Any) -> str:
        """Write a request into the ``switchover`` node, as ``election switchover`` would; returns
        its id."""
        request = {
            "id": uuid.uuid4().hex,
            "requested_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "expires_in": 30.0,
            **fields,
        }
        self.client.set(f"{self.path}/switchover", json.dumps(request).encode())
        return str(request["id"])


@pytest.fixture
def nodes(zk_server: Any, election_path: str) -> Iterator[Nodes]:
    client = KazooClient(hosts=zk_server.address, timeout=10.0)
    client.start(timeout=WAIT)
    try:
        yield Nodes(client, election_path)
    finally:
        client.stop()
        client.close()


@pytest.fixture
def reaper(make_cluster: MakeCluster) -> Iterator[Reaper]:
    reaper = Reaper(make_cluster)
    yield reaper
    reaper.reap()


def cluster_of(make_cluster: MakeCluster, zk_server: Any, election_path: str, **settings: str) -> Cluster:
    return make_cluster(
        zk_server.address,
        election_path,
        zk_session_timeout=f"{SESSION:g}s",
        failover_backoff_max="200ms",
        **settings,
    )


# --------------------------------------------------------------------------------------------------
# switchover --to
# --------------------------------------------------------------------------------------------------


def test_switchover_to_r2_of_five_hands_over_to_r2_alone_and_r1_stays_a_candidate(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """Five replicas, r1 leads and r2 is last in the queue, ``switchover --to r2``: r2 leads next in
    exactly one new term (the files and the history show r1's epoch, then r2's, nothing between), no
    other replica's log shows leadership, r1 did not exit and waits as a candidate again, r1's term
    ended for "switchover" and r2 counts it. Then a switchover without ``--to`` goes to the next in
    the queue (r3: r1 re-joined at the tail), and one ``--to r1`` brings r1 back (it is a
    candidate)."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    # r2 joins the queue last: the head (r3) and the others must let it pass.
    first = start_leading_first(cluster, "r1", "r3", "r4", "r5", "r2")
    r1, r2 = by_identity(cluster, "r1"), by_identity(cluster, "r2")
    poll(lambda: file_epochs(cluster) == [first], WAIT, "r1's first file")

    handover = switchover(cluster, "--to", "r2")
    assert (handover.old, handover.old_epoch, handover.new) == ("r1", first, "r2"), handover
    second = handover.new_epoch
    assert nodes.leader_epoch() == second
    poll(lambda: leading_epoch(r2) == second, WAIT, "r2 to say it leads")
    poll(lambda: second in file_epochs(cluster), WAIT, "r2's first file")
    poll(lambda: nodes.epochs() == [first, second], WAIT, f"the history to be {[first, second]}")

    assert file_epochs(cluster) == [first, second], f"terms in file-dir: {file_epochs(cluster)}"
    assert fence_epoch(cluster) == second
    check_terms_do_not_interleave(cluster.leader_files())
    history = [(int(t["epoch"]), t["identity"]) for t in nodes.history()]
    assert history == [(first, "r1"), (second, "r2")], f"history: {nodes.history()}"
    ended = nodes.term(first)
    assert ended is not None and ended["reason"] == "switchover" and ended["ended"], ended
    for other in ("r3", "r4", "r5"):
        assert became_leader(by_identity(cluster, other)) == 0, f"{other} led: {cluster.report()}"
    assert became_leader(r2) == 1

    assert r1.alive, f"r1 exited ({r1.returncode})"
    assert not any(t.get("to") == "Stopping" for t in r1.transitions()), r1.transitions()
    poll(lambda: attempting(r1), WAIT, "r1 to wait as a connected attempter again")
    poll(lambda: metric(r1, "election_leader_tenure_seconds") == 0.0, WAIT, "r1's tenure to be 0")
    changes = poll(
        lambda: metric(r2, 'election_leadership_changes_total{reason="switchover"}'),
        WAIT,
        "r2 to count a leadership change for switchover",
    )
    assert changes == 1.0
    assert poll(lambda: metric(r2, "election_leader_tenure_seconds"), WAIT, "r2's tenure to grow") > 0

    onward = switchover(cluster)  # the next in the queue: r3 (r1 went to the tail)
    assert (onward.old, onward.old_epoch, onward.new) == ("r2", second, "r3"), onward
    back = switchover(cluster, "--to", "r1")
    assert (back.old, back.new) == ("r3", "r1"), back
    assert r1.alive
    poll(lambda: leading_epoch(r1) == back.new_epoch, WAIT, "r1 to say it leads again")
    expected = [first, second, onward.new_epoch, back.new_epoch]
    poll(lambda: nodes.epochs() == expected, WAIT, f"the history to be {expected}")
    for other in ("r4", "r5"):
        assert became_leader(by_identity(cluster, other)) == 0, f"{other} led"


def test_twenty_switchovers_in_a_row_leave_a_clean_audit_and_no_overlap(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes, handovers: Handovers
) -> None:
    """Twenty switchovers to varying targets (and every fourth to the next in the queue), five
    replicas: each moves leadership to its target in one new term, the terms in file-dir follow one
    another without overlapping, ``election audit`` is clean, and the history is the twenty
    terms in order, each ended for "switchover"."""
    identities = ["r1", "r2", "r3", "r4", "r5"]
    cluster = cluster_of(make_cluster, zk_server, election_path)
    epochs = [start_leading_first(cluster, *identities)]
    leader = "r1"
    targets = itertools.cycle([4, 2, 3, 1, 2, 4, 1, 3])  # offsets from the leader: varying targets
    for round_ in range(20):
        if round_ % 4 == 3:
            handover = switchover(cluster)
        else:
            target = identities[(identities.index(leader) + next(targets)) % len(identities)]
            handover = switchover(cluster, "--to", target)
            assert handover.new == target, handover
        assert (handover.old, handover.old_epoch) == (leader, epochs[-1]), handover
        handovers.record("switchover", handover.seconds, n=len(identities), to=handover.new)
        leader = handover.new
        epochs.append(handover.new_epoch)
        poll(lambda e=epochs[-1]: e in file_epochs(cluster), WAIT, f"the first file of epoch {epochs[-1]}")

    assert all(r.alive for r in cluster.replicas), f"a replica exited: {cluster.replicas}"
    assert file_epochs(cluster) == epochs, f"terms in file-dir {file_epochs(cluster)}, switchovers {epochs}"
    check_terms_do_not_interleave(cluster.leader_files())
    assert fence_epoch(cluster) == epochs[-1]
    audit = run_audit(cluster)
    assert audit.returncode == 0, f"election audit:\n{audit.stdout}{audit.stderr}"

    poll(lambda: nodes.epochs() == epochs[-20:], WAIT, "the history to hold the last 20 terms")
    history = nodes.history()
    assert [t["reason"] for t in history[:-1]] == ["switchover"] * 19, history
    assert history[-1]["ended"] is None and history[-1]["reason"] is None, history[-1]
    for older, newer in itertools.pairwise(history):
        assert older["ended"] and parse_time(older["ended"]) <= parse_time(newer["began"]), (older, newer)
    leaders_seen = sum(became_leader(r) for r in cluster.replicas)
    assert leaders_seen == 21, f"{leaders_seen} transitions to Leader in the logs for 21 terms"


def test_a_request_aimed_at_a_stale_epoch_does_nothing(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """After one switchover (r1's epoch is now stale), requests naming r1's epoch are written into
    the ``switchover`` node by a client of our own, one ``--to r3`` and one to the next in the
    queue: the leader clears each, goes on writing in its own term, nobody else leads, no term is
    added to the history; then a real switchover ``--to r3`` still works."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    first = start_leading_first(cluster, "r1", "r2", "r3")
    current = switchover(cluster, "--to", "r2").new_epoch
    r2, r3 = by_identity(cluster, "r2"), by_identity(cluster, "r3")
    poll(lambda: current in file_epochs(cluster), WAIT, "r2's first file")

    poll(lambda: nodes.switchover() == {}, WAIT, "r2 to clear the switchover it took over by")
    for target in ("r3", None):
        request = nodes.request(from_epoch=first, from_identity="r1", to=target)
        poll(lambda: nodes.switchover() == {}, WAIT, f"the leader to clear the stale request {request}")
        written = len([f for f in cluster.leader_files() if f.epoch == current])
        poll(
            lambda n=written: len([f for f in cluster.leader_files() if f.epoch == current]) >= n + 3,
            WAIT,
            "three more files of r2's term after the clear",
        )
        assert nodes.leader_epoch() == current and leading_epoch(r2) == current
        assert file_epochs(cluster) == [first, current], file_epochs(cluster)
        assert nodes.epochs() == [first, current], nodes.history()
        assert became_leader(r3) == 0 and became_leader(r2) == 1
        assert attempting(r3) and attempting(by_identity(cluster, "r1"))

    handover = switchover(cluster, "--to", "r3")
    assert (handover.old, handover.old_epoch, handover.new) == ("r2", current, "r3"), handover


# --------------------------------------------------------------------------------------------------
# --no-lead
# --------------------------------------------------------------------------------------------------


def test_no_lead_replicas_never_lead_through_switchovers_and_crashes(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """Three candidates and two ``--no-lead`` replicas (one by the flag, one by
    ``ELECTION_NO_LEAD``): through twenty hand-overs (mostly to the next in the queue) only
    candidates lead; ``switchover --to`` a no-lead replica is refused (status 2, one line); then
    every leading candidate is SIGKILLed in turn until none is left: nobody leads (the leader node
    stays absent, for longer than a session), ``election status`` exits 1 saying so and shows the
    two no-lead replicas."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    candidates = ["c1", "c2", "c3"]
    start_leading_first(cluster, "c1")
    no_leads = [
        spawn_with(cluster, "n1", "--no-lead"),
        spawn_with(cluster, "n2", env={"ELECTION_NO_LEAD": "true"}),
    ]
    for identity in candidates[1:]:
        spawn_attempter(cluster, identity)
    poll(lambda: all(attempting(r) for r in no_leads), WAIT, "the no-lead replicas to see the leader")

    leader = "c1"
    for round_ in range(20):
        if round_ % 5 == 4:
            target = candidates[(candidates.index(leader) + 1) % len(candidates)]
            handover = switchover(cluster, "--to", target)
        else:
            handover = switchover(cluster)
        assert handover.old == leader and handover.new in candidates, handover
        leader = handover.new
    for replica in no_leads:
        refused = cli(cluster, "switchover", "--to", replica.identity)
        assert refused.returncode == 2, f"switchover --to {replica.identity}: {refused}"
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr, refused
        assert refused.stdout == "", refused
    for _ in candidates:
        killed = by_identity(cluster, leader)
        epoch = poll(lambda killed=killed: leading_epoch(killed), WAIT, f"{leader} to say it leads")
        assert epoch == nodes.leader_epoch()
        killed.send(signal.SIGKILL)
        killed.wait_exit(WAIT)
        left = [r for r in cluster.running if r.identity in candidates]
        if not left:
            break
        successor = poll(
            lambda left=left, epoch=epoch: next((r for r in left if (leading_epoch(r) or 0) > epoch), None),
            WAIT,
            f"a candidate to lead after {leader} was killed",
        )
        leader = successor.identity

    poll(lambda: nodes.leader_epoch() is None, WAIT, "the last candidate's session to expire")
    holds(
        lambda: nodes.leader_epoch() is None and all(r.state() != "Leader" for r in no_leads),
        1.5 * SESSION,
        "a no-lead replica took the leader node",
    )
    for replica in no_leads:
        assert replica.alive and became_leader(replica) == 0, f"{replica.identity} led: {cluster.report()}"

    code, view, stderr = cluster.election_status()
    assert code == 1 and view.get("leader") is None, (code, view, stderr)
    members = {m["identity"] for m in view["members"]}
    assert members == {"n1", "n2"}, view["members"]
    text = cli(cluster, "status")
    assert text.returncode == 1, text
    assert "leader:  none" in text.stdout, text.stdout
    for identity in ("n1", "n2"):
        assert re.search(rf"{identity}[^,\n]*no-lead", text.stdout), (
            f"status does not show {identity} as no-lead:\n{text.stdout}"
        )


# --------------------------------------------------------------------------------------------------
# the history
# --------------------------------------------------------------------------------------------------


def break_file_dir(directory: Path) -> None:
    """Make ``directory`` unusable even for root: a regular file where the directory was (every
    write under it fails with ENOTDIR)."""
    shutil.rmtree(directory)
    directory.write_text("not a directory any more\n")


def test_the_history_tells_a_switchover_a_graceful_stop_a_crash_and_a_resignation(
    zk_server: Any, make_cluster: MakeCluster, election_path: str, nodes: Nodes
) -> None:
    """r1 hands over to r2 (``switchover``); r2 gets SIGTERM (``graceful``); r3 is SIGKILLed
    (``expired``: its successor closes the term); r4, whose file-dir becomes a regular file under it
    with ``--max-write-failures 1``, resigns (``resigned``). The history node, ``election status
    --history`` (JSON and text) and the leader's ``/status`` give each term that reason, and the
    new leader after each counts it in ``election_leadership_changes_total``."""
    cluster = cluster_of(make_cluster, zk_server, election_path)
    start_leading_first(cluster, "r1", "r2", "r3")
    own_dir = cluster.workdir / "r4-files"
    spawn_attempter(cluster, "r4", file_dir=str(own_dir), max_write_failures="1")
    expected: dict[int, str] = {}  # epoch -> the reason its term must have ended for

    def lead(identity: str) -> int:
        """Make ``identity`` the leader by a switchover if it does not lead; its epoch."""
        now = poll(nodes.leader, WAIT, "a leader node")
        if now[1] == identity:
            epoch = now[0]
        else:
            handover = switchover(cluster, "--to", identity)
            expected[handover.old_epoch] = "switchover"
            epoch = handover.new_epoch
        replica = by_identity(cluster, identity)
        poll(lambda: leading_epoch(replica) == epoch, WAIT, f"{identity} to say it leads")
        return epoch

    def next_leader(after: int) -> Replica:
        return poll(
            lambda: next((r for r in cluster.running if (leading_epoch(r) or 0) > after), None),
            WAIT,
            f"a leader after epoch {after}",
        )

    def counted(replica: Replica, reason: str) -> None:
        label = reason.replace(" ", "_")
        poll(
            lambda: (metric(replica, f'election_leadership_changes_total{{reason="{label}"}}') or 0) >= 1,
            WAIT,
            f"{replica.identity} to count a change for {reason!r}",
        )

    # a switchover
    lead("r1")
    lead("r2")
    counted(by_identity(cluster, "r2"), "switchover")

    # a graceful stop
    stopped = by_identity(cluster, "r2")
    epoch = lead("r2")
    stopped.send(signal.SIGTERM)
    assert stopped.wait_exit(WAIT) == 0
    expected[epoch] = "graceful"
    counted(next_leader(epoch), "graceful")
    spawn_attempter(cluster, "r2")

    # a crash
    epoch = lead("r3")
    crashed = by_identity(cluster, "r3")
    crashed.send(signal.SIGKILL)
    crashed.wait_exit(WAIT)
    expected[epoch] = "expired"
    counted(next_leader(epoch), "expired")
    spawn_attempter(cluster, "r3")

    # a resignation
    epoch = lead("r4")
    r4 = by_identity(cluster, "r4")
    poll(lambda: any(own_dir.glob("leader-*.json")), WAIT, "r4's first file")
    break_file_dir(own_dir)
    successor = next_leader(epoch)
    expected[epoch] = "resigned"
    assert successor is not r4, "r4 led again with a broken file-dir"
    counted(successor, "resigned")
    r4.send(signal.SIGTERM)
    r4.wait_exit(WAIT)

    def reasons(terms: list[dict[str, Any]]) -> dict[int, str | None]:
        return {int(t["epoch"]): t.get("reason") for t in terms if int(t["epoch"]) in expected}

    def all_recorded() -> dict[int, str | None] | None:
        found = reasons(nodes.history())
        return found if len(found) == len(expected) else None

    recorded = poll(all_recorded, WAIT, "every term in the history")
    assert recorded == expected, f"reasons by epoch: recorded {recorded}, expected {expected}"
    assert all(t["reason"] in REASONS for t in nodes.history() if t.get("ended")), nodes.history()
    for epoch, reason in expected.items():
        term = nodes.term(epoch)
        assert term is not None and term["began"], term
        if reason != "expired":  # an expired term's end may be unknown (None)
            assert term["ended"] and term["ended"] >= term["began"], term

    done = cli(cluster, "status", "--history", "--json")
    assert done.returncode == 0, done
    view = json.loads(done.stdout.strip().splitlines()[0])
    assert reasons(view["history"]) == expected, view["history"]
    table = cli(cluster, "status", "--history")
    assert table.returncode == 0, table
    for epoch, reason in expected.items():
        row = next((line for line in table.stdout.splitlines() if line.split()[:1] == [str(epoch)]), None)
        assert row is not None and reason in row, f"no row for epoch {epoch} ({reason}):\n{table.stdout}"
    leader = cluster.wait_for_sole_leader(WAIT)
    poll(
        lambda: reasons((leader.status() or {}).get("history") or []) == expected,
        WAIT,
        f"{leader.identity}'s /status history to show every reason",
    )


# --------------------------------------------------------------------------------------------------
# --exec
# --------------------------------------------------------------------------------------------------


def test_a_switchover_stops_the_old_leaders_command_before_the_new_one_starts(
    zk_server: Any, reaper: Reaper, election_path: str, nodes: Nodes
) -> None:
    """Three replicas run the heartbeat child (with a grandchild) under ``--exec``; each child beats
    on for 0.3 s after SIGTERM (within the 0.5 s ``--exec-stop-timeout``), so that a leader node
    released before its command is gone shows as an overlap. Five switchovers to varying targets:
    each time the old leader's child and grandchild got SIGTERM, exited 0 by themselves and wrote
    their last beat before the target's child wrote its first, in the epoch the switchover printed;
    the old leader goes on as a candidate."""
    cluster, beat_dir = exec_cluster(
        reaper, zk_server.address, election_path, "--grandchild", "--stop-seconds", f"{STOP_SECONDS:g}"
    )
    start_leading_first(cluster, "r1", "r2", "r3")
    for target in ("r3", "r2", "r1", "r2", "r3"):
        leader = cluster.wait_for_sole_leader(WAIT)
        old = wait_term(beat_dir, leader.identity)
        handover = switchover(cluster, "--to", target)
        assert (handover.old, handover.old_epoch, handover.new) == (leader.identity, old.epoch, target)
        new = wait_term(beat_dir, target, after=old.epoch)
        assert new.epoch == handover.new_epoch, (new.epoch, handover)
        for process in old.processes:  # gone by now if all is well; else let its last beat land
            poll(lambda p=process: not alive(p.pid), WAIT, f"{process.describe()} to be gone")
        old = refreshed(beat_dir, old)
        assert len(old.processes) == 2, f"expected a child and a grandchild: {old.processes}"
        for process in old.processes:
            assert process.last < new.first, (
                f"{process.describe()} beat {process.last - new.first:.3f}s after {target}'s child began"
            )
            assert process.terms and process.exit_code == 0, (
                f"{process.describe()} was not stopped by SIGTERM (terms {process.terms}, exit "
                f"{process.exit_code})"
            )
        assert leader.alive
        poll(lambda leader=leader: attempting(leader), WAIT, f"{leader.identity} to wait as a candidate")
    assert_no_overlap(beat_dir, 6)
    poll(lambda: len(nodes.history()) == 6, WAIT, "the history to hold the six terms")
    assert [t["reason"] for t in nodes.history()[:-1]] == ["switchover"] * 5, nodes.history()


def test_a_command_that_exits_ends_its_term_as_work_exited(
    zk_server: Any, reaper: Reaper, election_path: str, nodes: Nodes
) -> None:
    """Under ``--exec`` a command that exits by itself (status 3, after a few beats) makes its
    leader resign: the history records those terms as "work_exited", and the next leader counts
    ``election_leadership_changes_total{reason="work_exited"}``."""
    cluster = reaper.cluster(zk_server.address, election_path, exec="sh -c 'sleep 0.3; exit 3'")
    cluster.start(2)

    def ended_terms() -> list[dict[str, Any]] | None:
        ended = [t for t in nodes.history() if t.get("reason") is not None]
        return ended if len(ended) >= 2 else None

    closed = poll(ended_terms, WAIT, "two terms to end")[:2]
    assert [t["reason"] for t in closed] == ["work_exited", "work_exited"], nodes.history()
    poll(
        lambda: any(
            (metric(r, 'election_leadership_changes_total{reason="work_exited"}') or 0) >= 1
            for r in cluster.running
        ),
        WAIT,
        'a leader to count a change for "work_exited"',
    )
