"""The HTTP endpoints on a real local socket, and what a Replica (with fake ports) reports through them."""

from __future__ import annotations

import json
import re
import select
import selectors
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from app.http import WORKERS, Endpoints, HttpServer, backlog
from app.wiring import LIVENESS_STALL_SECONDS, raise_open_files_limit
from tests.unit.conftest import Harness, keep_publishing, other_leader
from tools.waiting import wait_for

RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")

# Never go through a proxy from the environment to reach 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, whatever the status."""
    try:
        with _OPENER.open(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


class Probe:
    """A live/ready callable whose answer the test changes."""

    def __init__(self, ok: bool = True, reason: str = "fine") -> None:
        self.ok = ok
        self.reason = reason

    def __call__(self) -> tuple[bool, str]:
        return self.ok, self.reason


class Backend:
    """What the shared server's Endpoints call; each test sets its own answers."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.status: Callable[[], dict[str, Any]] = lambda: {"state": "Init"}
        self.live: Callable[[], tuple[bool, str]] = Probe()
        self.ready: Callable[[], tuple[bool, str]] = Probe()
        self.leading: Callable[[], tuple[bool, str]] = Probe()

    # Looked up on each request, so a test may swap the callables above after the server started.
    def current_status(self) -> dict[str, Any]:
        return self.status()

    def current_live(self) -> tuple[bool, str]:
        return self.live()

    def current_ready(self) -> tuple[bool, str]:
        return self.ready()

    def current_leading(self) -> tuple[bool, str]:
        return self.leading()


@dataclass
class Served:
    url: str
    backend: Backend


@pytest.fixture(scope="module", autouse=True)
def _open_files() -> None:
    """The tests below hold hundreds of connections: as many descriptors as `election run` gets."""
    raise_open_files_limit()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset); never blocks."""
    readable, _w, _x = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except OSError:
        return True


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.fixture
def fresh() -> Iterator[Callable[..., HttpServer]]:
    """Started HttpServers with the given keyword arguments, stopped at the end of the test."""
    with ExitStack() as started:

        def make(**kwargs: Any) -> HttpServer:
            http = HttpServer(
                "127.0.0.1", 0, Endpoints(CollectorRegistry(), dict, Probe(), Probe(), Probe()), **kwargs
            )
            http.start()
            started.callback(http.stop)
            return http

        yield make


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    """One HttpServer for the module (stopping one takes up to half a second), on any free port."""
    registry = CollectorRegistry()
    Counter("demo_things", "Things counted for the test", registry=registry).inc(3)
    backend = Backend()
    app = Endpoints(
        registry, backend.current_status, backend.current_live, backend.current_ready, backend.current_leading
    )
    http = HttpServer("127.0.0.1", 0, app)
    http.start()
    yield Served(f"http://127.0.0.1:{http.port}", backend)
    http.stop()


@pytest.fixture
def served(server: Served) -> Served:
    server.backend.reset()
    return server


# -- the endpoints ---------------------------------------------------------------------------


def test_metrics_serves_the_injected_registry_in_text_format(served: Served) -> None:
    code, content_type, body = get(served.url + "/metrics")
    assert code == 200
    assert content_type.startswith("text/plain")
    assert "demo_things_total 3.0" in body.decode().splitlines()


def test_metrics_does_not_serve_the_global_registry(served: Served) -> None:
    _code, _type, body = get(served.url + "/metrics")
    assert b"python_gc_objects_collected_total" not in body  # registered on prometheus_client.REGISTRY


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/leader"])
def test_probe_returns_200_with_ok_and_reason(served: Served, path: str) -> None:
    served.backend.live = served.backend.ready = served.backend.leading = Probe(True, "all good")
    code, content_type, body = get(served.url + path)
    assert code == 200
    assert content_type == "application/json"
    assert json.loads(body) == {"ok": True, "reason": "all good"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/leader"])
def test_failing_probe_returns_503_with_its_reason(served: Served, path: str) -> None:
    served.backend.live = served.backend.ready = served.backend.leading = Probe(False, "not today")
    code, _type, body = get(served.url + path)
    assert code == 503
    assert json.loads(body) == {"ok": False, "reason": "not today"}


def test_healthz_asks_live_and_readyz_asks_ready(served: Served) -> None:
    served.backend.live = Probe(True, "alive")
    served.backend.ready = Probe(False, "ZooKeeper connection lost")
    assert get(served.url + "/healthz")[0] == 200
    code, _type, body = get(served.url + "/readyz")
    assert code == 503
    assert json.loads(body)["reason"] == "ZooKeeper connection lost"


def test_leader_asks_leading_only(served: Served) -> None:
    served.backend.live = served.backend.ready = Probe(True, "fine")
    served.backend.leading = Probe(False, "not leading: Attempter")
    code, _type, body = get(served.url + "/leader")
    assert code == 503
    assert json.loads(body) == {"ok": False, "reason": "not leading: Attempter"}
    assert get(served.url + "/readyz")[0] == 200  # readiness does not depend on leadership


def test_probes_are_asked_on_every_request(served: Served) -> None:
    ready = Probe(False, "connecting")
    served.backend.ready = ready
    assert get(served.url + "/readyz")[0] == 503
    ready.ok, ready.reason = True, "connected"
    assert get(served.url + "/readyz")[0] == 200


def test_status_returns_the_status_document_as_json(served: Served) -> None:
    document = {"identity": "me", "state": "Leader", "leader": {"identity": "me", "epoch": 7}}
    served.backend.status = lambda: document
    code, content_type, body = get(served.url + "/status")
    assert code == 200
    assert content_type == "application/json"
    assert json.loads(body) == document


@pytest.mark.parametrize("path", ["/", "/nope", "/metrics/extra", "/status.json"])
def test_unknown_path_is_404(served: Served, path: str) -> None:
    code, content_type, body = get(served.url + path)
    assert code == 404
    assert content_type == "application/json"
    assert path in json.loads(body)["error"]
    assert json.loads(body)["paths"] == ["/metrics", "/healthz", "/readyz", "/leader", "/status"]


def test_stop_closes_the_port() -> None:
    http = HttpServer("127.0.0.1", 0, Endpoints(CollectorRegistry(), dict, Probe(), Probe(), Probe()))
    http.start()
    url = f"http://127.0.0.1:{http.port}/healthz"
    assert get(url)[0] == 200
    http.stop()
    with pytest.raises(urllib.error.URLError):
        get(url)


# -- the server under idle, slow and many connections ------------------------------------------


class _RecordingSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The server's selector, recording the timeout of every ``select`` (None: block)."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.timeouts.append(timeout)
        return super().select(timeout)  # type: ignore[no-any-return]


def _recorded(request_timeout: float = 10.0) -> tuple[HttpServer, _RecordingSelector]:
    http = HttpServer(
        "127.0.0.1", 0, Endpoints(CollectorRegistry(), dict, Probe(), Probe(), Probe()),
        request_timeout=request_timeout,
    )  # fmt: skip
    recording = _RecordingSelector()
    http._selector.close()
    http._selector = recording
    http.start()
    return http, recording


def test_an_idle_server_blocks_until_a_socket_is_ready() -> None:
    # Issue 13: no periodic wake-up of an idle replica's HTTP thread (it cost 0.15-0.35 % of a core
    # as a 50 ms poll); nothing is due while no request head is pending.
    http, recording = _recorded()
    try:
        wait_for(lambda: recording.timeouts, 5, "the selector thread to wait")
        assert recording.timeouts == [None]
        assert get(f"http://127.0.0.1:{http.port}/healthz")[0] == 200
        wait_for(lambda: len(recording.timeouts) >= 3, 5, "the selector to wait again after the request")
        assert recording.timeouts[-1] is None  # served and handed over: nothing is due again
    finally:
        http.stop()


def test_a_pending_request_head_bounds_the_wait_by_its_deadline() -> None:
    http, recording = _recorded(request_timeout=30.0)
    try:
        wait_for(lambda: recording.timeouts, 5, "the selector thread to wait")
        idle = connect(http.port)
        wait_for(lambda: len(recording.timeouts) >= 2, 5, "the selector to accept the connection")
        bounded = recording.timeouts[1]
        assert bounded is not None and 0 < bounded <= 30.0
        idle.close()
        wait_for(lambda: recording.timeouts[-1] is None, 5, "the selector to block again once it is gone")
    finally:
        http.stop()


def test_an_idle_connection_is_closed_after_the_request_timeout(fresh: Callable[..., HttpServer]) -> None:
    http = fresh(request_timeout=0.2)
    idle = connect(http.port)
    wait_for(lambda: closed_by_server(idle), 5, "the server to close a connection that sent nothing")
    idle.close()
    assert get(f"http://127.0.0.1:{http.port}/healthz")[0] == 200


def test_a_connection_that_never_completes_its_request_is_closed(fresh: Callable[..., HttpServer]) -> None:
    http = fresh(request_timeout=0.2)
    slow = connect(http.port)
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: the head never ends
    wait_for(lambda: closed_by_server(slow), 5, "the server to close a connection with half a request")
    slow.close()


def test_an_oversized_request_head_is_closed(fresh: Callable[..., HttpServer]) -> None:
    http = fresh()
    big = connect(http.port)
    big.sendall(b"GET / HTTP/1.1\r\n" + b"X-Padding: " + b"x" * 20_000)  # past MAX_HEAD_BYTES, no end
    wait_for(lambda: closed_by_server(big), 5, "the server to close an endless request head")
    big.close()


def test_idle_connections_hold_no_threads_and_do_not_stop_probes(fresh: Callable[..., HttpServer]) -> None:
    before = threading.active_count()
    http = fresh()
    idle = [connect(http.port) for _ in range(200)]
    try:
        # Half-sent requests too: they must not occupy a handler either.
        for sock in idle[: WORKERS * 2]:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for _ in range(3):
            assert get(f"http://127.0.0.1:{http.port}/healthz")[0] == 200
        # The selector thread and the handlers, whatever the number of connections.
        assert threading.active_count() - before <= 1 + WORKERS
        assert not any(closed_by_server(sock) for sock in idle)  # still open: held, not refused
    finally:
        for sock in idle:
            sock.close()


def test_at_the_connection_limit_the_oldest_idle_connection_makes_room(
    fresh: Callable[..., HttpServer],
) -> None:
    http = fresh(max_connections=5)
    idle = [connect(http.port) for _ in range(5)]
    try:
        assert get(f"http://127.0.0.1:{http.port}/healthz")[0] == 200
        wait_for(lambda: closed_by_server(idle[0]), 5, "the oldest idle connection to be closed")
    finally:
        for sock in idle:
            sock.close()


def test_a_burst_of_connections_fits_the_listen_backlog() -> None:
    # The server is not started: nobody accepts, so only the kernel's queue (the backlog) holds
    # them. A connection beyond it would wait for SYN retries (1 s, 3 s, ...) that still find it full.
    http = HttpServer("127.0.0.1", 0, Endpoints(CollectorRegistry(), dict, Probe(), Probe(), Probe()))
    burst = []
    try:
        assert backlog() >= 50
        for _ in range(50):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", http.port))
            burst.append(sock)
        pending = list(burst)

        def all_connected() -> bool:
            _r, writable, _x = select.select([], pending, [], 0.05)
            for sock in writable:
                pending.remove(sock)
            return not pending

        wait_for(all_connected, 5, "50 connections to be queued by the kernel")
        assert all(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for sock in burst)
    finally:
        for sock in burst:
            sock.close()
        http.stop()  # never started: still closes the port
    with pytest.raises(OSError):
        connect(http.port)


def test_stop_closes_idle_connections_and_the_port(fresh: Callable[..., HttpServer]) -> None:
    http = fresh()
    idle = [connect(http.port) for _ in range(20)]
    wait_for(lambda: get(f"http://127.0.0.1:{http.port}/healthz")[0] == 200, 5, "the server to answer")
    http.stop()
    assert all(
        wait_for(lambda s=sock: closed_by_server(s), 5, "idle connections to be closed") for sock in idle
    )
    with pytest.raises(OSError):
        connect(http.port)
    for sock in idle:
        sock.close()


# -- Replica.status / ready / live with fake ports --------------------------------------------


def test_status_before_start_shows_init_and_a_closed_connection(harness: Harness) -> None:
    status = harness.replica.status()
    assert status["identity"] == "me"
    assert status["state"] == "Init"
    assert status["state_since"] == "2026-01-01T00:00:00.000000Z"
    assert status["leader"] is None
    assert status["zookeeper"]["state"] == "closed"
    assert status["zookeeper"]["session_timeout_seconds"] is None  # nothing granted yet
    assert status["zookeeper"]["chroot"] is None


def test_status_of_an_attempter_names_the_other_leader(harness: Harness) -> None:
    other_leader(harness.server, "other")
    seen = harness.seen_at(harness.replica.status, 3.0)
    harness.stop_at(4.0)
    harness.run()
    status = seen[0]
    assert status["state"] == "Attempter"
    assert status["leader"]["identity"] == "other"
    assert status["leader"]["epoch"] == 101
    assert status["leader"]["self"] is False
    assert status["zookeeper"]["state"] == "connected"


def test_status_of_a_leader_shows_itself_and_when_it_began(harness: Harness) -> None:
    other_leader(harness.server, "other")
    harness.at(5.0, harness.server.delete_leader_by_hand)
    seen = harness.seen_at(harness.replica.status, 7.5)
    harness.stop_at(8.0)
    harness.run()
    status = seen[0]
    assert status["state"] == "Leader"
    assert status["state_since"] == "2026-01-01T00:00:05.000000Z"
    assert RFC3339_UTC.fullmatch(status["state_since"])
    assert status["state_duration_seconds"] == 2.5
    assert status["leader"]["identity"] == "me"
    assert status["leader"]["epoch"] == harness.storage.written[0][1].epoch
    assert status["leader"]["self"] is True


def test_status_shows_no_leader_while_the_connection_is_suspended(harness: Harness) -> None:
    seen: list[dict[str, Any]] = []

    def suspend_and_look() -> None:
        harness.coordinator.suspend()
        seen.append(harness.replica.status())

    harness.at(3.0, suspend_and_look)
    harness.stop_at(4.0)
    harness.run()
    assert seen[0]["leader"] is None
    assert seen[0]["zookeeper"]["state"] == "suspended"


def test_status_is_json_serialisable(harness: Harness) -> None:
    seen = harness.seen_at(lambda: json.dumps(harness.replica.status()), 3.0)
    harness.stop_at(4.0)
    harness.run()
    assert json.loads(seen[0])["state"] == "Leader"


def test_not_ready_before_connecting(harness: Harness) -> None:
    ready, reason = harness.replica.ready()
    assert not ready
    assert "closed" in reason


def test_ready_while_connected(harness: Harness) -> None:
    seen = harness.seen_at(harness.replica.ready, 3.0)
    harness.stop_at(4.0)
    harness.run()
    assert seen[0][0] is True


def test_not_ready_while_suspended(harness: Harness) -> None:
    seen: list[tuple[bool, str]] = []

    def suspend_and_look() -> None:
        harness.coordinator.suspend()
        seen.append(harness.replica.ready())

    harness.at(3.0, suspend_and_look)
    harness.stop_at(4.0)
    harness.run()
    assert seen[0] == (False, "ZooKeeper connection suspended")


def test_not_ready_once_stopping_even_if_connected(harness: Harness) -> None:
    seen: list[tuple[bool, str]] = []

    def stop_and_look() -> None:
        harness.replica.ctx.request_stop("test")
        seen.append(harness.replica.ready())

    harness.at(3.0, stop_and_look)
    harness.run()
    assert seen[0] == (False, "stopping")


def test_not_leading_before_start(harness: Harness) -> None:
    assert harness.replica.leading() == (False, "not leading: Init")


def test_leading_only_once_the_terms_work_runs_and_until_it_ends(harness: Harness) -> None:
    harness.storage.fail_writes = 1  # the first write fails: leader, but no work done yet
    seen: dict[float, tuple[bool, str]] = {}

    def look(at: float) -> None:
        harness.at(at, lambda: seen.__setitem__(at, harness.replica.leading()))

    for at in (5.0, 15.0, 21.0):
        look(at)
    harness.at(20.0, harness.coordinator.suspend)
    harness.stop_at(25.0)
    harness.run()
    epoch = harness.storage.written[0][1].epoch
    assert seen[5.0] == (False, f"leading epoch {epoch}, its work not running yet")
    assert seen[15.0] == (True, f"leading epoch {epoch}")  # the retry at the next tick wrote
    assert seen[21.0] == (False, "not leading: Failover")  # suspended: Leader left at once


def test_not_leading_while_another_replica_leads(harness: Harness) -> None:
    other_leader(harness.server, "other")
    keep_publishing(harness)
    seen = harness.seen_at(harness.replica.leading, 3.0)
    harness.stop_at(4.0)
    harness.run()
    assert seen == [(False, "not leading: Attempter")]


def test_not_leading_once_stopping(harness: Harness) -> None:
    seen: list[tuple[bool, str]] = []

    def stop_and_look() -> None:
        before = harness.replica.leading()
        harness.replica.ctx.request_stop("test")
        seen.extend([before, harness.replica.leading()])

    harness.at(3.0, stop_and_look)
    harness.run()
    assert seen[0][0] is True
    assert seen[1] == (False, "stopping")


def test_live_at_start(harness: Harness) -> None:
    assert harness.replica.live()[0] is True


def test_live_while_the_machine_waits_for_a_long_time(harness: Harness) -> None:
    other_leader(harness.server, "other")
    keep_publishing(harness)
    seen = harness.seen_at(harness.replica.live, 10 * LIVENESS_STALL_SECONDS)
    harness.stop_at(10 * LIVENESS_STALL_SECONDS + 1)
    harness.run()
    assert seen[0][0] is True


def test_not_live_when_the_heartbeat_is_older_than_the_stall_limit(harness: Harness) -> None:
    harness.clock.advance(LIVENESS_STALL_SECONDS + 1)  # the machine is not running: nobody beats
    live, reason = harness.replica.live()
    assert not live
    assert "stalled" in reason


def test_live_just_within_the_stall_limit(harness: Harness) -> None:
    harness.clock.advance(LIVENESS_STALL_SECONDS - 1)
    assert harness.replica.live()[0] is True


def test_replica_endpoints_serve_its_status_over_http(served: Served, harness: Harness) -> None:
    served.backend.status = harness.replica.status
    served.backend.live = harness.replica.live
    served.backend.ready = harness.replica.ready
    served.backend.leading = harness.replica.leading
    code, _type, body = get(served.url + "/status")
    assert code == 200
    assert json.loads(body)["identity"] == "me"
    assert get(served.url + "/healthz")[0] == 200
    assert get(served.url + "/readyz")[0] == 503  # never connected
    assert get(served.url + "/leader")[0] == 503


def test_status_and_metrics_show_the_session_timeout_the_server_granted(make_harness) -> None:  # type: ignore[no-untyped-def]
    h = make_harness(zk_session_timeout=10.0)
    h.coordinator.granted = 4.0
    seen = h.seen_at(h.replica.status, 1.0, 2.5)
    h.at(2.0, h.coordinator.suspend)
    h.stop_at(3.0)
    h.run()
    assert seen[0]["zookeeper"]["session_timeout_seconds"] == 4.0
    assert seen[0]["zookeeper"]["requested_session_timeout_seconds"] == 10.0
    assert seen[1]["zookeeper"]["session_timeout_seconds"] == 4.0  # the last one granted, while away
    assert h.metric("election_zk_session_timeout_seconds") == 4.0


def test_the_real_storage_checks_leases_on_the_replicas_own_clock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # valid_until is a time on the replica's clock (CLOCK_BOOTTIME in production, virtual here):
    # the storage must compare it on that same clock, or a lease could look longer than it is.
    from app.adapters.fs_storage import DirectoryStorage  # noqa: PLC0415
    from app.config import Settings  # noqa: PLC0415
    from app.wiring import Replica  # noqa: PLC0415
    from tests.fakes import FakeClock, FakeCoordinator  # noqa: PLC0415

    clock = FakeClock(start=5.0)  # far from time.monotonic()
    replica = Replica(Settings(file_dir=tmp_path, identity="me"), clock=clock, coordinator=FakeCoordinator())
    storage = replica.ctx.storage
    assert isinstance(storage, DirectoryStorage)
    assert storage._monotonic() == 5.0
