"""ZooKeeper for the benchmark: the kit's server, measured.

Running the server is the kit's (:class:`tools.zookeeper.LocalZooKeeper`, with the bench's extra
four-letter words and, when asked, its request log); this module only reads what it tells. The
counters come from the server itself:

* ``srvr``'s ``Zxid:`` line: the last transaction id. Every write request gets one, a failed one
  too (a ``create`` that meets an existing node is logged as an error transaction), so a zxid delta
  counts the writes the server had to order.
* ``mntr``: ``zk_packets_received``/``zk_packets_sent`` (requests and replies, pings included; every
  four-letter word we send counts one of each, which :class:`ZkSnapshot` subtracts), and the
  summaries ``zk_sum_node_{deleted,created,changed,children}_watch_count``: how many watchers each
  triggered watch event reached, i.e. the notifications sent.
* ``/proc/<pid>/stat`` of the server's JVM: its CPU time.
* its log (slf4j-simple, ``HH:mm:ss.SSS``): ``Expiring session 0x..`` lines, the server's own
  account of when it expired a session; and, with ``request_log``, one DEBUG line per request it
  processed (``FinalRequestProcessor``), which counts requests by type, pings apart.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, rss_bytes
from tools.zookeeper import LocalZooKeeper

NOTIFICATION_KEYS = (
    "zk_sum_node_deleted_watch_count",
    "zk_sum_node_created_watch_count",
    "zk_sum_node_changed_watch_count",
    "zk_sum_node_children_watch_count",
)
#: Whitelisted besides the kit's words: what a person looking into a run may want to ask.
BENCH_WORDS = ("dump", "wchc", "wchp", "conf")
EXPIRY_RE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) .*Expiring session 0x([0-9a-f]+)")
REQUEST_RE = re.compile(r"Processing request:: sessionid:0x[0-9a-f]+ type:(\w+) .* txntype:(-?\w+)")
# The first of the two lines FinalRequestProcessor logs per request (the second lacks "Processing").
PROCESSED_RE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) .*Processing request:: sessionid:\S+ type:(\w+) ")
# A `mntr` line: a key, a tab, a number (the few lines with text values, e.g. the version, do not match).
MNTR_LINE_RE = re.compile(r"^(\w+)\t(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)$", re.MULTILINE)


class BenchZooKeeper:
    """One kit server under measurement: :attr:`server` runs it, the methods here read its counters
    and its log. The server's four-letter words are counted by the server object (they show up in
    the packet counters, and :class:`ZkSnapshot` subtracts them)."""

    def __init__(self, workdir: Path, tick_ms: int = 200, *, request_log: bool = False) -> None:
        self.server = LocalZooKeeper(
            workdir, tick_ms=tick_ms, four_letter_words=BENCH_WORDS, request_log=request_log
        )

    # -- the server -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    @property
    def request_log(self) -> bool:
        return self.server.request_log

    def start(self, timeout: float = 30.0) -> None:
        self.server.start(timeout)

    def stop(self) -> None:
        self.server.stop()

    # -- counters ---------------------------------------------------------------------------------

    def zxid(self) -> int:
        for line in self.server.four_letter("srvr").splitlines():
            if line.startswith("Zxid:"):
                return int(line.split()[1], 16)
        raise RuntimeError("srvr has no Zxid line")

    def mntr(self) -> dict[str, float]:
        """The numeric values of ``mntr``, by key."""
        reply = self.server.four_letter("mntr")
        return {key: float(number) for key, number in MNTR_LINE_RE.findall(reply)}

    def snapshot(self) -> ZkSnapshot:
        words_before = self.server.words_sent
        t = time.time()
        zxid = self.zxid()
        m = self.mntr()
        pid = self.pid
        return ZkSnapshot(
            t=t,
            zxid=zxid,
            packets_received=int(m.get("zk_packets_received", 0)),
            packets_sent=int(m.get("zk_packets_sent", 0)),
            notifications=int(sum(m.get(k, 0) for k in NOTIFICATION_KEYS)),
            watch_count=int(m.get("zk_watch_count", 0)),
            connections=int(m.get("zk_num_alive_connections", 0)),
            sessions=int(m.get("zk_global_sessions", 0)),
            znodes=int(m.get("zk_znode_count", 0)),
            cpu_seconds=(cpu_seconds(pid) or 0.0) if pid else 0.0,
            rss_bytes=(rss_bytes(pid) or 0) if pid else 0,
            words_sent=words_before,
        )

    def word_cpu_cost(self, words: int = 100) -> float:
        """The server's CPU seconds per four-letter word (each opens a connection and is logged)."""
        pid = self.pid
        before = cpu_seconds(pid) if pid else None
        for _ in range(words):
            self.server.four_letter("srvr")
        after = cpu_seconds(pid) if pid else None
        if before is None or after is None:
            return 0.0
        return max(after - before, 0.0) / words

    def wait_quiet(self, quiet: float = 0.6, timeout: float = 10.0, poll: float = 0.2) -> float:
        """Wait until the zxid has not moved for ``quiet`` seconds; return how long it took."""
        start = time.monotonic()
        last = self.zxid()
        last_change = start
        while True:
            time.sleep(poll)
            now = time.monotonic()
            current = self.zxid()
            if current != last:
                last, last_change = current, now
            elif now - last_change >= quiet or now - start >= timeout:
                return now - start

    # -- the log ----------------------------------------------------------------------------------

    def log_offset(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def requests(self, since_offset: int, until_offset: int | None = None) -> Counter[str]:
        """Requests the server processed between two log offsets, by type (``create!`` for a create
        that failed, e.g. on an existing node); needs ``request_log``."""
        counts: Counter[str] = Counter()
        with self.log_path.open("rb") as log:
            log.seek(since_offset)
            raw = log.read() if until_offset is None else log.read(max(0, until_offset - since_offset))
        for line in raw.decode("utf-8", "replace").splitlines():
            match = REQUEST_RE.search(line)
            if match:
                kind, txn = match.groups()
                counts[kind + ("!" if txn == "-1" else "")] += 1
        return counts

    def expiries(self, since_offset: int = 0, near: float | None = None) -> dict[int, float]:
        """Sessions the server expired, logged after ``since_offset``: {session id: wall time}.

        The log has only the time of day (local time, milliseconds, truncated); the date is the one
        that puts the time closest to ``near`` (default: now).
        """
        anchor = datetime.fromtimestamp(near if near is not None else time.time())
        found: dict[int, float] = {}
        for line in self._log_since(since_offset).splitlines():
            match = EXPIRY_RE.match(line)
            if match:
                found[int(match.group(2), 16)] = _wall(match.group(1), anchor)
        return found

    def processed_at(self, since_offset: int, kind: str, near: float | None = None) -> list[float]:
        """Wall times (milliseconds, truncated) at which the server finished requests of type ``kind``
        (``setData``, ``delete``, ...) logged after ``since_offset``, in order; needs ``request_log``.
        The time is the request's last step, after its transaction was logged: when watchers fire."""
        anchor = datetime.fromtimestamp(near if near is not None else time.time())
        found = []
        for line in self._log_since(since_offset).splitlines():
            match = PROCESSED_RE.match(line)
            if match and match.group(2) == kind:
                found.append(_wall(match.group(1), anchor))
        return found

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


def _wall(time_of_day: str, anchor: datetime) -> float:
    """A log's time of day (local, ``HH:MM:SS.mmm``) as a wall time: on the date that puts it
    closest to ``anchor``."""
    clock = datetime.strptime(time_of_day, "%H:%M:%S.%f").time()
    candidates = [datetime.combine(anchor.date() + timedelta(days=d), clock) for d in (-1, 0, 1)]
    return min(candidates, key=lambda c: abs((c - anchor).total_seconds())).timestamp()


@dataclass(frozen=True)
class ZkSnapshot:
    t: float
    zxid: int
    packets_received: int
    packets_sent: int
    notifications: int
    watch_count: int
    connections: int
    sessions: int
    znodes: int
    cpu_seconds: float
    rss_bytes: int
    words_sent: int  # four-letter words sent before this snapshot was taken

    def delta(self, later: ZkSnapshot, word_cpu: float = 0.0) -> dict[str, float]:
        """What happened between this snapshot and ``later``; our own four-letter words removed
        from the packet counts (each is one packet in, one out) and, at ``word_cpu`` seconds each,
        from the server's CPU."""
        words = later.words_sent - self.words_sent
        return {
            "seconds": later.t - self.t,
            "transactions": later.zxid - self.zxid,
            "packets_received": later.packets_received - self.packets_received - words,
            "packets_sent": later.packets_sent - self.packets_sent - words,
            "notifications": later.notifications - self.notifications,
            "zk_cpu_seconds": later.cpu_seconds - self.cpu_seconds - words * word_cpu,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
