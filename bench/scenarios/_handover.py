"""One hand-over round, as the graceful, crash, scale and switchover scenarios run it, and
ZooKeeper's work around it (steady state, the server's counters, requests by type)."""

from __future__ import annotations

import random
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError
from kazoo.protocol.states import EventType, WatchedEvent

from bench.common import summary
from bench.fleet import APP_FLAVOURS, KAZOO, Group, app_log_events
from bench.scenarios import RunContext
from bench.visibility import WatchUnavailableError
from bench.zk import BenchZooKeeper, ZkSnapshot
from tools import leader_files
from tools.leader_files import LeaderFile, parse_time


def leader_node(group: Group) -> str | None:
    """Path of the node that makes the leader: the app's/poller's leader node, kazoo's lowest lock."""
    if group.flavour is not KAZOO:
        return f"{group.path}/leader"
    children = [c for c in group.connect_observer().get_children(group.path) if "__lock__" in c]
    if not children:
        return None
    return f"{group.path}/{min(children, key=lambda c: c[-10:])}"


def leader_session(group: Group) -> int | None:
    """Session id owning the leader's node."""
    path = leader_node(group)
    if path is None:
        return None
    try:
        _data, stat = group.connect_observer().get(path)
    except NoNodeError:
        return None
    return int(stat.ephemeralOwner)


def watch_deletion(group: Group) -> list[float]:
    """Watch the leader's node from the observer session; the list gets the wall time of its
    deletion as the observer hears it (about when the contenders hear it too)."""
    when: list[float] = []
    path = leader_node(group)
    if path is None:
        return when

    def on_event(event: WatchedEvent) -> None:
        if event.type == EventType.DELETED:
            when.append(time.time())

    group.connect_observer().exists(path, watch=on_event)
    return when


def app_breakdown(group: Group, old: str, new: str, t0: float) -> dict[str, float]:
    """Where an app hand-over's time went, from both replicas' logs (seconds after the signal):
    the old leader leaving Leader, its session closed, the new one entering Leader."""
    out: dict[str, float] = {}

    def after(identity: str, match: Any) -> float | None:
        for event in app_log_events(group.contenders[identity].log_path):
            when = parse_time(event["time"])
            if when >= t0 - 0.001 and match(event):
                return when - t0
        return None

    marks = {
        "old_left_leader_s": after(
            old, lambda e: e.get("event") == "transition" and e.get("from") == "Leader"
        ),
        "old_session_closed_s": after(old, lambda e: e.get("event") == "stopped"),
        "new_entered_leader_s": after(
            new, lambda e: e.get("event") == "transition" and e.get("to") == "Leader"
        ),
    }
    out.update({k: v for k, v in marks.items() if v is not None})
    return out


def start_watched(group: Group, fallback: list[str], scenario: str) -> None:
    """Watch the group's directory for its leader files (the hand-over's "visible" time), then start
    it in batches of 10 as :func:`steady_fleet` does. Where no watch can be had, say why once per
    scenario (``fallback`` collects the reasons) and let the rounds fall back to the 2 ms poll."""
    try:
        group.watch_files()
    except WatchUnavailableError as exc:
        if not fallback:
            print(f"  {scenario}: {exc}; 'visible' falls back to the 2 ms poll", flush=True)
        fallback.append(str(exc))
    group.start(batch=10, timeout=300.0)


def kazoo_round_trips(address: str, path: str, count: int) -> dict[str, Any]:
    """Latency of one request through kazoo from a Python thread, as the app calls it
    (``*_async(...).get(timeout)``): a read, and a write (create of an ephemeral node)."""
    client = KazooClient(hosts=address, timeout=10.0)
    client.start(timeout=30)
    try:
        client.ensure_path(path)
        reads, writes = [], []
        for i in range(count):
            t = time.perf_counter()
            client.get_async(path).get(timeout=5)
            reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            client.create_async(f"{path}/rtt-{i}", b"", ephemeral=True).get(timeout=5)
            writes.append(time.perf_counter() - t)
        return {"read_s": summary(reads), "create_s": summary(writes)}
    finally:
        client.stop()
        client.close()


def steady_state(zk: BenchZooKeeper, seconds: float, word_cpu: float = 0.0) -> dict[str, float]:
    """Server-wide rates per second over ``seconds`` of nobody doing anything on purpose."""
    offset = zk.log_offset()
    before = zk.snapshot()
    time.sleep(seconds)
    after = zk.snapshot()
    delta = before.delta(after, word_cpu)
    span = delta["seconds"]
    by_type = zk.requests(offset) if zk.request_log else {}
    return {
        "requests_by_type_per_s": {k: v / span for k, v in sorted(by_type.items())},
        "non_ping_requests_per_s": sum(v for k, v in by_type.items() if k != "ping") / span,
        "seconds": round(span, 3),
        "requests_per_s": delta["packets_received"] / span,
        "replies_per_s": delta["packets_sent"] / span,
        "transactions_per_s": delta["transactions"] / span,
        "notifications_per_s": delta["notifications"] / span,
        "zk_cpu_cores": delta["zk_cpu_seconds"] / span,
        "sessions": after.sessions,
        "watches": after.watch_count,
    }


def steady_fleet(
    ctx: RunContext,
    zk: BenchZooKeeper,
    group: Group,
    window: float,
    *,
    ready: Callable[[Group], object] = Group.wait_ready,
    word_cpu: float = 0.0,
) -> tuple[float, dict[str, float]]:
    """Start a large ``group`` (batches of 10, the first alone so it leads) and wait until it is whole
    and led (``ready``), then give the last batch time for its first looks and measure the server's
    steady state over ``window`` s. Returns the seconds from the call until ready, and the steady
    rates (which :func:`server_work` and :func:`net_requests` take out of a round's window)."""
    started = time.time()
    group.start(batch=10, timeout=300.0)
    ready(group)
    start_s = time.time() - started
    time.sleep(ctx.sized(2.0, 0.3))  # the last batch finishes its first looks
    return start_s, steady_state(zk, window, word_cpu)


def net_requests(row: dict[str, Any], steady: dict[str, float] | None) -> float | None:
    """A round's requests (pings apart) less the steady rate of idle replicas' looks over its window
    (at large N their periodic looks land in every window); None without the server's request log."""
    if row.get("zk_requests") is None:
        return None
    rate = (steady or {}).get("non_ping_requests_per_s", 0.0)
    return float(row["zk_requests"] - rate * row.get("zk_seconds", 0.0))


def by_type_median(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per request type, the median count over ``rows`` (a round without the type counts 0)."""
    kinds = sorted({k for r in rows for k in r.get("zk_requests_by_type", {})})
    return {k: statistics.median(r.get("zk_requests_by_type", {}).get(k, 0) for r in rows) for k in kinds}


def server_work(
    zk: BenchZooKeeper,
    before: ZkSnapshot,
    request_offset: int,
    *,
    quiet: float = 0.6,
    steady: dict[str, float] | None = None,
    word_cpu: float = 0.0,
) -> dict[str, Any]:
    """ZooKeeper's work since ``before`` (a snapshot taken just before the hand-over began), read
    once its zxid has been still for ``quiet`` seconds: ``zk_``-prefixed deltas (transactions,
    notifications, packets, the server's CPU; less the ``steady`` rates over the window if given),
    and with the server's request log the requests by type since ``request_offset``."""
    out: dict[str, Any] = {}
    settle = zk.wait_quiet(quiet=quiet, timeout=10.0)
    after = zk.snapshot()
    delta = before.delta(after, word_cpu)
    if steady:
        span = delta["seconds"]
        delta["packets_received"] -= steady["requests_per_s"] * span
        delta["packets_sent"] -= steady["replies_per_s"] * span
        delta["zk_cpu_seconds"] -= steady["zk_cpu_cores"] * span
    out.update({f"zk_{k}": v for k, v in delta.items()})
    out["zk_settle_s"] = settle
    if zk.request_log:
        by_type = zk.requests(request_offset)
        out["zk_requests_by_type"] = dict(sorted(by_type.items()))
        out["zk_requests"] = sum(v for k, v in by_type.items() if k != "ping")
        out["zk_failed_writes"] = sum(v for k, v in by_type.items() if k.endswith("!"))
    return out


def next_leader(group: Group, epoch: int, timeout: float) -> tuple[LeaderFile, float | None]:
    """The first file of a term after ``epoch`` and when it became visible: waited for on the group's
    inotify watch if it has one (:meth:`Group.watch_files`; the time is the watch's), else by the
    2 ms poll of the directory (the time is then None: the poll's own is the caller's)."""
    if group.visible is None:
        return group.wait_next_leader(epoch, timeout), None
    seen = group.visible.wait_first_after(epoch, timeout)
    record = leader_files.read(group.file_dir / seen.name)
    if record is None:  # retention took it already: the visible time stands, the content is needed
        record = group.wait_next_leader(epoch, timeout)
    return record, seen.at


def handover_round(
    group: Group,
    *,
    rng: random.Random,
    sig: signal.Signals = signal.SIGTERM,
    phase: tuple[float, float] = (0.2, 0.6),
    timeout: float = 30.0,
    zk: BenchZooKeeper | None = None,
    steady: dict[str, float] | None = None,
    quiet: float = 0.6,
    replace: bool = True,
    word_cpu: float = 0.0,
    observe: bool = False,
    visible: bool = False,
) -> dict[str, Any]:
    """Signal the leader (by default scenario 1's: SIGTERM after a random 0.2-0.6 s); time until the
    next leader's first file (within ``timeout``); optionally ZooKeeper's work.

    With ``visible`` (issue 13), ``handover_s`` is the signal -> that file *visible* in the
    directory: the inotify event of its final name if the group watches its directory
    (:meth:`Group.watch_files`; the round then waits on that event, no polling), else the moment
    the 2 ms poll of the directory found it (``visible_by`` says which); ``stamped_s`` is the signal
    -> its ``written_at`` (stamped as its write begins). Without ``visible``, ``handover_s`` is to
    ``written_at`` (the crash and switchover scenarios' figure) and ``seen_after_s`` the poll's.

    ``phase``: a random pause (uniform, seconds) before the signal, so rounds do not lock to
    ZooKeeper's tick or to the replicas' timers. With ``observe``, the observer session watches the
    leader's node, splitting the hand-over into leaving (signal -> node deleted, as the observer
    hears it) and taking over (-> the file visible, ``takeover_s``; -> its ``written_at``,
    ``takeover_stamped_s``). With ``zk``, the server's counters are read just before the signal and
    again once its zxid has been still for ``quiet`` seconds; ``steady`` rates (if given) times that
    window are subtracted from the packet counts and the server's CPU, and so is the CPU of our own
    four-letter words (``word_cpu`` seconds each).
    """
    group.wait_ready()
    time.sleep(rng.uniform(*phase))
    leader, newest = group.leader()
    session = leader_session(group) if sig is signal.SIGKILL else None
    log_offset = zk.log_offset() if zk is not None else 0
    before = zk.snapshot() if zk is not None else None
    request_offset = zk.log_offset() if zk is not None else 0
    deleted = watch_deletion(group) if observe else []
    t0 = time.time()
    leader.proc.send_signal(sig)  # type: ignore[union-attr]
    nxt, at = next_leader(group, newest.epoch, timeout)
    found = time.time()
    row: dict[str, Any] = {
        "flavour": group.flavour.name,
        "n": group.size,
        "old_leader": leader.identity,
        "new_leader": nxt.identity,
        "signal": sig.name,
        "signalled_at": t0,
    }
    if not visible:
        row.update({"handover_s": nxt.written_at - t0, "seen_after_s": found - t0})
    else:
        row.update(
            {
                "visible_by": "poll" if at is None else "inotify",
                "handover_s": (found if at is None else at) - t0,
                "stamped_s": nxt.written_at - t0,
                # The inode's ctime (the link, then the temporary's unlink), on the kernel's coarse
                # clock: up to a tick (4 ms at HZ=250) early, so a cross-check, not the figure.
                "published_s": nxt.published - t0,
            }
        )
    if deleted:
        row["node_deleted_s"] = deleted[0] - t0
        row["takeover_s"] = row["handover_s"] - row["node_deleted_s"]
        row["takeover_stamped_s"] = nxt.written_at - deleted[0]
    if zk is not None and before is not None:
        row.update(server_work(zk, before, request_offset, quiet=quiet, steady=steady, word_cpu=word_cpu))
        if session is not None:
            expired = zk.expiries(log_offset, near=t0).get(session)
            row["session"] = f"0x{session:x}"
            row["expired_after_s"] = None if expired is None else expired - t0
    row["exit_code"] = group.wait_exit(leader, timeout=30.0)
    if group.flavour in APP_FLAVOURS:
        row.update(app_breakdown(group, leader.identity, nxt.identity, t0))
    if replace:
        group.spawn(leader.identity)
    return row
